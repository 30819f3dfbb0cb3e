"""Export through the dialog's job with the real tiny model: readable files, or nothing on cancel."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.io.video import probe_video


def _export(qtbot, win, path: Path, fmt: str, stop: int = 6):
    dialog = win.show_export()
    assert dialog is not None
    qtbot.addWidget(dialog)
    dialog.format.setCurrentIndex(list(dialog.format.itemData(i) for i in range(dialog.format.count())).index(fmt))
    dialog.path.setText(str(path))
    dialog.start.setValue(0)
    dialog.stop.setValue(stop)
    dialog.steps.setValue(2)
    return dialog


def test_export_mp4_with_audio_is_readable(qtbot, ready_window, speech_path, tmp_path: Path) -> None:
    win = ready_window
    with qtbot.waitSignal(win.preparedReady, timeout=30_000):
        win.open_audio(speech_path)
    win.palette.apply_preset("happily surprised")
    out = tmp_path / "clip.mp4"
    dialog = _export(qtbot, win, out, "mp4", stop=6)
    with qtbot.waitSignal(dialog.exported, timeout=120_000):
        job = dialog.start_export()
        assert job is not None
    info = probe_video(out)
    assert info.frames == 6 and (info.width, info.height) == (64, 64)  # the crop pasted back into the portrait
    assert info.audio_codec is not None  # AAC track muxed
    assert dialog.bar.value() == 1000


def test_export_gif_and_png_sequence(qtbot, ready_window, tmp_path: Path) -> None:
    win = ready_window
    gif = tmp_path / "clip.gif"
    dialog = _export(qtbot, win, gif, "gif", stop=3)
    with qtbot.waitSignal(dialog.exported, timeout=120_000):
        dialog.start_export()
    assert probe_video(gif).frames == 3
    folder = tmp_path / "frames"
    dialog = _export(qtbot, win, folder, "png", stop=3)
    with qtbot.waitSignal(dialog.exported, timeout=120_000):
        dialog.start_export()
    assert sorted(p.name for p in folder.glob("*.png")) == [f"frame_{i:05d}.png" for i in range(3)]


def test_cancelled_export_leaves_nothing(qtbot, ready_window, tmp_path: Path) -> None:
    win = ready_window
    out = tmp_path / "cancelled.mp4"
    dialog = _export(qtbot, win, out, "mp4", stop=40)
    dialog.steps.setValue(60)
    job = dialog.start_export()
    with qtbot.waitSignal(job.done, timeout=120_000) as blocker:
        qtbot.wait(200)
        dialog.cancel_export()
    assert blocker.args[0] is False
    assert "cancel" in blocker.args[1].lower()
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.slow
def test_export_png_with_alpha(qtbot, ready_window, tmp_path: Path) -> None:
    from PIL import Image

    win = ready_window
    folder = tmp_path / "alpha"
    dialog = _export(qtbot, win, folder, "png-alpha", stop=2)
    with qtbot.waitSignal(dialog.exported, timeout=120_000):
        dialog.start_export()
    frame = Image.open(folder / "frame_00000.png")
    assert frame.mode == "RGBA"


def test_export_at_another_fps_reprepares_the_clip(qtbot, ready_window, tmp_path: Path) -> None:
    win = ready_window
    gif = tmp_path / "slow.gif"
    dialog = _export(qtbot, win, gif, "gif", stop=2)
    dialog.fps.setValue(10)
    with qtbot.waitSignal(dialog.exported, timeout=120_000):
        dialog.start_export()
    info = probe_video(gif)
    assert info.frames == 2 and abs(info.fps - 10) < 0.5
