"""No render flag is silently ignored: a flag the chosen renderer does not read is refused, naming it,
before anything loads (issue 26); the flags each renderer reads are listed once in engine/cli.py."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from PIL import Image

from engine.cli import PIXEL_ONLY_FLAGS, PORTRAIT_ONLY_FLAGS, build_parser, main

#: A valid value for each flag (what a user might type).
VALUES = {"--steps": "8", "--sampler": "ddim", "--guidance": "3", "--strength": "0.5", "--lip-guidance": "2",
          "--keep-background": "yes", "--calibration": "off", "--crop": "face", "--paste-back": "no",
          "--blinks": "10",
          "--head-motion": "0.5", "--gaze": "2"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flags")
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(folder / "face.png")
    soundfile.write(folder / "speech.wav", np.zeros(8000, np.float32), 16000)
    return folder


def test_the_tables_name_real_flags() -> None:
    render = build_parser([])._subparsers._group_actions[0].choices["render"]
    known = {option for action in render._actions for option in action.option_strings}
    assert set(PIXEL_ONLY_FLAGS.values()) | set(PORTRAIT_ONLY_FLAGS.values()) <= known
    assert set(VALUES) == set(PIXEL_ONLY_FLAGS.values()) | set(PORTRAIT_ONLY_FLAGS.values())


@pytest.mark.parametrize("flag", sorted(PIXEL_ONLY_FLAGS.values()))
def test_a_pixel_flag_on_the_portrait_renderer_is_refused(inputs, capsys, flag) -> None:
    out = inputs / "out.mp4"
    code = main(["render", str(inputs / "face.png"), str(inputs / "speech.wav"), "-o", str(out), flag, VALUES[flag]])
    assert code == 2 and flag in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("flag", sorted(PORTRAIT_ONLY_FLAGS.values()))
def test_a_portrait_flag_on_the_pixel_renderer_is_refused(inputs, capsys, flag) -> None:
    out = inputs / "out.mp4"
    code = main(["render", str(inputs / "face.png"), str(inputs / "speech.wav"), "-o", str(out), "--frame", "crop",
                 flag, VALUES[flag]])
    assert code == 2 and flag in capsys.readouterr().err and not out.exists()


def test_a_gpu_device_on_the_portrait_renderer_is_refused(inputs, capsys) -> None:
    out = inputs / "out.mp4"
    assert main(["render", str(inputs / "face.png"), str(inputs / "speech.wav"), "-o", str(out),
                 "--device", "cuda"]) == 2
    assert "--device cuda" in capsys.readouterr().err and not out.exists()
