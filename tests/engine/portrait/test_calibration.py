"""The portrait path's slider calibration (issue 26 item 3): equal sliders, equally strong expressions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from skimage import data

from engine.errors import CheckpointError
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
    STILL_LIFE,
    fit_curves,
    measure_intensities,
    spread,
)

#: Largest spread of the intensities across emotions allowed on the astronaut after calibration.
CALIBRATED_SPREAD = 0.16


@pytest.fixture(scope="module")
def astronaut_measured() -> tuple[np.ndarray, np.ndarray]:
    """Intensities (E, 2) at sliders 0.5 and 1 on the astronaut: (uncalibrated, with the bundled calibration)."""
    animator = PortraitAnimator.from_pretrained(cfg=TransferConfig(slider_calibration=True))
    assert animator.calibration is not None, f"the bundled model has no {PORTRAIT_CALIBRATION_FILE}"
    prepared = animator.prepare(data.astronaut(), life=STILL_LIFE)
    after = measure_intensities(animator, prepared, CHECK_SLIDERS)
    animator.cfg = TransferConfig(slider_calibration=False)
    before = measure_intensities(animator, prepared, CHECK_SLIDERS)
    return before, after


def test_bundled_calibration_equalises_the_emotions_on_the_astronaut(astronaut_measured) -> None:
    before, after = astronaut_measured
    assert spread(before) > 1.0  # surprise moved the face almost three times as far as happiness
    for k, slider in enumerate(CHECK_SLIDERS):
        assert spread(after[:, k : k + 1]) <= CALIBRATED_SPREAD, (slider, after[:, k])
    # linear in the slider: slider 0.5 gives about half of slider 1
    np.testing.assert_allclose(after[:, 0] / after[:, 1], 0.5, atol=0.06)


def test_bundled_curves_are_monotone_and_map_zero_to_zero() -> None:
    calibration = load_portrait_calibration(DEFAULT_MODEL_DIR)
    assert calibration is not None and not calibration.problems()
    for name, curve in calibration.curves.items():
        assert curve[0] == 0.0 and np.all(np.diff(curve) >= 0) and max(curve) <= 1.0, name
        assert calibration.gate(name, 0.0) == 0.0


def test_fit_inverts_the_response_to_a_common_linear_target() -> None:
    knots = (0.0, 0.5, 1.0)
    intensities = np.array([[0.0, 1.0, 2.0], [0.0, 2.0, 4.0], [0.0, 3.0, 3.0]])
    curves, full = fit_curves(intensities, knots)
    assert full == 2.0
    np.testing.assert_allclose(curves, [[0.0, 0.5, 1.0], [0.0, 0.25, 0.5], [0.0, 1 / 6, 1 / 3]])


def test_calibration_off_switch_and_custom_emotions_pass_through() -> None:
    calibration = PortraitCalibration((0.0, 1.0), {"surprise": (0.0, 0.5)})
    weights = np.array([[1.0, 1.0]], np.float32)
    np.testing.assert_allclose(calibration.apply(weights, ("surprise", "smug")), [[0.5, 1.0]])
    animator = PortraitAnimator.from_pretrained(cfg=TransferConfig(slider_calibration=False))
    sliders = np.full(len(animator.emotions), 0.5, np.float32)
    np.testing.assert_array_equal(animator._weights(GateControl(sliders)), sliders)
    animator.cfg = TransferConfig(slider_calibration=True)
    assert np.all(animator._weights(GateControl(sliders)) <= sliders + 1e-6)


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
