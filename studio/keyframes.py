"""Emotion keyframes and their per-frame interpolation (pure numpy, no Qt).

A keyframe stores the slider values (global gate weights) at one frame and, optionally, the
painted mask set (masks ``(E, H, W)`` + alpha per emotion). Between two keyframes values are
blended linearly or with smoothstep; before the first / after the last keyframe they hold.
Masks form their own track: only keyframes that carry masks take part in mask interpolation. A
keyframe keys its masks either with a painted mask set or as *no mask* (``no_mask=True``: nothing is
painted here); a "no mask" key blends towards empty masks, so a mask keyed later does not leak back to
the frames before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from studio.engine_api import INTERPOLATIONS as INTERPOLATIONS  # the timeline's modes, re-exported
from studio.engine_api import ease, key_bracket


@dataclass
class Keyframe:
    """The emotion state keyed at one frame."""

    frame: int
    weights: list[float]
    masks: np.ndarray | None = None  # (E, H, W) float32 in 0..1, or None (not keyed)
    alpha: list[float] | None = None  # per-emotion alpha of the masks
    uid: int = field(default=0, compare=False)
    no_mask: bool = False  # keys "no mask here" (``masks`` is then None)

    @property
    def keys_masks(self) -> bool:
        """True when this keyframe takes part in the mask track (a painted set or "no mask")."""
        return self.masks is not None or self.no_mask

    def copy(self) -> Keyframe:
        """A deep copy (masks included)."""
        return Keyframe(
            self.frame,
            list(self.weights),
            None if self.masks is None else self.masks.copy(),
            None if self.alpha is None else list(self.alpha),
            self.uid,
            self.no_mask and self.masks is None,
        )


def weights_at(keys: Sequence[Keyframe], frame: float, mode: str = "smoothstep") -> list[float] | None:
    """Interpolated slider values at ``frame`` (``None`` when there is no keyframe)."""
    ordered = sorted(keys, key=lambda k: k.frame)
    if not ordered:
        return None
    left, right, t = key_bracket(ordered, frame)
    u = ease(t, mode)
    n = max(len(left.weights), len(right.weights))
    a = list(left.weights) + [0.0] * (n - len(left.weights))
    b = list(right.weights) + [0.0] * (n - len(right.weights))
    return [float((1.0 - u) * x + u * y) for x, y in zip(a, b, strict=True)]


def mask_bracket(keys: Sequence[Keyframe], frame: float, mode: str = "smoothstep") -> tuple[Keyframe, Keyframe, float] | None:
    """The mask-keying keyframes around ``frame`` and the eased blend weight ``u`` (``None``: no masks keyed).

    Keyframes keyed "no mask" take part: they stand for empty masks.
    """
    ordered = sorted((k for k in keys if k.keys_masks), key=lambda k: k.frame)
    if not ordered:
        return None
    left, right, t = key_bracket(ordered, frame)
    return left, right, ease(t, mode)


def masks_at(
    keys: Sequence[Keyframe], frame: float, mode: str = "smoothstep", shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, list[float]] | None:
    """Interpolated (masks, alpha) at ``frame`` from the keyframes that key masks, or ``None`` (none do).

    A "no mask" keyframe stands for empty masks of its neighbour's shape, with the neighbour's alpha;
    between two "no mask" keys the empty set has ``shape`` (the live mask set's), else the shape of any
    painted key, else ``(E, 1, 1)``.
    """
    bracket = mask_bracket(keys, frame, mode)
    if bracket is None:
        return None
    left, right, u = bracket
    painted = left.masks if left.masks is not None else right.masks
    if painted is None:  # both sides keyed "no mask"
        other = next((k.masks for k in keys if k.masks is not None), None)
        empty_shape = (tuple(shape) if shape is not None else other.shape if other is not None
                       else (len(left.weights), 1, 1))
        return np.zeros(empty_shape, np.float32), [1.0] * int(empty_shape[0])
    default = [1.0] * len(painted)
    alpha_l = np.asarray(left.alpha if left.masks is not None and left.alpha is not None
                         else (right.alpha if left.masks is None and right.alpha is not None else default), np.float32)
    alpha_r = np.asarray(right.alpha if right.masks is not None and right.alpha is not None
                         else (left.alpha if right.masks is None and left.alpha is not None else default), np.float32)
    if left is right:
        return painted.copy(), [float(a) for a in alpha_l]
    if left.masks is None or right.masks is None:  # fading to or from "no mask" (no zero stack is made)
        weight = u if left.masks is None else 1.0 - u
        masks = (np.float32(weight) * painted).astype(np.float32, copy=False)
    elif left.masks.shape != right.masks.shape:
        return left.masks.copy(), [float(a) for a in alpha_l]
    else:
        masks = ((1.0 - u) * left.masks + u * right.masks).astype(np.float32)
    alpha = (1.0 - u) * alpha_l + u * alpha_r
    return masks, [float(a) for a in alpha]


def sample_curves(keys: Sequence[Keyframe], num_frames: int, num_emotions: int, mode: str) -> np.ndarray:
    """Per-frame weights ``(num_frames, num_emotions)`` for drawing the timeline curves."""
    out = np.zeros((max(0, num_frames), num_emotions), np.float32)
    if not keys:
        return out
    for f in range(num_frames):
        w = weights_at(keys, f, mode) or []
        out[f, : min(num_emotions, len(w))] = w[:num_emotions]
    return out
