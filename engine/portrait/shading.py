"""The appearance of an expression: the creases a face shows when it moves, drawn onto the warped portrait.

A warp moves the portrait's pixels but cannot make lines that were not there: a frown's vertical creases
between the brows (AU4), the nasolabial folds of a smile or a sneer (AU12, AU9), the wrinkles across the
nose bridge (AU9) and the forehead's horizontal lines under raised brows (AU1+2). Their strength is read off
the face's own motion (in face units, from the motion model), so they follow the sliders, the audio and the
gains, and they are drawn as soft multiplicative shading (an *expression ratio image* made of strokes) in
the frame's geometry:

    I' = I * (1 - d)        d = darkness of the creases, 0 away from them

Every coordinate below is in face units (1 = half the face width) and every intensity is 0..1.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Motion (face units) at which each crease is fully drawn.
FROWN_FULL = 0.06  # inner brows down / together
BROW_RAISE_FULL = 0.08
SMILE_FULL = 0.08  # mouth corners up
SNEER_FULL = 0.03  # nose wings up (AU9)


@dataclass(frozen=True)
class CreaseStyle:
    """Darkness and size of each crease (darkness as a share of the pixel's value)."""

    frown: float = 0.16
    fold: float = 0.14
    bridge: float = 0.12
    forehead: float = 0.07
    width: float = 0.02  # stroke width, face units
    blur: float = 0.028  # Gaussian softness, face units


def crease_intensities(motion: np.ndarray) -> dict[str, float]:
    """How strongly each crease shows, from the 68 landmarks' displacement (face units, y down)."""
    inner_down = float(motion[[20, 21, 22, 23], 1].mean())
    knit = float(motion[[21, 20], 0].mean() - motion[[22, 23], 0].mean())  # inner brows moving together
    brows_up = -float(motion[17:27, 1].mean())
    corners_up = -float(motion[[48, 54], 1].mean())
    nose_up = -float(motion[31:36, 1].mean())
    return {
        "frown": float(np.clip((inner_down + knit) / FROWN_FULL, 0, 1)),
        "forehead": float(np.clip(brows_up / BROW_RAISE_FULL, 0, 1)),
        "fold": float(np.clip(max(corners_up / SMILE_FULL, nose_up / SNEER_FULL), 0, 1)),
        "bridge": float(np.clip(nose_up / SNEER_FULL, 0, 1)),
    }


def _curve(a: np.ndarray, b: np.ndarray, bulge: np.ndarray, n: int = 8) -> np.ndarray:
    """A quadratic curve from ``a`` to ``b`` pushed by ``bulge`` at its middle."""
    t = np.linspace(0, 1, n)[:, None]
    mid = (a + b) / 2 + bulge
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * mid + t**2 * b


def crease_strokes(points: np.ndarray, unit: float, strength: dict[str, float],
                   style: CreaseStyle = CreaseStyle()) -> list[tuple[np.ndarray, float]]:
    """Polylines (pixels) with their darkness, for landmarks ``points`` (68, 2) of the frame being drawn."""
    strokes: list[tuple[np.ndarray, float]] = []
    up = np.array([0.0, -unit])
    eye_l, eye_r = points[36:42].mean(0), points[42:48].mean(0)
    across = (eye_r - eye_l) / max(np.linalg.norm(eye_r - eye_l), 1e-6)
    if strength["frown"] > 0:
        centre = (points[21] + points[22]) / 2
        for side in (-1, 1):
            base = centre + side * across * 0.06 * unit
            strokes.append((np.stack([base - up * 0.01, base + up * 0.1 + side * across * 0.012 * unit]),
                            style.frown * strength["frown"]))
    if strength["forehead"] > 0:
        left, right = points[19], points[24]
        for k, lift in enumerate((0.16, 0.26, 0.36)):
            a, b = left + up * lift, right + up * lift
            strokes.append((_curve(a, b, up * 0.03), style.forehead * strength["forehead"] * (1 - 0.2 * k)))
    if strength["fold"] > 0:
        for wing, corner, side in ((points[31], points[48], -1), (points[35], points[54], 1)):
            start = wing + side * across * 0.04 * unit + up * 0.02
            end = corner + side * across * 0.07 * unit - up * 0.05
            strokes.append((_curve(start, end, side * across * 0.05 * unit), style.fold * strength["fold"]))
    if strength["bridge"] > 0:
        top, bottom = points[27], points[29]
        for k in range(3):
            y = top + (bottom - top) * (0.25 + 0.25 * k)
            strokes.append((np.stack([y - across * 0.07 * unit, y + across * 0.07 * unit]),
                            style.bridge * strength["bridge"]))
    return strokes


def draw_creases(image: np.ndarray, points: np.ndarray, unit: float, strength: dict[str, float],
                 style: CreaseStyle = CreaseStyle()) -> None:
    """Darken ``image`` in place along the creases of the given strengths (nothing when all are 0)."""
    strokes = crease_strokes(points, unit, strength, style)
    if not strokes:
        return
    h, w = image.shape[:2]
    allpts = np.concatenate([s for s, _ in strokes])
    pad = int(np.ceil(unit * (style.width + 3 * style.blur))) + 2
    x0, y0 = np.maximum(np.floor(allpts.min(0)).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(allpts.max(0)).astype(int) + pad, [w, h])
    if x1 <= x0 or y1 <= y0:
        return
    dark = np.zeros((y1 - y0, x1 - x0), np.float32)
    thickness = max(1, int(round(style.width * unit)))
    for polyline, darkness in strokes:
        layer = np.zeros_like(dark)
        pts = np.round((polyline - [x0, y0]) * 16).astype(np.int32)
        cv2.polylines(layer, [pts], False, float(darkness), thickness, cv2.LINE_AA, 4)
        dark = np.maximum(dark, layer)
    dark = cv2.GaussianBlur(dark, (0, 0), max(0.5, style.blur * unit))
    patch = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = np.clip(patch * (1.0 - dark[..., None]) + 0.5, 0, 255).astype(np.uint8)
