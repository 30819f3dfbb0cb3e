"""Any portrait at its own resolution: the motion MoE's performance carried onto the user's image.

:class:`PortraitAnimator` is the render path of ``moee render`` (default ``--output portrait``), the
studio's preview and every export. Per frame:

1. the sliders (global gates ``g``), the brush (painted local gates, sampled at the 68 landmarks through
   the rig's correspondence) and the audio (mouth opening from :class:`engine.portrait.motion.LipModel`) go into
   the motion MoE, which returns the displacement of the 68 landmarks in face units;
2. the sitter's own expression is taken out (a smiling sitter is neutralised, parted lips are closed),
   and each emotion's motion is scaled by its *expression gain* (a real face needs more motion than
   the synthetic one to read);
3. the displacement reaches the mesh (:class:`engine.portrait.rig.PortraitRig`), blended by the
   feathered brush mask so that outside a stroke the motion equals the unpainted render exactly;
4. :func:`engine.portrait.warp.mesh_warp` moves the portrait's pixels; where the lips part further than the
   portrait's own mouth, :func:`engine.portrait.mouth.draw_mouth_interior` paints a cavity with teeth.

Outside a ring at 1.45 x the face outline every pixel is the portrait's own. A neutral, silent frame of a
portrait without an expression of its own is the portrait, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from engine.animator import (
    PORTRAIT_CAPABILITIES,
    CancelToken,
    Capabilities,
    FrameResult,
    check_frame_index,
    check_frame_range,
    check_options,
)
from engine.errors import CancelledError, EmotionSpecError
from engine.io import audio as audio_io
from engine.limits import DEFAULT_MAX_SIZE
from engine.moee import GateControl, GateSpec
from engine.portrait.calibration import PortraitCalibration
from engine.portrait.eyes import EyeLayer, eye_indices, eye_opening_triangles, lid_displacements
from engine.portrait.facs import (
    EMOTION_AUS,
    au_motion,
    closed_recipe,
    emotion_emphasis,
    emphasis,
    jaw_closing,
    speaking,
    speaking_recipe,
)
from engine.portrait.head_pose import HeadWarp, parallax
from engine.portrait.motion import MotionModel
from engine.portrait.mouth import draw_mouth_interior
from engine.portrait.performance import (
    LifeConfig,
    LifeTracks,
    blink_closure,
    emotion_gaze,
    plan_life,
    posture,
)
from engine.portrait.rig import (
    MESH_ROWS,
    MP_INNER_LOWER,
    MP_INNER_UPPER,
    MP_OUTER_LOWER,
    MP_OUTER_UPPER,
    MP_SEMI_INNER_LOWER,
    MP_SEMI_INNER_UPPER,
    MP_SEMI_OUTER_LOWER,
    MP_SEMI_OUTER_UPPER,
    PortraitRig,
    build_rig,
    inner_lip_contours,
)
from engine.portrait.shading import crease_intensities, draw_creases
from engine.portrait.warp import draw_closed_lips, mesh_warp, relax_foldovers

#: The iBUG 68 landmarks by part of the face.
FACE_REGIONS_68: dict[str, range] = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36),
                                     "eyes": range(36, 48), "mouth": range(48, 68)}
#: Both eyes' rows in a rig's control points.
EYES = eye_indices(MESH_ROWS)
#: Share of the eye opening the upper lid lowers per iris radius of downward gaze (the lid follows the eye).
GAZE_LID_FOLLOW = 0.15
#: Frames of a still (no audio).
STILL_FRAMES = 1
DEFAULT_FPS = 25


@dataclass(frozen=True)
class TransferConfig:
    """How the motion reaches the portrait."""

    max_size: int = DEFAULT_MAX_SIZE
    #: Motion of each emotion at slider 1, relative to the synthetic people's (a real face needs more to
    #: read; surprise less, or the eyes bulge).
    expression_gain: dict[str, float] = field(default_factory=lambda: {
        "happiness": 1.8, "sadness": 2.3, "anger": 2.3, "disgust": 2.2, "fear": 2.1, "surprise": 1.7})
    #: Part of each emotion's motion per region of the face (FACE_REGIONS_68), on top of expression_gain:
    #: anger's mouth opens wide rather than puckers, and its lids glare rather than close.
    region_gain: dict[str, dict[str, float]] = field(default_factory=lambda: {
        "anger": {"mouth": 0.3, "eyes": 0.05}, "disgust": {"mouth": 0.6}, "fear": {"mouth": 0.9, "eyes": 0.9},
        "surprise": {"mouth": 0.8, "eyes": 0.6}})
    #: Take the sitter's own smile and parted lips out before adding the performance.
    neutralise: bool = True
    #: The smile taken out, relative to the estimated one (a real smile also lifts the cheeks and widens
    #: the mouth more than the corners' lift says).
    neutralise_gain: float = 1.8
    #: FACS AU12 taken out per unit of the sitter's smile beyond the model's (doubled under other emotions).
    neutralise_facs: float = 1.8
    #: Radius (face units) over which a painted mask is averaged at each landmark.
    brush_sample_radius: float = 0.05
    #: Feather (face units) of the brush's blend of the motion.
    brush_feather: float = 0.06
    #: Draw the creases of an expression (frown lines, nasolabial folds, ...; engine/portrait/shading.py).
    creases: bool = True
    #: Rounds of neighbour averaging of the mesh motion (on each side of the mouth): smooth contours.
    smoothing_rounds: int = 2
    #: Mouth opening of speech relative to the synthetic mouth.
    lip_gain: float = 1.0
    #: Scale of the FACS emphasis (engine/portrait/facs.py: each emotion's EMFACS action units as landmark motion,
    #: added to the model's; 0 leaves the model's motion alone).
    facs_emphasis: float = 1.5
    #: Share by which an emotion's FACS recipe turns into its speaking recipe while the person speaks
    #: (engine/portrait/facs.py speaking_recipe: the jaw drop given to the speech, facs.speaking): a frightened
    #: line is still spoken; the open mouth shows in the pauses.
    speaking_recipe_share: float = 0.8
    #: Lids of each emotion at slider 1 (the appearance FACS gives them): (upper lid lowered, as a share
    #: of the opening: negative widens the eye (AU5); lower lid raised, share of the opening (AU6 / AU7)).
    lid_shape: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "happiness": (0.0, 0.15), "sadness": (0.25, 0.0), "anger": (-0.07, 0.1), "disgust": (0.1, 0.25),
        "fear": (-0.32, 0.18), "surprise": (-0.15, 0.0)})
    #: Map each slider through the model folder's calibration curve (engine/portrait/calibration.py) so that
    #: every emotion's landmark travel is the same straight line in the slider up to its own full strength
    #: (gate 1 stays at slider 1, the tuned strength above; slider 0.5: half of it); False: each slider is
    #: the gate (docs/PORTRAIT.md).
    slider_calibration: bool = True


@dataclass
class PreparedPortrait:
    """What :meth:`PortraitAnimator.prepare` caches for one portrait + audio track."""

    rig: PortraitRig
    audio: audio_io.AudioClip | None
    fps: int
    num_frames: int
    openings: np.ndarray  # (num_frames,) mouth opening per frame, 0..1
    model_shape: np.ndarray  # (68, 2) the neutralised shape the motion model reads (face units)
    sitter_motion: np.ndarray  # (68, 2) face units: the sitter's own expression, taken out of every frame
    #: (68, 2) face units: the part of :attr:`sitter_motion` that closes the sitter's parted lips (a smile
    #: with teeth keeps them when happiness is asked for again).
    sitter_lips: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    brush_cache: dict = field(default_factory=dict, repr=False)
    #: Loudness per frame (0..1; zeros without audio): the head nods on its stresses.
    envelope: np.ndarray | None = None
    #: How much the person speaks at each frame (0..1, engine/portrait/facs.speaking; zeros without audio).
    speaking: np.ndarray | None = None
    #: Blinks, head motion and gaze (engine/portrait/performance.py); replace it to change them, the tracks follow.
    life: LifeConfig = field(default_factory=LifeConfig)
    life_cache: dict = field(default_factory=dict, repr=False)

    def life_tracks(self) -> LifeTracks:
        """The clip's blink, head and gaze tracks for the current :attr:`life` (planned once, then cached)."""
        key = (self.life, self.num_frames, self.fps)
        if self.life_cache.get("key") != key:
            self.life_cache.update(key=key, tracks=plan_life(self.num_frames, self.fps, self.envelope, self.life))
        return self.life_cache["tracks"]

    def eye_layers(self) -> list[EyeLayer]:
        """Each eye's eyeball layer (built on first use)."""
        if "eyes" not in self.life_cache:
            rig = self.rig
            self.life_cache["eyes"] = [EyeLayer.build(rig.image, rig.mesh, rig.control, eye) for eye in EYES]
        return self.life_cache["eyes"]

    def eye_triangles(self) -> np.ndarray:
        """(T,) bool: the rig's triangles inside the eyes' openings (they may close in a blink)."""
        if "eye_triangles" not in self.life_cache:
            self.life_cache["eye_triangles"] = eye_opening_triangles(self.rig.triangles, EYES)
        return self.life_cache["eye_triangles"]

    def head_warp(self) -> HeadWarp:
        """The smooth head-motion warp of the portrait (built on first use)."""
        if "head" not in self.life_cache:
            rig = self.rig
            self.life_cache["head"] = HeadWarp.build(rig.image.shape, rig.mesh, rig.face_unit_px,
                                                     rig.to_pixels.rotation)
        return self.life_cache["head"]

    @property
    def portrait(self) -> np.ndarray:
        """The portrait at the output resolution."""
        return self.rig.image

    @property
    def landmarks(self) -> np.ndarray:
        """The portrait's MediaPipe mesh (478, 2), pixels."""
        return self.rig.mesh


@dataclass(frozen=True)
class FrameLife:
    """What the performance's life does at one frame (:meth:`PortraitAnimator.frame_life`)."""

    pose: np.ndarray  # (6,) engine.portrait.performance.POSE_CHANNELS
    gaze: np.ndarray  # (2,) iris radii, x right / y down
    closure: float  # upper lids lowered, share of the opening (1 closed, below 0 widened)
    squint: float  # lower lids raised, share of the opening


#: One rendered frame: the contract's :class:`engine.animator.FrameResult`.
PortraitFrame = FrameResult


def fit_to_max_size(image: np.ndarray, max_size: int) -> np.ndarray:
    """The image with its long side at most ``max_size`` (area-averaged; never enlarged)."""
    if max_size < 64:
        raise EmotionSpecError(f"--max-size must be at least 64 pixels, got {max_size}")
    h, w = image.shape[:2]
    if max(h, w) <= max_size:
        return image
    scale = max_size / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def clamp_shape(shape: np.ndarray, mean: np.ndarray, std: np.ndarray, limit: float = 3.0) -> np.ndarray:
    """A face-unit shape pulled into the motion model's training range (``mean ± limit * std`` per coordinate)."""
    return mean + np.clip((shape - mean) / std, -limit, limit) * std


class PortraitAnimator:
    """Render a portrait at its own resolution, driven by the motion MoE (module docstring); the ``"portrait"``
    renderer of :class:`engine.animator.Animator`."""

    capabilities: ClassVar[Capabilities] = PORTRAIT_CAPABILITIES
    renderer: ClassVar[str] = "portrait"

    def __init__(self, motion: MotionModel, cfg: TransferConfig | None = None,
                 calibration: PortraitCalibration | None = None) -> None:
        self.motion = motion
        self.cfg = cfg or TransferConfig()
        #: Slider -> gate curves (default: the motion model's folder's; None: each slider is the gate).
        self.calibration = motion.calibration if calibration is None else calibration
        self.trained = bool(motion.notes.get("trained", False))
        self._facs: tuple[np.ndarray, ...] | None = None  # FACS emphasis tables (_facs_tables), built on use

    @classmethod
    def from_pretrained(cls, model_dir: str | Path | None = None, cfg: TransferConfig | None = None) -> PortraitAnimator:
        """The motion model of a model folder (default: the bundled model) with its slider calibration
        (:data:`engine.portrait.calibration.PORTRAIT_CALIBRATION_FILE`, if the folder has one)."""
        from engine.io.resources import DEFAULT_MODEL_DIR

        return cls(MotionModel.load(Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR), cfg)

    @property
    def emotions(self) -> tuple[str, ...]:
        return self.motion.cfg.emotions

    @property
    def colours(self) -> dict[str, str]:
        """Display colours of the custom emotions loaded from expert packs (the six have fixed ones)."""
        return dict(self.motion.colours)

    def load_expert_pack(self, path: str | Path) -> str:
        """Add a custom emotion from a motion expert pack (``moee train expert``): one more slider, which mixes
        with the six and takes the brush. Its expression gain, region gains and lids are neutral (1, none); FACS
        emphasis names no AU for it (engine/portrait/facs.py). Returns its name; :class:`CheckpointError` for a pixel
        pack or one trained on another motion model."""
        name = self.motion.load_expert_pack(path)
        self._facs = None  # the FACS table follows the emotions
        return name

    def emotion_from_text(self, text: str) -> dict[str, float]:
        """Slider weights from a description such as ``"sadly surprised"`` (see engine.emotion_text)."""
        from engine.emotion_text import emotion_weights_from_text

        return emotion_weights_from_text(text)

    # ------------------------------------------------------------------ preparation
    def prepare(self, portrait, audio=None, *, fps: int | None = None, num_frames: int | None = None,
                max_size: int | None = None, mesh: np.ndarray | None = None,
                max_duration: float | None = audio_io.DEFAULT_MAX_DURATION,
                life: LifeConfig | None = None) -> PreparedPortrait:
        """Load the portrait (long side capped), find its face, build the rig; load the audio, derive the lips.

        ``portrait``: a path, array or PIL image; ``audio``: a path, an AudioClip, ``(samples, rate)`` or
        None (a still). ``mesh``: the portrait's MediaPipe points if already known (at the capped size).
        ``life``: blinks, head motion and gaze (default: :class:`LifeConfig`'s natural ones).
        """
        life = LifeConfig() if life is None else life
        problems = life.problems()
        if problems:
            raise EmotionSpecError("; ".join(problems))
        from engine.io.face import detect_landmarks
        from engine.io.image import load_image

        longest = int(max_size or self.cfg.max_size)
        image = fit_to_max_size(load_image(portrait, max_side=longest), longest)
        points = detect_landmarks(image).points if mesh is None else np.asarray(mesh, np.float64)
        rig = build_rig(image, points, self.motion.mean_shape)
        fps = int(fps or DEFAULT_FPS)
        if fps < 1:
            raise EmotionSpecError(f"fps must be a positive number, got {fps}")
        clip = audio_io.load_audio(audio, max_duration=max_duration) if audio is not None else None
        if num_frames is None:
            num_frames = audio_io.num_video_frames(clip.duration, fps) if clip else STILL_FRAMES
        if clip is not None:
            envelope = audio_io.envelope_per_frame(clip, int(num_frames), fps)
            openings = self.motion.mouth_openings(envelope) * self.cfg.lip_gain
        else:
            envelope = np.zeros(int(num_frames), np.float32)
            openings = np.zeros(int(num_frames), np.float32)
        prepared = self._prepared(rig, clip, fps, int(num_frames), np.clip(openings, 0, 1))
        prepared.envelope = np.asarray(envelope, np.float32)
        prepared.speaking = speaking(prepared.openings, fps)
        prepared.life = life
        return prepared

    def _prepared(self, rig: PortraitRig, clip, fps: int, num_frames: int, openings: np.ndarray) -> PreparedPortrait:
        mean, std = self.motion.mean_shape, self.motion.shape_std
        warnings: list[str] = []
        sitter = lips = np.zeros((68, 2))
        shape = clamp_shape(rig.shape, mean, std)
        if self.cfg.neutralise and (rig.sitter_smile > 0 or rig.sitter_opening > 0):
            weights = np.zeros(len(self.emotions), np.float32)
            weights[self.emotions.index("happiness")] = rig.sitter_smile * self.cfg.neutralise_gain
            sitter, smile = self.motion.displacement(shape, [rig.sitter_opening, 0.0], np.stack([weights, weights]))
            lips = sitter - smile
            shape = clamp_shape(rig.shape - sitter, mean, std)
            if rig.sitter_smile > 0.2:
                warnings.append(f"the sitter smiles (about {rig.sitter_smile:.0%}); the smile is taken out so "
                                "other emotions can read")
        return PreparedPortrait(rig=rig, audio=clip, fps=fps, num_frames=num_frames, openings=openings,
                                model_shape=shape, sitter_motion=sitter, sitter_lips=lips, warnings=warnings)

    def sitter_removal(self, prepared: PreparedPortrait, weights: np.ndarray) -> np.ndarray:
        """(68, 2) face units of the sitter's own expression taken out of a frame with these sliders: all of
        it, except that a smiling sitter's parted lips come back as happiness reaches the sitter's smile."""
        smile = prepared.rig.sitter_smile
        if not self.cfg.neutralise or prepared.sitter_lips is None or smile <= 0 or "happiness" not in self.emotions:
            return prepared.sitter_motion
        weights = np.asarray(weights, np.float64)
        happiness = float(weights[self.emotions.index("happiness")])
        keep = float(np.clip(happiness / smile, 0.0, 1.0))
        # What the model's smile leaves (cheeks, width) goes with FACS's AU12, more so when another emotion
        # is asked for: it must not read through a frown. Custom emotions (expert packs) do not count: one may
        # be a smile itself (a smirk).
        named = [e for e, name in enumerate(self.emotions) if name in EMOTION_AUS and name != "happiness"]
        others = float(np.clip(weights[named].sum(), 0.0, 1.0))
        extra = self.cfg.neutralise_facs * (1.0 + others) * max(0.0, smile - happiness)
        return prepared.sitter_motion - keep * prepared.sitter_lips + extra * au_motion(12)

    # ------------------------------------------------------------------ motion
    def _gain(self, strengths: np.ndarray) -> np.ndarray:
        """(68, 1) gain of the model's expression motion at each landmark: each emotion's
        :attr:`TransferConfig.expression_gain` times its :attr:`TransferConfig.region_gain` for the landmark's
        part of the face, averaged over the emotions by their strengths."""
        total = float(strengths.sum())
        if total <= 0:
            return np.ones((68, 1))
        per_emotion = np.ones((len(self.emotions), 68))
        for e, name in enumerate(self.emotions):
            per_emotion[e] = self.cfg.expression_gain.get(name, 1.0)
            for region, gain in self.cfg.region_gain.get(name, {}).items():
                per_emotion[e, list(FACE_REGIONS_68[region])] *= gain
        return ((strengths[:, None] * per_emotion).sum(0) / total)[:, None]

    def _painted_at_landmarks(self, prepared: PreparedPortrait, gates: GateControl) -> tuple[np.ndarray, np.ndarray] | None:
        """Painted strength at the 68 landmarks (68, E) and the feathered blend factor at the control points."""
        if gates.local_masks is None or gates.local_alpha is None:
            return None
        alpha = np.asarray(gates.local_alpha, np.float32)
        masks = np.asarray(gates.local_masks, np.float32)
        if not np.any(alpha > 0) or not np.any(masks > 0):
            return None
        key = (id(gates.local_masks), masks.shape, float(masks.sum()), tuple(alpha.tolist()))
        cached = prepared.brush_cache.get(key)
        if cached is not None:
            return cached
        rig = prepared.rig
        h, w = rig.image.shape[:2]
        unit = rig.face_unit_px
        painted = np.zeros((68, masks.shape[0]), np.float32)
        blend = np.zeros(len(rig.control), np.float32)
        for e in range(masks.shape[0]):
            if alpha[e] <= 0 or not np.any(masks[e] > 0):
                continue
            mask = masks[e]
            if mask.shape != (h, w):
                mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
            radius = max(1, int(round(self.cfg.brush_sample_radius * unit)))
            averaged = cv2.blur(mask, (2 * radius + 1, 2 * radius + 1))
            feathered = cv2.GaussianBlur(mask, (0, 0), max(0.5, self.cfg.brush_feather * unit))
            painted[:, e] = _sample(averaged, rig.points68)
            blend = np.maximum(blend, alpha[e] * np.minimum(1.0, _sample(np.maximum(mask, feathered), rig.control)))
        result = (painted, blend)
        prepared.brush_cache = {key: result}
        return result

    def face_motion(self, prepared: PreparedPortrait, gates: GateControl, frame_index: int,
                    painted: np.ndarray | None = None) -> np.ndarray:
        """Displacement (68, 2) in face units of the portrait's landmarks at one frame (sitter taken out)."""
        speech, expression = self._motion_parts(prepared, gates, frame_index, painted)
        return speech + expression - self.sitter_removal(prepared, self._weights(gates))

    def _calibrated(self, sliders: np.ndarray) -> np.ndarray:
        """Gates ``(..., E)`` for slider values of the animator's emotions: through the calibration curves
        unless :attr:`TransferConfig.slider_calibration` is off or the model has none."""
        if self.calibration is None or not self.cfg.slider_calibration:
            return sliders
        return self.calibration.apply(sliders, self.emotions)

    def _weights(self, gates: GateControl) -> np.ndarray:
        """The global gates of a gate control as a vector of the animator's emotions (zeros where unset):
        its sliders through the slider calibration."""
        weights = np.zeros(len(self.emotions), np.float32)
        if gates.global_weights is not None:
            weights[:] = np.asarray(gates.global_weights, np.float32)[: len(self.emotions)]
        return self._calibrated(weights)

    def _motion_parts(self, prepared: PreparedPortrait, gates: GateControl, frame_index: int,
                      painted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(speech motion, expression motion with its gain), each (68, 2) face units."""
        opening = float(prepared.openings[frame_index]) if prepared.num_frames else 0.0
        weights = self._weights(gates)
        alpha = None if painted is None else self._calibrated(
            np.asarray(gates.local_alpha, np.float32)[: len(self.emotions)])
        zero = np.zeros_like(weights)
        rows = self.motion.displacement(prepared.model_shape, [opening, opening], np.stack([zero, weights]),
                                        None if painted is None else np.stack([np.zeros_like(painted), painted]),
                                        None if alpha is None else np.stack([zero, alpha]))
        speech, performed = rows[0], rows[1]
        strengths = weights if painted is None else np.maximum(weights, alpha * painted.max(axis=0))
        expression = self._gain(strengths) * (performed - speech)
        if self.cfg.facs_emphasis > 0:
            tokens = weights if painted is None else np.maximum(weights[None, :], alpha[None, :] * painted)
            silent, talking, closed, closers = self._facs_tables()
            spoken = float(prepared.speaking[frame_index]) if prepared.speaking is not None and prepared.num_frames else 0.0
            talk_share = self.cfg.speaking_recipe_share * spoken
            levels = weights if painted is None else tokens.max(axis=0)
            closing = np.clip(levels @ closers, 0.0, 1.0)[:, None, None]  # by the other emotions in the mix
            recipes = (1.0 - closing) * ((1.0 - talk_share) * silent + talk_share * talking) + closing * closed
            expression = expression + self.cfg.facs_emphasis * emphasis(recipes, tokens)
        return speech, expression

    def _facs_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each emotion's FACS emphasis at slider 1 (engine/portrait/facs.py) for the loaded emotions, as (in
        silence, while the person speaks, with the jaw closed by another emotion), each (E, 68, 2), and who
        closes whose jaw in a mix (E, E)."""
        if self._facs is None or len(self._facs[0]) != len(self.emotions):
            self._facs = (emotion_emphasis(self.emotions), emotion_emphasis(self.emotions, speaking_recipe),
                          emotion_emphasis(self.emotions, closed_recipe), jaw_closing(self.emotions))
        return self._facs

    def control_targets(self, prepared: PreparedPortrait, gates: GateSpec, frame_index: int) -> np.ndarray:
        """Where the rig's control points go at one frame (N, 2), pixels."""
        return self._frame_geometry(prepared, gates, frame_index)[0]

    def _frame_geometry(self, prepared: PreparedPortrait, gates: GateSpec, frame_index: int,
                        life: FrameLife | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(control targets (N, 2) px, the sliders' expression motion (68, 2) face units) of one frame;
        ``life``: the frame's :meth:`frame_life` when the caller already has it."""
        control = self._control(gates, frame_index)
        life = self.frame_life(prepared, gates, frame_index, control) if life is None else life
        rig = prepared.rig
        brush = self._painted_at_landmarks(prepared, control)
        speech, expression = self._motion_parts(prepared, GateControl(control.global_weights), frame_index)
        turn = parallax(life.pose)
        plain = speech + expression - self.sitter_removal(prepared, self._weights(control)) + turn
        plain_px = rig.to_pixels.apply_vectors(plain)
        moved = rig.control_weights @ plain_px
        opening = landmark_lip_opening(rig.control, plain_px)
        if brush is not None:
            painted, blend = brush
            stroked_px = rig.to_pixels.apply_vectors(self.face_motion(prepared, control, frame_index, painted) + turn)
            moved = moved + blend[:, None] * (rig.control_weights @ stroked_px - moved)
            opening = np.maximum(opening, landmark_lip_opening(rig.control, stroked_px))
        for _ in range(self.cfg.smoothing_rounds):
            moved = np.where(rig.movable[:, None], 0.5 * moved + 0.5 * (rig.smoothing @ moved), 0.0)
        if life.closure != 0 or life.squint != 0:
            for eye in EYES:
                moved = moved + lid_displacements(rig.control + moved, eye, life.closure, life.squint)
        may_close = rig.across_mouth | prepared.eye_triangles()
        target = relax_foldovers(rig.control, rig.control + moved, rig.triangles, rig.movable, may_close=may_close)
        target = uncross_lips(seal_lips(rig.control, smooth_lip_motion(rig.control, target), opening))
        # The inner contours moved after the relaxation: the lips' bands follow them, and the slivers they
        # still fold are relaxed around the sealed inner contours (which stay).
        sealed = rig.movable.copy()
        sealed[np.concatenate(INNER_CONTOURS)] = False
        target = lip_bands(rig.control, keep_lip_thickness(rig.control, target))
        target = relax_foldovers(rig.control, target, rig.triangles, sealed, may_close=may_close)
        return target, expression

    # ------------------------------------------------------------------ life: blinks, gaze, head motion
    def _weights_at(self, gates: GateSpec, frame_index: int) -> dict[str, float]:
        """The global gates at a frame (its sliders through the slider calibration), by emotion name."""
        control = self._control(gates, frame_index)
        if control.global_weights is None:
            return {}
        return dict(zip(self.emotions, self._weights(control).tolist(), strict=True))

    def frame_life(self, prepared: PreparedPortrait, gates: GateSpec, frame_index: int,
                   control: GateControl | None = None) -> FrameLife:
        """The head's pose, the gaze and the lids of one frame (``control``: the frame's gates, if resolved).

        Pose: the clip's speech and idle motion + the emotion's posture. Gaze: the clip's fixations + the
        emotion's (iris radii, x right, y down). Lids: each emotion's :attr:`TransferConfig.lid_shape` times its
        gate (upper lid lowered, lower lid raised), a downward gaze lowering the upper lid, and the blinks
        (dropped as fear / surprise at the blink's peak ask)."""
        control = self._control(gates, frame_index) if control is None else control
        weights = ({} if control.global_weights is None
                   else dict(zip(self.emotions, self._weights(control).tolist(), strict=True)))
        life, tracks = prepared.life, prepared.life_tracks()
        pose = posture(weights, life)
        gaze = np.zeros(2)
        if len(tracks.pose):
            index = min(frame_index, len(tracks.pose) - 1)
            pose = tracks.pose[index] + pose
            gaze = tracks.gaze[index] + emotion_gaze(weights, float(tracks.glance_side[index]), life)
        upper = squint = 0.0
        for name, value in weights.items():
            lowered, raised = self.cfg.lid_shape.get(name, (0.0, 0.0))
            upper += value * lowered
            squint += value * raised
        upper, squint = float(np.clip(upper, -0.5, 0.6)), float(np.clip(squint, 0.0, 0.5))

        def alert_at(frame: int) -> float:
            peak = self._weights_at(gates, min(max(frame, 0), max(prepared.num_frames - 1, 0)))
            return max(peak.get("fear", 0.0), peak.get("surprise", 0.0))

        blink = blink_closure(tracks.blinks, frame_index, alert_at, life)
        base = upper + GAZE_LID_FOLLOW * max(0.0, float(gaze[1]))
        closure = float(np.clip(base + (1.0 - base) * blink, -0.5, 1.0))
        return FrameLife(pose=pose, gaze=gaze, closure=closure, squint=squint)

    def _control(self, gates: GateSpec, frame_index: int) -> GateControl:
        if gates is None:
            return GateControl()
        control = gates if isinstance(gates, GateControl) else gates(frame_index)
        return control.validated(len(self.emotions))

    # ------------------------------------------------------------------ rendering
    def render_frame(self, prepared: PreparedPortrait, frame_index: int = 0, gates: GateSpec = None, *,
                     cancel: CancelToken | None = None, **options: object) -> np.ndarray:
        """One frame at the portrait's resolution. This renderer has no sampling: any other keyword, the
        sampling options (:data:`engine.animator.SAMPLING_OPTIONS`) included, is refused (TypeError)."""
        check_options("render_frame", options, {"cancel"})
        check_frame_index(prepared, frame_index)
        if cancel is not None and cancel.cancelled:
            raise CancelledError("render cancelled")
        rig = prepared.rig
        life = self.frame_life(prepared, gates, frame_index)
        target, expression = self._frame_geometry(prepared, gates, frame_index, life)
        frame, _stats = mesh_warp(rig.image, rig.control, target, rig.triangles)
        if self.cfg.creases:
            strength = crease_intensities(expression)
            if any(v > 0 for v in strength.values()):
                points = rig.points68 + rig.to_pixels.apply_vectors(expression)
                draw_creases(frame, points, rig.face_unit_px, strength)
        for layer in prepared.eye_layers():
            layer.draw(frame, target, rig.control, life.gaze)
        self._draw_mouth(prepared, target, frame)
        if np.any(life.pose != 0):
            frame = prepared.head_warp().apply(frame, life.pose)
        return frame

    def _draw_mouth(self, prepared: PreparedPortrait, target: np.ndarray, frame: np.ndarray) -> None:
        rig = prepared.rig
        upper, lower = inner_lip_contours(rig, target)
        upper_src, lower_src = inner_lip_contours(rig, rig.control)
        gap = float(np.max(lower[:, 1] - upper[:, 1]))
        own_gap = float(np.max(lower_src[:, 1] - upper_src[:, 1]))
        width = float(np.linalg.norm(upper[-1] - upper[0]))
        if own_gap > gap + 0.5:  # the warp closed (part of) the sitter's parted lips: cover the squeezed teeth
            closed = float(np.clip((own_gap - gap) / own_gap, 0.0, 1.0))
            draw_closed_lips(frame, upper, lower, rig.lip_colour, min(1.0, 1.5 * closed), 0.02 * width)
        if gap <= 0.5 or width <= 0:
            return
        fade_in = float(np.clip(gap / (0.04 * width), 0.0, 1.0))
        # Past the sitter's own gap her stretched interior gives way to the drawn one within half that gap again.
        strength = float(np.clip((gap - max(own_gap, 0.0)) / (0.5 * max(own_gap, 1e-6)), 0.0, 1.0)) * fade_in
        draw_mouth_interior(frame, upper, lower, strength, rig.mouth_palette)

    def render_clip(self, prepared: PreparedPortrait, gates: GateSpec = None, *, start: int = 0,
                    stop: int | None = None, cancel: CancelToken | None = None,
                    on_frame: Callable[[int], None] | None = None, **options: object) -> Iterator[FrameResult]:
        """Frames ``start .. stop - 1`` one at a time (streamed: memory stays flat however long the clip).
        Any other keyword, the sampling options included, is refused (TypeError), as by :meth:`render_frame`."""
        check_options("render_clip", options, {"start", "stop", "cancel", "on_frame"})
        stop = check_frame_range(prepared, start, stop)
        for index in range(start, stop):
            image = self.render_frame(prepared, index, gates, cancel=cancel)
            if on_frame is not None:
                on_frame(index)
            yield PortraitFrame(index, image, (index - start + 1) / (stop - start))


#: Rounds of [1/4, 1/2, 1/4] smoothing of the motion along each inner lip contour.
LIP_SMOOTHING_ROUNDS = 2
#: Rows of the inner lip contours (upper, lower: corner to corner, paired) in a rig's control points.
INNER_UPPER_ROWS = np.array([MESH_ROWS[i] for i in MP_INNER_UPPER])
INNER_LOWER_ROWS = np.array([MESH_ROWS[i] for i in MP_INNER_LOWER])
INNER_CONTOURS = (INNER_UPPER_ROWS, INNER_LOWER_ROWS)
#: Each lip as a band of four rings, outer contour to inner (rows in a rig's control points, (4, K)).
LIP_BANDS = tuple(np.array([[MESH_ROWS[i] for i in ring] for ring in rings]) for rings in (
    (MP_OUTER_UPPER, MP_SEMI_OUTER_UPPER, MP_SEMI_INNER_UPPER, MP_INNER_UPPER),
    (MP_OUTER_LOWER, MP_SEMI_OUTER_LOWER, MP_SEMI_INNER_LOWER, MP_INNER_LOWER)))
#: Rows of the outer lip contours (upper, lower: corner to corner, column by column with the inner ones).
OUTER_CONTOURS = tuple(band[0] for band in LIP_BANDS)


def smooth_lip_motion(source: np.ndarray, target: np.ndarray, rounds: int = LIP_SMOOTHING_ROUNDS) -> np.ndarray:
    """Control targets whose motion varies smoothly along each inner lip contour (corners kept): a contour
    point interpolated mostly from a mouth corner no longer lags its neighbours, which left a kink (a flap
    of lip rising into an open mouth)."""
    result = target.copy()
    for rows in INNER_CONTOURS:
        motion = target[rows] - source[rows]
        for _ in range(rounds):
            motion[1:-1] = 0.25 * motion[:-2] + 0.5 * motion[1:-1] + 0.25 * motion[2:]
        result[rows[1:-1]] = source[rows[1:-1]] + motion[1:-1]
    return result


#: The 68 landmarks' pairs of inner-lip points (upper, lower), the corners left out.
LANDMARK_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))


def _mouth_down(points: np.ndarray) -> np.ndarray:
    """Unit vector across the mouth of control points ``points``, from the upper lip to the lower
    (perpendicular to the corners' line)."""
    axis = points[INNER_UPPER_ROWS[-1]] - points[INNER_UPPER_ROWS[0]]
    axis = axis / max(float(np.linalg.norm(axis)), 1e-6)
    down = np.array([-axis[1], axis[0]])
    return down if down[1] >= 0 else -down


def landmark_lip_opening(source: np.ndarray, motion68_px: np.ndarray) -> np.ndarray:
    """(K,) how far the 68 landmarks' motion (68, 2) px may part the inner lips at each point of the inner
    contours (corner to corner), px: the widest change of the gap at the pairs 61/67, 62/66, 63/65, over the
    half-ellipse an open mouth's gap follows along the mouth (0 at the corners). Speech and the jaw's action
    units open the mouth here; the 68 landmarks' own contour (straight from a corner to 61/67) would square an
    open mouth off at the corners."""
    down = _mouth_down(source)
    widest = max(0.0, *(float((motion68_px[lower] - motion68_px[upper]) @ down) for upper, lower in LANDMARK_LIP_PAIRS))
    along = np.linspace(-1.0, 1.0, len(INNER_UPPER_ROWS))
    return widest * np.sqrt(np.clip(1.0 - along * along, 0.0, 1.0))


def seal_lips(source: np.ndarray, target: np.ndarray, opening: np.ndarray) -> np.ndarray:
    """Control targets whose inner lips part no further than the landmarks say: at each pair of matching
    inner-contour points the gap is at most the portrait's own gap plus ``opening``
    (:func:`landmark_lip_opening`); a wider pair closes toward its midpoint.

    The dense contours are interpolated from landmarks on both edges of each lip, so motion that parts no
    landmark pair still opened them: taking a smile out of closed lips (corners down, the lower lip's outer edge
    down) parted a girl's lips by 7 px at 1024, and a frown after it by 18 px (drawn as an open mouth)."""
    upper, lower = target[INNER_UPPER_ROWS], target[INNER_LOWER_ROWS]
    down = _mouth_down(source)
    own = (source[INNER_LOWER_ROWS] - source[INNER_UPPER_ROWS]) @ down
    gap = (lower - upper) @ down
    excess = gap - np.maximum(own + opening, 0.0)
    if not np.any(excess > 0):
        return target
    shift = 0.5 * np.maximum(excess, 0.0)[:, None] * down
    result = target.copy()
    result[INNER_UPPER_ROWS] = upper + shift
    result[INNER_LOWER_ROWS] = lower - shift
    return result


def uncross_lips(target: np.ndarray) -> np.ndarray:
    """Control targets whose inner lower lip never rises above the inner upper lip: where a pair of
    matching points (corner to corner) has crossed, both go to their midpoint (the lips meet instead of
    folding through each other, which showed as a flap of lip inside an open mouth)."""
    upper, lower = target[INNER_UPPER_ROWS], target[INNER_LOWER_ROWS]
    crossed = (lower - upper) @ _mouth_down(target) < 0
    if not crossed.any():
        return target
    result = target.copy()
    middle = (upper[crossed] + lower[crossed]) / 2
    result[INNER_UPPER_ROWS[crossed]] = middle
    result[INNER_LOWER_ROWS[crossed]] = middle
    return result


#: Share of its own thickness (outer to inner contour, across the mouth) that each of two closed lips keeps.
LIP_MIN_THICKNESS = 0.8
#: Lips count as closed (meeting) where their inner contours are at most this share of the mouth's width apart.
LIPS_MEET = 0.02


def keep_lip_thickness(source: np.ndarray, target: np.ndarray, least: float = LIP_MIN_THICKNESS) -> np.ndarray:
    """Control targets in which closed lips each keep at least ``least`` of their thickness in the portrait:
    where the lips meet and one pushes into the other (the chin raiser lifts the lower lip), the pushed lip's
    outer contour gives way by the difference, across the mouth: the upper lip pouts up rather than being
    squeezed to a line (hallo_1's upper lip was 0.2 px thick in sadness at 512 px, 9.5 px in the portrait).
    Parted lips are left alone (an open mouth stretches them thin), and so are the corners, which both lips
    share."""
    down = _mouth_down(source)
    width = float(np.linalg.norm(target[INNER_UPPER_ROWS[-1]] - target[INNER_UPPER_ROWS[0]]))
    meeting = (target[INNER_LOWER_ROWS] - target[INNER_UPPER_ROWS]) @ down <= LIPS_MEET * width
    meeting[[0, -1]] = False
    result = target.copy()
    for outer, inner, outward in ((OUTER_CONTOURS[0], INNER_UPPER_ROWS, -down), (OUTER_CONTOURS[1], INNER_LOWER_ROWS, down)):
        own = (source[outer] - source[inner]) @ outward
        now = (target[outer] - target[inner]) @ outward
        deficit = np.where(meeting, np.clip(least * own - now, 0.0, None), 0.0)
        result[outer] = target[outer] + deficit[:, None] * outward
    return result


def lip_bands(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Control targets in which each lip moves as one band: the two rings between a lip's outer and inner
    contours take, column by column, the contours' motion interpolated by where the ring lies between them
    in the portrait (``m = (1 - t) m_outer + t m_inner``, ``t`` its share of the path from outer to inner).

    A wide smile stretches the lips thin (the astronaut's upper lip is 1 to 3 px thick at 512 px): rings
    moving by their own nearest landmarks, and the inner contour sealed or uncrossed after them, folded the
    band's slivers (a serrated edge along the upper lip)."""
    result = target.copy()
    for band in LIP_BANDS:
        outer, inner = band[0], band[-1]
        steps = np.linalg.norm(np.diff(source[band], axis=0), axis=2)  # (3, K): outer -> semi -> semi -> inner
        share = np.cumsum(steps, axis=0) / np.maximum(steps.sum(axis=0), 1e-9)  # (3, K), the last row is 1
        move_outer, move_inner = target[outer] - source[outer], target[inner] - source[inner]
        for ring, t in zip(band[1:-1], share[:-1], strict=True):
            result[ring] = source[ring] + (1.0 - t)[:, None] * move_outer + t[:, None] * move_inner
    return result


def _sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Nearest-pixel values of a 2-D array at (N, 2) pixel positions (clamped to the image)."""
    h, w = image.shape[:2]
    xs = np.clip(np.round(points[:, 0]).astype(int), 0, w - 1)
    ys = np.clip(np.round(points[:, 1]).astype(int), 0, h - 1)
    return image[ys, xs]

