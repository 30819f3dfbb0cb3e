"""Palette text/presets, custom experts as extra sliders, timeline editing, shortcuts, region presets,
and the ``--screenshot`` entry point — all on the real tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

REPO = Path(__file__).resolve().parents[2]
DEMO_PORTRAIT = REPO / "assets" / "demo" / "portrait.png"


def test_describe_the_emotion_sets_sliders_off_the_ui_thread(qtbot, ready_window) -> None:
    win = ready_window
    win.palette.text.setText("sadly surprised")
    with qtbot.waitSignal(win.service.textMixReady, timeout=60_000):
        win.palette.describe_button.click()
        assert not win.palette.describe_button.isEnabled()  # returned at once; the worker reads the text
    qtbot.waitUntil(lambda: win.palette.describe_button.isEnabled(), timeout=5000)
    weights = dict(zip(win.doc.emotions, win.doc.weights, strict=True))
    assert weights["sadness"] > 0.3 and weights["surprise"] > 0.3
    assert weights["happiness"] < weights["sadness"]
    win.doc.undo_stack.undo()
    assert win.doc.weights == [0.0] * 6


def test_custom_expert_pack_becomes_a_slider(qtbot, portrait_path, tmp_path: Path) -> None:
    from engine.diffusion.checkpoint import save_expert_pack
    from engine.diffusion.config import tiny_config
    from engine.diffusion.pipeline import Animator
    from studio.main_window import MainWindow

    donor = Animator.from_config(tiny_config(), seed=0)
    donor.model.add_emotion("smug", "#1abc9c")
    pack = save_expert_pack(donor.model, "smug", tmp_path / "smug.moeexpert.safetensors")

    animator = Animator.from_config(tiny_config(), seed=0)  # same base model, own instance
    from tests.studio.conftest import dispose

    win = MainWindow(animator=animator, show_dialogs=False, autosave=False)
    qtbot.addWidget(win)
    try:
        win.doc.render.preview_steps = 2
        with qtbot.waitSignal(win.previewSettled, timeout=30_000):
            win.open_portrait(portrait_path)
        with qtbot.waitSignal(win.doc.emotionsChanged, timeout=30_000):
            win.load_expert_pack(str(pack))
        assert win.doc.emotions[-1] == "smug"
        assert len(win.palette.rows) == 7 and win.palette.rows[6].label.text() == "Smug"
        assert win.brush_panel.emotion.count() == 7
        with qtbot.waitSignal(win.previewSettled, timeout=30_000) as blocker:
            win.palette.rows[6].slider.setValue(800)
        assert list(blocker.args[0].gates.global_weights) == pytest.approx([0, 0, 0, 0, 0, 0, 0.8])
        assert blocker.args[0].gate_maps.shape[0] == 7
    finally:
        dispose(win)


def test_timeline_keyframes_drive_sliders_and_can_be_dragged_and_deleted(qtbot, ready_window) -> None:
    win = ready_window
    win.doc.render.interpolation = "linear"
    win.set_playhead(0)
    win.palette.apply_preset("sadly angry")
    win.add_keyframe()
    win.set_playhead(20)
    win.palette.reset()
    qtbot.keyClick(win, Qt.Key.Key_K)  # K = add keyframe at the playhead
    assert [k.frame for k in win.doc.keyframes] == [0, 20]
    win.set_playhead(10)  # sliders follow the interpolated timeline
    assert win.doc.weights[1] == pytest.approx(0.25) and win.doc.weights[2] == pytest.approx(0.25)
    assert len(win.timeline._curves) == 6 and len(win.timeline._key_lines) == 2
    second = win.doc.keyframes[1].uid
    line = win.timeline._key_lines[second]  # drag the keyframe handle to frame 30 and release
    line.setValue(29.6)
    line.sigPositionChangeFinished.emit(line)
    assert [k.frame for k in win.doc.keyframes] == [0, 30]
    win.timeline.select_keyframe(second)
    assert win.timeline.delete_selected()
    assert [k.frame for k in win.doc.keyframes] == [0]
    win.doc.undo_stack.undo()
    win.doc.undo_stack.undo()
    assert [k.frame for k in win.doc.keyframes] == [0, 20]
    # the export schedule is the per-frame interpolation
    schedule = win.doc.schedule()
    assert list(schedule(5).global_weights)[1] == pytest.approx(0.375)


def test_shortcuts(qtbot, ready_window) -> None:
    win = ready_window
    win.activateWindow()
    radius = win.brush.radius
    qtbot.keyClick(win, Qt.Key.Key_BracketRight)
    assert win.brush.radius > radius
    qtbot.keyClick(win, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(win, Qt.Key.Key_BracketLeft)
    assert win.brush.radius < radius
    qtbot.keyClick(win, Qt.Key.Key_E)
    assert win.brush.eraser and win.act_eraser.isChecked()
    qtbot.keyClick(win, Qt.Key.Key_B)
    assert not win.brush.eraser
    win.palette.apply_preset("awed")
    qtbot.keyClick(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert win.doc.weights == [0.0] * 6
    qtbot.keyClick(win, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert win.doc.weights[4] == pytest.approx(0.4)
    qtbot.keyClick(win, Qt.Key.Key_Space)
    assert win.transport.playing
    qtbot.keyClick(win, Qt.Key.Key_Space)
    assert not win.transport.playing


@pytest.mark.skipif(not DEMO_PORTRAIT.exists(), reason="no demo portrait in assets/")
def test_region_preset_fills_a_landmark_region(qtbot, window) -> None:
    win = window
    with qtbot.waitSignal(win.previewSettled, timeout=60_000):
        win.open_portrait(str(DEMO_PORTRAIT))
    assert win.canvas.landmarks is not None and win.canvas.face_box() is not None
    win.brush_panel.emotion.setCurrentIndex(0)
    with qtbot.waitSignal(win.previewSettled, timeout=30_000) as blocker:
        assert win.fill_region("mouth")
    masks = np.asarray(blocker.args[0].gates.local_masks)
    assert masks[0].max() > 0.5
    assert masks[0][: masks.shape[1] // 3].max() < 0.05  # the mouth is not in the top third
    win.doc.undo_stack.undo()
    assert win.doc.masks[0].max() == 0


def test_region_fill_without_landmarks_reports(qtbot, ready_window) -> None:
    with qtbot.waitSignal(ready_window.errorReported, timeout=2000):
        assert ready_window.fill_region("eyes") is False


def test_screenshot_entry_point(qtbot, portrait_path, tmp_path: Path) -> None:
    from PIL import Image

    from studio import settings
    from studio.app import main

    out = tmp_path / "shot.png"
    previous = settings._settings_file
    try:
        code = main(["--model", "tiny", "--portrait", portrait_path, "--screenshot", str(out), "--timeout", "60"])
    finally:
        settings.use_settings_file(previous)
    assert code == 0
    image = Image.open(out)
    assert image.size[0] >= 800 and image.size[1] >= 600


def test_dropping_an_image_opens_it_as_portrait(qtbot, window, portrait_path) -> None:
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(portrait_path)])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.preparedReady, timeout=30_000):
        window.canvas.dropEvent(event)
    assert window.doc.state.portrait_path == str(Path(portrait_path).resolve())
    assert window.canvas.portrait is not None and window.doc.masks.shape == (6, 32, 32)
