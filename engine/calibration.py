"""Slider calibration: each emotion's slider value -> the gate value the U-Net is given.

A trained model does not respond to its global gates linearly, nor equally for every emotion: the
demo model's anger reads as strong at ``g = 0.25`` already while its fear and sadness barely show
below ``g = 0.75`` (docs/TRAINING.md, "Calibrated sliders"). Mixes suffer most: at 50/50 one
emotion drowns the other. A calibration curve per emotion fixes this at no cost per frame:

    g_e = c_e(w_e),   c_e(w) = G_e^{-1}(T_e(w))

``w_e`` is the slider, ``T_e(w)`` the intensity the renderer's ground truth shows at weight ``w``,
``G_e(g)`` the intensity the model shows at gate ``g`` (both read by the same recogniser on the same
training people, :mod:`training.calibrate`). ``c_e`` is piecewise linear through fixed knots; it keeps
``c(0) = 0`` (neutral stays neutral) and ``c(1) = 1`` (full intensity is what training taught) and is
non-decreasing, so a slider sweep stays monotonic. Emotions without a curve (custom experts) pass
through unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.errors import EmotionSpecError

#: Slider values at which a curve is given (the same for every emotion).
CALIBRATION_KNOTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def check_curves(curves: Sequence[Sequence[float]], knots: Sequence[float] = CALIBRATION_KNOTS) -> None:
    """Raise EmotionSpecError unless every curve has one value per knot, in 0..1, non-decreasing."""
    for e, curve in enumerate(curves):
        values = np.asarray(curve, dtype=np.float64)
        if values.shape != (len(knots),):
            raise EmotionSpecError(f"calibration curve {e} needs {len(knots)} values (one per knot), "
                                   f"got shape {values.shape}")
        if not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > 1.0:
            raise EmotionSpecError(f"calibration curve {e} must stay within 0..1, got {values.tolist()}")
        if np.any(np.diff(values) < 0):
            raise EmotionSpecError(f"calibration curve {e} must not decrease, got {values.tolist()}")


def calibrate_weights(weights: np.ndarray, curves: Sequence[Sequence[float]] | None,
                      knots: Sequence[float] = CALIBRATION_KNOTS) -> np.ndarray:
    """Gate values ``g_e = c_e(w_e)`` for slider weights ``(..., E)``; identity where no curve is given.

    ``curves[e]`` holds ``c_e`` at ``knots``; weights between knots are interpolated linearly.
    Emotions past ``len(curves)`` (custom expert slots) keep their slider value.
    """
    weights = np.asarray(weights, dtype=np.float32)
    if not curves:
        return weights
    out = weights.copy()
    for e in range(min(len(curves), weights.shape[-1])):
        out[..., e] = np.interp(weights[..., e], knots, curves[e])
    return out


def fit_response_curve(generated: Sequence[float], target: Sequence[float],
                       knots: Sequence[float] = CALIBRATION_KNOTS) -> list[float]:
    """The curve ``c(w_k) = G^{-1}(T(w_k))`` at each knot, for one emotion.

    ``generated[k]`` is the intensity the model shows at gate ``knots[k]`` (``G``), ``target[k]`` the
    intensity the ground truth shows at weight ``knots[k]`` (``T``). ``G`` is made non-decreasing
    (running maximum) and inverted by linear interpolation; where ``T`` lies below ``G(0)`` (the model
    already shows that much when neutral) the gate is 0, where it lies above ``G(1)`` the gate is 1.
    The ends are pinned, ``c(0) = 0`` and ``c(1) = 1``, and the result is non-decreasing.
    """
    gen = np.maximum.accumulate(np.asarray(generated, dtype=np.float64))
    tgt = np.asarray(target, dtype=np.float64)
    grid = np.asarray(knots, dtype=np.float64)
    if gen.shape != grid.shape or tgt.shape != grid.shape:
        raise ValueError(f"need one response per knot ({len(grid)}), got {gen.shape} and {tgt.shape}")
    # np.interp needs increasing x: flat stretches of G get a negligible ramp (their first gate wins)
    ramp = gen + np.arange(len(gen)) * 1e-9
    curve = np.interp(tgt, ramp, grid, left=0.0, right=1.0)
    curve[0], curve[-1] = 0.0, 1.0
    return [float(v) for v in np.maximum.accumulate(np.clip(curve, 0.0, 1.0))]


def read_curves(path: str | Path) -> list[list[float]]:
    """The curves of a calibration file written by ``moee calibrate`` (JSON with a ``curves`` list)."""
    try:
        data = json.loads(Path(path).read_text())
        curves = data["curves"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EmotionSpecError(f"{path} is not a slider calibration file written by moee calibrate: {exc}") from exc
    check_curves(curves)
    return [[float(v) for v in curve] for curve in curves]


def curves_from_argument(value: str) -> list[list[float]] | None:
    """The curves a ``--calibration off|FILE`` command-line value asks for (None: calibration off)."""
    return None if value == "off" else read_curves(value)
