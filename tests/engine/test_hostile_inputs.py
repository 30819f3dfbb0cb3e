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
from tests.engine import test_bad_inputs
from tests.engine.test_bad_inputs import ASSETS, snapshot

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
    from engine.io.paths import output_input_conflict

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

    from engine.io.image import load_image

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


# ----------------------------------------------------------------------------- the default renderer's checks
LONG_NAME = "a" * 300


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> dict[str, Path]:
    """Portraits with a face problem: none, two, a tiny one; and a good one (the astronaut)."""
    import cv2
    import numpy as np
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("faces")
    astronaut = data.astronaut()
    crop = astronaut[20:240, 130:320]
    images = {"none": np.full((256, 256, 3), 128, np.uint8), "two": np.concatenate([crop, crop], axis=1),
              "tiny": cv2.resize(astronaut, (300, 300), interpolation=cv2.INTER_AREA), "cat": data.chelsea(),
              "one": crop}
    paths = {}
    for name, image in images.items():
        paths[name] = folder / f"{name}.png"
        Image.fromarray(np.ascontiguousarray(image)).save(paths[name])
    return paths


def _unreadable_motion_weights(world: Path) -> None:
    """The model folder gets a valid motion.json and garbage weights: reading them would fail loudly."""
    from engine.io.resources import DEFAULT_MODEL_DIR

    (world / "model" / "motion.json").write_bytes((DEFAULT_MODEL_DIR / "motion.json").read_bytes())
    (world / "model" / "motion.safetensors").write_bytes(b"not weights" * 10)


@pytest.mark.parametrize(("name", "message"), [
    ("none", "no face found in the portrait"),
    ("cat", "no face found in the portrait"),
    ("two", "found 2 faces in the portrait; pick one with --face N"),
    ("tiny", "the face is 5"),  # about 54 px wide; at least 64 px is needed
])
def test_the_portrait_is_checked_before_the_weights_are_read(world, faces, capsys, name, message):
    """Issue 30 items 6 and 13: a face problem is found before the model's weights are read (they are
    garbage here: reading them would say so), and several faces say how many and how to pick one."""
    _run_case(world, capsys, _unreadable_motion_weights,
              lambda w: ["render", str(faces[name]), "speech.wav", "-o", "out.mp4", "--model", "model"], message)


def test_face_picks_one_of_several_and_a_missing_one_is_refused(world, faces, capsys):
    _run_case(world, capsys, _unreadable_motion_weights,
              lambda w: ["render", str(faces["two"]), "speech.wav", "-o", "out.mp4", "--model", "model", "--face", "3"],
              "--face 3 asks for face 3 from the left, but 2 faces were found")
    _run_case(world, capsys, lambda w: None,
              lambda w: ["render", str(faces["one"]), "speech.wav", "-o", "out.mp4", "--frame", "crop", "--face", "1"],
              "--face picks a face for --renderer portrait")
    assert main(["render", str(faces["two"]), "speech.wav", "-o", "two.mp4", "--face", "2"]) == 0
    from engine.io.video import probe_video

    assert probe_video(world / "two.mp4").frames == round(0.6 * 25)


def _motion_folder(world: Path, config: dict | None = None, nan: str | None = None) -> None:
    """``world/motion``: the bundled motion model alone (no pixel model), optionally with another motion.json
    config or a NaN in one tensor."""
    import json

    import numpy as np
    from PIL import Image
    from safetensors.torch import load_file, save_file
    from skimage import data

    from engine.io.resources import DEFAULT_MODEL_DIR

    Image.fromarray(np.ascontiguousarray(data.astronaut()[20:240, 130:320])).save(world / "astro.png")
    folder = world / "motion"
    folder.mkdir()
    meta = json.loads((DEFAULT_MODEL_DIR / "motion.json").read_text())
    meta["config"].update(config or {})
    (folder / "motion.json").write_text(json.dumps(meta))
    tensors = load_file(str(DEFAULT_MODEL_DIR / "motion.safetensors"))
    if nan is not None:
        tensors[nan][0] = float("nan")
    save_file(tensors, str(folder / "motion.safetensors"))


MODEL_CASES: list[Case] = [
    ("motion-nan", lambda w: _motion_folder(w, nan="moe.head.3.weight"),
     lambda w: _portrait_render(w, "--model", "motion", portrait="astro.png"), "the tensor moe.head.3.weight holds NaN or infinite values"),
    ("motion-width-mismatch", lambda w: _motion_folder(w, {"width": 32}),
     lambda w: _portrait_render(w, "--model", "motion", portrait="astro.png"), "moe.token_embedding is 68x64 in the weights but 68x32"),
    ("motion-emotions-mismatch", lambda w: _motion_folder(w, {"emotions": ["happiness", "sadness"]}),
     lambda w: _portrait_render(w, "--model", "motion", portrait="astro.png"), "moe.emotion_latents is 6x4x32 in the weights but 2x4x32"),
    ("motion-width-string", lambda w: _motion_folder(w, {"width": "64"}),
     lambda w: _portrait_render(w, "--model", "motion", portrait="astro.png"), "width must be a whole number from 1 to 4096, not '64'"),
    ("motion-heads-zero", lambda w: _motion_folder(w, {"heads": 0}),
     lambda w: _portrait_render(w, "--model", "motion", portrait="astro.png"), "heads must be a whole number"),
    ("motion-lip-context-negative", lambda w: _motion_folder(w, {"lip_context": -3}),
     lambda w: _portrait_render(w, "--model", "motion", portrait="astro.png"), "lip_context must be a whole number from 0"),
    ("motion-emotions-twice", lambda w: _motion_folder(w, {"emotions": ["anger", "anger"]}),
     lambda w: _portrait_render(w, "--model", "motion", portrait="astro.png"), "emotions must be a list of distinct emotion names"),
    ("model-folder-empty", lambda w: (w / "empty").mkdir(), lambda w: _portrait_render(w, "--model", "empty"),
     "config.json is missing, and so is motion.json"),
    ("motion-weights-missing", lambda w: (_motion_folder(w), (w / "motion" / "motion.safetensors").unlink()),
     lambda w: _portrait_render(w, "--model", "motion", portrait="astro.png"), "motion.safetensors is missing"),
]


@pytest.mark.parametrize(("setup", "argv", "message"), [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES])
def test_a_broken_motion_model_is_a_message(world, capsys, setup, argv, message):
    """Issue 30 item 9: NaN weights and a motion.json that does not fit the weights are CheckpointErrors."""
    err = _run_case(world, capsys, setup, argv, message)
    assert len(err) < 600  # one clear line, not a dump of every mismatched tensor


def test_a_folder_with_only_the_motion_model_renders(world, capsys):
    """Issue 30 item 9: the default renderer needs motion.json + motion.safetensors and nothing else."""
    from engine.io.video import probe_video

    _motion_folder(world)
    assert main(_portrait_render(world, "--model", "motion", "--emotion", "anger=1", portrait="astro.png",
                                 output="clip.mp4")) == 0, capsys.readouterr().err
    assert probe_video(world / "clip.mp4").frames == round(0.6 * 25)


def _exit_case(case_id: str, argv: Callable[[Path], list[str]], message: str,
               setup: Callable[[Path], object] = lambda w: None) -> Case:
    return (case_id, setup, argv, message)


def _read_only(world: Path) -> None:
    (world / "locked").mkdir()
    os.chmod(world / "locked", 0o555)


ARGUMENT_CASES: list[Case] = [
    # item 5: an empty description is refused, as an empty --emotion is
    _exit_case("text-empty", lambda w: _portrait_render(w, "--text", ""), "--text is empty"),
    _exit_case("text-blank", lambda w: _portrait_render(w, "--text", "   "), "--text is empty"),
    # item 7: names longer than the file system takes
    _exit_case("output-name-300", lambda w: _portrait_render(w, output=LONG_NAME + ".mp4"),
               "-o: the file name aaaa"),
    _exit_case("frames-dir-name-300", lambda w: _portrait_render(w, "--frames-dir", LONG_NAME), "--frames-dir: the file"),
    _exit_case("output-folder-name-300", lambda w: _portrait_render(w, output=LONG_NAME + "/clip.mp4"),
               "-o: the folder name aaaa"),
    _exit_case("eval-json-name-300", lambda w: [EVAL, "pics", "--json", LONG_NAME + ".json"], "--json: the file name",
               _pics),
    # item 10: eval-portraits' own inputs and outputs
    _exit_case("eval-missing-folder", lambda w: [EVAL, "nowhere"], "portrait folder not found: nowhere"),
    _exit_case("eval-empty-folder", lambda w: [EVAL, "D"], "no portrait images"),
    _exit_case("eval-sheet-suffix", lambda w: [EVAL, "pics", "--sheet", "sheet.tiff"],
               "--sheet sheet.tiff: cannot tell the image format", _pics),
    _exit_case("eval-sheet-is-a-folder", lambda w: [EVAL, "pics", "--sheet", "D"], "--sheet D: cannot tell", _pics),
    _exit_case("eval-sheet-missing-folder", lambda w: [EVAL, "pics", "--sheet", "no/such/sheet.png"],
               "--sheet: cannot write to no/such: folder does not exist", _pics),
    _exit_case("eval-json-same-as-sheet", lambda w: [EVAL, "pics", "--sheet", "r.png", "--json", "r.png"],
               "--json and --sheet are the same path", _pics),
    _exit_case("eval-max-size-zero", lambda w: [EVAL, "pics", "--max-size", "0"], "--max-size must be at least 64",
               _pics),
    _exit_case("eval-sheet-height-nan", lambda w: [EVAL, "pics", "--sheet-height", "nan"],
               "--sheet-height must be a whole number, not 'nan'", _pics),
    _exit_case("eval-audio-missing", lambda w: [EVAL, "pics", "--audio", "none.wav"], "audio file not found", _pics),
    # item 11: bench names the flag
    _exit_case("bench-repeats-zero", lambda w: ["bench", "--portrait", "portrait.png", "--repeats", "0"],
               "--repeats must be at least 1"),
    _exit_case("bench-repeats-negative", lambda w: ["bench", "--repeats", "-1"], "--repeats must be at least 1"),
    _exit_case("bench-config-bogus", lambda w: ["bench", "--config", "bogus"], "argument --config: invalid choice"),
    _exit_case("bench-frames-zero", lambda w: ["bench", "--frames", "0"], "--frames must be at least 1"),
    _exit_case("bench-steps-zero", lambda w: ["bench", "--steps", "0"], "--steps must be at least 1"),
    _exit_case("bench-portrait-missing", lambda w: ["bench", "--portrait", "none.png"], "image file not found"),
    _exit_case("bench-device-bogus", lambda w: ["bench", "--device", "banana"], "--device 'banana' is not a device"),
    # item 12: a device this machine does not have
    _exit_case("render-device-bogus", lambda w: _portrait_render(w, "--frame", "crop", "--device", "tpu"),
               "--device 'tpu' is not a device"),
]


@pytest.mark.parametrize(("setup", "argv", "message"), [c[1:] for c in ARGUMENT_CASES],
                         ids=[c[0] for c in ARGUMENT_CASES])
def test_a_bad_argument_is_a_message_naming_the_flag(world, capsys, setup, argv, message):
    _run_case(world, capsys, setup, argv, message)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_eval_sheet_in_a_read_only_folder_is_refused(world, capsys):
    try:
        _run_case(world, capsys, _pics, lambda w: (_read_only(w), [EVAL, "pics", "--sheet", "locked/s.png"])[1],
                  "folder is read-only")
    finally:
        os.chmod(world / "locked", 0o755)


def test_cuda_on_a_machine_without_it_is_a_message(world, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _run_case(world, capsys, lambda w: None, lambda w: _portrait_render(w, "--frame", "crop", "--device", "cuda"),
              "--device cuda: no CUDA GPU is usable here")


class _InterruptedWhileLoading:
    """A subcommand whose loading is interrupted (Ctrl-C while ``moee`` starts)."""

    help = "interrupted while it loads"

    def add_arguments(self, parser) -> None:
        raise KeyboardInterrupt

    def run(self, args) -> int:
        return 0


INTERRUPTED_WHILE_LOADING = _InterruptedWhileLoading()


def test_ctrl_c_while_starting_is_a_message(capsys):
    """Issue 30 item 8: Ctrl-C before the render loop (here: while the subcommands load) prints "interrupted"."""
    from importlib.metadata import EntryPoint

    from engine.cli import COMMAND_GROUP, EXIT_INTERRUPTED

    point = EntryPoint(name="slow", value=f"{__name__}:INTERRUPTED_WHILE_LOADING", group=COMMAND_GROUP)
    assert main(["bench", "--help"], commands=[point]) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "interrupted; nothing was written" in err and "Traceback" not in err


def test_importing_the_command_line_loads_no_heavy_module():
    """``moee`` reaches main() fast, so a Ctrl-C at start-up is main()'s to report (no numpy, torch, ...)."""
    import subprocess
    import sys

    code = "import sys, engine.cli; print(sorted(m for m in ('numpy', 'torch', 'cv2', 'PIL') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[]"
