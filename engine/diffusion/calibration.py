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

A mix is not the sum of its parts: two experts at once interact (anger's lowered brows and
surprise's raised inner brows read as sadness), and the emotion that responds more strongly drowns
the other. So a calibration may also hold *mix curves* ``m_e`` (fitted on 50/50 mixes of the
training people, :func:`training.calibrate.fit_mix_knots`), blended in by how mixed the sliders are:

    g_e = (1 - mu) c_e(w_e) + mu m_e(w_e),   mu = w_(2) / w_(1)

``w_(1) >= w_(2)`` are the two largest sliders: ``mu = 0`` with one emotion (single-emotion sliders and
sweeps are exactly as above), ``mu = 1`` at 50/50, and ``g`` moves continuously as a second slider
comes in.
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


def mixing_degree(weights: np.ndarray) -> np.ndarray:
    """``mu = w_(2) / w_(1)`` per row of ``(..., E)``: 0 for one (or no) emotion, 1 for an even two-way mix."""
    weights = np.clip(np.asarray(weights, dtype=np.float32), 0.0, None)
    if weights.shape[-1] < 2:
        return np.zeros(weights.shape[:-1], np.float32)
    top = -np.sort(-weights, axis=-1)
    return np.where(top[..., 0] > 0, top[..., 1] / np.maximum(top[..., 0], 1e-12), 0.0).astype(np.float32)


def calibrate_weights(weights: np.ndarray, curves: Sequence[Sequence[float]] | None,
                      knots: Sequence[float] = CALIBRATION_KNOTS,
                      mix_curves: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """Gate values for slider weights ``(..., E)``: ``g_e = c_e(w_e)``, blended with mix curves if given.

    ``curves[e]`` holds ``c_e`` at ``knots``; weights between knots are interpolated linearly; no
    curves: the slider is the gate. ``mix_curves[e]`` holds ``m_e``: then
    ``g_e = (1 - mu) c_e(w_e) + mu m_e(w_e)`` with ``mu`` = :func:`mixing_degree` of the calibrated
    emotions. Emotions past the curves (custom expert slots) keep their slider value.
    """
    weights = np.asarray(weights, dtype=np.float32)
    if not curves and not mix_curves:
        return weights
    out = weights.copy()
    for e in range(min(len(curves or ()), weights.shape[-1])):
        out[..., e] = np.interp(weights[..., e], knots, curves[e])
    if mix_curves:
        n = min(len(mix_curves), weights.shape[-1])
        mu = mixing_degree(weights[..., :n])[..., None]
        mixed = np.stack([np.interp(weights[..., e], knots, mix_curves[e]) for e in range(n)], axis=-1)
        out[..., :n] = (1.0 - mu) * out[..., :n] + mu * mixed
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


Curves = list[list[float]]


def load_calibration_file(path: str | Path) -> dict:
    """The whole JSON of a calibration file written by ``moee calibrate``, its curves checked.

    It holds a ``curves`` list and, when mixes were calibrated, a ``mix_curves`` list, beside how
    they were fitted (command, people, measured responses).
    """
    try:
        data = json.loads(Path(path).read_text())
        curves, mix_curves = data["curves"], data.get("mix_curves")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EmotionSpecError(f"{path} is not a slider calibration file written by moee calibrate: {exc}") from exc
    for found in (curves, mix_curves):
        if found is not None:
            check_curves(found)
    return data


def read_calibration(path: str | Path) -> tuple[Curves, Curves | None]:
    """``(curves, mix_curves)`` of a calibration file written by ``moee calibrate`` (no mixes: None)."""
    data = load_calibration_file(path)
    curves, mix_curves = data["curves"], data.get("mix_curves")
    return ([[float(v) for v in curve] for curve in curves],
            None if mix_curves is None else [[float(v) for v in curve] for curve in mix_curves])


#: What a model's notes keep of a ``moee calibrate`` result: how the curves were fitted and what was
#: measured (the curves themselves live in the sampling settings; the raw mix readings stay in the file).
CALIBRATION_NOTE_KEYS = ("command", "model", "data", "recognizer", "identities", "generated_response",
                         "target_response", "mix_knots", "mix_top2_train", "mix_identities")


def calibration_note(result: dict) -> dict:
    """The part of a calibration result (``moee calibrate --out`` JSON) a model folder's notes record."""
    return {key: result[key] for key in CALIBRATION_NOTE_KEYS if key in result}


def calibration_note_from_argument(value: str) -> dict:
    """The notes a ``--calibration off|FILE`` value leaves in a packaged model: the file's fitting
    record and where it was read from, or that the sliders are uncalibrated."""
    if value == "off":
        return {"off": True}
    return {**calibration_note(load_calibration_file(value)), "file": str(value)}


def curves_from_argument(value: str) -> tuple[Curves | None, Curves | None]:
    """``(curves, mix_curves)`` a ``--calibration off|FILE`` command-line value asks for (off: both None)."""
    return (None, None) if value == "off" else read_calibration(value)
