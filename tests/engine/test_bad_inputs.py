"""Hostile and broken inputs to ``moee render``: each is refused with exit code 2 and a message naming the
problem, before any model loads, and no file that existed before is changed.

The failing cases run against a model folder that holds only ``config.json`` (no weights): a case that
reached the model load would fail with "weights file ... is missing" instead of its own message. Tiny files
only; the few cases that must render use the tiny model at one step.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from engine.cli import main
from engine.diffusion.config import CONFIG_FILE, MODEL_FORMAT, MODEL_FORMAT_VERSION, tiny_config
from engine.emotions import BASIC_EMOTIONS
from engine.io.video import FRAMES_MARKER

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "demo"
RATE = 16_000


# ----------------------------------------------------------------------------- the world a case runs in
def _config_file(**changes: object) -> dict:
    data = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "config": tiny_config().to_dict(),
            "emotions": list(BASIC_EMOTIONS), "colours": {}, "notes": {}}
    for key, value in changes.items():
        target = data
        *parents, last = key.split(".")
        for parent in parents:
            target = target[parent]
        target[last] = value
    return data


def _tone(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)


def _wav_with_rate(path: Path, rate: int) -> Path:
    """A 22 KB PCM WAV whose header then claims ``rate`` Hz (bytes 24..32: rate and byte rate)."""
    soundfile.write(path, _tone(0.7), RATE, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    raw[24:28], raw[28:32] = struct.pack("<I", rate), struct.pack("<I", rate * 2)
    path.write_bytes(bytes(raw))
    return path


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Inputs, a weightless model folder, a user's folder full of work, and an earlier render of ours."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / CONFIG_FILE).write_text(json.dumps(_config_file()))
    (tmp_path / "portrait.png").write_bytes((ASSETS / "portrait.png").read_bytes())
    soundfile.write(tmp_path / "speech.wav", _tone(0.6), RATE)
    work = tmp_path / "D"
    (work / "sub").mkdir(parents=True)
    (work / "thesis.txt").write_text("years of work")
    (work / "sub" / "data.csv").write_text("1,2,3")
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / FRAMES_MARKER).write_text("ours")
    (ours / "frame_00000.png").write_bytes((ASSETS / "portrait.png").read_bytes())
    return tmp_path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder below ``folder``: its content hash (files) or "dir"."""
    result = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        result[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def render_args(world: Path, *extra: str, portrait: str = "portrait.png", audio: str = "speech.wav",
                output: str = "out.mp4") -> list[str]:
    return ["render", str(world / portrait), str(world / audio), "-o", output, "--model", str(world / "model"), "--frame", "crop",
            "--steps", "1", *extra]


# ----------------------------------------------------------------------------- the cases
def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda world: (world / name).write_bytes(data)


def _truncated_png(world: Path) -> None:
    (world / "cut.png").write_bytes((ASSETS / "portrait.png").read_bytes()[:600])


def _model(**changes: object) -> Callable[[Path], None]:
    return lambda world: (world / "model" / CONFIG_FILE).write_text(json.dumps(_config_file(**changes)))


def _raw_config(text: str) -> Callable[[Path], None]:
    return lambda world: (world / "model" / CONFIG_FILE).write_text(text)


def _nothing(_world: Path) -> None:
    return None


# (id, setup, argv builder, what the message must say)
CASES: list[tuple[str, Callable[[Path], None], Callable[[Path], list[str]], str]] = [
    # images
    ("image-empty", _write("empty.png", b""), lambda w: render_args(w, portrait="empty.png"), "image file is empty"),
    ("image-garbage", _write("junk.png", os.urandom(2048)), lambda w: render_args(w, portrait="junk.png"),
     "not a readable image"),
    ("image-truncated", _truncated_png, lambda w: render_args(w, portrait="cut.png"), "corrupt or truncated"),
    ("image-missing", _nothing, lambda w: render_args(w, portrait="none.png"), "image file not found"),
    ("image-8px", lambda w: Image.new("RGB", (8, 8)).save(w / "dot.png"), lambda w: render_args(w, portrait="dot.png"),
     "at least 32x32"),
    ("image-is-folder", lambda w: (w / "pics").mkdir(), lambda w: render_args(w, portrait="pics"), "is a folder"),
    # audio
    ("audio-header-1hz", lambda w: _wav_with_rate(w / "liar.wav", 1), lambda w: render_args(w, audio="liar.wav"),
     "sample rate is 1 Hz"),
    ("audio-header-500khz", lambda w: _wav_with_rate(w / "fast.wav", 500_000),
     lambda w: render_args(w, audio="fast.wav"), "sample rate is 500,000 Hz"),
    ("audio-empty", _write("empty.wav", b""), lambda w: render_args(w, audio="empty.wav"), "audio file is empty"),
    ("audio-garbage", _write("junk.wav", b"RIFF\x00\x00WAVEjunk" * 64), lambda w: render_args(w, audio="junk.wav"),
     "junk.wav"),
    ("audio-silent", lambda w: soundfile.write(w / "quiet.wav", np.zeros(RATE, np.float32), RATE),
     lambda w: render_args(w, audio="quiet.wav"), "is silent"),
    ("audio-missing", _nothing, lambda w: render_args(w, audio="none.wav"), "audio file not found"),
    ("audio-too-long", _nothing, lambda w: render_args(w, "--max-duration", "0.5"), "limited to 0.5 s"),
    ("emotion-audio-liar", lambda w: _wav_with_rate(w / "liar.wav", 1),
     lambda w: render_args(w, "--emotion-audio", str(w / "liar.wav")), "sample rate is 1 Hz"),
    # emotions
    ("emotion-empty", _nothing, lambda w: render_args(w, "--emotion", ""), "empty emotion mix"),
    ("emotion-blank", _nothing, lambda w: render_args(w, "--emotion", "  "), "empty emotion mix"),
    ("emotion-unknown", _nothing, lambda w: render_args(w, "--emotion", "smugness=0.5"), "unknown emotion 'smugness'"),
    ("emotion-nan", _nothing, lambda w: render_args(w, "--emotion", "anger=nan"), "finite number"),
    ("emotion-over-1", _nothing, lambda w: render_args(w, "--emotion", "anger=1.5"), "must lie in 0..1"),
    ("emotion-twice", _nothing, lambda w: render_args(w, "--emotion", "anger=0.2,angry=0.3"), "given twice"),
    ("mask-emotion-unknown", lambda w: Image.new("L", (16, 16), 255).save(w / "m.png"),
     lambda w: render_args(w, "--mask", str(w / "m.png"), "--mask-emotion", "smugness"), "unknown emotion"),
    # masks
    ("mask-unreadable", _write("m.png", b"not a png at all" * 10),
     lambda w: render_args(w, "--mask", str(w / "m.png"), "--mask-emotion", "anger"), "mask"),
    ("mask-missing", _nothing, lambda w: render_args(w, "--mask", str(w / "gone.png"), "--mask-emotion", "anger"),
     "mask file not found"),
    ("mask-empty-file", _write("m.png", b""),
     lambda w: render_args(w, "--mask", str(w / "m.png"), "--mask-emotion", "anger"), "an empty file"),
    ("mask-without-emotion", lambda w: Image.new("L", (16, 16), 255).save(w / "m.png"),
     lambda w: render_args(w, "--mask", str(w / "m.png")), "one --mask-emotion for every --mask"),
    # numeric flags (refused while parsing)
    ("guidance-nan", _nothing, lambda w: render_args(w, "--guidance", "nan"), "--guidance must be a finite number"),
    ("guidance-inf", _nothing, lambda w: render_args(w, "--guidance", "inf"), "--guidance must be a finite number"),
    ("guidance-huge", _nothing, lambda w: render_args(w, "--guidance", "1e999"), "--guidance must be a finite"),
    ("guidance-negative", _nothing, lambda w: render_args(w, "--guidance", "-5"), "--guidance must be a finite "
                                                                                  "number >= 0"),
    ("guidance-word", _nothing, lambda w: render_args(w, "--guidance", "lots"), "--guidance must be a number"),
    ("lip-guidance-negative", _nothing, lambda w: render_args(w, "--lip-guidance", "-1"), "--lip-guidance must be"),
    ("strength-zero", _nothing, lambda w: render_args(w, "--strength", "0"), "--strength must be a fraction"),
    ("strength-over-1", _nothing, lambda w: render_args(w, "--strength", "1.5"), "--strength must be a fraction"),
    ("mask-alpha-2", _nothing, lambda w: render_args(w, "--mask-alpha", "2"), "--mask-alpha must be at least 0 "
                                                                              "and at most 1"),
    ("mask-alpha-nan", _nothing, lambda w: render_args(w, "--mask-alpha", "nan"), "--mask-alpha must be a finite"),
    ("fps-zero", _nothing, lambda w: render_args(w, "--fps", "0"), "--fps must be at least 1"),
    ("fps-absurd", _nothing, lambda w: render_args(w, "--fps", "100000"), "at most 120"),
    ("fps-fraction", _nothing, lambda w: render_args(w, "--fps", "2.5"), "--fps must be a whole number"),
    ("steps-zero", _nothing, lambda w: render_args(w, "--steps", "0"), "--steps must be at least 1"),
    ("seed-negative", _nothing, lambda w: render_args(w, "--seed", "-1"), "--seed must be at least 0"),
    ("max-duration-nan", _nothing, lambda w: render_args(w, "--max-duration", "nan"), "--max-duration must be a "
                                                                                      "finite"),
    ("max-duration-zero", _nothing, lambda w: render_args(w, "--max-duration", "0"), "--max-duration must be above 0"),
    # model folders
    ("config-list", _raw_config("[1, 2, 3]"), lambda w: render_args(w), "holds a JSON list, not an object"),
    ("config-not-json", _raw_config("{nope"), lambda w: render_args(w), "cannot read"),
    ("config-image-size-string", _model(**{"config.image_size": "32"}), lambda w: render_args(w),
     "image_size must be a whole number"),
    ("config-emotions-42", _model(emotions=42), lambda w: render_args(w), "emotions must be a list"),
    ("config-bad-channels", _model(**{"config.vae.block_out_channels": [8, 6]}), lambda w: render_args(w),
     "vae.block_out_channels [8, 6] do not fit vae.norm_num_groups 4"),
    ("config-unet-groups", _model(**{"config.unet.norm_num_groups": 3}), lambda w: render_args(w),
     "unet.block_out_channels [16, 32] do not fit unet.norm_num_groups 3"),
    ("config-fps-zero", _model(**{"config.fps": 0}), lambda w: render_args(w), "fps must be a whole number"),
    ("config-unknown-field", _model(**{"config.moee.experts_galore": 1}), lambda w: render_args(w),
     "moee has unknown field(s) experts_galore"),
    ("config-guidance-nan", _model(**{"config.sampling.guidance_scale": float("nan")}), lambda w: render_args(w),
     "sampling.guidance_scale must be a finite number"),
    ("config-section-string", _model(**{"config.audio": "16k"}), lambda w: render_args(w),
     "audio must be a JSON object"),
    # output paths
    ("output-foreign-folder", _nothing, lambda w: render_args(w, output="D"), "did not write (sub, thesis.txt)"),
    ("frames-dir-foreign-folder", _nothing, lambda w: render_args(w, "--frames-dir", "D"), "did not write"),
    ("frames-dir-foreign-overwrite", _nothing, lambda w: render_args(w, "--frames-dir", "D", "--overwrite"),
     "did not write"),
    ("output-cwd", _nothing, lambda w: render_args(w, output=str(w)), "current folder"),
    ("output-dot", _nothing, lambda w: render_args(w, output="."), "current folder"),
    ("output-parent", _nothing, lambda w: render_args(w, output=".."), "current folder"),
    ("output-root", _nothing, lambda w: render_args(w, output="/"), "current folder"),
    ("output-ours-no-overwrite", _nothing, lambda w: render_args(w, output="ours"), "pass --overwrite"),
    ("output-mp4-is-a-folder", lambda w: (w / "clip.mp4").mkdir(), lambda w: render_args(w, output="clip.mp4"),
     "a folder with that name"),
    ("output-unknown-suffix", _nothing, lambda w: render_args(w, output="clip.avi"), "cannot tell the video format"),
    ("output-missing-folder", _nothing, lambda w: render_args(w, output="no/such/clip.mp4"), "does not exist"),
    ("output-same-as-frames-dir", _nothing, lambda w: render_args(w, "--frames-dir", "seq", output="seq"),
     "are the same path"),
    ("output-is-an-input", lambda w: (w / "in.gif").write_bytes(b"GIF89a"),
     lambda w: render_args(w, "--mask", "in.gif", "--mask-emotion", "anger", output="in.gif"), "is one of the inputs"),
]


@pytest.mark.parametrize(("setup", "argv", "message"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_refused_before_the_model_loads_and_changes_nothing(world, capsys, setup, argv, message):
    setup(world)
    before, beside = snapshot(world), sorted(os.listdir(world.parent))
    code = main(argv(world))
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    assert "Traceback" not in err and "model.safetensors" not in err  # never reached the model load
    assert snapshot(world) == before and sorted(os.listdir(world.parent)) == beside


# ----------------------------------------------------------------------------- what must still render
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from engine.diffusion.checkpoint import save_model
    from tests.engine_helpers import tiny_model

    return save_model(tiny_model(), tmp_path_factory.mktemp("model") / "tiny")


def test_small_mask_stereo_audio_and_an_earlier_render_of_ours_with_overwrite(world, model_dir, capsys):
    """A 16 px mask is fine (resized), a 44.1 kHz stereo clip is fine, and --overwrite replaces our own
    earlier PNG sequence, while the user's folder beside it is untouched."""
    Image.new("L", (16, 16), 255).save(world / "small.png")
    soundfile.write(world / "stereo.wav", np.stack([_tone(0.5, 44_100)] * 2, axis=1), 44_100)
    user_files = snapshot(world / "D")
    argv = ["render", "portrait.png", "stereo.wav", "-o", "ours", "--model", str(model_dir), "--frame", "crop", "--steps", "1",
            "--mask", "small.png", "--mask-emotion", "anger", "--overwrite", "--crop", "none"]
    assert main(argv) == 0, capsys.readouterr().err
    names = sorted(p.name for p in (world / "ours").iterdir())
    assert names[0] == FRAMES_MARKER and len(names) == 1 + 1 + round(0.5 * 25)  # marker, audio.wav, frames
    assert snapshot(world / "D") == user_files
    assert [p.name for p in world.iterdir() if p.name.startswith(".") and "tmp" in p.name] == []


def test_an_empty_existing_folder_takes_a_png_sequence(world, model_dir, capsys):
    (world / "empty").mkdir()
    argv = ["render", "portrait.png", "speech.wav", "-o", "empty", "--model", str(model_dir), "--frame", "crop", "--steps", "1",
            "--crop", "none", "--guidance", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    assert (world / "empty" / FRAMES_MARKER).is_file()
    assert len(list((world / "empty").glob("frame_*.png"))) == round(0.6 * 25)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_mid_render_leaves_no_temporary_file(world, model_dir, signame):
    """SIGTERM (kill) and SIGHUP (the terminal closed) unwind like Ctrl-C: no temporary file is left."""
    import signal
    import subprocess
    import sys
    import time

    soundfile.write(world / "long.wav", _tone(4.0), RATE)
    command = [sys.executable, "-m", "engine.cli", "render", "portrait.png", "long.wav", "-o", "out.mp4",
               "--model", str(model_dir), "--frame", "crop", "--steps", "200", "--crop", "none"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(command, cwd=world, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while not list(world.glob(".out.*.tmp.mp4")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(world.glob(".out.*.tmp.mp4")), "the render never started writing"
    signum = getattr(signal, signame)
    process.send_signal(signum)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    assert f"terminated; nothing was written ({signame})" in err
    assert not (world / "out.mp4").exists() and list(world.glob(".out.*")) == []


def test_a_large_render_gets_a_note_first(capsys):
    from engine.cli import _note_if_large, estimate_render

    seconds, _memory = estimate_render(10 * 60 * 25, 12, 64, "cpu")
    assert seconds > 10 * 60
    _note_if_large(10 * 60 * 25, 12, 64, "cpu")
    assert "large render" in capsys.readouterr().err
    _note_if_large(25, 12, 64, "cpu")
    assert capsys.readouterr().err == ""
