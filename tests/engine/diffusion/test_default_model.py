"""The bundled default model: what `make demo` and the studio load out of the box."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from engine.diffusion.calibration import check_curves
from engine.diffusion.config import get_config
from engine.diffusion.pipeline import Animator
from engine.io.resources import DEFAULT_MODEL_DIR
from engine.moee import GateControl

REPO = Path(__file__).resolve().parents[3]
PORTRAIT, SPEECH = REPO / "assets" / "demo" / "portrait.png", REPO / "assets" / "demo" / "speech.wav"
RECOGNISER_DIRS = [REPO / "assets" / "models" / name for name in ("recognizer", "recognizer_compound")]
SIZE_LIMIT_MB = 40  # model + recognisers, as the issue asks


def test_the_default_model_is_small_fp16_safetensors_with_its_evaluation():
    files = [*DEFAULT_MODEL_DIR.iterdir(), *(f for folder in RECOGNISER_DIRS for f in folder.iterdir())]
    assert sum(f.stat().st_size for f in files) < SIZE_LIMIT_MB * 2**20
    with safe_open(str(DEFAULT_MODEL_DIR / "model.safetensors"), "pt") as weights:
        dtypes = {str(weights.get_slice(k).get_dtype()) for k in weights.keys()}  # noqa: SIM118 - not a dict
    assert dtypes == {"F16"}
    meta = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert meta["notes"]["trained"] is True
    assert {"single_emotion_accuracy", "ssim", "lipsync_corr", "compound_top2"} <= set(meta["notes"]["eval"])
    assert meta["notes"]["compound_recognizer"].endswith("recognizer_compound")
    # shipped with the sampling it was evaluated with, which a fresh `demo` model also gets, except
    # for the slider calibration and its mix curves, which were measured on these weights (moee calibrate)
    shipped = dict(meta["config"]["sampling"])
    measured = ("calibration", "mix_calibration")
    for name in measured:
        check_curves(shipped.pop(name))
    assert shipped == {k: v for k, v in asdict(get_config("demo").sampling).items() if k not in measured}
    assert meta["notes"]["calibration"]["identities"] and "calibrate" in meta["notes"]["calibration"]["command"]


@pytest.fixture(scope="module")
def animator() -> Animator:
    return Animator.from_pretrained(DEFAULT_MODEL_DIR, device="cpu")


def test_the_default_model_renders_the_demo_portrait(animator):
    prepared = animator.prepare(PORTRAIT, SPEECH)
    size = animator.cfg.image_size
    neutral = animator.render_frame(prepared, 10, GateControl([0.0] * 6), steps=4)
    angry = animator.render_frame(prepared, 10, GateControl([0, 0, 1.0, 0, 0, 0]), steps=4)
    assert neutral.shape == angry.shape == (size, size, 3)
    assert np.abs(neutral.astype(int) - angry.astype(int)).mean() > 0.5  # the anger slider changes the face
