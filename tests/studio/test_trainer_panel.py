"""Trainer panel: it refuses data without the new emotion, shows step x/N and the time left, and
Stop keeps a checkpoint that Resume continues to the full step count (the real trainer, tiny model)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from studio.trainer_panel import TrainerPanel


def make_expert_data(root: Path, name: str = "smug") -> Path:
    """A labels.csv data set: one 0.4 s clip of the new emotion ``name`` and one neutral clip (64 px mp4s)."""
    from engine.io.audio import AudioClip
    from engine.io.video import open_writer
    from training import synthetic as syn

    root.mkdir(parents=True, exist_ok=True)
    person = syn.Identity.random(np.random.default_rng(3))
    rows = ["file,emotion"]
    for clip_name, mix, label in ((f"{name}_01", {"happiness": 0.5}, name), ("calm_01", {}, "neutral")):
        clip = syn.synthesize_clip(person, mix, seconds=0.4, size=64, seed=1, use_espeak=False)
        with open_writer(root / f"{clip_name}.mp4", clip.fps, audio=AudioClip(clip.audio, clip.sample_rate)) as out:
            for frame in clip.frames:
                out.write(frame)
        rows.append(f"{clip_name}.mp4,{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _panel(qtbot, tmp_path: Path, data: Path) -> TrainerPanel:
    panel = TrainerPanel()
    qtbot.addWidget(panel)
    panel.data.setText(str(data))
    panel.name.setText("smug")
    panel.out.setText(str(tmp_path / "experts"))
    return panel


def test_folder_without_the_new_emotion_is_refused(qtbot, tmp_path: Path) -> None:
    basic = tmp_path / "basic"
    basic.mkdir()
    (basic / "a.mp4").write_bytes(b"")
    (basic / "labels.csv").write_text("file,emotion\na.mp4,happy\n")
    synthetic = tmp_path / "synthetic"
    synthetic.mkdir()
    (synthetic / "index.json").write_text(json.dumps({"clips": []}))
    for folder, found in ((basic, "its labels: happy"), (synthetic, "synthetic data set"),
                          (tmp_path / "experts", "no labels.csv")):
        folder.mkdir(exist_ok=True)
        panel = _panel(qtbot, tmp_path, folder)
        assert panel.start() is False and panel.process is None
        text = panel.status.text()
        assert "no clip labelled 'smug'" in text and found in text
        assert "labels.csv with the columns file,emotion" in text and "smug_01.mp4,smug" in text  # the layout


def test_a_missing_clip_of_the_new_emotion_is_refused(qtbot, tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,emotion\ngone.mp4,smug\n")
    panel = _panel(qtbot, tmp_path, tmp_path)
    assert panel.start() is False
    assert "gone.mp4 is not in" in panel.status.text()


def test_progress_text_counts_steps_and_time_left(qtbot) -> None:
    panel = TrainerPanel()
    qtbot.addWidget(panel)
    panel.total_steps = 10
    assert panel.progress_text(2, now=100.0) == "step 2/10 · estimating the time left…"
    assert panel.progress_text(4, now=104.0) == "step 4/10 · 12 s left"  # 2 s a step, 6 steps to go
    assert panel.progress_text(10, now=116.0) == "step 10/10"


SLOW_FAKE_TRAINER = r"""
import json, sys, time, pathlib
args = dict(zip(sys.argv[1::2], sys.argv[2::2] + [""]))
out = pathlib.Path(args["--out"]); out.mkdir(parents=True, exist_ok=True)
with open(args["--log"], "a") as log:
    for step in range(1, 9):
        log.write(json.dumps({"step": step, "loss": 1.0 / step}) + "\n"); log.flush(); time.sleep(0.3)
(out / (args["--name"] + ".moeexpert.safetensors")).write_bytes(b"not a real pack")
"""


def test_status_shows_step_of_n_and_time_left_while_training(qtbot, tmp_path: Path) -> None:
    """Driven by a stand-in with the trainer's CLI and log format (8 steps of 0.3 s)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "smug_01.mp4").write_bytes(b"")
    (data / "labels.csv").write_text("file,emotion\nsmug_01.mp4,smug\n")
    script = tmp_path / "fake_trainer.py"
    script.write_text(SLOW_FAKE_TRAINER)
    panel = _panel(qtbot, tmp_path, data)
    panel.module_args = [str(script)]
    panel.steps_box.setValue(8)
    seen: list[str] = []
    panel.poll.timeout.connect(lambda: seen.append(panel.status.text()))
    with qtbot.waitSignal(panel.expertReady, timeout=30_000) as ready:
        assert panel.start()
    assert Path(ready.args[0]) == tmp_path / "experts" / "smug.moeexpert.safetensors"
    assert Path(ready.args[0]).exists()
    assert any(re.match(r"step [2-7]/8 · \d+ s left", text) for text in seen), seen


def test_stop_keeps_a_checkpoint_and_resume_reaches_n_steps(qtbot, tmp_path: Path) -> None:
    """The real trainer on the tiny model: Stop at once -> stopped after step 1; Resume -> steps 2..3, the pack."""
    from engine.diffusion.checkpoint import save_model
    from engine.diffusion.config import tiny_config
    from engine.diffusion.pipeline import Animator
    from training.trainer import CHECKPOINT_DIR, STATE_FILE

    data = make_expert_data(tmp_path / "data")
    base = tmp_path / "base"
    save_model(Animator.from_config(tiny_config(), seed=0).model, base)
    panel = _panel(qtbot, tmp_path, data)
    panel.base_model = str(base)
    panel.python = sys.executable
    panel.steps_box.setValue(3)
    assert not panel.resume_button.isEnabled()

    assert panel.start()
    panel.stop_button.click()  # before the first step ends: the trainer stops after step 1
    qtbot.waitUntil(lambda: panel.start_button.isEnabled(), timeout=60_000)
    state = json.loads((tmp_path / "experts" / "smug-training" / CHECKPOINT_DIR / STATE_FILE).read_text())
    assert state["step"] == 1 and state["steps"] == 3
    assert panel.status.text() == "Stopped at step 1/3; Resume continues from there."
    assert panel.resume_button.isEnabled() and panel.steps == [1]
    assert not (tmp_path / "experts" / "smug.moeexpert.safetensors").exists()

    panel.steps_box.setValue(50)  # Resume keeps the stopped run's N
    with qtbot.waitSignal(panel.expertReady, timeout=60_000):
        assert panel.resume_button.isEnabled()
        panel.resume_button.click()
    assert "--resume" in panel.last_args
    assert panel.steps == [1, 2, 3] and all(np.isfinite(panel.losses))
    assert (tmp_path / "experts" / "smug.moeexpert.safetensors").exists()
    assert not panel.resume_button.isEnabled()


@pytest.mark.parametrize("name", ["smug"])
def test_check_custom_emotion_data_counts_its_clips(tmp_path: Path, name: str) -> None:
    from training.datasets import DatasetError, check_custom_emotion_data

    for f in ("a.mp4", "b.mp4", "c.mp4"):
        (tmp_path / f).write_bytes(b"")
    (tmp_path / "labels.csv").write_text(f"file,emotion\na.mp4,{name}\nb.mp4,{name.upper()}\nc.mp4,neutral\n")
    assert check_custom_emotion_data(tmp_path, name) == 2
    (tmp_path / "labels.csv").write_text(f"file,emotion\na.mp4,{name}\nb.mp4,proud\n")
    with pytest.raises(DatasetError, match="'proud' is neither"):
        check_custom_emotion_data(tmp_path, name)
