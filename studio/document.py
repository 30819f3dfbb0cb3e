"""The project document: everything the user edits (sliders, masks, keyframes, inputs, settings).

The :class:`Document` is a QObject that owns the state and announces changes with signals; edits
that should be undoable go through :mod:`studio.commands` on ``document.undo_stack``. It also turns
its state into the engine's :class:`GateControl` for any frame (:meth:`Document.gates_for_frame`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from studio.engine_api import BASIC_EMOTIONS, EMOTION_COLOURS, normalise
from studio.keyframes import Keyframe, masks_at, weights_at

CUSTOM_COLOURS = ("#1abc9c", "#e84393", "#00cec9", "#a29bfe", "#fd79a8", "#55efc4", "#ffeaa7")
DEFAULT_MASK_SIZE = 128


@dataclass
class RenderSettings:
    """How previews and exports are rendered."""

    preview_steps: int = 4  # the fast preview right after a change
    refine_steps: int = 16  # the full-quality refine when the user pauses
    export_steps: int = 16
    seed: int = 0
    fps: int = 25
    interpolation: str = "smoothstep"  # keyframe interpolation: linear | smoothstep
    refine_delay_ms: int = 400
    blinks_per_minute: float = 20.0  # the portrait renderer's blinks (0: none)
    head_motion: float = 1.0  # scale of head nods, turns and sway (0: a still head)
    gaze: float = 1.0  # scale of the eyes' movements (0: a fixed look at the viewer)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenderSettings:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def colour_for(name: str, index: int) -> str:
    """Display colour of an emotion (basic ones have fixed colours, custom ones cycle a palette)."""
    return EMOTION_COLOURS.get(name, CUSTOM_COLOURS[index % len(CUSTOM_COLOURS)])


@dataclass
class DocumentState:
    """A plain snapshot of a document (what a project file stores)."""

    emotions: list[str] = field(default_factory=lambda: list(BASIC_EMOTIONS))
    weights: list[float] = field(default_factory=lambda: [0.0] * len(BASIC_EMOTIONS))
    normalise: bool = False
    masks: np.ndarray | None = None
    alpha: list[float] = field(default_factory=lambda: [1.0] * len(BASIC_EMOTIONS))
    keyframes: list[Keyframe] = field(default_factory=list)
    portrait_path: str | None = None
    audio_path: str | None = None
    #: Length in seconds of a clip without audio (an emotion-only clip); None: a still (one frame).
    #: With an audio track the audio sets the length and this is kept for when the audio is removed.
    duration: float | None = None
    model_dir: str | None = None
    expert_packs: list[str] = field(default_factory=list)
    render: RenderSettings = field(default_factory=RenderSettings)


class Document(QObject):
    """The open project. Mutators are plain (no undo); commands wrap them for the undo stack."""

    weightsChanged = Signal()
    masksChanged = Signal(int)  # emotion index, -1 = all
    keyframesChanged = Signal()
    emotionsChanged = Signal()
    inputsChanged = Signal()  # portrait or audio path, or the length of a clip without audio
    settingsChanged = Signal()
    modifiedChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.cleanChanged.connect(self._clean_changed)
        self.path: str | None = None
        self._uid = 0
        self._extra_dirty = False
        self.state = DocumentState()
        self.mask_revision = 0  # bumped on every mask change (the live masks are edited in place)
        self.masksChanged.connect(self._masks_bumped)  # connected first: runs before other listeners

    def _masks_bumped(self, _index: int) -> None:
        self.mask_revision += 1

    def _clean_changed(self, clean: bool) -> None:
        self.modifiedChanged.emit(not clean or self._extra_dirty)

    # ----------------------------------------------------------------- state
    @property
    def emotions(self) -> list[str]:
        return self.state.emotions

    @property
    def colours(self) -> list[str]:
        return [colour_for(n, i) for i, n in enumerate(self.state.emotions)]

    @property
    def weights(self) -> list[float]:
        return list(self.state.weights)

    @property
    def masks(self) -> np.ndarray:
        """Painted masks ``(E, H, W)``; created empty at the default size when first needed."""
        if self.state.masks is None or self.state.masks.shape[0] != len(self.emotions):
            h, w = (DEFAULT_MASK_SIZE, DEFAULT_MASK_SIZE) if self.state.masks is None else self.state.masks.shape[1:]
            self.state.masks = np.zeros((len(self.emotions), h, w), np.float32)
        return self.state.masks

    @property
    def alpha(self) -> list[float]:
        return list(self.state.alpha)

    @property
    def keyframes(self) -> list[Keyframe]:
        return sorted(self.state.keyframes, key=lambda k: k.frame)

    @property
    def render(self) -> RenderSettings:
        return self.state.render

    def is_modified(self) -> bool:
        return self._extra_dirty or not self.undo_stack.isClean()

    def mark_saved(self, path: str | None = None) -> None:
        """Record that the document was saved (to ``path``)."""
        if path is not None:
            self.path = path
        self._extra_dirty = False
        self.undo_stack.setClean()
        self.modifiedChanged.emit(False)

    def mark_dirty(self) -> None:
        """A non-undoable change (inputs, settings) happened."""
        self._extra_dirty = True
        self.modifiedChanged.emit(True)

    # ------------------------------------------------------------- mutators
    def set_weight(self, index: int, value: float) -> None:
        value = min(1.0, max(0.0, float(value)))
        if self.state.weights[index] != value:
            self.state.weights[index] = value
            self.weightsChanged.emit()

    def set_weights(self, values: list[float]) -> None:
        values = [min(1.0, max(0.0, float(v))) for v in values]
        values = (values + [0.0] * len(self.emotions))[: len(self.emotions)]
        if values != self.state.weights:
            self.state.weights = values
            self.weightsChanged.emit()

    def set_normalise(self, on: bool) -> None:
        if self.state.normalise != bool(on):
            self.state.normalise = bool(on)
            self.mark_dirty()
            self.weightsChanged.emit()

    def set_mask(self, index: int, mask: np.ndarray) -> None:
        """Replace the painted mask of one emotion (same size as the mask set)."""
        masks = self.masks
        if mask.shape != masks.shape[1:]:
            raise ValueError(f"mask shape {mask.shape} != {masks.shape[1:]}")
        masks[index] = np.clip(mask, 0.0, 1.0).astype(np.float32)
        self.masksChanged.emit(index)

    def set_masks(self, masks: np.ndarray | None, alpha: list[float] | None = None) -> None:
        """Replace the whole mask set (and alpha)."""
        self.state.masks = None if masks is None else np.asarray(masks, np.float32).copy()
        if alpha is not None:
            self.state.alpha = [float(a) for a in alpha]
        self.masksChanged.emit(-1)

    def set_alpha(self, index: int, value: float) -> None:
        self.state.alpha[index] = min(1.0, max(0.0, float(value)))
        self.masksChanged.emit(index)

    def resize_masks(self, height: int, width: int) -> None:
        """Make the mask set ``height x width`` (the portrait size); painted content is resampled."""
        masks = self.masks
        if masks.shape[1:] == (height, width):
            return
        self.state.masks = resize_stack(masks, height, width)
        for key in self.state.keyframes:
            if key.masks is not None:
                key.masks = resize_stack(key.masks, height, width)
        self.masksChanged.emit(-1)

    def add_keyframe(self, key: Keyframe) -> Keyframe:
        if not key.uid:
            self._uid += 1
            key.uid = self._uid
        self.state.keyframes.append(key)
        self.keyframesChanged.emit()
        return key

    def remove_keyframe(self, uid: int) -> Keyframe | None:
        for i, key in enumerate(self.state.keyframes):
            if key.uid == uid:
                del self.state.keyframes[i]
                self.keyframesChanged.emit()
                return key
        return None

    def keyframe(self, uid: int) -> Keyframe | None:
        return next((k for k in self.state.keyframes if k.uid == uid), None)

    def move_keyframe(self, uid: int, frame: int) -> None:
        key = self.keyframe(uid)
        if key is not None and key.frame != frame:
            key.frame = int(frame)
            self.keyframesChanged.emit()

    def add_emotion(self, name: str) -> int:
        """Add a custom expert slot (after load_expert_pack); returns its index."""
        if name in self.emotions:
            return self.emotions.index(name)
        self.state.emotions.append(name)
        self.state.weights.append(0.0)
        self.state.alpha.append(1.0)
        if self.state.masks is not None:
            h, w = self.state.masks.shape[1:]
            self.state.masks = np.concatenate([self.state.masks, np.zeros((1, h, w), np.float32)])
        for key in self.state.keyframes:
            key.weights.append(0.0)
            if key.masks is not None:
                key.masks = np.concatenate([key.masks, np.zeros((1,) + key.masks.shape[1:], np.float32)])
                key.alpha = (key.alpha or [1.0] * (len(key.masks) - 1)) + [1.0]
        self.emotionsChanged.emit()
        self.weightsChanged.emit()
        return len(self.emotions) - 1

    def set_input(self, portrait: str | None = ..., audio: str | None = ...) -> None:  # type: ignore[assignment]
        """Change the portrait and/or audio path (``...`` = unchanged)."""
        if portrait is not ...:
            self.state.portrait_path = portrait
        if audio is not ...:
            self.state.audio_path = audio
        self.mark_dirty()
        self.inputsChanged.emit()

    def set_duration(self, seconds: float | None) -> None:
        """Set the length of a clip without audio (None or 0: a still); re-prepares the inputs."""
        value = float(seconds) if seconds else None
        if value == self.state.duration:
            return
        self.state.duration = value
        self.mark_dirty()
        self.inputsChanged.emit()

    def load_state(self, state: DocumentState, path: str | None = None) -> None:
        """Replace everything (open / new / recover); clears undo history."""
        self.state = state
        self._uid = 0
        for key in self.state.keyframes:
            self._uid += 1
            key.uid = self._uid
        self.path = path
        self.undo_stack.clear()
        self._extra_dirty = False
        self.undo_stack.setClean()
        self.emotionsChanged.emit()
        self.weightsChanged.emit()
        self.masksChanged.emit(-1)
        self.keyframesChanged.emit()
        self.inputsChanged.emit()
        self.settingsChanged.emit()
        self.modifiedChanged.emit(False)

    # --------------------------------------------------------- engine view
    def effective_weights(self, weights: list[float] | None = None) -> list[float]:
        """Weights as the engine gets them (normalised to sum 1 when the toggle is on)."""
        weights = self.weights if weights is None else list(weights)
        return normalise(weights) if self.state.normalise else weights

    def schedule(self, copy: bool = True) -> GateSchedule:
        """A snapshot of everything that decides the gates of any frame (safe to use on a worker)."""
        keys = [k.copy() for k in self.state.keyframes] if copy else list(self.state.keyframes)
        return GateSchedule(
            weights=self.weights,
            masks=self.masks.copy() if copy else self.masks,
            alpha=self.alpha,
            keyframes=keys,
            normalise=self.state.normalise,
            interpolation=self.render.interpolation,
        )

    def gates_for_frame(self, frame: int | None = None) -> Any:
        """The engine GateControl for the live state (``None``) or the timeline at ``frame``."""
        return self.schedule(copy=False)(frame)


@dataclass
class GateSchedule:
    """Gates for every frame: keyframes interpolated, else the live sliders and masks."""

    weights: list[float]
    masks: np.ndarray
    alpha: list[float]
    keyframes: list[Keyframe]
    normalise: bool = False
    interpolation: str = "smoothstep"

    def parts(self, frame: int | None = None) -> tuple[list[float], np.ndarray | None, list[float] | None]:
        """(weights, masks or None, alpha or None) at ``frame`` (``None`` = the live values)."""
        weights, masks, alpha = list(self.weights), self.masks, list(self.alpha)
        if frame is not None:
            keyed = weights_at(self.keyframes, frame, self.interpolation)
            if keyed is not None:
                weights = keyed
            keyed_masks = masks_at(self.keyframes, frame, self.interpolation, self.masks.shape)
            if keyed_masks is not None:
                masks, alpha = keyed_masks
        n = len(self.weights)
        weights = (list(weights) + [0.0] * n)[:n]
        alpha = (list(alpha) + [1.0] * n)[:n]
        active = [float(a) if float(masks[i].max(initial=0.0)) > 0.0 else 0.0 for i, a in enumerate(alpha)]
        if self.normalise:
            weights = normalise(weights)
        if not any(a > 0 for a in active):
            return weights, None, None
        return weights, masks.copy(), active

    def __call__(self, frame: int | None = None) -> Any:
        from studio.engine_api import GateControl

        weights, masks, alpha = self.parts(frame)
        return GateControl(global_weights=weights, local_masks=masks, local_alpha=alpha)


def resize_stack(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resample an ``(E, h, w)`` mask stack to ``(E, height, width)`` (bilinear, via Pillow)."""
    from PIL import Image

    out = np.zeros((masks.shape[0], height, width), np.float32)
    for i, mask in enumerate(masks):
        if mask.max(initial=0.0) <= 0.0:
            continue
        image = Image.fromarray(np.ascontiguousarray(mask, dtype=np.float32))
        out[i] = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), np.float32)
    return np.clip(out, 0.0, 1.0)
