"""``moee calibrate-portrait``: fit the portrait path's slider calibration (engine.portrait.calibration).

For every emotion ``e`` and gate ``g`` of :data:`engine.portrait.calibration.PORTRAIT_KNOTS`, on each
calibration portrait (the astronaut of ``skimage.data`` and a few people of the synthetic renderer, drawn
at :data:`SYNTHETIC_SIZE` px; never user portraits), the default renderer sets up the frame with gate ``g``
of ``e`` alone (calibration off, no blinks, head motion or gaze, silent) and :func:`expression_intensity`
measures how far the frame's 68 landmark control targets lie from the neutral frame's, in face units:
the geometry that the mesh warp draws, not the motion model's own numbers.

Averaged over the portraits (the real photo weighing as much as the synthetic people together) this gives ``I_e(g)``; the full-strength intensity ``I_full`` is the weakest
emotion's ``I_e(1)`` and the curve ``c_e(w) = I_e^{-1}(w * I_full)`` (:func:`fit_curves`). The result is
written (``--write-model``) as ``portrait_calibration.json`` into the model folder, where
:meth:`engine.portrait.animator.PortraitAnimator.from_pretrained` finds it; its notes record the intensities
before and after and their spread across emotions. About 10 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.errors import MoEEError
from engine.moee import GateControl
from engine.portrait.animator import PortraitAnimator, PreparedPortrait, TransferConfig
from engine.portrait.calibration import PORTRAIT_CALIBRATION_FILE, PORTRAIT_KNOTS, PortraitCalibration
from engine.portrait.motion import MotionModel
from engine.portrait.performance import LifeConfig
from engine.portrait.rig import LM68_FROM_MP478, MESH_ROWS

#: Identity seeds of the synthetic calibration people.
SYNTHETIC_SEEDS: tuple[int, ...] = (1, 2, 3)
#: Side (px) at which the synthetic people are drawn.
SYNTHETIC_SIZE = 384
#: A still face: no blinks, head motion or gaze, so only the expression moves the landmarks.
STILL_LIFE = LifeConfig(blinks_per_minute=0.0, head_motion=0.0, gaze=0.0)
#: Rows of the 68 landmarks in a rig's control points.
LANDMARK_ROWS = np.array([MESH_ROWS[i] for i in LM68_FROM_MP478])
#: Share of the fit the real photo (the astronaut) carries; the synthetic people share the rest. They are
#: alike (one drawing style) and respond less to happiness and sadness than a real face does.
REAL_PORTRAIT_SHARE = 0.5
#: Slider values at which the calibration is checked (reported as the spread across emotions).
CHECK_SLIDERS: tuple[float, ...] = (0.5, 1.0)


def calibration_portraits(seeds: Sequence[int] = SYNTHETIC_SEEDS, size: int = SYNTHETIC_SIZE) -> dict[str, np.ndarray]:
    """The portraits the calibration is fitted on: the astronaut and synthetic people (RGB arrays)."""
    from skimage import data

    from training.synthetic.identities import Identity
    from training.synthetic.renderer import FaceRenderer

    portraits = {"astronaut": data.astronaut()}
    for seed in seeds:
        portraits[f"synthetic-{seed}"] = FaceRenderer(Identity.from_seed(seed), size).render()[0]
    return portraits


def portrait_weights(names: Sequence[str]) -> np.ndarray:
    """Weight of each calibration portrait in the fit: :data:`REAL_PORTRAIT_SHARE` for the astronaut, the rest
    shared by the synthetic people (equal weights when only one kind is there)."""
    real = np.array([not name.startswith("synthetic-") for name in names])
    if real.all() or not real.any():
        return np.full(len(names), 1.0 / len(names))
    return np.where(real, REAL_PORTRAIT_SHARE / real.sum(), (1.0 - REAL_PORTRAIT_SHARE) / (~real).sum())


def expression_intensity(animator: PortraitAnimator, prepared: PreparedPortrait, weights: np.ndarray,
                         neutral: np.ndarray | None = None) -> float:
    """Mean distance (face units) of the frame's 68 landmark control targets from the neutral frame's.

    ``weights``: the sliders (E,); ``neutral``: the neutral frame's control targets if already known.
    """
    rig = prepared.rig
    if neutral is None:
        neutral = animator.control_targets(prepared, GateControl(np.zeros(len(animator.emotions), np.float32)), 0)
    moved = animator.control_targets(prepared, GateControl(np.asarray(weights, np.float32)), 0)
    distance = np.linalg.norm(moved[LANDMARK_ROWS] - neutral[LANDMARK_ROWS], axis=1)
    return float(distance.mean() / rig.face_unit_px)


def measure_intensities(animator: PortraitAnimator, prepared: PreparedPortrait,
                        sliders: Sequence[float] = PORTRAIT_KNOTS) -> np.ndarray:
    """Intensity ``(E, K)`` of each emotion alone at each slider value (the animator's calibration as set)."""
    emotions = len(animator.emotions)
    neutral = animator.control_targets(prepared, GateControl(np.zeros(emotions, np.float32)), 0)
    out = np.zeros((emotions, len(sliders)))
    for e in range(emotions):
        for k, value in enumerate(sliders):
            weights = np.zeros(emotions, np.float32)
            weights[e] = value
            out[e, k] = 0.0 if value == 0 else expression_intensity(animator, prepared, weights, neutral)
    return out


def spread(intensities: np.ndarray) -> float:
    """Largest over smallest intensity across emotions minus 1 (0: all equal), per column then the worst."""
    values = np.asarray(intensities, np.float64)
    return float(np.max(values.max(0) / np.maximum(values.min(0), 1e-12)) - 1.0)


def fit_curves(intensities: np.ndarray, knots: Sequence[float] = PORTRAIT_KNOTS) -> tuple[np.ndarray, float]:
    """Curves ``(E, K)`` slider -> gate from the mean intensities ``(E, K)`` at gates ``knots``, and ``I_full``.

    ``I_e`` is made non-decreasing (running maximum) and inverted by linear interpolation at the targets
    ``w_k * I_full``, ``I_full = min_e I_e(1)``; ``c(0) = 0`` and the curves never decrease.
    """
    grid = np.asarray(knots, np.float64)
    response = np.maximum.accumulate(np.asarray(intensities, np.float64), axis=1)
    full = float(response[:, -1].min())
    if full <= 0:
        raise MoEEError("an emotion does not move the face at all at slider 1: nothing to calibrate against")
    curves = np.zeros_like(response)
    for e, row in enumerate(response):
        ramp = row + np.arange(len(row)) * 1e-9  # np.interp needs increasing x
        curves[e] = np.interp(grid * full, ramp, grid, left=0.0, right=1.0)
    curves[:, 0] = 0.0
    return np.maximum.accumulate(np.clip(curves, 0.0, 1.0), axis=1), full


def calibrate(model_dir: str | Path | None = None, seeds: Sequence[int] = SYNTHETIC_SEEDS,
              size: int = SYNTHETIC_SIZE, knots: Sequence[float] = PORTRAIT_KNOTS) -> PortraitCalibration:
    """Measure the model's uncalibrated intensities on the calibration portraits and fit the curves.

    The notes record per portrait the intensities at :data:`CHECK_SLIDERS` before and after, and the
    spread across emotions.
    """
    from engine.io.resources import DEFAULT_MODEL_DIR

    start = time.perf_counter()
    folder = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
    # the motion model alone: a refit must not need (or trust) the folder's present calibration
    animator = PortraitAnimator(MotionModel.load(folder, calibration=False), TransferConfig(slider_calibration=False))
    emotions = animator.emotions
    prepared = {name: animator.prepare(image, life=STILL_LIFE)
                for name, image in calibration_portraits(seeds, size).items()}
    before = {name: measure_intensities(animator, p, knots) for name, p in prepared.items()}
    curves, full = fit_curves(np.average(list(before.values()), axis=0, weights=portrait_weights(list(before))),
                              knots)
    calibration = PortraitCalibration(tuple(float(k) for k in knots),
                                      {name: tuple(float(v) for v in curve) for name, curve in zip(emotions, curves,
                                                                                                  strict=True)})
    animator.calibration = calibration
    animator.cfg = TransferConfig()
    check = [knots.index(v) for v in CHECK_SLIDERS] if all(v in knots for v in CHECK_SLIDERS) else []
    after = {name: measure_intensities(animator, p, CHECK_SLIDERS) for name, p in prepared.items()}

    def table(values: np.ndarray) -> dict[str, list[float]]:
        return {emotion: [round(float(v), 4) for v in row] for emotion, row in zip(emotions, values, strict=True)}

    notes = {
        "command": "moee calibrate-portrait",
        "model": folder.name,
        "measure": "mean distance of the frame's 68 landmark control targets from the neutral frame's (face units)",
        "portraits": list(prepared),
        "synthetic_size": size,
        "full_intensity": round(full, 5),
        "sliders_checked": list(CHECK_SLIDERS),
        "before": {name: table(values[:, check]) for name, values in before.items()} if check else {},
        "after": {name: table(values) for name, values in after.items()},
        "spread_before": {name: round(spread(values[:, check]), 4) for name, values in before.items()} if check else {},
        "spread_after": {name: round(spread(values), 4) for name, values in after.items()},
        "seconds": round(time.perf_counter() - start, 1),
    }
    return PortraitCalibration(calibration.knots, calibration.curves, notes)


def add_calibrate_portrait_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``moee calibrate-portrait``."""
    parser.add_argument("--model", default=None, help="model folder with a motion model (default: the bundled one)")
    parser.add_argument("--write-model", action="store_true",
                        help=f"store the curves in the model folder ({PORTRAIT_CALIBRATION_FILE})")
    parser.add_argument("--out", default=None, help="also write the calibration here (JSON)")
    parser.add_argument("--synthetic", type=int, default=len(SYNTHETIC_SEEDS),
                        help="synthetic people to fit on besides the astronaut")
    parser.add_argument("--size", type=int, default=SYNTHETIC_SIZE, help="side (px) of the synthetic people")


def run_calibrate_portrait(args: argparse.Namespace) -> int:
    """Run ``moee calibrate-portrait``; returns the exit code."""
    from engine.io.resources import DEFAULT_MODEL_DIR

    try:
        if args.synthetic < 0 or args.size < 128:
            raise MoEEError("--synthetic must be 0 or more and --size at least 128 px")
        calibration = calibrate(args.model, tuple(range(1, args.synthetic + 1)), args.size)
        if args.out:
            calibration.save(args.out)
        if args.write_model:
            calibration.save(Path(args.model or DEFAULT_MODEL_DIR) / PORTRAIT_CALIBRATION_FILE)
    except MoEEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(calibration.to_json(), indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.portrait_calibrate", description=__doc__.splitlines()[0])
    add_calibrate_portrait_arguments(parser)
    return run_calibrate_portrait(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
