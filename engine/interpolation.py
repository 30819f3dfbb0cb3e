"""Keyframe interpolation, shared by the studio's timeline and the Qt-free project reader (pure, no numpy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Keyframe interpolation modes (the project's "render.interpolation").
INTERPOLATIONS = ("linear", "smoothstep")


def ease(t: float, mode: str) -> float:
    """Map the linear fraction ``t`` in 0..1 through the interpolation ``mode`` (smoothstep: 3t^2 - 2t^3)."""
    t = min(1.0, max(0.0, float(t)))
    if mode == "smoothstep":
        return t * t * (3.0 - 2.0 * t)
    if mode == "linear":
        return t
    raise ValueError(f"unknown interpolation {mode!r}; choose one of {INTERPOLATIONS}")


def key_bracket(keys: Sequence[Any], frame: float) -> tuple[Any, Any, float]:
    """The keys around ``frame`` (anything with a ``frame``; sorted, non-empty) and the linear fraction between
    them (0 before the first key and after the last). The studio's timeline and this reader share it."""
    if frame <= keys[0].frame:
        return keys[0], keys[0], 0.0
    if frame >= keys[-1].frame:
        return keys[-1], keys[-1], 0.0
    for left, right in zip(keys, keys[1:], strict=False):
        if left.frame <= frame <= right.frame:
            span = right.frame - left.frame
            return left, right, 0.0 if span == 0 else (frame - left.frame) / span
    return keys[-1], keys[-1], 0.0  # unreachable for sorted keys
