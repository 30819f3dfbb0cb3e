"""The portrait path's slider calibration (issue 26 item 3): each emotion keeps its tuned full strength at
slider 1 and its landmark travel is the same straight line in the slider for every emotion."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from skimage import data

from engine.errors import CheckpointError, MoEEError
from engine.io.resources import DEFAULT_MODEL_DIR
from engine.moee import GateControl
from engine.portrait.animator import PortraitAnimator, TransferConfig
from engine.portrait.calibration import (
    PORTRAIT_CALIBRATION_FILE,
    PortraitCalibration,
    load_portrait_calibration,
)
from training.portrait_calibrate import (
    CHECK_SLIDERS,
    LANDMARK_ROWS,
    STILL_LIFE,
    TARGET_OWN,
    TARGET_WEAKEST,
    fit_curves,
    linearity_error,
    main,
    measure_intensities,
    shape_spread,
)

#: Largest spread across emotions of the travel as a share of each emotion's own at slider 1, on the
#: astronaut with the bundled curves (uncalibrated: happiness runs ahead, about 0.18).
CALIBRATED_SHAPE_SPREAD = 0.10
#: Largest relative distance of any emotion's share from the straight line (the slider) on the astronaut.
CALIBRATED_LINEARITY = 0.08
#: Smallest share of each part's own motion a 0.5 / 0.5 mix of two emotions carries.
COMPOUND_PART_SHARE = 0.5


@pytest.fixture(scope="module")
def animator() -> PortraitAnimator:
    """The default portrait animator (the bundled model and its calibration, as a user gets it)."""
    return PortraitAnimator.from_pretrained()


@pytest.fixture(scope="module")
def astronaut(animator: PortraitAnimator):
    return animator.prepare(data.astronaut(), life=STILL_LIFE)


@pytest.fixture(scope="module")
def astronaut_measured(animator: PortraitAnimator, astronaut) -> tuple[np.ndarray, np.ndarray]:
    """Intensities (E, 4) at CHECK_SLIDERS on the astronaut: (uncalibrated, with the bundled calibration)."""
    assert animator.calibration is not None, f"the bundled model has no {PORTRAIT_CALIBRATION_FILE}"
    after = measure_intensities(animator, astronaut, CHECK_SLIDERS)
    animator.cfg = TransferConfig(slider_calibration=False)
    try:
        before = measure_intensities(animator, astronaut, CHECK_SLIDERS)
    finally:
        animator.cfg = TransferConfig()
    return before, after


def test_calibration_is_on_by_default() -> None:
    assert TransferConfig().slider_calibration
    assert PortraitAnimator.from_pretrained().calibration is not None


def test_bundled_calibration_keeps_full_strength_and_makes_the_response_one_line(astronaut_measured) -> None:
    before, after = astronaut_measured
    assert CHECK_SLIDERS[-1] == 1.0
    # gate 1 at slider 1: each emotion's tuned full strength is untouched
    np.testing.assert_allclose(after[:, -1], before[:, -1], rtol=1e-6)
    # in between, each emotion moves the same share of its own full travel, and that share is the slider
    # (after a change of the expression gains: refit with `moee calibrate-portrait --write-model`)
    shares = after / after[:, -1:]
    assert shape_spread(after) <= CALIBRATED_SHAPE_SPREAD, f"refit the curves? shares: {shares}"
    assert linearity_error(after, CHECK_SLIDERS) <= CALIBRATED_LINEARITY, f"refit the curves? shares: {shares}"


def test_bundled_curves_are_monotone_map_zero_to_zero_and_one_to_one() -> None:
    calibration = load_portrait_calibration(DEFAULT_MODEL_DIR)
    assert calibration is not None and not calibration.problems()
    assert calibration.notes["target"] == TARGET_OWN
    for name, curve in calibration.curves.items():
        assert curve[0] == 0.0 and np.all(np.diff(curve) >= 0) and curve[-1] == 1.0, name
        assert calibration.gate(name, 0.0) == 0.0 and calibration.gate(name, 1.0) == 1.0


def test_a_mix_at_half_strength_still_shows_both_parts(animator: PortraitAnimator, astronaut) -> None:
    emotions = animator.emotions

    def motion(levels: dict[str, float]) -> np.ndarray:
        weights = np.zeros(len(emotions), np.float32)
        for name, level in levels.items():
            weights[emotions.index(name)] = level
        return animator.control_targets(astronaut, GateControl(weights), 0)[LANDMARK_ROWS].ravel()

    neutral = motion({})
    for first, second in (("happiness", "surprise"), ("sadness", "anger")):
        parts = np.stack([motion({first: 0.5}) - neutral, motion({second: 0.5}) - neutral], axis=1)
        shares = np.linalg.lstsq(parts, motion({first: 0.5, second: 0.5}) - neutral, rcond=None)[0]
        assert np.all(shares >= COMPOUND_PART_SHARE), (first, second, shares)


def test_fit_own_target_inverts_each_response_to_its_own_line() -> None:
    knots = (0.0, 0.5, 1.0)
    intensities = np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 4.0], [0.0, 3.0, 3.0]])
    curves, full = fit_curves(intensities, knots, TARGET_OWN)
    np.testing.assert_allclose(full, [2.0, 4.0, 3.0])
    # a linear response stays; one running ahead is slowed; a flat end still reaches gate 1 at slider 1
    np.testing.assert_allclose(curves, [[0.0, 0.5, 1.0], [0.0, 1 / 3, 1.0], [0.0, 0.25, 1.0]])


def test_fit_weakest_target_inverts_the_response_to_a_common_line() -> None:
    knots = (0.0, 0.5, 1.0)
    intensities = np.array([[0.0, 1.0, 2.0], [0.0, 2.0, 4.0], [0.0, 3.0, 3.0]])
    curves, full = fit_curves(intensities, knots, TARGET_WEAKEST)
    np.testing.assert_allclose(full, 2.0)
    np.testing.assert_allclose(curves, [[0.0, 0.5, 1.0], [0.0, 0.25, 0.5], [0.0, 1 / 6, 1 / 3]])
    with pytest.raises(MoEEError, match="unknown calibration target 'loudest'"):
        fit_curves(intensities, knots, "loudest")


def test_calibrate_portrait_command_writes_a_model_calibration(tmp_path, capsys) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for name in ("motion.json", "motion.safetensors"):
        shutil.copyfile(DEFAULT_MODEL_DIR / name, model / name)
    assert main(["--model", str(model), "--synthetic", "0", "--write-model"]) == 0
    printed = json.loads(capsys.readouterr().out)
    calibration = PortraitAnimator.from_pretrained(model).calibration
    assert calibration is not None and calibration.to_json() == printed
    assert calibration.notes["portraits"] == ["astronaut"] and calibration.notes["target"] == TARGET_OWN
    assert all(curve[-1] == 1.0 for curve in calibration.curves.values())
    assert main(["--model", str(model), "--synthetic", "-1"]) == 2
    assert "--synthetic must be 0 or more" in capsys.readouterr().err


def test_calibration_off_switch_and_custom_emotions_pass_through() -> None:
    calibration = PortraitCalibration((0.0, 1.0), {"surprise": (0.0, 0.5)})
    weights = np.array([[1.0, 1.0]], np.float32)
    np.testing.assert_allclose(calibration.apply(weights, ("surprise", "smug")), [[0.5, 1.0]])
    animator = PortraitAnimator.from_pretrained(cfg=TransferConfig(slider_calibration=False))
    sliders = np.full(len(animator.emotions), 0.5, np.float32)
    np.testing.assert_array_equal(animator._weights(GateControl(sliders)), sliders)
    animator.cfg = TransferConfig(slider_calibration=True)
    assert not np.array_equal(animator._weights(GateControl(sliders)), sliders)
    np.testing.assert_array_equal(animator._weights(GateControl(np.ones_like(sliders))), 1.0)


@pytest.mark.parametrize(("content", "says"), [
    ("not json", "not a readable"),
    (json.dumps({"format_version": 1, "knots": [0, 1]}), "'curves'"),
    (json.dumps({"format_version": 1, "knots": [0, 1], "curves": {"fear": [0, 0.8, 0.9]}}), "one per knot"),
    (json.dumps({"format_version": 1, "knots": [0, 1], "curves": {"fear": [0.9, 0.5]}}), "slider 0 to gate 0"),
    (json.dumps({"format_version": 1, "knots": [0, 0.5, 1], "curves": {"fear": [0, 0.8, 0.5]}}), "not decrease"),
    (json.dumps({"format_version": 1, "knots": [0, 1], "curves": {"fear": [0, 3]}}), "within 0..1"),
])
def test_a_bad_calibration_file_is_refused_naming_it(tmp_path, content: str, says: str) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for name in ("motion.json", "motion.safetensors"):
        shutil.copyfile(DEFAULT_MODEL_DIR / name, model / name)
    (model / PORTRAIT_CALIBRATION_FILE).write_text(content)
    with pytest.raises(CheckpointError, match=says) as info:
        PortraitAnimator.from_pretrained(model)
    assert str(model / PORTRAIT_CALIBRATION_FILE) in str(info.value)
