"""`moee render` and `moee bench` as a user runs them."""

import contextlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from engine.cli import main
from engine.diffusion.checkpoint import save_model
from engine.io.video import probe_video, read_frames
from tests.engine_helpers import tiny_model

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "demo"
FPS = 25
#: Length (s) of the audio of renders that are only compared with one another.
SHORT_SECONDS = 0.4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_model(tiny_model(), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def speech(tmp_path) -> Path:
    """1.3 s of the demo speech, resampled by the loader from 44.1 kHz stereo (an odd input on purpose)."""
    samples, rate = soundfile.read(ASSETS / "speech.wav", dtype="float32")
    part = samples[: int(1.3 * rate)]
    stereo = np.stack([part, 0.5 * part], axis=1)
    index = np.linspace(0, len(part) - 1, int(len(part) * 44_100 / rate))
    resampled = np.stack([np.interp(index, np.arange(len(part)), stereo[:, c]) for c in range(2)], axis=1)
    path = tmp_path / "speech_44k_stereo.wav"
    soundfile.write(path, resampled, 44_100)
    return path


def test_render_writes_an_mp4_with_h264_aac_and_the_audio_duration(model_dir, speech, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    frames_dir = tmp_path / "frames"
    code = main(["render", str(ASSETS / "portrait.png"), str(speech), "-o", str(out), "--model", str(model_dir), "--frame", "crop",
                 "--emotion", "happiness=0.6,surprise=0.4", "--steps", "2", "--frames-dir", str(frames_dir)])
    assert code == 0
    info = probe_video(out)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert abs(info.duration - 1.3) <= 1 / FPS
    assert abs(info.audio_duration - info.duration) <= 1 / FPS
    assert info.frames == round(1.3 * FPS)
    pngs = sorted(frames_dir.glob("*.png"))
    assert len(pngs) == info.frames
    first = next(iter(read_frames(out)))
    assert first.shape[:2] == (128, 128)  # pasted back into the 128 px demo portrait (--paste-back yes)
    assert "untrained" in capsys.readouterr().err


def test_render_with_a_painted_mask_and_a_text(model_dir, speech, tmp_path):
    """The mask and the text both reach the frames: the same render without the mask, or with another text,
    gives other frames (a mask or a text that is ignored fails)."""
    from PIL import Image

    mask = np.zeros((32, 32), np.uint8)
    mask[:10] = 255
    Image.fromarray(mask).save(tmp_path / "brows.png")
    painted = ["--mask", str(tmp_path / "brows.png"), "--mask-emotion", "anger"]

    samples, rate = soundfile.read(speech, dtype="float32")
    short = tmp_path / "short.wav"  # the comparisons need a few frames, not the whole clip
    soundfile.write(short, samples[: int(SHORT_SECONDS * rate)], rate)

    def render(name: str, *flags: str, output: Path | None = None) -> np.ndarray:
        """The PNG frames of a render (written to the folder ``name``, or beside ``output`` as --frames-dir)."""
        frames = tmp_path / name
        destination = ["-o", str(output), "--frames-dir", str(frames)] if output else ["-o", str(frames)]
        code = main(["render", str(ASSETS / "portrait.png"), str(short), *destination, "--model", str(model_dir),
                     "--frame", "crop", "--paste-back", "no", "--steps", "1", *flags])
        assert code == 0
        return np.stack([np.asarray(Image.open(png).convert("RGB")) for png in sorted(frames.glob("*.png"))])

    gif = tmp_path / "out.gif"
    both = render("both", "--text", "furious", *painted, output=gif)
    assert len(both) == probe_video(gif).frames == round(SHORT_SECONDS * FPS)
    text_only = render("text_only", "--text", "furious")
    other_text = render("other_text", "--text", "happily surprised", *painted)
    assert not np.array_equal(both, text_only), "the painted mask was ignored"
    assert not np.array_equal(both, other_text), "the text was ignored"


def test_lip_guidance_and_kept_background_change_the_render(model_dir, speech, tmp_path):
    def frames(*extra):
        folder = tmp_path / f"frames{len(list(tmp_path.iterdir()))}"
        code = main(["render", str(ASSETS / "portrait.png"), str(speech), "-o", str(folder) + ".mp4",
                     "--model", str(model_dir), "--frame", "crop", "--steps", "2", "--frames-dir", str(folder), *extra])
        assert code == 0
        return [p.read_bytes() for p in sorted(folder.glob("*.png"))[:3]]

    assert frames("--lip-guidance", "1") == frames() != frames("--lip-guidance", "4")
    assert frames("--keep-background", "no") == frames() != frames("--keep-background", "yes")
    curves = tmp_path.parent / f"{tmp_path.name}-curves.json"
    curves.write_text(json.dumps({"curves": [[0, 0.5, 1, 1, 1]] * 6}))  # every slider at 0.25 -> gate 0.5
    mix = ("--emotion", "anger=0.25")
    assert frames(*mix, "--calibration", "off") == frames(*mix) != frames(*mix, "--calibration", str(curves))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lip-guidance", "nan"], "--lip-guidance must be a finite number"),
        (["--emotion", "smugness=0.5"], "unknown emotion 'smugness'"),
        (["--emotion", "anger=1.5"], "must lie in 0..1"),
        (["--emotion", "anger=nan"], "finite number"),
        (["--mask", "x.png"], "one --mask-emotion for every --mask"),
        (["--calibration", "missing.json"], "not a slider calibration file"),
    ],
)
def test_bad_emotion_arguments_are_reported(model_dir, speech, tmp_path, capsys, extra, message):
    out = tmp_path / "out.mp4"
    code = main(["render", str(ASSETS / "portrait.png"), str(speech), "-o", str(out), "--model", str(model_dir), "--frame", "crop",
                 "--steps", "1", *extra])
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_unreadable_inputs_and_wrong_model_are_reported(model_dir, speech, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["render", str(tmp_path / "none.png"), str(speech), "-o", str(out), "--model", str(model_dir), "--frame", "crop"]) == 2
    assert "none.png" in capsys.readouterr().err
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(16000, np.float32), 16000)
    assert main(["render", str(ASSETS / "portrait.png"), str(silent), "-o", str(out), "--model", str(model_dir), "--frame", "crop"]) == 2
    assert "silent" in capsys.readouterr().err
    assert main(["render", str(ASSETS / "portrait.png"), str(speech), "-o", str(out), "--model", str(tmp_path)]) == 2
    assert "config.json is missing" in capsys.readouterr().err
    assert not out.exists()


@contextlib.contextmanager
def special_folder(tmp_path: Path, options: str):
    """A real read-only or tiny (soon full) file system: a tmpfs mount as root, else chmod / skip."""
    folder = tmp_path / options.replace(",", "_").replace("=", "")
    folder.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                 capture_output=True).returncode == 0
        if not mounted:
            pytest.skip("cannot mount a tmpfs here")
        try:
            yield folder
        finally:
            subprocess.run(["umount", str(folder)], check=False)
    elif options.startswith("ro"):
        folder.chmod(0o500)
        yield folder
    else:
        pytest.skip("a full disk needs a tmpfs mount (root)")


def test_read_only_output_folder_is_reported(model_dir, speech, tmp_path, capsys):
    with special_folder(tmp_path, "ro,size=1m") as locked:
        code = main(["render", str(ASSETS / "portrait.png"), str(speech), "-o", str(locked / "o.mp4"),
                     "--model", str(model_dir), "--frame", "crop", "--steps", "1"])
        assert code == 2 and "read-only" in capsys.readouterr().err
        assert list(locked.iterdir()) == []


def test_full_disk_is_reported_and_leaves_nothing(model_dir, speech, tmp_path, capsys):
    with special_folder(tmp_path, "size=24k") as small:
        code = main(["render", str(ASSETS / "portrait.png"), str(speech), "-o", str(small / "o.mp4"),
                     "--model", str(model_dir), "--frame", "crop", "--steps", "1"])
        assert code == 2 and "no space left" in capsys.readouterr().err
        assert list(small.iterdir()) == []


@pytest.mark.parametrize(("crop", "keep_background"), [("auto", "yes"), ("none", "no")])
def test_bench_prints_json_with_both_paths(model_dir, capsys, crop, keep_background):
    assert main(["bench", "--json", "--model", str(model_dir), "--repeats", "2", "--steps", "2", "--frames", "2",
                 "--crop", crop, "--keep-background", keep_background]) == 0
    result = json.loads(capsys.readouterr().out)
    # none / no: no face detection and no person matte, for machines without MediaPipe
    assert result["crop"] == crop and result["keep_background"] == (keep_background == "yes")
    for key in ("preview_latency_ms", "naive_preview_latency_ms", "speedup", "clip_fps", "peak_rss_mb",
                "latency_by_active_experts_ms"):
        assert key in result
    assert set(result["clips"]) == {"1x", "2x", "4x"}
    assert result["clips"]["4x"]["frames"] == 4 * result["clips"]["1x"]["frames"]


def test_init_from_a_local_diffusers_folder(tmp_path, capsys):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from engine.diffusion.checkpoint import load_model
    from engine.diffusion.config import tiny_config

    cfg = tiny_config()
    torch.manual_seed(4)
    UNet2DConditionModel(**cfg.unet).save_pretrained(tmp_path / "sd" / "unet")
    AutoencoderKL(**cfg.vae).save_pretrained(tmp_path / "sd" / "vae")
    assert main(["init", str(tmp_path / "m"), "--config", "tiny", "--base-model", str(tmp_path / "sd")]) == 0
    model = load_model(tmp_path / "m")
    source = UNet2DConditionModel.from_pretrained(tmp_path / "sd" / "unet")
    assert torch.equal(model.denoiser.unet.conv_in.weight, source.conv_in.weight)
    assert main(["init", str(tmp_path / "m2"), "--config", "tiny", "--base-model", str(tmp_path)]) == 2
    assert "not a diffusers model folder" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["/home/me/.venv/bin/moee", "eval", "--model", "runs/my model", "--json"],
                                  ["/home/me/MoEE/training/evaluate.py", "--model", "runs/my model", "--json"]])
def test_recorded_command_is_the_runnable_moee_command_either_way(argv):
    """What a model's notes record as the command that made it: ``moee eval ...`` whether it ran through
    ``moee`` or ``python -m training.evaluate``, without local script paths, quoted for a shell."""
    from engine.cli import recorded_command

    recorded = recorded_command("eval", argv)
    assert recorded == "moee eval --model 'runs/my model' --json"
    assert build_parser_accepts(recorded)


def build_parser_accepts(command: str) -> bool:
    import shlex

    from engine.cli import build_parser

    args = build_parser(declared_commands()).parse_args(shlex.split(command)[1:])
    return args.command == "eval" and args.model == "runs/my model"


def test_without_mediapipe_render_names_what_needs_it_and_runs_without_it(model_dir, speech, tmp_path, capsys,
                                                                          monkeypatch):
    import sys
    import threading

    monkeypatch.setitem(sys.modules, "mediapipe", None)  # as on a machine where it is not installed
    codes: dict[str, int] = {}

    def render(name: str, *flags: str) -> None:
        codes[name] = main(["render", str(ASSETS / "portrait.png"), str(speech), "-o", str(tmp_path / f"{name}.mp4"),
                            "--model", str(model_dir), "--frame", "crop", "--steps", "1", *flags])

    for name, flags in {"face": ("--crop", "auto", "--keep-background", "no"),
                        "matte": ("--crop", "none", "--keep-background", "yes"),
                        "neither": ("--crop", "none", "--keep-background", "no")}.items():
        # a fresh thread each time: MediaPipe's graphs are cached per thread
        worker = threading.Thread(target=render, args=(name, *flags))
        worker.start()
        worker.join()
        err = capsys.readouterr().err
        if name == "face":
            assert "finding the face" in err and "pip install mediapipe" in err and "--crop none" in err
        elif name == "matte":
            assert "keeping the portrait's background" in err and "--keep-background no" in err
    assert codes == {"face": 2, "matte": 2, "neither": 0}
    assert probe_video(tmp_path / "neither.mp4").frames == round(1.3 * FPS)
    assert not (tmp_path / "face.mp4").exists() and not (tmp_path / "matte.mp4").exists()


# --- subcommands from other packages: the "moee.commands" entry points ---------------------------------

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def declared_commands() -> list:
    """The ``moee.commands`` entry points as pyproject.toml declares them (what ``pip install`` installs)."""
    from importlib.metadata import EntryPoint

    from engine.cli import COMMAND_GROUP

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"][COMMAND_GROUP]
    return [EntryPoint(name, value, COMMAND_GROUP) for name, value in declared.items()]


def test_pyproject_declares_every_training_command():
    from training.commands import COMMANDS

    declared = {point.name: point for point in declared_commands()}
    assert sorted(declared) == sorted(COMMANDS), "pyproject.toml's moee.commands entry points and " \
        "training.commands.COMMANDS must name the same subcommands"
    for name, command in COMMANDS.items():
        assert declared[name].load() is command, f"entry point {name} names another object"


def test_each_training_command_names_functions_its_module_has():
    """The adder and runner are named in full in training/commands.py (so a search finds the caller), and exist."""
    import importlib

    from training.commands import COMMANDS

    for name, command in COMMANDS.items():
        module = importlib.import_module(command.module)
        for function in (command.adder, command.runner):
            assert callable(getattr(module, function, None)), f"{name}: {command.module} has no {function}"
        assert command.runner.startswith("run_") and command.adder.endswith("_arguments"), name


def test_installed_metadata_has_the_declared_commands():
    """A stale install (pyproject.toml changed since ``pip install -e .``) would hide subcommands."""
    from engine.cli import installed_commands

    installed = sorted((point.name, point.value) for point in installed_commands())
    declared = sorted((point.name, point.value) for point in declared_commands())
    assert installed == declared, ("the installed moee-studio metadata does not match pyproject.toml's "
                                   "moee.commands entry points: reinstall it (pip install -e .)")


def test_help_lists_every_subcommand_with_its_help_and_each_has_its_own(capsys):
    from training.commands import COMMANDS

    commands = declared_commands()
    assert main(["--help"], commands) == 0
    listing = " ".join(capsys.readouterr().out.split())
    for name in ("render", "bench", "init", *COMMANDS):
        assert f" {name} " in listing, name
    for command in COMMANDS.values():
        assert command.help in listing
    for name in COMMANDS:
        assert main([name, "--help"], commands) == 0, name
        assert capsys.readouterr().out.startswith(f"usage: moee {name} ")


def test_engine_commands_work_when_training_cannot_be_imported():
    """The engine alone: render / bench run; a training subcommand says it is unavailable, exit 2."""
    import sys

    probe = (
        "import sys\n"
        "sys.modules['training'] = None  # as if the package were missing\n"
        "from importlib.metadata import EntryPoint\n"
        "from engine.cli import COMMAND_GROUP, main\n"
        "commands = [EntryPoint('synth', 'training.commands:SYNTH', COMMAND_GROUP)]\n"
        "codes = [main(argv, commands) for argv in (['render', '--help'], ['bench', '--help'], ['synth'])]\n"
        "print('codes', codes)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PYPROJECT.parent)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert "codes [0, 0, 2]" in done.stdout, done.stderr
    assert "moee synth is not available" in done.stderr


# --- third-party log spam ------------------------------------------------------------------------------

SPAM = ("TensorFlow Lite", "absl::InitializeLog", "inference_feedback_manager", "SymbolDatabase.GetPrototype")


def run_python(code: str) -> subprocess.CompletedProcess:
    import sys

    env = {**os.environ, "PYTHONPATH": str(PYPROJECT.parent)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                          cwd=PYPROJECT.parent)


def test_face_detection_prints_no_third_party_logs():
    """MediaPipe's C++ start-up lines and protobuf's warning: every moee command that finds a face printed
    them (measured: 5 lines). Both graphs (Face Mesh, selfie segmentation), run twice each."""
    done = run_python(
        "from engine.io.image import load_image\n"
        "from engine.io.face import detect_landmarks, person_matte\n"
        "image = load_image('assets/demo/photo.png')\n"
        "for _ in range(2):\n"
        "    print(detect_landmarks(image).points.shape, person_matte(image).shape)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(478, 2) (256, 256)") == 2
    assert not [line for line in done.stderr.splitlines() if any(s in line for s in SPAM)], done.stderr


def test_the_log_filter_drops_only_the_spam_lines():
    """Native writes to fd 2 inside the filter: spam dropped, everything else kept, in order; after it,
    nothing is filtered."""
    done = run_python(
        "import os, sys\n"
        "from engine.io.quiet import quiet_native_logs\n"
        "with quiet_native_logs():\n"
        "    os.write(2, b'ours 1\\nINFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
        "    print('ours 2', file=sys.stderr)\n"
        "    os.write(2, b'W0000 00:00:1.5   42 inference_feedback_manager.cc:114] Feedback\\nours 3 no newline')\n"
        "os.write(2, b'\\nINFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "ours 1\nours 2\nours 3 no newline\nINFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
