"""``moee calibrate-portrait``: fit the portrait path's slider calibration (engine.portrait.calibration).

For every emotion ``e`` and gate ``g`` of :data:`engine.portrait.calibration.PORTRAIT_KNOTS`, on each
calibration portrait (the astronaut of ``skimage.data`` and a few people of the synthetic renderer, drawn
at :data:`SYNTHETIC_SIZE` px; never user portraits), the default renderer sets up the frame with gate ``g``
of ``e`` alone (calibration off, no blinks, head motion or gaze, silent) and :func:`expression_intensity`
measures how far the frame's 68 landmark control targets lie from the neutral frame's, in face units:
the geometry that the mesh warp draws, not the motion model's own numbers.

Averaged over the portraits (the real photo weighing as much as the synthetic people together; for the ``own``
target each portrait's ``I_e(g) / I_e(1)``, the shape of its response) this gives ``I_e(g)``. The curve is ``c_e(w) = I_e^{-1}(w * I_e^full)`` (:func:`fit_curves`), with the full-strength
travel ``I_e^full`` chosen by the target (:data:`TARGETS`):

* ``own`` (default): each emotion's own ``I_e(1)``. Gate 1 stays at slider 1 (the perceptually tuned full
  strength, where "equally strong across emotions" is judged, by the expression gains), and in between the
  travel is the same straight line *in shape* for every emotion: slider 0.5 moves the face half as far as
  that emotion's slider 1.
* ``weakest``: the weakest emotion's ``I_e(1)`` for every emotion, so equal sliders move every emotion's
  face equally far; this cuts the strong emotions' gates at slider 1 (surprise's to about 0.3), which the
  appearance reader no longer recognises (docs/PORTRAIT.md).

The result is written (``--write-model``) as ``portrait_calibration.json`` into the model folder, where
:meth:`engine.portrait.animator.PortraitAnimator.from_pretrained` finds it; its notes record the target, the
travel before and after at :data:`CHECK_SLIDERS` and its spread across emotions (:func:`shape_spread` for
``own``, :func:`spread` for ``weakest``). About 5 s on 2 CPU cores.
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
#: Slider values at which the calibration is checked (reported as the spread across emotions); the last is 1.
CHECK_SLIDERS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
#: Full-strength travel the curves aim at: each emotion's own at slider 1, or the weakest emotion's.
TARGET_OWN = "own"
TARGET_WEAKEST = "weakest"
TARGETS: tuple[str, ...] = (TARGET_OWN, TARGET_WEAKEST)


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


def response_shape(intensities: np.ndarray) -> np.ndarray:
    """Each emotion's intensities ``(E, K)`` as shares of its own at the last column (slider 1)."""
    values = np.asarray(intensities, np.float64)
    return values / np.maximum(values[:, -1:], 1e-12)


def shape_spread(intensities: np.ndarray) -> float:
    """:func:`spread` of :func:`response_shape` over the columns before the last (slider 1), whose shares are 1
    by construction: 0 when every emotion reaches the same share of its own full travel at each slider."""
    return spread(response_shape(intensities)[:, :-1])


def linearity_error(intensities: np.ndarray, sliders: Sequence[float]) -> float:
    """Worst relative distance of :func:`response_shape` from the straight line ``s`` at the sliders before
    the last (0: every emotion's travel is exactly ``s`` times its own full travel)."""
    grid = np.asarray(sliders, np.float64)[:-1]
    return float(np.max(np.abs(response_shape(intensities)[:, :-1] / grid - 1.0)))


def fit_curves(intensities: np.ndarray, knots: Sequence[float] = PORTRAIT_KNOTS,
               target: str = TARGET_OWN) -> tuple[np.ndarray, np.ndarray]:
    """Curves ``(E, K)`` slider -> gate from the mean intensities ``(E, K)`` at gates ``knots``, and the
    full-strength travel ``I_e^full`` ``(E,)`` they aim at.

    ``I_e`` is made non-decreasing (running maximum) and inverted by linear interpolation at the targets
    ``w_k * I_e^full``: ``I_e^full = I_e(1)`` for ``target="own"`` (each curve then ends at gate 1),
    ``min_e I_e(1)`` for ``"weakest"``; ``c(0) = 0`` and the curves never decrease.
    """
    if target not in TARGETS:
        raise MoEEError(f"unknown calibration target {target!r}; choose one of {', '.join(TARGETS)}")
    grid = np.asarray(knots, np.float64)
    response = np.maximum.accumulate(np.asarray(intensities, np.float64), axis=1)
    if response[:, -1].min() <= 0:
        raise MoEEError("an emotion does not move the face at all at slider 1: nothing to calibrate against")
    full = response[:, -1] if target == TARGET_OWN else np.full(len(response), response[:, -1].min())
    curves = np.zeros_like(response)
    for e, row in enumerate(response):
        ramp = row + np.arange(len(row)) * 1e-9  # np.interp needs increasing x
        curves[e] = np.interp(grid * full[e], ramp, grid, left=0.0, right=1.0)
    curves[:, 0] = 0.0
    if target == TARGET_OWN:
        curves[:, -1] = 1.0  # a flat end of the response must not pull the full strength below gate 1
    return np.maximum.accumulate(np.clip(curves, 0.0, 1.0), axis=1), full


def calibrate(model_dir: str | Path | None = None, seeds: Sequence[int] = SYNTHETIC_SEEDS,
              size: int = SYNTHETIC_SIZE, knots: Sequence[float] = PORTRAIT_KNOTS,
              target: str = TARGET_OWN) -> PortraitCalibration:
    """Measure the model's uncalibrated intensities on the calibration portraits and fit the curves.

    The notes record per portrait the intensities at :data:`CHECK_SLIDERS` before and after, and their
    spread across emotions: of the shape (:func:`shape_spread`) for ``target="own"``, of the travel itself
    (:func:`spread`) for ``"weakest"``.
    """
    from engine.io.resources import DEFAULT_MODEL_DIR

    if target not in TARGETS:
        raise MoEEError(f"unknown calibration target {target!r}; choose one of {', '.join(TARGETS)}")
    start = time.perf_counter()
    folder = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
    # the motion model alone: a refit must not need (or trust) the folder's present calibration
    animator = PortraitAnimator(MotionModel.load(folder, calibration=False), TransferConfig(slider_calibration=False))
    emotions = animator.emotions
    prepared = {name: animator.prepare(image, life=STILL_LIFE)
                for name, image in calibration_portraits(seeds, size).items()}
    before = {name: measure_intensities(animator, p, knots) for name, p in prepared.items()}
    # "own" aims at a share of each face's own full travel, so each face's response counts by its shape
    # (a face that moves farther does not weigh more); "weakest" aims at one travel for all, so it averages travel
    responses = [response_shape(v) if target == TARGET_OWN else v for v in before.values()]
    curves, _ = fit_curves(np.average(responses, axis=0, weights=portrait_weights(list(before))), knots, target)
    full = np.average([v[:, -1] for v in before.values()], axis=0, weights=portrait_weights(list(before)))
    calibration = PortraitCalibration(tuple(float(k) for k in knots),
                                      {name: tuple(float(v) for v in curve) for name, curve in zip(emotions, curves,
                                                                                                  strict=True)})
    animator.calibration = calibration
    animator.cfg = TransferConfig(slider_calibration=True)
    check = [list(knots).index(v) for v in CHECK_SLIDERS] if all(v in knots for v in CHECK_SLIDERS) else []
    after = {name: measure_intensities(animator, p, CHECK_SLIDERS) for name, p in prepared.items()}
    measure_spread = shape_spread if target == TARGET_OWN else spread

    def table(values: np.ndarray) -> dict[str, list[float]]:
        return {emotion: [round(float(v), 4) for v in row] for emotion, row in zip(emotions, values, strict=True)}

    notes = {
        "command": f"moee calibrate-portrait --target {target}",
        "model": folder.name,
        "target": target,
        "measure": "mean distance of the frame's 68 landmark control targets from the neutral frame's (face units)",
        "portraits": list(prepared),
        "synthetic_size": size,
        "full_intensity": {emotion: round(float(v), 5) for emotion, v in zip(emotions, full, strict=True)},
        "sliders_checked": list(CHECK_SLIDERS),
        "spread": "of each emotion's travel as a share of its own at slider 1" if target == TARGET_OWN
                  else "of the travel across emotions",
        "before": {name: table(values[:, check]) for name, values in before.items()} if check else {},
        "after": {name: table(values) for name, values in after.items()},
        "spread_before": ({name: round(measure_spread(values[:, check]), 4) for name, values in before.items()}
                          if check else {}),
        "spread_after": {name: round(measure_spread(values), 4) for name, values in after.items()},
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
    parser.add_argument("--target", choices=TARGETS, default=TARGET_OWN,
                        help="full-strength travel the curves aim at: each emotion's own at slider 1 (default: "
                             "the same linear shape, gate 1 kept at slider 1) or the weakest emotion's (equal "
                             "travel across emotions, strong emotions cut)")


def run_calibrate_portrait(args: argparse.Namespace) -> int:
    """Run ``moee calibrate-portrait``; returns the exit code."""
    from engine.io.resources import DEFAULT_MODEL_DIR

    try:
        if args.synthetic < 0 or args.size < 128:
            raise MoEEError("--synthetic must be 0 or more and --size at least 128 px")
        calibration = calibrate(args.model, tuple(range(1, args.synthetic + 1)), args.size,
                                target=args.target)
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
