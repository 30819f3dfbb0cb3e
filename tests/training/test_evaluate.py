"""Evaluation metrics on known inputs, the recogniser's shapes, and generation on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training import evaluate, metrics
from training.recognizer import INPUT_SIZE, Recognizer, predict

torch.set_num_threads(1)


def test_ssim_psnr_identical_and_different() -> None:
    rng = np.random.default_rng(0)
    img = np.repeat(np.linspace(0, 255, 32)[None, :, None], 32, axis=0).repeat(3, axis=2).astype(np.uint8)
    assert metrics.ssim(img, img) == pytest.approx(1.0)
    assert metrics.psnr(img, img) == float("inf")
    noisy = np.clip(img.astype(int) + rng.integers(-40, 40, img.shape), 0, 255).astype(np.uint8)
    assert metrics.ssim(img, noisy) < 0.95
    assert 10 < metrics.psnr(img, noisy) < 30


def test_akd_and_the_two_stability_measures() -> None:
    pts = np.random.default_rng(1).random((5, 68, 2)) * 100
    assert metrics.akd(pts, pts) == 0.0
    assert metrics.akd(pts + np.array([3.0, 4.0]), pts) == pytest.approx(5.0)
    linear = np.stack([np.full((68, 2), float(i)) for i in range(6)])
    assert metrics.temporal_jitter(linear) == pytest.approx(0.0)  # moving evenly: no jitter ...
    assert metrics.landmark_spread(linear) > 1.0  # ... but far from still
    shaky = linear.copy()
    shaky[::2] += 1.0
    assert metrics.temporal_jitter(shaky) > 1.0
    still = np.repeat(pts[:1], 4, axis=0)
    assert metrics.landmark_spread(still) == 0.0 and metrics.temporal_jitter(still) == 0.0
    wobble = still.copy()
    wobble[1::2] += np.array([0.0, 2.0])  # one coordinate alternates by 2 px: std 1 px on y, 0 on x
    assert metrics.landmark_spread(wobble) == pytest.approx(0.5)


def test_monotonicity_detector_and_spearman() -> None:
    assert metrics.is_monotonic([0.0, 0.1, 0.1, 0.5, 0.9])
    assert metrics.is_monotonic([0.0, 0.2, 0.19, 0.5])  # within tolerance
    assert not metrics.is_monotonic([0.0, 0.5, 0.2, 0.9])
    assert metrics.spearman([0, 1, 2, 3], [0.1, 0.2, 0.4, 0.8]) == pytest.approx(1.0)
    assert metrics.spearman([0, 1, 2, 3], [0.8, 0.4, 0.2, 0.1]) == pytest.approx(-1.0)


def test_top2_and_mouth_opening() -> None:
    scores = np.array([0.9, 0.1, 0.0, 0.0, 0.0, 0.8])  # happiness, surprise
    assert metrics.top2_match(scores, {"happiness": 0.5, "surprise": 0.5})
    assert not metrics.top2_match(scores, {"happiness": 0.5, "anger": 0.5})
    lm = np.zeros((68, 2))
    lm[[61, 62, 63], 1] = 10.0
    lm[[65, 66, 67], 1] = 14.0
    assert metrics.mouth_opening(lm) == pytest.approx(4.0)
    assert metrics.pearson(np.arange(5), 2 * np.arange(5) + 1) == pytest.approx(1.0)


def test_recognizer_shapes() -> None:
    model = Recognizer()
    frames = np.zeros((3, 128, 128, 3), np.uint8)
    out = predict(model, frames)
    assert out["emotion"].shape == (3, 6) and out["aus"].shape == (3, 13)
    assert out["landmarks"].shape == (3, 68, 2)
    assert np.all((out["emotion"] >= 0) & (out["emotion"] <= 1))
    assert model(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE))["landmarks"].shape == (1, 68, 2)


def test_generate_tiny_and_local_masks() -> None:
    from engine.diffusion.config import tiny_config
    from engine.diffusion.model import MoEEModel
    from engine.io.audio import window_length

    torch.manual_seed(0)
    model = MoEEModel(tiny_config()).eval()
    with torch.no_grad():
        for layer in model.denoiser.moe_layers:
            for expert in layer.experts:
                expert.to_out.weight.normal_(0, 0.5)
    size = model.cfg.image_size
    ref = np.full((size, size, 3), 100, np.uint8)
    windows = np.zeros((2, window_length(model.cfg.fps, model.cfg.audio), model.cfg.audio.n_mels), np.float32)
    labels = np.zeros((2, 6), np.float32)
    labels[1, 2] = 1.0
    frames = evaluate.generate(model, ref, windows, labels, steps=2, seed=0)
    assert frames.shape == (2, 2, size, size, 3) and frames.dtype == np.uint8
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).max() > 0
    again = evaluate.generate(model, ref, windows, labels, steps=2, seed=0)
    assert np.array_equal(frames, again)
    masks = np.zeros((2, 6, size, size), np.float32)
    masks[1, 2, : size // 4] = 1.0
    local = evaluate.generate(model, ref, windows, labels, steps=2, seed=0, local_masks=masks)
    assert local.shape == frames.shape


def test_is_neutral() -> None:
    assert metrics.is_neutral(np.array([0.1, 0.05, 0.05, 0.0, 0.0, 0.0]))
    assert not metrics.is_neutral(np.array([0.6, 0.05, 0.05, 0.0, 0.0, 0.0]))


def eval_args(*flags: str):
    import argparse

    parser = argparse.ArgumentParser()
    evaluate.add_eval_arguments(parser)
    return parser.parse_args(["--model", "m", *flags])


def test_sampling_flags_override_the_model_and_leave_it_unchanged() -> None:
    from engine.diffusion.config import SamplingConfig

    model_sampling = SamplingConfig(guidance_scale=10.0, audio_guidance_scale=5.0)
    sampling = evaluate.sampling_with_overrides(
        model_sampling, eval_args("--guidance", "9", "--guidance-min-t", "0.5", "--keep-background", "yes"))
    assert (sampling.guidance_scale, sampling.guidance_min_t, sampling.keep_background) == (9.0, 0.5, True)
    assert sampling.audio_guidance_scale == 5.0  # not given: the model's
    assert model_sampling.guidance_scale == 10.0 and model_sampling.keep_background is False


@pytest.mark.parametrize("flags, message", [
    (("--guidance", "-1"), "--guidance must be a finite number >= 0"),
    (("--audio-guidance", "nan"), "--audio-guidance must be a finite number >= 0"),
    (("--guidance-min-t", "1.5"), "--guidance-min-t must be a fraction of the schedule"),
    (("--strength", "-0.2"), "--strength must be a fraction of the schedule"),
])
def test_bad_sampling_flags_are_named_in_the_error(flags, message) -> None:
    from engine.diffusion.config import SamplingConfig
    from engine.errors import EmotionSpecError

    with pytest.raises(EmotionSpecError, match=message):
        evaluate.sampling_with_overrides(SamplingConfig(), eval_args(*flags))


def test_moee_eval_end_to_end_with_sampling_overrides(tmp_path, capsys) -> None:
    """``moee eval`` on a tiny model: fresh held-out people, every metric, ceilings, packaging."""
    import json

    from engine.diffusion.checkpoint import load_model, save_model
    from engine.diffusion.config import tiny_config
    from engine.diffusion.model import MoEEModel

    torch.manual_seed(0)
    save_model(MoEEModel(tiny_config()), tmp_path / "model", notes={"trained": False})
    # curves fitted elsewhere (e.g. on an earlier model), as `moee calibrate --out` writes them
    curves = [[0.0, 0.2, 0.5, 0.8, 1.0]] * 6
    calibration_file = tmp_path / "calibration.json"
    calibration_file.write_text(json.dumps({"curves": curves, "command": "moee calibrate --model earlier",
                                            "identities": ["p1"], "mix_readings": [[0.5]]}))
    parser = __import__("argparse").ArgumentParser()
    evaluate.add_eval_arguments(parser)
    args = parser.parse_args(["--model", str(tmp_path / "model"), "--identities", "1", "--frames", "3",
                              "--steps", "2", "--guidance", "2", "--mouth-guidance", "0", "--audio-guidance", "2",
                              "--audio-guidance-max-t", "0.5", "--calibration", str(calibration_file), "--json",
                              "--package-to", str(tmp_path / "packaged"), "--threads", "1"])
    assert evaluate.run_eval(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sampling"]["guidance_scale"] == 2.0 and result["sampling"]["mouth_guidance_scale"] == 0.0
    assert result["sampling"]["audio_guidance_scale"] == 2.0 and result["sampling"]["audio_guidance_max_t"] == 0.5
    assert result["compound_recognizer"].endswith("recognizer_compound")  # the bundled one, by default
    metrics = result["metrics"]
    assert metrics["identities"] == 1 and metrics["frames_per_clip"] == 3
    for key in ("single_emotion_accuracy", "compound_top2", "intensity_monotonic", "ssim", "identity_top1",
                "ceiling_compound_top2_ground_truth", "ceiling_intensity_monotonic_ground_truth",
                "compound_top2_classifier", "compound_top2_aus", "ceiling_compound_top2_ground_truth_aus"):
        assert 0.0 <= metrics[key] <= 1.0, key
    for key in ("lipsync_corr_ground_truth", "lipsync_corr_ground_truth_recognizer", "ceiling_vae_lipsync_corr"):
        assert metrics[key] is None or -1.0 <= metrics[key] <= 1.0, key
    packaged = load_model(tmp_path / "packaged")
    assert packaged.cfg.sampling.guidance_scale == 2.0 and packaged.cfg.sampling.mouth_guidance_scale == 0.0
    assert packaged.cfg.sampling.audio_guidance_scale == 2.0
    assert packaged.notes["eval"]["compound_top2"] == metrics["compound_top2"]
    # packaged with the curves it was evaluated with, and the notes say where they were fitted
    assert packaged.cfg.sampling.calibration == curves
    assert packaged.notes["calibration"] == {"command": "moee calibrate --model earlier", "identities": ["p1"],
                                             "file": str(calibration_file)}


def test_recognizer_trains_on_autoencoder_round_trips(tmp_path) -> None:
    """``--autoencoder``: part of every batch comes back from the model's VAE; held-out round trips reported."""
    import json

    from engine.diffusion.checkpoint import save_model
    from engine.diffusion.config import tiny_config
    from engine.diffusion.model import MoEEModel
    from training.recognizer import load_recognizer, train_recognizer
    from training.synthetic import generate_dataset

    generate_dataset(tmp_path / "data", identities=4, emotions=("neutral", "anger"), intensities=(1.0,),
                     clip_seconds=0.2, size=32, seed=3, use_espeak=False, progress=False)
    torch.manual_seed(0)
    save_model(MoEEModel(tiny_config()), tmp_path / "model", notes={})
    metrics = train_recognizer(tmp_path / "data", tmp_path / "rec", steps=3, batch=4, seed=1, frame_size=32,
                               autoencoder=tmp_path / "model", autoencoder_frames=6)
    assert set(metrics["autoencoder_round_trip"]) >= {"emotion_accuracy", "landmark_error_px"}
    info = json.loads((tmp_path / "rec" / "recognizer.json").read_text())
    assert info["autoencoder"]["fraction"] == 0.5
    assert "metrics_heldout_autoencoder_round_trip" in info
    load_recognizer(tmp_path / "rec")
    with pytest.raises(ValueError, match="--frame-size 32"):
        train_recognizer(tmp_path / "data", tmp_path / "rec2", steps=1, batch=2, frame_size=64,
                         autoencoder=tmp_path / "model")


def test_emotion_distribution_reads_intensity() -> None:
    from training.recognizer import emotion_distribution

    weights = np.array([[0, 0, 1.0, 0, 0, 0], [0.5, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0.8, 0.8, 0, 0, 0, 0]])
    dist = emotion_distribution(weights)
    assert dist.shape == (4, 7) and np.allclose(dist.sum(axis=1), 1.0)
    assert np.allclose(dist[0], [0, 0, 0, 1, 0, 0, 0])  # full intensity: the one-hot class target
    assert np.allclose(dist[1], [0.5, 0.5, 0, 0, 0, 0, 0])  # half intensity: half neutral
    assert np.allclose(dist[2], [1, 0, 0, 0, 0, 0, 0])
    assert np.allclose(dist[3], [0, 0.5, 0.5, 0, 0, 0, 0])  # over-full mixes are renormalised


def test_emotions_are_read_from_aus_by_the_prototypes() -> None:
    """The AU route reads every compound preset, rendered as the AU union, with the two mixed emotions on top."""
    from engine.emotions import COMPOUND_PRESETS
    from training.recognizer import emotion_from_aus, nonnegative_least_squares
    from training.synthetic import aus_to_vector, emotion_to_aus

    for mix in COMPOUND_PRESETS.values():
        read = emotion_from_aus(aus_to_vector(emotion_to_aus(mix)))
        assert read.shape == (6,) and read.min() >= 0.0
        assert metrics.top2_match(read, mix), mix
    single = emotion_from_aus(np.stack([aus_to_vector(emotion_to_aus({"anger": w})) for w in (0.25, 1.0)]))
    assert np.allclose(single[:, 2], [0.25, 1.0], atol=1e-5) and np.allclose(np.delete(single, 2, axis=1), 0)
    basis = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert np.allclose(nonnegative_least_squares(basis, np.array([2.0, -1.0, 1.0])), [1.5, 0.0])  # w2 held at 0


def test_recognizer_learns_aus_from_au_varied_frames(tmp_path) -> None:
    """``au_frames``: AU-varied frames of the train people join training (no emotion label); reading reported."""
    import json

    from training.recognizer import train_recognizer
    from training.synthetic import generate_dataset

    generate_dataset(tmp_path / "data", identities=4, emotions=("neutral", "anger"), intensities=(1.0,),
                     clip_seconds=0.2, size=32, seed=3, use_espeak=False, progress=False)
    torch.manual_seed(0)
    metrics = train_recognizer(tmp_path / "data", tmp_path / "rec", steps=3, batch=4, seed=1, frame_size=32,
                               au_frames=8)
    reading = metrics["au_varied"]
    assert 0.0 <= reading["au_mae"] <= 1.0 and 0.0 <= metrics["compound"]["compound_top2_from_aus"] <= 1.0
    info = json.loads((tmp_path / "rec" / "recognizer.json").read_text())
    assert info["au_frames"] == 8 and "metrics_heldout_au_varied" in info


def test_recognizer_trains_its_emotion_head_on_labelled_mix_frames(tmp_path) -> None:
    """``mix_frames``: labelled one/two-emotion stills join training; the held-out compound reading is reported."""
    import json

    from training.recognizer import mixed_emotion_truth, train_recognizer
    from training.synthetic import generate_dataset

    generate_dataset(tmp_path / "data", identities=4, emotions=("neutral", "anger"), intensities=(1.0,),
                     clip_seconds=0.2, size=32, seed=3, use_espeak=False, progress=False)
    stills = mixed_emotion_truth(tmp_path / "data", "train", 6, size=16, seed=2)
    assert stills["frames"].shape == (6, 16, 16, 3) and not np.isnan(stills["emotion"]).any()
    assert stills["landmarks"].max() <= 16  # scaled with the frames
    torch.manual_seed(0)
    metrics = train_recognizer(tmp_path / "data", tmp_path / "rec", steps=3, batch=4, seed=1, frame_size=32,
                               mix_frames=8)
    assert set(metrics["compound"]) == {"compound_top2_from_classifier", "compound_top2_from_aus"}
    assert all(0.0 <= v <= 1.0 for v in metrics["compound"].values())
    info = json.loads((tmp_path / "rec" / "recognizer.json").read_text())
    assert info["mix_frames"] == 8 and "metrics_heldout_compound" in info


@pytest.mark.parametrize("setting, value", [("guidance_scale", -2.0), ("mouth_guidance_scale", float("inf")),
                                            ("strength", 0.0), ("audio_guidance_max_t", 1.5),
                                            ("guidance_min_t", "half")])
def test_a_hand_edited_config_with_a_bad_sampling_value_is_refused_on_load(tmp_path, setting, value) -> None:
    """A model folder whose config.json holds an impossible sampling value fails at load, naming the
    file and the setting, instead of at the first render."""
    import json

    from engine.diffusion.checkpoint import load_model, save_model
    from engine.diffusion.config import tiny_config
    from engine.diffusion.model import MoEEModel
    from engine.errors import CheckpointError

    torch.manual_seed(0)
    save_model(MoEEModel(tiny_config()), tmp_path / "model")
    config_file = tmp_path / "model" / "config.json"
    data = json.loads(config_file.read_text())
    data["config"]["sampling"][setting] = value
    config_file.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=f"config.json .*{setting} must"):
        load_model(tmp_path / "model")
