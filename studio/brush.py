"""The mask brush: soft round dabs along a stroke, eraser, and landmark region fills (numpy, no Qt)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class BrushSettings:
    """What the brush paints."""

    emotion: int = 0  # index of the emotion whose mask is painted
    value: float = 1.0  # mask value painted (0..1)
    radius: float = 8.0  # in mask pixels
    hardness: float = 0.6  # 1 = hard edge, 0 = soft falloff from the centre
    eraser: bool = False

    def clamp(self) -> BrushSettings:
        self.value = min(1.0, max(0.0, self.value))
        self.radius = min(512.0, max(1.0, self.radius))
        self.hardness = min(1.0, max(0.0, self.hardness))
        return self


def dab_footprint(radius: float, hardness: float) -> np.ndarray:
    """Opacity of a round dab on a ``(2r+1)^2`` grid: 1 inside ``hardness*r``, smooth falloff to 0 at r."""
    r = max(0.5, float(radius))
    n = int(math.ceil(r))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1].astype(np.float32)
    d = np.sqrt(xx * xx + yy * yy) / r
    inner = min(0.999, max(0.0, hardness))
    t = np.clip((d - inner) / (1.0 - inner), 0.0, 1.0)
    fall = 1.0 - t * t * (3.0 - 2.0 * t)
    fall[d > 1.0] = 0.0
    return fall.astype(np.float32)


def apply_dab(mask: np.ndarray, x: float, y: float, brush: BrushSettings) -> None:
    """Paint one dab centred at pixel (x, y) into ``mask`` in place (max-blend towards the target value)."""
    foot = dab_footprint(brush.radius, brush.hardness)
    n = foot.shape[0] // 2
    cx, cy = int(round(x)), int(round(y))
    h, w = mask.shape
    x0, x1 = max(0, cx - n), min(w, cx + n + 1)
    y0, y1 = max(0, cy - n), min(h, cy + n + 1)
    if x0 >= x1 or y0 >= y1:
        return
    f = foot[y0 - (cy - n) : y1 - (cy - n), x0 - (cx - n) : x1 - (cx - n)]
    region = mask[y0:y1, x0:x1]
    target = 0.0 if brush.eraser else brush.value
    region += (target - region) * f
    np.clip(region, 0.0, 1.0, out=region)


def apply_segment(mask: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], brush: BrushSettings) -> None:
    """Paint dabs from p0 to p1 spaced a quarter radius apart (p0 excluded, p1 included)."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    dist = math.hypot(dx, dy)
    spacing = max(0.5, brush.radius * 0.25)
    steps = max(1, int(math.ceil(dist / spacing)))
    for i in range(1, steps + 1):
        t = i / steps
        apply_dab(mask, p0[0] + dx * t, p0[1] + dy * t, brush)


def fill_region(mask: np.ndarray, region: np.ndarray, value: float, eraser: bool = False) -> np.ndarray:
    """Return ``mask`` with a region mask (0..1) filled with ``value`` (or erased)."""
    region = np.clip(region.astype(np.float32), 0.0, 1.0)
    target = 0.0 if eraser else float(value)
    out = mask + (target - mask) * region
    return np.clip(out, 0.0, 1.0).astype(np.float32)
