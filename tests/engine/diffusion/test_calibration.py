"""Slider calibration: each slider value reaches the U-Net as the gate that shows that intensity."""

import json

import numpy as np
import pytest
import torch

from engine.diffusion.calibration import (
    CALIBRATION_KNOTS,
    calibrate_weights,
    check_curves,
    fit_response_curve,
    mixing_degree,
    read_calibration,
)
from engine.diffusion.checkpoint import load_model, save_model, update_sampling_defaults
from engine.diffusion.config import SamplingConfig
from engine.diffusion.pipeline import Animator
from engine.errors import CheckpointError, EmotionSpecError, MoEEError
from engine.moee import GateControl
from tests.engine.diffusion.test_pipeline import PORTRAIT, SPEECH
from tests.engine_helpers import tiny_model

KNOTS = np.asarray(CALIBRATION_KNOTS)
#: anger 2x too weak at half, sadness needs only a quarter, the rest as they are
CURVES = [list(KNOTS), [0, 0.1, 0.25, 0.6, 1], [0, 0.5, 1, 1, 1], *[list(KNOTS)] * 3]


def test_a_model_that_shows_what_the_truth_shows_keeps_its_sliders() -> None:
    assert fit_response_curve(KNOTS, KNOTS) == pytest.approx(list(KNOTS))
    assert fit_response_curve(0.2 + 0.5 * KNOTS, 0.2 + 0.5 * KNOTS) == pytest.approx(list(KNOTS))


def test_a_weak_emotion_gets_a_larger_gate_a_strong_one_a_smaller_gate() -> None:
    truth = KNOTS.copy()
    weak = fit_response_curve(KNOTS**2, truth)  # shows w^2 at gate w: needs sqrt(w)
    strong = fit_response_curve(np.sqrt(KNOTS), truth)  # shows sqrt(w): needs w^2
    assert weak[2] > 0.6 and strong[2] < 0.35
    for curve in (weak, strong):
        assert curve[0] == 0.0 and curve[-1] == 1.0 and np.all(np.diff(curve) >= 0)


def test_responses_the_model_cannot_reach_pin_to_the_ends() -> None:
    # already reads 0.6 when neutral and never passes 0.7; the truth goes 0 -> 1
    curve = fit_response_curve([0.6, 0.62, 0.65, 0.7, 0.7], KNOTS)
    assert curve[1] == 0.0 and curve[2] == pytest.approx(0.25 * (0.5 - 0.0) / 1.0, abs=0.2)
    assert curve[3] == 1.0 and np.all(np.diff(curve) >= 0)
    # a noisy, non-monotonic measurement still gives a non-decreasing curve
    assert np.all(np.diff(fit_response_curve([0, 0.5, 0.3, 0.8, 1.0], KNOTS)) >= 0)


def test_weights_follow_the_curves_and_custom_experts_pass_through() -> None:
    weights = np.array([[0.5, 0.5, 0.5, 0, 0, 0.25, 0.7], [1, 0.125, 0.25, 0, 0, 0, 0]], np.float32)
    gates = calibrate_weights(weights, CURVES)
    assert gates[0].tolist() == pytest.approx([0.5, 0.25, 1.0, 0, 0, 0.25, 0.7])  # 7th: a custom expert
    assert gates[1].tolist() == pytest.approx([1, 0.05, 0.5, 0, 0, 0, 0])
    assert calibrate_weights(weights, None).tolist() == weights.tolist()


@pytest.mark.parametrize("bad", [[[0, 0.5, 1]], [[0, 0.5, 0.4, 0.8, 1]], [[0, 0.5, 0.7, 0.9, 1.4]],
                                 [[0, float("nan"), 0.5, 0.7, 1]]])
def test_bad_curves_are_refused_clearly(bad) -> None:
    with pytest.raises(EmotionSpecError, match="calibration curve 0"):
        check_curves(bad)
    with pytest.raises(EmotionSpecError):
        SamplingConfig(calibration=bad)


def test_unreadable_calibration_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "curves.json"
    path.write_text("{not json")
    with pytest.raises(EmotionSpecError, match="not a slider calibration file"):
        read_calibration(path)
    path.write_text(json.dumps({"curves": CURVES}))
    assert read_calibration(path)[0][2] == [0, 0.5, 1, 1, 1]


def test_the_unet_is_given_the_calibrated_gate(tmp_path) -> None:
    """Slider 0.5 on anger reaches the U-Net (gates and emotion tokens' label) as the curve's 1.0."""
    model = tiny_model()
    model.cfg.sampling.calibration = CURVES
    animator = Animator(model, device="cpu")
    prepared = animator.prepare(PORTRAIT, SPEECH)
    seen, labels = [], []
    hook = model.denoiser.register_forward_hook(lambda _m, args, _o: seen.append(args[5].global_weights.clone()))
    label_hook = model.denoiser.emotion_latents.register_forward_hook(
        lambda _m, args, _o: labels.append(args[0].clone()))
    try:
        calibrated = animator.render_frame(prepared, 0, GateControl([0, 0.5, 0.5, 0, 0, 0]), steps=2, guidance_scale=1)
        assert seen[0][0].tolist() == pytest.approx([0, 0.25, 1.0, 0, 0, 0])
        assert labels[0][0].tolist() == pytest.approx([0, 0.25, 1.0, 0, 0, 0])
        model.cfg.sampling.calibration = None
        seen.clear()
        plain = animator.render_frame(prepared, 0, GateControl([0, 0.5, 0.5, 0, 0, 0]), steps=2, guidance_scale=1)
        assert seen[0][0].tolist() == pytest.approx([0, 0.5, 0.5, 0, 0, 0])
        assert not np.array_equal(calibrated, plain)
    finally:
        hook.remove()
        label_hook.remove()


def test_calibration_is_saved_with_the_model_and_updated_in_place(tmp_path) -> None:
    model = tiny_model()
    model.cfg.sampling.calibration = CURVES
    save_model(model, tmp_path / "m")
    assert load_model(tmp_path / "m").cfg.sampling.calibration == CURVES
    weights_before = (tmp_path / "m" / "model.safetensors").read_bytes()
    update_sampling_defaults(tmp_path / "m", calibration=None, guidance_scale=4.0)
    reloaded = load_model(tmp_path / "m")
    assert reloaded.cfg.sampling.calibration is None and reloaded.cfg.sampling.guidance_scale == 4.0
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == weights_before
    config_before = (tmp_path / "m" / "config.json").read_text()
    with pytest.raises(EmotionSpecError):
        update_sampling_defaults(tmp_path / "m", calibration=[[0, 1]])
    assert (tmp_path / "m" / "config.json").read_text() == config_before  # a refused update loses nothing
    broken = json.loads(config_before)
    broken["config"]["sampling"]["calibration"] = [[0, 0.9, 0.5, 1, 1]] * 6  # edited by hand: decreasing
    (tmp_path / "m" / "config.json").write_text(json.dumps(broken))
    with pytest.raises(CheckpointError, match="invalid model configuration.*must not decrease"):
        load_model(tmp_path / "m")


def test_moee_calibrate_end_to_end(tmp_path, capsys) -> None:
    """Measure on the training people of a small synthetic set, fit, write JSON and the model; eval reads it."""
    import argparse

    from training import calibrate, evaluate
    from training.synthetic import generate_dataset

    torch.manual_seed(0)
    save_model(tiny_model(), tmp_path / "model")
    generate_dataset(tmp_path / "data", identities=3, intensities=(1.0,), emotions=("neutral",), clip_seconds=0.2,
                     size=32, seed=1, progress=False)
    parser = argparse.ArgumentParser()
    calibrate.add_calibrate_arguments(parser)
    args = parser.parse_args(["--model", str(tmp_path / "model"), "--data", str(tmp_path / "data"), "--identities", "1",
                              "--steps", "2", "--out", str(tmp_path / "curves.json"), "--write-model", "--threads", "1",
                              "--guidance", "3", "--mixes", "--mix-identities", "1",
                              "--mix-grid", "1,0.5"])
    assert calibrate.run_calibrate(args) == 0
    result = json.loads((tmp_path / "curves.json").read_text())
    check_curves(result["mix_curves"])
    assert result["mix_gate_grid"] == [0.5, 1.0] and 0 <= result["mix_top2_train"] <= 1
    assert all(v in (0.5, 1.0) for v in result["mix_knots"])
    assert [curve[2] for curve in result["mix_curves"]] == result["mix_knots"]
    assert len(result["mix_top2_train_by_pair"]) == 15 and 0 <= result["mix_top2_train_uncalibrated"] <= 1
    readings = np.asarray(result["mix_readings"])  # kept, so the fit can be redone without re-measuring
    assert readings.shape == (1, 15, 2, 2, 6)
    assert calibrate.fit_mix_knots(readings, (0.5, 1.0))[0] == result["mix_knots"]
    assert np.asarray(result["generated_response"]).shape == (6, len(KNOTS))
    assert result["target_response"][0][-1] > result["target_response"][0][0]  # the truth's happiness rises
    check_curves(result["curves"])
    calibrated = load_model(tmp_path / "model")
    assert calibrated.cfg.sampling.calibration == result["curves"]
    assert calibrated.cfg.sampling.mix_calibration == result["mix_curves"]
    assert calibrated.cfg.sampling.guidance_scale == 3.0  # stored with the sampling it was measured with
    assert calibrated.notes["calibration"]["identities"] == result["identities"]  # how the curves were found
    assert calibrated.notes["calibration"]["command"] == result["command"] and "mix_readings" not in calibrated.notes["calibration"]
    assert json.loads(capsys.readouterr().out)["curves"] == result["curves"]

    parser = argparse.ArgumentParser()
    evaluate.add_eval_arguments(parser)
    sampling = load_model(tmp_path / "model").cfg.sampling
    off = evaluate.sampling_with_overrides(sampling, parser.parse_args(["--model", "m", "--calibration", "off"]))
    from_file = evaluate.sampling_with_overrides(
        SamplingConfig(), parser.parse_args(["--model", "m", "--calibration", str(tmp_path / "curves.json")]))
    assert off.calibration is None and off.mix_calibration is None
    assert from_file.calibration == result["curves"] and from_file.mix_calibration == result["mix_curves"]


def test_moee_calibrate_needs_training_people(tmp_path, capsys) -> None:
    import argparse

    from training import calibrate

    save_model(tiny_model(), tmp_path / "model")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "index.json").write_text(json.dumps({"version": 1, "clips": []}))
    parser = argparse.ArgumentParser()
    calibrate.add_calibrate_arguments(parser)
    args = parser.parse_args(["--model", str(tmp_path / "model"), "--data", str(tmp_path / "empty")])
    assert calibrate.run_calibrate(args) == 2
    assert "no neutral clips" in capsys.readouterr().err
    with pytest.raises(MoEEError, match="within 0..1"):
        calibrate.parse_gate_grid("0.5,1.5")
    with pytest.raises(MoEEError, match="comma-separated"):
        calibrate.parse_gate_grid("0.5;1")
    assert calibrate.parse_gate_grid("1, 0.5,0.5") == (0.5, 1.0)


MIX_CURVES = [[0, 0.1, 0.2, 0.6, 1], *[list(KNOTS)] * 5]  # happiness drowns the other emotion in a mix


def test_mix_curves_set_the_gates_of_even_mixes_and_leave_single_sliders_alone() -> None:
    single = np.array([[0.5, 0, 0, 0, 0, 0], [0.8, 0, 0, 0, 0, 0]], np.float32)
    assert np.allclose(calibrate_weights(single, CURVES, mix_curves=MIX_CURVES), calibrate_weights(single, CURVES))
    even = np.array([[0.5, 0, 0.5, 0, 0, 0]], np.float32)
    assert calibrate_weights(even, CURVES, mix_curves=MIX_CURVES)[0].tolist() == pytest.approx([0.2, 0, 0.5, 0, 0, 0])
    # no single curves: the slider is the gate until a second emotion comes in
    assert np.allclose(calibrate_weights(single, None, mix_curves=MIX_CURVES), single)
    # a second slider coming in moves the gates continuously
    nudged = calibrate_weights(np.array([[0.5, 0.01, 0, 0, 0, 0]], np.float32), CURVES, mix_curves=MIX_CURVES)
    assert abs(nudged[0, 0] - calibrate_weights(single, CURVES)[0, 0]) < 0.02
    assert mixing_degree(np.array([[0.6, 0.3, 0.1], [0, 0, 0], [0.4, 0.4, 0]])).tolist() == pytest.approx([0.5, 0, 1])
    # a custom expert slot (7th) passes through and does not count towards the mix
    with_custom = np.array([[0.5, 0, 0, 0, 0, 0, 0.5]], np.float32)
    assert np.allclose(calibrate_weights(with_custom, CURVES, mix_curves=MIX_CURVES),
                       calibrate_weights(with_custom, CURVES))


def test_mix_curves_are_read_validated_and_saved(tmp_path) -> None:
    path = tmp_path / "curves.json"
    path.write_text(json.dumps({"curves": CURVES, "mix_curves": MIX_CURVES}))
    assert read_calibration(path) == (CURVES, MIX_CURVES)
    path.write_text(json.dumps({"curves": CURVES}))
    assert read_calibration(path) == (CURVES, None)
    path.write_text(json.dumps({"curves": CURVES, "mix_curves": [[0, 0.9, 0.5, 1, 1]]}))
    with pytest.raises(EmotionSpecError, match="must not decrease"):
        read_calibration(path)
    with pytest.raises(EmotionSpecError):
        SamplingConfig(mix_calibration=[[0, 1]])
    model = tiny_model()
    model.cfg.sampling.calibration, model.cfg.sampling.mix_calibration = CURVES, MIX_CURVES
    save_model(model, tmp_path / "m")
    assert load_model(tmp_path / "m").cfg.sampling.mix_calibration == MIX_CURVES


def test_an_even_mix_reaches_the_unet_through_the_mix_curves() -> None:
    model = tiny_model()
    model.cfg.sampling.calibration, model.cfg.sampling.mix_calibration = CURVES, MIX_CURVES
    animator = Animator(model, device="cpu")
    prepared = animator.prepare(PORTRAIT, SPEECH)
    seen = []
    hook = model.denoiser.register_forward_hook(lambda _m, args, _o: seen.append(args[5].global_weights.clone()))
    try:
        animator.render_frame(prepared, 0, GateControl([0.5, 0, 0.5, 0, 0, 0]), steps=1, guidance_scale=1)
    finally:
        hook.remove()
    assert seen[0][0].tolist() == pytest.approx([0.2, 0, 0.5, 0, 0, 0])


def test_fit_mix_knots_finds_the_gates_that_show_both_emotions() -> None:
    """A made-up model: emotion 0 shows 3x as strongly as the others; a mix reads each gate x strength."""
    from training.calibrate import MIX_GATE_GRID, emotion_pairs, fit_mix_knots, mix_curves_from_knots

    grid = np.asarray(MIX_GATE_GRID)
    strength = np.array([3.0, 1, 1, 1, 1, 1])
    pairs = emotion_pairs(6)
    readings = np.zeros((2, len(pairs), len(grid), len(grid), 6), np.float32)
    rng = np.random.default_rng(0)
    for k, (a, b) in enumerate(pairs):
        readings[:, k, :, :, a] = strength[a] * grid[:, None]
        readings[:, k, :, :, b] = strength[b] * grid[None, :]
        readings[:, k, :, :, [e for e in range(6) if e not in (a, b)][0]] = 0.9  # a stray third emotion
    readings += rng.uniform(0, 0.01, readings.shape).astype(np.float32)
    knots, hits = fit_mix_knots(readings)
    assert hits == 1.0
    assert knots[0] < min(knots[1:])  # the strong emotion is turned down in mixes
    assert all(3 * knots[0] > 0.9 and k > 0.9 for k in knots[1:])  # each emotion beats the stray one
    curves = mix_curves_from_knots(CURVES, knots)
    check_curves(curves)
    assert [c[2] for c in curves] == knots and curves[0][-1] == 1.0
