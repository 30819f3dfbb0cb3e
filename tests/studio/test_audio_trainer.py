"""No sound device -> clear messages and silent playback; trainer process + live loss plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from studio.audio_panel import Recorder, Transport, sound_module


def test_sound_module_never_raises() -> None:
    module, reason = sound_module()
    assert (module is None) == bool(reason)


def test_no_sound_device_gives_message_and_silent_playback(qtbot, ready_window, speech_path, monkeypatch) -> None:
    import studio.audio_panel as audio_panel

    monkeypatch.setattr(audio_panel, "sound_module", lambda kind="output": (None, "no sound device available (test)"))
    win = ready_window
    with qtbot.waitSignal(win.preparedReady, timeout=30_000):
        win.open_audio(speech_path)
    messages: list[str] = []
    win.audio_panel.message.connect(messages.append)
    # recording: clear message, button unchecked again, no exception
    win.audio_panel.record_button.setChecked(True)
    assert not win.audio_panel.record_button.isChecked()
    assert any("Cannot record" in m and "no sound device" in m for m in messages)
    # playback: silent, but the playhead runs
    win.set_playhead(0)
    win.toggle_play()
    assert win.transport.playing
    assert any("silently" in m for m in messages)
    qtbot.waitUntil(lambda: win.playhead >= 3, timeout=5000)
    win.toggle_play()
    assert not win.transport.playing


def test_real_missing_portaudio_is_handled(qtbot) -> None:
    """Without PortAudio or a sound card (as on this machine) the studio must cope."""
    module, reason = sound_module("input")
    if module is not None:
        pytest.skip("a sound device exists here")
    rec = Recorder()
    msgs: list[str] = []
    rec.message.connect(msgs.append)
    assert rec.start() is False and msgs and "sound device" in msgs[0]
    transport = Transport()
    transport.configure(10, 100.0, clip=type("Clip", (), {"samples": [0.0] * 100, "sample_rate": 16000})())
    transport.message.connect(msgs.append)
    transport.play(0)
    qtbot.waitUntil(lambda: not transport.playing, timeout=3000)
    assert transport.frame == 9
    assert "silently" in msgs[-1]


FAKE_TRAINER = r"""
import json, sys, time, pathlib
args = dict(zip(sys.argv[1::2], sys.argv[2::2] + [""]))
out = pathlib.Path(args["--out"]); out.mkdir(parents=True, exist_ok=True)
with open(args["--log"], "a") as log:
    for step in range(5):
        log.write(json.dumps({"step": step, "loss": 1.0 / (step + 1), "lr": 1e-4, "samples_per_s": 3.5}) + "\n")
        log.flush(); time.sleep(0.05)
(out / (args["--name"] + ".moeexpert.safetensors")).write_bytes(b"not a real pack")
"""


def test_trainer_panel_runs_process_and_plots_loss(qtbot, tmp_path: Path) -> None:
    """The panel's process/log plumbing, driven by a stand-in script with the trainer's CLI + log format."""
    from studio.trainer_panel import TrainerPanel

    panel = TrainerPanel()
    qtbot.addWidget(panel)
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    panel.module_args = [str(script)]
    data = tmp_path / "clips"
    data.mkdir()
    (data / "smug_01.mp4").write_bytes(b"")  # the panel checks the labels, the stand-in reads no clip
    (data / "labels.csv").write_text("file,emotion\nsmug_01.mp4,smug\n")
    panel.data.setText(str(data))
    panel.name.setText("smug")
    panel.out.setText(str(tmp_path / "out"))
    assert panel.python == sys.executable
    with qtbot.waitSignal(panel.expertReady, timeout=30_000) as blocker:
        assert panel.start()
    assert blocker.args[0].endswith("smug.moeexpert.safetensors")
    assert panel.steps == [0, 1, 2, 3, 4]
    assert panel.losses[-1] == pytest.approx(0.2)
    assert "samples/s" in panel.status.text() or "Finished" in panel.status.text()


def test_trainer_rejects_bad_fields(qtbot, tmp_path: Path) -> None:
    from studio.trainer_panel import TrainerPanel

    panel = TrainerPanel()
    qtbot.addWidget(panel)
    panel.data.setText(str(tmp_path / "missing"))
    assert panel.start() is False
    panel.data.setText(str(tmp_path))
    panel.name.setText("Not A Name!")
    assert panel.start() is False
    assert "lowercase" in panel.status.text()


def test_log_tail_handles_partial_lines(tmp_path: Path) -> None:
    from studio.trainer_panel import LogTail

    log = tmp_path / "log.jsonl"
    tail = LogTail(log)
    assert tail.read() == []
    log.write_text(json.dumps({"step": 1, "loss": 0.5}) + "\n" + '{"step": 2, "lo')
    assert [r["step"] for r in tail.read()] == [1]
    with open(log, "a") as fh:
        fh.write('ss": 0.4}\nnot json\n')
    assert [r["step"] for r in tail.read()] == [2]


@pytest.mark.slow
def test_real_trainer_produces_a_pack_that_becomes_a_slider(qtbot, tmp_path: Path) -> None:
    """End to end: training.trainer (1 step on a tiny labelled set) -> expert pack -> new slider."""
    from engine.diffusion.checkpoint import save_model
    from engine.diffusion.config import tiny_config
    from engine.diffusion.pipeline import Animator
    from studio.main_window import MainWindow
    from tests.studio.test_trainer_panel import make_expert_data

    data = make_expert_data(tmp_path / "data", "smug")  # labels.csv: a smug clip and a neutral one
    base = tmp_path / "base"
    save_model(Animator.from_config(tiny_config(), seed=0).model, base)

    from tests.studio.conftest import dispose

    win = MainWindow(animator=Animator.from_pretrained(base, device="cpu"), show_dialogs=False, autosave=False)
    qtbot.addWidget(win)
    try:
        panel = win.trainer
        panel.base_model = str(base)
        panel.data.setText(str(data))
        panel.name.setText("smug")
        panel.out.setText(str(tmp_path / "experts"))
        panel.steps_box.setValue(1)
        with qtbot.waitSignal(win.doc.emotionsChanged, timeout=240_000):
            assert panel.start()
        assert win.doc.emotions[-1] == "smug" and len(win.palette.rows) == 7
        assert panel.losses and all(np.isfinite(panel.losses))
        assert (tmp_path / "experts" / "smug.moeexpert.safetensors").exists()
    finally:
        dispose(win)
