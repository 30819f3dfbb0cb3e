"""Undoable edits (QUndoCommand): slider moves, presets, brush strokes, keyframes.

Consecutive moves of one slider merge into one undo step (``mergeWith``) until the user lets go
of the slider (a new *session*), so dragging a slider is undone in one go.
"""

from __future__ import annotations

import itertools

import numpy as np
from PySide6.QtGui import QUndoCommand

from studio.document import Document
from studio.keyframes import Keyframe

_SLIDER_ID = 1001
_session_counter = itertools.count(1)
_current_session = next(_session_counter)


def new_slider_session() -> None:
    """Start a new merge session (call when a slider drag ends) so the next move is its own step."""
    global _current_session
    _current_session = next(_session_counter)


class SetWeightCommand(QUndoCommand):
    """Move one slider (global gate weight of one emotion)."""

    def __init__(self, doc: Document, index: int, value: float) -> None:
        super().__init__(f"Set {doc.emotions[index]}")
        self.doc = doc
        self.index = index
        self.old = doc.weights[index]
        self.new = float(value)
        self.session = _current_session

    def id(self) -> int:
        return _SLIDER_ID

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, SetWeightCommand) or other.index != self.index or other.session != self.session:
            return False
        self.new = other.new
        return True

    def redo(self) -> None:
        self.doc.set_weight(self.index, self.new)

    def undo(self) -> None:
        self.doc.set_weight(self.index, self.old)


class SetWeightsCommand(QUndoCommand):
    """Set all sliders at once (preset, reset, text description)."""

    def __init__(self, doc: Document, values: list[float], text: str = "Set emotion mix") -> None:
        super().__init__(text)
        self.doc = doc
        self.old = doc.weights
        self.new = [float(v) for v in values]

    def redo(self) -> None:
        self.doc.set_weights(self.new)

    def undo(self) -> None:
        self.doc.set_weights(self.old)


class MaskEditCommand(QUndoCommand):
    """A brush stroke, eraser stroke or region fill on one emotion's mask (stores before/after)."""

    def __init__(self, doc: Document, index: int, before: np.ndarray, after: np.ndarray, text: str = "Brush stroke") -> None:
        super().__init__(text)
        self.doc = doc
        self.index = index
        self.before = before.copy()
        self.after = after.copy()

    def redo(self) -> None:
        self.doc.set_mask(self.index, self.after)

    def undo(self) -> None:
        self.doc.set_mask(self.index, self.before)


class SetMasksCommand(QUndoCommand):
    """Replace the whole mask set (clear all masks)."""

    def __init__(self, doc: Document, masks: np.ndarray, alpha: list[float], text: str = "Clear masks") -> None:
        super().__init__(text)
        self.doc = doc
        self.old = (doc.masks.copy(), doc.alpha)
        self.new = (masks.copy(), list(alpha))

    def redo(self) -> None:
        self.doc.set_masks(*self.new)

    def undo(self) -> None:
        self.doc.set_masks(*self.old)


class AddKeyframeCommand(QUndoCommand):
    """Add a keyframe (replacing one already at that frame)."""

    def __init__(self, doc: Document, key: Keyframe) -> None:
        super().__init__(f"Add keyframe at {key.frame}")
        self.doc = doc
        self.key = key
        self.replaced = [k for k in doc.keyframes if k.frame == key.frame]

    def redo(self) -> None:
        for k in self.replaced:
            self.doc.remove_keyframe(k.uid)
        self.key = self.doc.add_keyframe(self.key)

    def undo(self) -> None:
        self.doc.remove_keyframe(self.key.uid)
        for k in self.replaced:
            self.doc.add_keyframe(k)


class DeleteKeyframeCommand(QUndoCommand):
    """Delete a keyframe."""

    def __init__(self, doc: Document, uid: int) -> None:
        super().__init__("Delete keyframe")
        self.doc = doc
        self.uid = uid
        key = doc.keyframe(uid)
        self.key = key.copy() if key is not None else None

    def redo(self) -> None:
        self.doc.remove_keyframe(self.uid)

    def undo(self) -> None:
        if self.key is not None:
            self.doc.add_keyframe(self.key.copy())


class MoveKeyframeCommand(QUndoCommand):
    """Drag a keyframe to another frame."""

    def __init__(self, doc: Document, uid: int, old_frame: int, new_frame: int) -> None:
        super().__init__("Move keyframe")
        self.doc = doc
        self.uid = uid
        self.old = int(old_frame)
        self.new = int(new_frame)

    def redo(self) -> None:
        self.doc.move_keyframe(self.uid, self.new)

    def undo(self) -> None:
        self.doc.move_keyframe(self.uid, self.old)
