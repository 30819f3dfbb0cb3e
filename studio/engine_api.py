"""The studio's only doorway into the engine: thin wrappers over the engine's public API.

Keeping every engine import here makes the integration points easy to see and to adapt.
Heavy modules (torch, the pipeline) are imported lazily so the UI starts fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# Light engine names the studio uses directly, re-exported so this module stays the one doorway.
# the contract (light: no torch, no diffusers); frame_shape is the export dialog's frame size
from engine.animator import CancelToken, default_fps, frame_shape  # noqa: F401
from engine.batch import REPORT_FILE as BATCH_REPORT_FILE
from engine.batch import BatchDefaults, ManifestError, plan_batch, read_manifest, run_batch
from engine.emotions import (
    BASIC_EMOTIONS,
    COMPOUND_PRESETS,
    EMOTION_COLOURS,
    mix_to_vector,
    normalise,
    parse_mix,
)
from engine.errors import CancelledError, MoEEError
from engine.interpolation import INTERPOLATIONS, ease, key_bracket
from engine.io.atomic import atomic_path, atomic_write_text
from engine.limits import DEFAULT_MAX_SIZE as DEFAULT_PORTRAIT_CAP
from engine.portrait.performance import DEFAULT_BLINKS_PER_MINUTE, LIFE_RANGES, LifeConfig

__all__ = [
    "BATCH_REPORT_FILE", "BatchDefaults", "ManifestError", "plan_batch", "read_manifest", "run_batch",
    "BASIC_EMOTIONS", "COMPOUND_PRESETS", "CancelToken", "DEFAULT_BLINKS_PER_MINUTE", "EMOTION_COLOURS",
    "LIFE_RANGES", "DEFAULT_PORTRAIT_CAP", "CancelledError", "LifeConfig", "MoEEError", "atomic_path",
    "atomic_write_text", "INTERPOLATIONS", "ease", "key_bracket", "mix_to_vector", "normalise", "parse_mix",
]



def __getattr__(name: str) -> Any:
    """``GateControl`` on first use: engine.moee imports torch (1.4 s), which must not delay the window."""
    if name == "GateControl":
        from engine.moee import GateControl

        return GateControl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def configure_threads() -> None:
    """Let torch render on every core (the UI thread only waits on events); called on the engine thread."""
    import os

    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))


TINY = "tiny"  # pseudo model folder: an untrained tiny pixel model (tests, screenshots without assets)
#: Renderers (engine.animator.RENDERERS): ``"portrait"`` = the user's portrait at its own resolution
#: (engine.portrait.animator, default); ``"pixel"`` = the pixel U-Net's small face crop (engine.diffusion.pipeline; also what
#: ``"tiny"`` loads).
RENDERERS = ("portrait", "pixel")
#: Files a model folder needs for the portrait path.
MOTION_FILES = ("motion.safetensors", "motion.json")


def default_model_dir() -> str | None:
    """The bundled demo model folder if it exists, else ``None``."""
    from engine.io.resources import default_model_dir as bundled

    path = bundled()
    return str(path) if path.is_dir() else None


def has_motion_model(model_dir: str | None) -> bool:
    """True when ``model_dir`` (``None`` = the bundled model) holds the motion model of the portrait path."""
    folder = model_dir if model_dir is not None else default_model_dir()
    if folder is None or folder == TINY:
        return False
    return all((Path(folder) / name).is_file() for name in MOTION_FILES)


def load_animator(model_dir: str | None, device: str = "cpu", seed: int = 0, renderer: str = "portrait") -> Any:
    """Build the animator the studio renders with: :func:`engine.animator.load_animator`, the one function
    that picks a renderer (the CLI's too), with its one fallback rule: a folder without a motion model is
    animated by the bundled motion model on the portrait renderer. ``None`` = the bundled model.

    ``"tiny"`` is a pseudo folder naming an untrained tiny pixel model (tests, screenshots): the pixel renderer.
    The portrait renderer runs on the CPU, so ``device`` reaches the pixel renderer only.
    """
    from engine.animator import check_renderer
    from engine.animator import load_animator as _load

    check_renderer(renderer)
    if model_dir == TINY:
        from engine.diffusion.config import tiny_config
        from engine.diffusion.pipeline import Animator

        return Animator.from_config(tiny_config(), device=device, seed=seed)
    return _load(model_dir, renderer, device=device if renderer == "pixel" else "cpu", note=lambda _text: None)


def add_renderer_arguments(parser: Any) -> None:
    """``--renderer portrait|pixel`` (and the deprecated ``--frame portrait|crop``), as ``moee render`` has them."""
    from engine.cli import add_renderer_arguments as _add

    _add(parser)


def capabilities(animator: Any) -> Any:
    """The animator's :class:`engine.animator.Capabilities` (what the UI shows and hides)."""
    from engine.animator import capabilities_of

    return capabilities_of(animator)


def can(animator: Any, capability: str) -> bool:
    """Whether the animator has one capability by name (``"sampling"``, ``"life"``, ``"gate_maps"``, ...)."""
    return capability in capabilities(animator).names()


def sampling_options(animator: Any, **options: Any) -> dict[str, Any]:
    """The ``options`` (steps, seed, guidance_scale, ...) the animator reads (engine.animator.render_options):
    none on the portrait renderer, which has no sampling and refuses them."""
    from engine.animator import render_options

    return render_options(animator, **options)


def warm_up() -> None:
    """Import what a first export needs (PyAV and the encoders), on the engine thread after a model load.

    A first import holds the interpreter lock for a few hundred milliseconds; done while the model
    loads, it never stalls the UI in the middle of the user's first export.
    """
    import engine.export
    import engine.io.video  # noqa: F401


def load_portrait_animator(model_dir: str | None = None) -> Any:
    """The portrait animator of a model folder (``None`` = the bundled model).

    Built from its motion model directly (engine.animator.load_animator does not import the pixel pipeline,
    diffusers, about 4 s, which would delay the first preview).
    """
    return load_animator(model_dir, renderer="portrait")


def is_portrait_animator(animator: Any) -> bool:
    """True for an animator that renders at the portrait's own resolution (its ``full_resolution`` capability)."""
    return can(animator, "full_resolution")


def animator_label(animator: Any) -> str:
    """A short name of the loaded model for the status bar."""
    if can(animator, "full_resolution"):
        return "portrait (motion MoE)"
    return str(getattr(getattr(animator, "cfg", None), "name", "model"))


def apply_life(prepared: Any, life: LifeConfig | None, animator: Any = None) -> None:
    """Give prepared inputs the blinks, head motion and gaze to render with (where the renderer has ``life``;
    ``animator`` None: where the prepared inputs carry it)."""
    if life is None:
        return
    if (can(animator, "life") if animator is not None else hasattr(prepared, "life")):
        prepared.life = life


def gate_maps(animator: Any) -> Any:
    """The model's local gate maps of the last frame (heat maps), or ``None`` where it has none."""
    return animator.last_gate_maps() if can(animator, "gate_maps") else None


def load_expert_pack(animator: Any, path: str) -> str:
    """Load a custom expert pack into the animator (a new slider); returns the emotion name.

    Both renderers load packs: the portrait path a motion expert pack (``moee train expert``, the trainer panel),
    the pixel model a pixel pack; a pack of the other kind is refused with a message saying which it is.
    """
    if not can(animator, "custom_experts"):
        from engine.errors import EmotionSpecError

        raise EmotionSpecError("this renderer cannot load custom expert packs")
    return str(animator.load_expert_pack(path))


def voice_emotion_keyframes(emotions: Any, audio: Any, num_frames: int, fps: float) -> list[tuple[int, list[float]]]:
    """"From the voice": (frame, slider weights in ``emotions`` order) keyframes that the voice's tone suggests
    (engine.voice_emotion), for the timeline to add as ordinary, editable keys. ``audio``: a path or an AudioClip."""
    from engine.io.audio import AudioClip, load_audio
    from engine.voice_emotion import voice_emotion_track

    clip = audio if isinstance(audio, AudioClip) else load_audio(audio)
    names = tuple(emotions)
    track = voice_emotion_track(clip, int(num_frames), float(fps), names)
    last = max(int(num_frames) - 1, 0)
    return [(min(int(round(t * fps)), last), [float(mix[n]) for n in names]) for t, mix in track.keyframes()]


def export_clip(animator: Any, prepared: Any, output: str, **options: Any) -> Any:
    """Render a clip into a video file or PNG folder (engine.export.export_clip: the one export path)."""
    from engine.export import export_clip as _export

    return _export(animator, prepared, output, **options)


def face_width(landmarks: np.ndarray | None) -> float | None:
    """Width in pixels of the face a landmark set outlines (``None`` without landmarks)."""
    if landmarks is None or len(landmarks) == 0:
        return None
    xs = np.asarray(landmarks, np.float64)[:, 0]
    return float(xs.max() - xs.min())


def cancel_token() -> Any:
    """A fresh cancel token for a render or export (any thread may cancel it)."""
    return CancelToken()


def image_size(path: str) -> tuple[int, int] | None:
    """An image file's (width, height) from its header (None when unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return int(image.width), int(image.height)
    except (OSError, ValueError):
        return None


def load_image(path: str) -> np.ndarray:
    """Any readable image file -> RGB uint8 (engine.io.image.load_image)."""
    from engine.io.image import load_image as _load

    return _load(path)


def load_audio(path: str) -> Any:
    """An audio file -> engine AudioClip (samples float32 mono, sample_rate, duration)."""
    from engine.io.audio import load_audio as _load

    return _load(path)


def prepare_inputs(animator: Any, portrait: Any, audio: Any = None, duration: float | None = None,
                   fps: int | None = None, max_size: int | None = None) -> Any:
    """Prepare a portrait and audio track; without audio, ``duration`` seconds (None: a still) set the frames.

    ``max_size``: the cap on the long side of the frames (None: the renderer's default): the portrait renderer's
    portrait, or the portrait a renderer with ``paste_back`` pastes its face crop back into (so its preview,
    flipbook and export show the whole portrait at that size; :func:`frame_shape`).

    ``fps`` None: the animator's own frame rate.
    """
    from engine.io.audio import num_video_frames

    options: dict[str, Any] = {} if fps is None else {"fps": int(fps)}
    if max_size is not None and can(animator, "full_resolution"):
        options["max_size"] = int(max_size)
    if can(animator, "paste_back"):  # the preview, flipbook and export show the whole portrait, not the crop
        options.update(paste_back=True, paste_max_size=None if max_size is None else int(max_size))
    if audio is None and duration:
        options["num_frames"] = num_video_frames(duration, fps or default_fps(animator))
    return animator.prepare(portrait, audio, **options)


def region_mask(points: np.ndarray, region: str, height: int, width: int) -> np.ndarray:
    """Float mask of a face region (brows, eyes, nose, mouth, cheeks, jaw, forehead) from landmarks."""
    from engine.io.face import region_mask as _region

    return np.asarray(_region(points, region, height, width), np.float32)


def face_regions() -> list[str]:
    """Region names the landmark presets offer (engine.io.face.REGIONS)."""
    from engine.io.face import REGIONS

    return list(REGIONS)


def waveform_preview(clip: Any, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) per column of an AudioClip's waveform, for drawing (engine.io.audio.waveform_preview)."""
    from engine.io.audio import waveform_preview as _preview

    lo, hi = _preview(clip, width)
    return np.asarray(lo), np.asarray(hi)


def read_emotion_text(text: str) -> Any:
    """How the engine reads a description (engine.emotion_text.read_emotion_text; cached)."""
    from engine.emotion_text import read_emotion_text as _read

    return _read(text)


def demo_inputs() -> tuple[Path, Path, Path]:
    """The bundled demo files: (128 px portrait, speech, 256 px photo) (engine.io.resources)."""
    from engine.io.resources import assets_dir, demo_audio, demo_portrait

    return demo_portrait(), demo_audio(), assets_dir() / "demo" / "photo.png"


def person_matte(image: np.ndarray) -> np.ndarray:
    """Float (H, W) foreground matte of a rendered frame (for PNG sequences with alpha)."""
    from engine.io.face import person_matte as _matte

    return np.asarray(_matte(image), np.float32)


def probe_video(path: str) -> Any:
    """Basic facts of a written video (frames, fps, size, audio)."""
    from engine.io.video import probe_video as _probe

    return _probe(path)


def fit_gates(gates: Any, count: int) -> Any:
    """Trim or pad a GateControl to ``count`` emotions (a project may name experts not loaded yet)."""
    if gates is None or not hasattr(gates, "global_weights"):
        return gates
    weights = None if gates.global_weights is None else list(gates.global_weights)
    if weights is None or len(weights) == count:
        return gates
    masks, alpha = gates.local_masks, gates.local_alpha
    weights = (weights + [0.0] * count)[:count]
    if masks is not None:
        m = np.asarray(masks, np.float32)
        pad = np.zeros((max(0, count - len(m)),) + m.shape[1:], np.float32)
        masks = np.concatenate([m, pad])[:count]
        alpha = (list(alpha if alpha is not None else [1.0] * len(m)) + [0.0] * count)[:count]
    from engine.moee import GateControl

    return GateControl(global_weights=weights, local_masks=masks, local_alpha=alpha)
