"""One animator contract (issue 26, item 4): both renderers implement engine.animator.Animator, take their
options by keyword only, refuse unknown ones, say what they can do in Capabilities, and are built by one
function with one fallback rule; ``--renderer portrait|pixel`` (``--frame crop`` still works, with a note)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from engine import animator as contract
from engine.animator import Animator, CancelToken, FrameResult, load_animator
from engine.errors import EmotionSpecError
from engine.moee import GateControl


def test_both_renderers_satisfy_the_protocol(portrait, pixel) -> None:
    assert isinstance(portrait, Animator) and isinstance(pixel, Animator)
    assert portrait.renderer == "portrait" and pixel.renderer == "pixel"
    assert portrait.capabilities is contract.PORTRAIT_CAPABILITIES
    assert pixel.capabilities is contract.PIXEL_CAPABILITIES
    assert {"life", "full_resolution"} <= portrait.capabilities.names()
    assert {"sampling", "gate_maps", "device"} <= pixel.capabilities.names()
    assert not {"sampling", "gate_maps", "device"} & portrait.capabilities.names()


def test_one_cancel_token_and_frame_result() -> None:
    from engine.diffusion import pipeline
    from engine.portrait import animator as portrait
    from studio import engine_api

    assert pipeline.CancelToken is CancelToken is engine_api.CancelToken
    assert pipeline.FrameResult is FrameResult is portrait.PortraitFrame


def test_options_are_keyword_only(portrait, pixel, still) -> None:
    with pytest.raises(TypeError):
        portrait.prepare(data.astronaut(), None, 25)  # was fps here, num_frames in the pixel model
    with pytest.raises(TypeError):
        pixel.prepare(data.astronaut(), None, 4)
    with pytest.raises(TypeError):
        portrait.render_frame(still, 0, None, None)  # was cancel here, steps in the pixel model
    with pytest.raises(TypeError):
        list(portrait.render_clip(still, None, 0, 1))


def test_unknown_keywords_are_refused(portrait, still) -> None:
    with pytest.raises(TypeError, match="stepz"):
        portrait.render_frame(still, 0, None, stepz=3)
    with pytest.raises(TypeError, match="windw"):
        list(portrait.render_clip(still, None, windw=3))
    # the portrait renderer has no sampling: the sampling vocabulary is refused too, saying so; cancel works
    with pytest.raises(TypeError, match="'steps'.*no sampling"):
        portrait.render_frame(still, 0, None, steps=4)
    frame = portrait.render_frame(still, 0, GateControl(np.zeros(6, np.float32)), cancel=CancelToken())
    assert frame.shape == still.portrait.shape


def test_range_checks_are_shared(portrait, still) -> None:
    with pytest.raises(EmotionSpecError, match="outside the clip"):
        portrait.render_frame(still, 5)
    with pytest.raises(EmotionSpecError, match="outside the clip"):
        list(portrait.render_clip(still, start=0, stop=3))


def test_one_fallback_rule_for_a_folder_without_motion_model(tmp_path) -> None:
    notes: list[str] = []
    animator = load_animator(tmp_path, "portrait", note=notes.append)
    assert animator.renderer == "portrait" and notes and "bundled" in notes[0]
    with pytest.raises(EmotionSpecError, match="CPU"):
        load_animator(None, "portrait", device="cuda")
    with pytest.raises(EmotionSpecError, match="unknown renderer"):
        load_animator(None, "crop")


def test_cli_tables_come_from_the_capabilities() -> None:
    from engine.cli import PIXEL_ONLY_FLAGS, PORTRAIT_ONLY_FLAGS

    assert {"--steps", "--sampler", "--guidance", "--crop", "--calibration"} <= set(PIXEL_ONLY_FLAGS.values())
    assert set(PORTRAIT_ONLY_FLAGS.values()) == {"--blinks", "--head-motion", "--gaze"}


def test_renderer_flag_and_the_deprecated_frame_alias(capsys) -> None:
    from engine.cli import build_parser

    parser = build_parser([])
    base = ["render", "face.png", "speech.wav", "-o", "out.mp4"]
    assert parser.parse_args(base).renderer == "portrait"
    assert parser.parse_args([*base, "--renderer", "pixel"]).renderer == "pixel"
    assert "deprecated" not in capsys.readouterr().err
    assert parser.parse_args([*base, "--frame", "crop"]).renderer == "pixel"
    assert "--frame crop is deprecated; use --renderer pixel" in capsys.readouterr().err
    assert parser.parse_args([*base, "--frame", "portrait"]).renderer == "portrait"
    assert parser.parse_args(["bench"]).renderer is None  # bench: pixel unless --portrait is given
    assert parser.parse_args(["bench", "--frame", "crop"]).renderer == "pixel"


def test_renderer_pixel_refuses_portrait_flags_by_either_name(tmp_path, capsys) -> None:
    from engine.cli import main

    for flags in (["--renderer", "pixel"], ["--frame", "crop"]):
        code = main(["render", "face.png", "speech.wav", "-o", str(tmp_path / "out.mp4"), *flags, "--blinks", "3"])
        assert code == 2 and "--blinks" in capsys.readouterr().err


def test_studio_asks_the_flags(portrait, pixel) -> None:
    from studio import engine_api

    assert engine_api.can(portrait, "life") and not engine_api.can(portrait, "sampling")
    assert engine_api.can(pixel, "sampling") and engine_api.can(pixel, "gate_maps")
    assert engine_api.sampling_options(portrait, steps=4, seed=1) == {}
    assert engine_api.sampling_options(pixel, steps=4, seed=1) == {"steps": 4, "seed": 1}
    assert engine_api.gate_maps(portrait) is None
    assert engine_api.is_portrait_animator(portrait) and not engine_api.is_portrait_animator(pixel)
    assert engine_api.can(object(), "sampling") is False  # outside the contract: no capabilities
