"""The Animator: the engine API the studio and the CLI use (load, prepare once, render many times).

``prepare(portrait, audio)`` computes and caches everything that does not change while the user
plays with sliders: the portrait's crop and latent, the ReferenceNet features, the audio tokens of
every video frame, the text / audio emotion conditions. ``render_frame`` then only runs the
denoising loop (plus the tiny Emotion-to-Latents for the slider values) and the VAE decoder.
``render_clip`` renders windows of frames that overlap the previous window: the overlapping frames
are held to the latents already rendered (re-noised to each step's level), so motion continues
across windows, and finished frames are streamed out so memory stays flat however long the clip.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from engine.animator import (
    PIXEL_CAPABILITIES,
    CancelToken,
    Capabilities,
    FrameResult,
    check_frame_index,
    check_frame_range,
)
from engine.diffusion.calibration import calibrate_weights
from engine.diffusion.checkpoint import load_expert_pack as _load_expert_pack
from engine.diffusion.checkpoint import load_model
from engine.diffusion.config import ModelConfig, SamplingConfig, sampling_value_problem
from engine.diffusion.model import MoEEModel
from engine.diffusion.unet import ReferenceFeatures
from engine.errors import EmotionSpecError, InputImageError, NoFaceError
from engine.io import audio as audio_io
from engine.io.face import keep_background, paste_back, portrait_background_weight
from engine.io.image import center_crop_square, load_image, resize
from engine.io.resources import DEFAULT_MODEL_DIR
from engine.limits import MAX_FPS
from engine.moee import BatchGates, GateControl, GateSpec

#: Frames rendered when there is no audio track.
SILENT_CLIP_FRAMES = 50
#: Frames rendered jointly per window of a clip, and frames shared with the previous window.
DEFAULT_WINDOW = 8
DEFAULT_OVERLAP = 2
#: Emotion-token cache entries kept (one per distinct slider mix).
EMOTION_CACHE_SIZE = 256
#: An image whose sides differ by less than this ratio counts as an already-cropped square portrait.
SQUARE_TOLERANCE = 0.1
#: A face at least this wide (fraction of a square image) means the image is already a framed portrait.
FRAMED_FACE_WIDTH = 0.35
SEED_STRIDE = 1_000_003
#: Long side of the portrait a frame is pasted back into when no ``paste_max_size`` is given.
PASTE_MAX_SIDE = 1024
#: Growth of the mouth region that gets ``SamplingConfig.mouth_guidance_scale`` (x the mouth width).
GUIDANCE_MOUTH_DILATE = 0.6

SCHEDULERS = {
    "ddim": DDIMScheduler,
    "dpm": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
}



@dataclass
class PreparedInputs:
    """What :meth:`Animator.prepare` caches for one portrait + audio track."""

    portrait: np.ndarray  # model-size RGB crop
    landmarks: np.ndarray | None  # (N, 2) pixel coordinates in ``portrait``
    audio: audio_io.AudioClip | None
    fps: int
    num_frames: int
    reference_latent: torch.Tensor
    reference: ReferenceFeatures | None  # None on the naive (uncached) path
    audio_windows: torch.Tensor | None  # (num_frames, window, n_mels)
    audio_tokens: torch.Tensor | None  # (num_frames, m, A); None on the naive path or without audio
    text_embedding: torch.Tensor | None = None  # (1, 384)
    audio_emotion: torch.Tensor | None = None  # (1, n_prosody)
    warnings: list[str] = field(default_factory=list)
    # Emotion tokens per slider mix (the conditions above are fixed for this object).
    emotion_cache: OrderedDict[tuple, torch.Tensor] = field(default_factory=OrderedDict, repr=False)
    # Audio tokens of silence, one frame's ``(m, A)`` (lip guidance's null condition); None without audio.
    silent_audio_tokens: torch.Tensor | None = None
    # SamplingConfig.keep_background: the portrait's background weight, computed on first use
    # (``background_checked``); None when no person was found in the portrait.
    background_weight: np.ndarray | None = None
    background_checked: bool = False
    # prepare(paste_back=True): the portrait (long side capped) each frame is pasted back into, and the
    # (2, 3) matrix from its pixels to the crop's; None: frames are the crop itself.
    paste_portrait: np.ndarray | None = None
    paste_matrix: np.ndarray | None = None


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA if present, then Apple MPS, else CPU."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """Half precision on accelerators (fused attention kernels), fp32 on the CPU."""
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


def make_scheduler(name: str, cfg: ModelConfig):
    """A diffusers sampler (``ddim``, ``dpm`` = DPM-Solver++, ``euler``) on the model's noise schedule."""
    try:
        cls = SCHEDULERS[name]
    except KeyError:
        raise EmotionSpecError(f"unknown sampler {name!r}; choose one of {', '.join(SCHEDULERS)}") from None
    kwargs = dict(vars(cfg.scheduler))
    if cls is DPMSolverMultistepScheduler:
        kwargs["algorithm_type"] = "dpmsolver++"
    if cls is DDIMScheduler:
        kwargs.update(clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return cls(**kwargs)


def sampling_timesteps(scheduler, steps: int, strength: float, device: torch.device | str | None = None) -> torch.Tensor:
    """The timesteps a render runs: the last ``max(1, floor(strength * steps))`` of ``steps``.

    As diffusers' img2img: ``strength = 1`` runs every step from pure noise; ``strength < 1`` skips
    the noisiest ones (the sampler is told where it begins, so multistep samplers stay consistent).
    """
    problem = sampling_value_problem("strength", strength)
    if problem:
        raise EmotionSpecError(f"strength {problem}")
    scheduler.set_timesteps(steps, device=device)
    skip = (steps - max(1, min(steps, int(strength * steps)))) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(skip)
    return scheduler.timesteps[skip:]


def initial_latents(scheduler, noise: torch.Tensor, portrait_latent: torch.Tensor, first_timestep: torch.Tensor,
                    strength: float) -> torch.Tensor:
    """``x_start``: ``sigma_init * eps`` for ``strength = 1``, else the portrait latent noised to the first
    timestep, ``sqrt(abar_t) z_ref + sqrt(1 - abar_t) eps`` (SDEdit), one row per frame of ``noise``."""
    if strength >= 1.0:
        return noise * scheduler.init_noise_sigma
    portrait = portrait_latent.to(noise.dtype).expand(len(noise), *noise.shape[1:])
    return scheduler.add_noise(portrait, noise, first_timestep.reshape(1).expand(len(noise)))


def guidance_term(eps: torch.Tensor, eps_null: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """What classifier-free guidance adds to the conditional prediction: ``(w - 1) (eps - eps_null)``.

    Guidance on several conditions adds one term each (emotion: ``eps_null`` with every slider at 0;
    audio: with silence), so ``eps + sum_c (w_c - 1)(eps - eps_c)``; one term alone is
    ``eps_null + w (eps - eps_null)``.
    """
    return (scale - 1.0) * (eps - eps_null)


def emotion_guidance(eps: torch.Tensor, eps_neutral: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance on the emotion: ``eps_0 + w (eps_g - eps_0)``, ``eps_0`` with every slider at 0.

    ``scale`` is a number or a per-pixel map ``w(x)`` broadcast over the latents (see
    :func:`guidance_scale_map`).
    """
    return eps + guidance_term(eps, eps_neutral, scale)


def guidance_active(timestep: torch.Tensor | int, num_train_timesteps: int, min_t: float) -> bool:
    """Whether emotion guidance runs at ``timestep``: only where ``t >= min_t * T`` (0 = always)."""
    return float(timestep) >= min_t * num_train_timesteps


def audio_guidance_active(timestep: torch.Tensor | int, num_train_timesteps: int, sampling: SamplingConfig) -> bool:
    """Whether lip (audio) guidance runs at ``timestep``: scale != 1 and ``t < audio_guidance_max_t * T``."""
    return sampling.audio_guidance_scale != 1.0 and float(timestep) < sampling.audio_guidance_max_t * num_train_timesteps


def guidance_scale_map(mouth: torch.Tensor, scale: float, mouth_scale: float) -> torch.Tensor:
    """Per-pixel guidance ``w(x) = w (1 - m(x)) + w_mouth m(x)`` for a latent-grid mouth mask ``m`` in 0..1."""
    return scale * (1.0 - mouth) + mouth_scale * mouth


def latent_mouth_mask(landmarks: np.ndarray, image_size: int, latent_size: int,
                      dilate: float = GUIDANCE_MOUTH_DILATE) -> torch.Tensor:
    """The portrait's mouth, grown by ``dilate`` x its width (room for the jaw to drop), on the latent grid.

    Area-resized, so a latent cell half covered by the mouth gets 0.5. Shape ``(latent, latent)``.
    """
    from engine.io import face
    from engine.moee import resize_mask_area

    mask = face.mouth_mask(landmarks, image_size, image_size, dilate=dilate)
    return resize_mask_area(torch.from_numpy(mask), latent_size, latent_size)


def emotion_guidance_for(cfg: ModelConfig, scale: float, landmarks: np.ndarray | None) -> float | torch.Tensor | None:
    """The guidance to apply for a portrait: None (off), ``scale``, or a per-pixel map when
    ``cfg.sampling.mouth_guidance_scale`` gives the mouth its own scale (needs the portrait's landmarks)."""
    mouth_scale = cfg.sampling.mouth_guidance_scale
    if mouth_scale is None or landmarks is None:
        return None if scale == 1.0 else scale
    if scale == 1.0 and mouth_scale == 1.0:
        return None
    return guidance_scale_map(latent_mouth_mask(landmarks, cfg.image_size, cfg.latent_size), scale, mouth_scale)


#: One U-Net pass of a guided step: (gates, audio tokens, guidance scale; None for the conditional pass).
GuidancePass = tuple[BatchGates, torch.Tensor | None, Any]


def guidance_passes(timestep: torch.Tensor | int, cfg: ModelConfig, gates: BatchGates, audio: torch.Tensor | None,
                    emotion_guidance: float | torch.Tensor | None, neutral: BatchGates | None,
                    silent_audio: Callable[[], torch.Tensor | None]) -> list[GuidancePass]:
    """The passes of one denoising step: the conditional one, then the null condition of each guidance
    active at ``timestep`` (emotion: every slider at 0, at ``t >= guidance_min_t T``; lip: the audio of
    silence, at ``t < audio_guidance_max_t T``). ``silent_audio`` is called only when lip guidance runs.
    """
    total_t, sampling = cfg.scheduler.num_train_timesteps, cfg.sampling
    passes: list[GuidancePass] = [(gates, audio, None)]
    if emotion_guidance is not None and neutral is not None and guidance_active(timestep, total_t,
                                                                                sampling.guidance_min_t):
        passes.append((neutral, audio, emotion_guidance))
    if audio is not None and audio_guidance_active(timestep, total_t, sampling):
        passes.append((gates, silent_audio(), sampling.audio_guidance_scale))
    return passes


def run_unet_passes(denoiser: torch.nn.Module, model_input: torch.Tensor, timestep: torch.Tensor,
                    reference: ReferenceFeatures, emotion: torch.Tensor, passes: list[GuidancePass],
                    record: bool = False) -> list[torch.Tensor]:
    """The U-Net's prediction ``(B, F, C, h, w)`` for each (gates, audio) of ``passes``, as one batched call.

    ``model_input`` is ``(B, F, C, h, w)``, ``emotion`` the tokens of those ``B`` rows. A batch of two
    costs far less than two calls (20 vs 2 x 15 ms for the demo model on 2 cores). Gates are recorded
    (heat maps) from the first pass, whose rows come first.
    """
    count, rows = len(passes), model_input.shape[0] * model_input.shape[1]
    gates = BatchGates.concat([g for g, _, _ in passes], rows) if count > 1 else passes[0][0]
    audios = [a for _, a, _ in passes]
    if gates is None or (any(a is None for a in audios) and not all(a is None for a in audios)):
        return [denoiser(model_input, timestep, reference, a, emotion, g, record and i == 0)
                for i, (g, a, _) in enumerate(passes)]
    batch_audio = None if audios[0] is None else torch.cat(audios)
    out = denoiser(torch.cat([model_input] * count), timestep, reference, batch_audio, torch.cat([emotion] * count),
                   gates, record)
    return list(out.chunk(count))


def combine_guidance(outputs: list[torch.Tensor], passes: list[GuidancePass]) -> torch.Tensor:
    """``eps + sum_c (w_c - 1)(eps - eps_c)``: the conditional prediction plus each guidance's term."""
    eps = outputs[0]
    return eps + sum((guidance_term(eps, eps_null, scale) for eps_null, (_, _, scale)
                      in zip(outputs[1:], passes[1:], strict=True)), torch.zeros_like(eps))


def calibrated_control(control: GateControl, sampling: SamplingConfig, num_emotions: int) -> GateControl:
    """``control`` with its slider weights ``w`` replaced by the gate values the U-Net is given.

    ``sampling``: its slider calibration and mix curves (:func:`engine.diffusion.calibration.calibrate_weights`;
    neither = the slider is the gate). Painted masks and their alphas (the local gates) are left as they are.
    """
    if not (sampling.calibration or sampling.mix_calibration) or control.global_weights is None:
        return control
    checked = control.validated(num_emotions)
    return GateControl(sampling_gates(checked.global_weights, sampling), checked.local_masks,
                       checked.local_alpha, checked_for=num_emotions)


def sampling_gates(weights: np.ndarray, sampling: SamplingConfig) -> np.ndarray:
    """Slider weights ``(..., E)`` -> the gates ``sampling``'s calibration gives the U-Net."""
    return calibrate_weights(weights, sampling.calibration, mix_curves=sampling.mix_calibration)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``H x W x 3`` -> float ``(1, 3, H, W)`` in -1..1."""
    return torch.tensor(image).permute(2, 0, 1)[None].float() / 127.5 - 1.0  # a copy: inputs may be read-only


def tensor_to_images(images: torch.Tensor) -> np.ndarray:
    """float ``(N, 3, H, W)`` in -1..1 -> uint8 ``(N, H, W, 3)``."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def centre_square_matrix(shape: tuple[int, ...], size: int) -> np.ndarray:
    """The ``(2, 3)`` matrix from image pixels to its centre square resized to ``size`` (as
    :func:`engine.io.image.center_crop_square` then :func:`engine.io.image.resize`)."""
    height, width = shape[:2]
    side = min(height, width)
    scale = size / side
    # Pixel centres: x_crop = (x - left + 0.5) * scale - 0.5.
    shift = [(0.5 - (width - side) // 2) * scale - 0.5, (0.5 - (height - side) // 2) * scale - 0.5]
    return np.array([[scale, 0.0, shift[0]], [0.0, scale, shift[1]]])


def paste_target(image: np.ndarray, matrix: np.ndarray, max_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The portrait frames are pasted back into (long side capped at ``max_size``, None: :data:`PASTE_MAX_SIDE`)
    and ``matrix`` (image -> crop pixels) rewritten for it."""
    cap = PASTE_MAX_SIDE if max_size is None else int(max_size)
    height, width = image.shape[:2]
    if max(height, width) <= cap:
        return image, np.asarray(matrix, np.float64)
    scale = cap / max(height, width)
    target = resize(image, (max(1, round(width * scale)), max(1, round(height * scale))))
    sx, sy = target.shape[1] / width, target.shape[0] / height
    # Target -> image pixels (pixel centres): x = (x_t + 0.5) / s - 0.5.
    shrink, offset = np.diag([1 / sx, 1 / sy]), np.array([0.5 / sx - 0.5, 0.5 / sy - 0.5])
    m = np.asarray(matrix, np.float64)
    return target, np.hstack([m[:, :2] @ shrink, (m[:, :2] @ offset + m[:, 2])[:, None]])


class Animator:
    """Loads a MoEE model and renders frames / clips of a prepared portrait (the ``"pixel"`` renderer of
    :class:`engine.animator.Animator`)."""

    capabilities: ClassVar[Capabilities] = PIXEL_CAPABILITIES
    renderer: ClassVar[str] = "pixel"

    def __init__(self, model: MoEEModel, device: str | torch.device = "auto", dtype: torch.dtype | None = None) -> None:
        self.device = pick_device(device)
        self.dtype = dtype or default_dtype(self.device)
        self.model = model.to(self.device, self.dtype).eval()
        self.cfg = model.cfg
        # False = the naive baseline: nothing cached (portrait, ReferenceNet, audio and emotion tokens
        # recomputed at every denoising step, as in a training forward pass) and every expert run.
        self.use_cache = True
        self._gate_maps: np.ndarray | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, model_dir: str | Path | None = None, device: str | torch.device = "auto",
                        dtype: torch.dtype | None = None) -> Animator:
        """Load a model folder (``None`` = the bundled default model)."""
        folder = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        return cls(load_model(folder), device, dtype)

    @classmethod
    def from_config(cls, cfg: ModelConfig, device: str | torch.device = "cpu", seed: int = 0) -> Animator:
        """An untrained model with random weights (tests, and the studio before a model exists)."""
        torch.manual_seed(seed)
        return cls(MoEEModel(cfg), device)

    @property
    def emotions(self) -> list[str]:
        return list(self.model.emotions)

    @property
    def trained(self) -> bool:
        return bool(getattr(self.model, "notes", {}).get("trained", False))

    def load_expert_pack(self, path: str | Path) -> str:
        """Add a custom emotion from an expert pack; it becomes one more slider."""
        with self._lock:
            name = _load_expert_pack(self.model, path)
            self.model.to(self.device, self.dtype)
        return name

    # ------------------------------------------------------------------ preparation
    def prepare(
        self,
        portrait: str | Path | np.ndarray,
        audio: str | Path | audio_io.AudioClip | None = None,
        *,
        num_frames: int | None = None,
        crop: str = "auto",
        emotion_text: str | None = None,
        emotion_audio: str | Path | audio_io.AudioClip | None = None,
        fps: int | None = None,
        max_duration: float | None = audio_io.DEFAULT_MAX_DURATION,
        paste_back: bool = False,
        paste_max_size: int | None = None,
    ) -> PreparedInputs:
        """Load, crop and encode the portrait; load the audio; cache every condition.

        ``max_duration``: the longest audio clip accepted, in seconds (None: no limit); ``fps`` None:
        the model's frame rate (0 or less is refused, not replaced by the default).

        ``crop``: ``face`` (find the face with MediaPipe and crop around it; error if none),
        ``none`` (centre square of the whole image), ``auto`` (face if found; an image that is
        already square is used whole; otherwise a clear NoFaceError).

        ``paste_back``: every frame is put back into the portrait (inverse crop, feathered seam;
        :func:`engine.io.face.paste_back`) at the portrait's resolution, long side capped at ``paste_max_size``
        (None: :data:`PASTE_MAX_SIDE`); outside the face the frames are the portrait's own pixels.
        """
        image = load_image(portrait)
        crop_img, landmarks, warnings, matrix = self._crop(image, crop)
        clip = (audio_io.load_audio(audio, self.cfg.audio.sample_rate, max_duration=max_duration)
                if audio is not None else None)
        fps = int(self.cfg.fps if fps is None else fps)
        if not 1 <= fps <= MAX_FPS:
            raise EmotionSpecError(f"fps must be a whole number from 1 to {MAX_FPS}, got {fps}")
        if num_frames is None:
            num_frames = audio_io.num_video_frames(clip.duration, fps) if clip else SILENT_CLIP_FRAMES
        with torch.no_grad():
            ref_latent = self.model.encode_images(image_to_tensor(crop_img).to(self.device, self.dtype))
            reference = self.model.denoiser.compute_reference(ref_latent) if self.use_cache else None
            windows = tokens = None
            if clip is not None:
                mel = audio_io.log_mel(clip.samples, self.cfg.audio)
                windows = torch.from_numpy(audio_io.frame_windows(mel, num_frames, fps, self.cfg.audio))
                windows = windows.to(self.device, self.dtype)
                tokens = self.model.denoiser.encode_audio(windows) if self.use_cache else None
        text_embedding = audio_emotion = None
        if emotion_text:
            from engine.emotion_text import embed_texts

            text_embedding = torch.from_numpy(embed_texts([emotion_text])).to(self.device, self.dtype)
        if emotion_audio is not None:
            emotion_clip = audio_io.load_audio(emotion_audio, self.cfg.audio.sample_rate, max_duration=max_duration)
            features = audio_io.prosody_features(emotion_clip, self.cfg.moee.audio_emotion_features)
            audio_emotion = torch.from_numpy(features)[None].to(self.device, self.dtype)
        prepared = PreparedInputs(crop_img, landmarks, clip, fps, int(num_frames), ref_latent, reference, windows,
                                  tokens, text_embedding, audio_emotion, warnings)
        if paste_back:
            prepared.paste_portrait, prepared.paste_matrix = paste_target(image, matrix, paste_max_size)
        if clip is not None and self.use_cache:
            prepared.silent_audio_tokens = self._encode_silence(fps)
        return prepared

    def _crop(self, image: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray | None, list[str], np.ndarray]:
        """The square portrait the model sees, its landmarks (crop pixels), notes for the user and the
        ``(2, 3)`` matrix from ``image`` pixels to the crop's."""
        size = self.cfg.image_size
        if mode not in ("auto", "face", "none"):
            raise InputImageError(f"unknown crop mode {mode!r}; use auto, face or none")
        if mode == "none":
            return resize(center_crop_square(image), size), None, [], centre_square_matrix(image.shape, size)
        from engine.io import face

        height, width = image.shape[:2]
        square = abs(height - width) <= SQUARE_TOLERANCE * max(height, width)
        try:
            found = face.detect_landmarks(image)
        except NoFaceError:
            if mode == "auto" and square:
                note = "no face found by MediaPipe; the whole (square) image is used as the portrait"
                return (resize(center_crop_square(image), size), None, [note],
                        centre_square_matrix(image.shape, size))
            raise
        face_width = (found.box[2] - found.box[0]) / width
        if mode == "auto" and square and face_width >= FRAMED_FACE_WIDTH:
            # Already a framed portrait (as the model's training frames are): keep the framing.
            side = min(height, width)
            offset = np.array([(width - side) / 2, (height - side) / 2], np.float32)
            return (resize(center_crop_square(image), size), (found.points - offset) * (size / side), [],
                    centre_square_matrix(image.shape, size))
        crop_img, transform = face.crop_face(image, found, size)
        return crop_img, transform.landmarks, [], transform.matrix

    # ------------------------------------------------------------------ conditions
    def _reference(self, prepared: PreparedInputs) -> ReferenceFeatures:
        if prepared.reference is not None:
            return prepared.reference
        return self.model.denoiser.compute_reference(prepared.reference_latent)

    def _audio_tokens(self, prepared: PreparedInputs, frames: Sequence[int]) -> torch.Tensor | None:
        if prepared.audio_windows is None:
            return None
        index = torch.as_tensor(list(frames), device=self.device)
        if prepared.audio_tokens is not None:
            return prepared.audio_tokens[index][None]
        return self.model.denoiser.encode_audio(prepared.audio_windows[index])[None]

    @torch.no_grad()
    def _encode_silence(self, fps: int) -> torch.Tensor:
        windows = torch.from_numpy(audio_io.silent_windows(1, fps, self.cfg.audio)).to(self.device, self.dtype)
        return self.model.denoiser.encode_audio(windows)[0]

    def _silent_audio_tokens(self, prepared: PreparedInputs, frames: Sequence[int]) -> torch.Tensor | None:
        """Audio tokens of silence for ``frames`` ``(1, F, m, A)``, or None (no audio track: no lip guidance)."""
        if prepared.audio_windows is None:
            return None
        silent = prepared.silent_audio_tokens
        if silent is None:  # the naive path encodes it at every use
            silent = self._encode_silence(prepared.fps)
        return silent.expand(len(frames), *silent.shape)[None]

    def _emotion_tokens(self, prepared: PreparedInputs, labels: np.ndarray) -> torch.Tensor:
        """Emotion tokens per frame ``(1, F, K, D)`` for soft labels ``(F, E)`` (cached per mix)."""
        cache = prepared.emotion_cache
        rows = []
        for label in labels:
            key = tuple(np.round(label, 4).tolist())
            tokens = cache.get(key) if self.use_cache else None
            if tokens is None:
                label_t = torch.as_tensor(label, device=self.device, dtype=self.dtype)[None]
                tokens = self.model.denoiser.emotion_latents(label_t, prepared.text_embedding, prepared.audio_emotion)[0]
                if self.use_cache:
                    cache[key] = tokens
                    while len(cache) > EMOTION_CACHE_SIZE:
                        cache.popitem(last=False)
            else:
                cache.move_to_end(key)
            rows.append(tokens)
        return torch.stack(rows)[None]

    def _gates_for(self, gates: GateSpec, frames: Sequence[int]) -> list[GateControl]:
        if gates is None:
            return [GateControl() for _ in frames]
        if isinstance(gates, GateControl):
            checked = gates.validated(self.model.num_emotions)
            return [checked for _ in frames]
        return [gates(i).validated(self.model.num_emotions) for i in frames]

    def emotion_from_text(self, text: str) -> dict[str, float]:
        """Slider weights from a description such as ``"sadly surprised"`` (see engine.emotion_text)."""
        from engine.emotion_text import emotion_weights_from_text

        return emotion_weights_from_text(text)

    # ------------------------------------------------------------------ sampling
    def _denoise(
        self,
        prepared: PreparedInputs,
        frames: Sequence[int],
        controls: list[GateControl],
        steps: int,
        seed: int,
        sampler: str,
        guidance_scale: float | None,
        cancel: CancelToken | None,
        known: dict[int, torch.Tensor] | None = None,
        record_gates: bool = False,
        strength: float | None = None,
    ) -> torch.Tensor:
        """Run the sampler for ``frames`` jointly; returns clean latents ``(F, C, h, w)``."""
        if steps < 1:
            raise EmotionSpecError(f"steps must be at least 1, got {steps}")
        strength = self.cfg.sampling.strength if strength is None else float(strength)
        if guidance_scale is None:
            guidance_scale = self.cfg.sampling.guidance_scale
        scheduler = make_scheduler(sampler, self.cfg)
        timesteps = list(sampling_timesteps(scheduler, steps, strength, self.device))
        noise = torch.stack([self._frame_noise(seed, i) for i in frames])
        latents = initial_latents(scheduler, noise, prepared.reference_latent, timesteps[0], strength)
        num = self.model.num_emotions
        controls = [calibrated_control(c, self.cfg.sampling, num) for c in controls]
        batch_gates = BatchGates.stack(controls, num)
        batch_gates.compute_all_experts = not self.use_cache
        labels = np.stack([c.global_weights if c.global_weights is not None else np.zeros(num, np.float32)
                           for c in controls])
        emotion = self._emotion_tokens(prepared, labels)
        reference = self._reference(prepared)
        audio = self._audio_tokens(prepared, frames)
        neutral = None
        guidance = self._guidance(prepared, guidance_scale)
        if guidance is not None:
            neutral = BatchGates.stack([GateControl(np.zeros(num, np.float32)) for _ in frames], num)
        known_rows = [j for j, i in enumerate(frames) if known and i in known]
        for step, t in enumerate(timesteps):
            if cancel is not None:
                cancel.check()
            model_input = scheduler.scale_model_input(latents, t)
            last = step == len(timesteps) - 1
            if not self.use_cache and step > 0:  # the naive baseline recomputes every condition every step
                emotion = self._emotion_tokens(prepared, labels)
                reference = self._reference(prepared)
                audio = self._audio_tokens(prepared, frames)
            passes = guidance_passes(t, self.cfg, batch_gates, audio, guidance, neutral,
                                     lambda: self._silent_audio_tokens(prepared, frames))
            outputs = run_unet_passes(self.model.denoiser, model_input[None], t, reference, emotion, passes,
                                      record_gates and last)
            eps = combine_guidance([out[0] for out in outputs], passes)
            latents = scheduler.step(eps, t, latents).prev_sample
            if known_rows:
                latents = self._hold_known(scheduler, latents, frames, known, known_rows, noise,
                                           None if last else timesteps[step + 1])
        return latents

    def _guidance(self, prepared: PreparedInputs, scale: float) -> float | torch.Tensor | None:
        guidance = emotion_guidance_for(self.cfg, scale, prepared.landmarks)
        return guidance.to(self.device, self.dtype) if isinstance(guidance, torch.Tensor) else guidance

    def _frame_noise(self, seed: int, frame: int) -> torch.Tensor:
        """The initial noise of one frame: a function of (seed, frame index) only."""
        generator = torch.Generator().manual_seed(seed * SEED_STRIDE + frame)
        c, s = self.cfg.latent_channels, self.cfg.latent_size
        return torch.randn(c, s, s, generator=generator).to(self.device, self.dtype)

    @staticmethod
    def _hold_known(scheduler, latents, frames, known, rows, noise, next_t) -> torch.Tensor:
        """Overlap frames follow the previous window: their clean latents noised to the next level."""
        latents = latents.clone()
        for j in rows:
            clean = known[frames[j]]
            if next_t is None:
                latents[j] = clean
            else:
                latents[j] = scheduler.add_noise(clean[None], noise[j][None], next_t.reshape(1))[0]
        return latents

    def _decode(self, latents: torch.Tensor, prepared: PreparedInputs) -> np.ndarray:
        images = tensor_to_images(self.model.decode_latents(latents))
        if self.cfg.sampling.keep_background:
            if not prepared.background_checked:
                prepared.background_weight = portrait_background_weight(prepared.portrait)
                prepared.background_checked = True
            images = keep_background(images, prepared.portrait, prepared.background_weight)
        if prepared.paste_portrait is None or prepared.paste_matrix is None:
            return images
        return np.stack([paste_back(prepared.paste_portrait, image, prepared.paste_matrix) for image in images])

    def render_frame(
        self,
        prepared: PreparedInputs,
        frame_index: int = 0,
        gates: GateSpec = None,
        *,
        steps: int = 8,
        seed: int = 0,
        sampler: str = "dpm",
        guidance_scale: float | None = None,
        cancel: CancelToken | None = None,
        strength: float | None = None,
    ) -> np.ndarray:
        """Render one frame (a preview) as uint8 ``H x W x 3``; records the gate maps it used.

        ``strength``, ``guidance_scale``: see :class:`engine.diffusion.config.SamplingConfig` (None: the model's default).
        """
        check_frame_index(prepared, frame_index)
        with self._lock, torch.no_grad():
            controls = self._gates_for(gates, [frame_index])
            latents = self._denoise(prepared, [frame_index], controls, steps, seed, sampler, guidance_scale,
                                    cancel, record_gates=True, strength=strength)
            self._gate_maps = self._collect_gate_maps()
            if cancel is not None:
                cancel.check()
            return self._decode(latents, prepared)[0]

    def render_clip(
        self,
        prepared: PreparedInputs,
        gates: GateSpec = None,
        *,
        steps: int = 8,
        seed: int = 0,
        start: int = 0,
        stop: int | None = None,
        sampler: str = "dpm",
        guidance_scale: float | None = None,
        window: int = DEFAULT_WINDOW,
        overlap: int = DEFAULT_OVERLAP,
        cancel: CancelToken | None = None,
        strength: float | None = None,
    ) -> Iterator[FrameResult]:
        """Yield the frames ``start..stop-1`` in order, rendered in overlapping windows."""
        stop = check_frame_range(prepared, start, stop)
        window = max(1, min(window, self.cfg.moee.max_frames))
        overlap = max(0, min(overlap, window - 1))
        total = stop - start
        previous: dict[int, torch.Tensor] = {}
        first_new = start
        while first_new < stop:
            held = [i for i in range(first_new - overlap, first_new) if i in previous]
            new = list(range(first_new, min(stop, first_new + window - len(held))))
            frames = held + new
            with self._lock, torch.no_grad():
                controls = self._gates_for(gates, frames)
                latents = self._denoise(prepared, frames, controls, steps, seed, sampler, guidance_scale,
                                        cancel, known=previous, strength=strength)
                images = self._decode(latents[len(held):], prepared)
            previous = {i: latents[j] for j, i in enumerate(frames)}
            for offset, index in enumerate(new):
                yield FrameResult(index, images[offset], (index - start + 1) / total)
            first_new = new[-1] + 1

    # ------------------------------------------------------------------ gate maps
    def _collect_gate_maps(self) -> np.ndarray | None:
        records = self.model.denoiser.gate_records()
        if not records:
            return None
        size = self.cfg.image_size
        maps = [F.interpolate(r.local[:1].permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                              align_corners=False)[0] for r in records]
        for layer in self.model.denoiser.moe_layers:
            layer.record = None
        return torch.stack(maps).mean(0).numpy().astype(np.float32)

    def last_gate_maps(self) -> np.ndarray | None:
        """The local gate ``s`` per emotion of the last preview, ``(E, H, W)`` in 0..1, averaged over layers."""
        return self._gate_maps
