"""Hostile inputs, part 2 (issue 30): ``moee render`` on the default (portrait) path, ``moee eval-portraits``
and ``moee bench``. Each case asserts the exit code, a message that names the problem, and that no file that
existed before changed (content hashes of the whole folder, before and after).

Tiny inputs only; a case that must not reach the model load runs against a model folder without weights.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.cli import main
from tests import test_bad_inputs
from tests.test_bad_inputs import ASSETS, snapshot

world = test_bad_inputs.world  # the fixture: inputs, a weightless model folder, a user's folder, our frames

EVAL = "eval-portraits"


def _pics(world: Path) -> Path:
    """A folder of portraits, as ``eval-portraits`` reads it."""
    pics = world / "pics"
    pics.mkdir(exist_ok=True)
    (pics / "astro.png").write_bytes((ASSETS / "portrait.png").read_bytes())
    return pics


def _symlink(world: Path, name: str, target: Path) -> None:
    (world / name).symlink_to(target)


def _hardlink(world: Path, name: str, target: Path) -> None:
    os.link(target, world / name)


def _mask_gif(world: Path) -> None:
    (world / "in.gif").write_bytes(b"GIF89a")


def _portrait_render(world: Path, *extra: str, output: str = "out.mp4", portrait: str = "portrait.png",
                     audio: str = "speech.wav") -> list[str]:
    """``moee render`` on the default (portrait) path, against the weightless model folder."""
    return ["render", str(world / portrait), str(world / audio), "-o", output, "--model", str(world / "model"), *extra]


# (id, setup, argv builder, what the message must say)
Case = tuple[str, Callable[[Path], object], Callable[[Path], list[str]], str]

OVERWRITE_CASES: list[Case] = [
    ("eval-json-is-a-portrait", _pics, lambda w: [EVAL, "pics", "--json", "pics/astro.png"],
     "--json pics/astro.png is one of the inputs: the portrait"),
    ("eval-sheet-is-a-portrait", _pics, lambda w: [EVAL, "pics", "--sheet", "pics/astro.png"],
     "--sheet pics/astro.png is one of the inputs"),
    ("eval-sheet-is-the-folder", _pics, lambda w: [EVAL, "pics", "--sheet", "pics"],
     "--sheet pics is one of the inputs: the portrait folder"),
    ("eval-json-symlink-to-portrait", lambda w: (_pics(w), _symlink(w, "r.json", w / "pics" / "astro.png")),
     lambda w: [EVAL, "pics", "--json", "r.json"], "is one of the inputs"),
    ("eval-json-hardlink-to-portrait", lambda w: (_pics(w), _hardlink(w, "r.json", w / "pics" / "astro.png")),
     lambda w: [EVAL, "pics", "--json", "r.json"], "(the same file)"),
    ("eval-json-is-one-image", _pics, lambda w: [EVAL, "pics/astro.png", "--json", "pics/astro.png"],
     "is one of the inputs"),
    ("eval-json-is-the-audio", _pics, lambda w: [EVAL, "pics", "--audio", "speech.wav", "--json", "speech.wav"],
     "is one of the inputs: the --audio clip"),
    ("eval-sheet-is-model-config", _pics,
     lambda w: [EVAL, "pics", "--model", "model", "--sheet", "model/config.json"], "the model folder"),
    ("render-overwrite-our-frames-holding-the-portrait", lambda w: None,
     lambda w: _portrait_render(w, "--overwrite", portrait="ours/frame_00000.png", output="ours"),
     "-o ours contains one of the inputs: the portrait"),
    ("render-overwrite-our-frames-via-a-symlink", lambda w: _symlink(w, "link", w / "ours"),
     lambda w: _portrait_render(w, "--overwrite", portrait="link/frame_00000.png", output="ours"),
     "-o ours contains one of the inputs"),
    ("render-frames-dir-holds-the-mask", lambda w: None,
     lambda w: _portrait_render(w, "--mask", "ours/frame_00000.png", "--mask-emotion", "anger", "--frames-dir",
                                "ours", "--overwrite"), "--frames-dir ours contains one of the inputs: the --mask"),
    ("render-output-is-in-the-model-folder", lambda w: (w / "model" / "clip.gif").write_bytes(b"GIF89a"),
     lambda w: _portrait_render(w, output="model/clip.gif"), "is one of the inputs: the model folder (clip.gif)"),
    ("render-output-symlink-to-mask", lambda w: (_mask_gif(w), _symlink(w, "sym.gif", w / "in.gif")),
     lambda w: _portrait_render(w, "--mask", "in.gif", "--mask-emotion", "anger", output="sym.gif"),
     "-o sym.gif is one of the inputs: the --mask"),
    ("render-output-hardlink-to-mask", lambda w: (_mask_gif(w), _hardlink(w, "link.gif", w / "in.gif")),
     lambda w: _portrait_render(w, "--mask", "in.gif", "--mask-emotion", "anger", output="link.gif"),
     "(the same file)"),
    ("render-output-is-an-expert-pack", _mask_gif,
     lambda w: _portrait_render(w, "--expert", "in.gif", output="in.gif"), "the --expert pack"),
    ("render-output-is-the-calibration", _mask_gif,
     lambda w: _portrait_render(w, "--calibration", "in.gif", output="in.gif"), "the --calibration file"),
    ("render-output-is-the-emotion-audio", _mask_gif,
     lambda w: _portrait_render(w, "--emotion-audio", "in.gif", output="in.gif"), "the --emotion-audio clip"),
]


def _run_case(world: Path, capsys, setup, argv, message: str, code: int = 2) -> str:
    setup(world)
    before, beside = snapshot(world), sorted(os.listdir(world.parent))
    result = main(argv(world))
    err = capsys.readouterr().err
    assert result == code, err
    assert message in err, err
    assert "Traceback" not in err
    assert snapshot(world) == before and sorted(os.listdir(world.parent)) == beside
    return err


@pytest.mark.parametrize(("setup", "argv", "message"), [c[1:] for c in OVERWRITE_CASES],
                         ids=[c[0] for c in OVERWRITE_CASES])
def test_no_command_writes_over_one_of_its_inputs(world, capsys, setup, argv, message):
    _run_case(world, capsys, setup, argv, message)


def test_the_path_check_itself():
    """Pure path logic: resolved names, hard links, folders that hold an input; unrelated paths pass."""
    from engine.paths import output_input_conflict

    here = Path(__file__)
    assert output_input_conflict(here, here.parent / ".." / here.parent.name / here.name) == "is"
    assert output_input_conflict(here.parent, here) == "contains"
    assert output_input_conflict(here.parent / "new.mp4", here) is None
    assert output_input_conflict(here, here.parent) is None  # a file beside its folder's other files


def test_a_huge_rgba_png_is_converted_in_bands_and_reduced(tmp_path):
    """Issue 30 item 2: a 6000 x 4000 RGBA PNG is composited and shrunk band by band: the numpy
    temporaries stay far below the full-size float copies (about 1 GB for this image before)."""
    import tracemalloc

    import cv2
    import numpy as np
    from PIL import Image

    from engine.image import load_image

    rgba = np.zeros((4000, 6000, 4), np.uint8)
    rgba[..., :3] = cv2.resize(np.asarray(Image.open(ASSETS / "portrait.png").convert("RGB")), (6000, 4000))
    rgba[..., 3] = 255
    rgba[:400, :, 3] = 0  # a transparent band on top: composited onto white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "huge.png", compress_level=1)
    del rgba
    tracemalloc.start()
    try:
        image = load_image(tmp_path / "huge.png", max_side=512)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert image.shape == (341, 512, 3)
    assert (image[:30] == 255).all()  # the transparent band is white
    assert peak < 150 * 2**20, f"{peak / 2**20:.0f} MB of numpy temporaries"
