"""Issue 27: the studio on an animator's screen (masks that key right, focus after typing, honest
status, a 1366x768 layout, zoom and pan, a fast start, export options).

Each test drives the real window (tiny model unless it says otherwise, offscreen Qt).
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractSpinBox, QApplication

from studio.keyframes import Keyframe, masks_at

ANGER = 2


@pytest.fixture
def clip_window(qtbot, ready_window, speech_path):
    """The ready window with a 15-frame voice track."""
    with qtbot.waitSignal(ready_window.preparedReady, timeout=30_000):
        assert ready_window.open_audio(speech_path)
    return ready_window


# ------------------------------------------------------------------ 1. masks keyed at one frame
def test_no_mask_keys_stop_a_later_mask_leaking_back() -> None:
    painted = np.ones((2, 4, 4), np.float32)
    keys = [Keyframe(0, [0, 0], no_mask=True), Keyframe(10, [0, 0], no_mask=True),
            Keyframe(20, [0, 0], painted, [1.0, 0.5])]
    at0, _ = masks_at(keys, 0, "linear")
    assert at0.shape == painted.shape and not at0.any()  # empty, in the painted set's shape
    mid, alpha = masks_at(keys, 15, "linear")
    assert np.allclose(mid, 0.5) and alpha == pytest.approx([1.0, 0.5])
    assert np.allclose(masks_at(keys, 25, "linear")[0], 1.0)
    only_empty, _ = masks_at(keys[:2], 3, "linear", (2, 6, 5))
    assert only_empty.shape == (2, 6, 5) and not only_empty.any()


def test_an_empty_key_means_no_mask_and_a_later_stroke_does_not_leak(qtbot, clip_window, tmp_path) -> None:
    win = clip_window
    assert win.key_masks.isChecked()
    win.set_playhead(0)
    qtbot.mouseClick(win.key_button, Qt.MouseButton.LeftButton)  # nothing painted: keys "no mask"
    win.set_playhead(5)
    qtbot.mouseClick(win.key_button, Qt.MouseButton.LeftButton)
    assert all(k.no_mask and k.masks is None for k in win.doc.keyframes)
    win.set_playhead(12)
    win.brush_panel.emotion.setCurrentIndex(ANGER)
    win.canvas.stroke([(10.0, 10.0), (30.0, 10.0)])  # auto-keyed at 12
    assert next(k for k in win.doc.keyframes if k.frame == 12).masks is not None
    win.set_playhead(0)
    assert not win.doc.masks.any()  # frame 0 shows no mask
    assert win.doc.gates_for_frame(0).local_masks is None
    assert win.doc.gates_for_frame(12).local_masks is not None
    # the keys survive a save and reopen
    path = str(tmp_path / "keys.moee")
    assert win.save_project(path) and win.open_project(path)
    assert [k.no_mask for k in sorted(win.doc.keyframes, key=lambda k: k.frame)] == [True, True, False]
    assert win.doc.gates_for_frame(0).local_masks is None


def test_shift_k_keys_no_mask_over_painted_masks_in_one_undo_step(qtbot, clip_window) -> None:
    win = clip_window
    win.brush_panel.emotion.setCurrentIndex(ANGER)
    win.canvas.stroke([(10.0, 10.0), (30.0, 10.0)])
    painted = win.doc.masks.copy()
    win.set_playhead(4)
    win.canvas.setFocus()
    qtbot.keyClick(win, Qt.Key.Key_K, Qt.KeyboardModifier.ShiftModifier)
    key = next(k for k in win.doc.keyframes if k.frame == 4)
    assert key.no_mask and not win.doc.masks.any()
    win.doc.undo_stack.undo()
    assert not win.doc.keyframes and np.allclose(win.doc.masks, painted)


# --------------------------------------------------------- 4. Enter hands the focus back
def test_enter_in_a_spin_box_hands_focus_back_so_navigation_keys_work(qtbot, clip_window) -> None:
    win = clip_window
    last = win.timeline.num_frames - 1
    win.doc.add_keyframe(Keyframe(4, [0.0] * len(win.doc.emotions)))
    spin = win.palette.rows[ANGER].spin
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus, timeout=2_000)
    spin.selectAll()
    qtbot.keyClicks(spin, "0.5")
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert win.doc.weights[ANGER] == pytest.approx(0.5)
    qtbot.waitUntil(win.canvas.hasFocus, timeout=2_000)
    target = QApplication.focusWidget()
    qtbot.keyClick(target, Qt.Key.Key_End)
    assert win.playhead == last
    qtbot.keyClick(target, Qt.Key.Key_Home)
    assert win.playhead == 0
    qtbot.keyClick(target, Qt.Key.Key_Period)
    assert win.playhead == 1
    win.set_playhead(last)
    qtbot.keyClick(target, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)
    assert win.playhead == 4
    # the life panel's boxes and the audio panel's Length box hand the focus back too
    box = win.life_panel.findChildren(QAbstractSpinBox)[0]
    box.setFocus()
    qtbot.waitUntil(box.hasFocus, timeout=2_000)
    qtbot.keyClick(box, Qt.Key.Key_Enter)
    qtbot.waitUntil(win.canvas.hasFocus, timeout=2_000)



# ------------------------------------------------------------------------ 6. honest status
def test_status_lines_tell_the_truth_on_the_tiny_model(qtbot, clip_window, tmp_path) -> None:
    win = clip_window
    # "rendering…" ends with the work, even when the finished frame is not shown (the playhead moved on)
    qtbot.waitUntil(lambda: not win.service._busy, timeout=10_000)
    with qtbot.waitSignal(win.service.busyChanged, timeout=10_000, check_params_cb=lambda b: not b):
        win.service.request_render(win.playhead + 3, win.doc.gates_for_frame(None), 2, 0, "preview")
    assert win.preview.status.text() != "rendering…"
    assert win.preview.status.text() == win.preview.idle_text
    # the shortcut list names Undo and Redo, not "Redo Paint anger"
    win.brush_panel.emotion.setCurrentIndex(ANGER)
    win.canvas.stroke([(10.0, 10.0), (30.0, 10.0)])
    win.doc.undo_stack.undo()
    assert win.act_redo.text().startswith("Redo ")
    names = [name for name, _keys in win.shortcut_table()]
    assert "Redo" in names and "Undo" in names and not any(n.startswith("Redo ") for n in names)
    # an auto-keyed stroke and a Clear all are one undo step each
    win.doc.undo_stack.redo()
    win.set_playhead(6)
    qtbot.mouseClick(win.key_button, Qt.MouseButton.LeftButton)
    count = win.doc.undo_stack.count()
    win.set_playhead(10)
    win.canvas.stroke([(12.0, 30.0), (40.0, 30.0)])
    assert win.doc.undo_stack.count() == count + 1 and {k.frame for k in win.doc.keyframes} == {6, 10}
    qtbot.mouseClick(win.brush_panel.clear_button, Qt.MouseButton.LeftButton)
    assert win.doc.undo_stack.count() == count + 2
    assert next(k for k in win.doc.keyframes if k.frame == 10).no_mask  # cleared and keyed "no mask"
    win.doc.undo_stack.undo()
    win.doc.undo_stack.undo()
    assert {k.frame for k in win.doc.keyframes} == {6}
    # an unreadable WAV is refused in plain words
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    with qtbot.waitSignal(win.errorReported, timeout=5_000) as blocker:
        assert not win.open_audio(str(bad))
    assert "Errno" not in blocker.args[0] and "not a readable audio file" in blocker.args[0]


def test_a_refused_expert_pack_is_reported_by_the_trainer_panel(qtbot, window, tmp_path) -> None:
    pack = tmp_path / "grumpy.moeexpert.safetensors"
    pack.write_bytes(b"not a safetensors file")
    window.trainer.loading_pack = str(pack)  # as a finished training leaves it
    window.trainer._say(f"Finished: {pack.name}; loading it as a new slider…")
    with qtbot.waitSignal(window.errorReported, timeout=10_000):
        window.trainer.expertReady.emit(str(pack))
    text = window.trainer.status.text()
    assert "did not load it" in text and "loading it" not in text
    assert "grumpy" not in window.doc.emotions


def test_portrait_window_fill_undo_rejected_portrait_and_export_fields(qtbot, portrait_animator, astronaut_path,
                                                                       tmp_path) -> None:
    from PIL import Image

    from studio.export_dialog import ExportDialog
    from tests.studio.conftest import portrait_window

    with portrait_window(qtbot, portrait_animator, astronaut_path, flipbook=False, show=False) as win:
        # one auto-keyed fill is one undo step
        win.add_keyframe()
        win.set_playhead(0)
        count = win.doc.undo_stack.count()
        assert win.fill_region("brows")
        assert win.doc.undo_stack.count() == count + 1
        win.doc.undo_stack.undo()
        assert not win.doc.masks.any() and win.doc.keyframes[0].no_mask
        # the export dialog shows no Steps / Seed fields for a renderer without them
        dialog = ExportDialog(win, win)
        assert not dialog.steps.isVisibleTo(dialog) and not dialog.seed.isVisibleTo(dialog)
        dialog.deleteLater()
        # a refused portrait: the badge says the previous one is kept (it still renders)
        blank = tmp_path / "blank.png"
        Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
        with qtbot.waitSignal(win.errorReported, timeout=30_000):
            win.open_portrait(str(blank))
        assert "previous portrait kept" in win.preview.status.text()
        assert win.service.prepared_inputs is not None


# ------------------------------------------------------------------------- 2. fits 1366 x 768
def test_every_control_is_reachable_at_1366_by_768(qtbot, clip_window) -> None:
    from PySide6.QtWidgets import QScrollArea

    from studio.main_window import TIMELINE_MIN_HEIGHT

    win = clip_window
    assert win.minimumSizeHint().width() <= 1366 and win.minimumSizeHint().height() <= 740
    win.default_layout((1366, 740))  # 768 minus a panel or title bar
    qtbot.waitUntil(lambda: win.size().width() == 1366 and win.size().height() == 740, timeout=2_000)
    assert win.timeline.height() >= TIMELINE_MIN_HEIGHT
    visible_in_window = [win.key_button, win.no_mask_key_button, win.del_key_button, win.interp, win.key_masks,
                         win.audio_panel.length_box, win.audio_panel.play_button, win.canvas, win.preview.view]
    docked = [win.brush_panel.clear_button, win.palette.rows[-1].spin, win.brush_panel.show_landmarks]
    frame = win.rect()
    for widget in visible_in_window:
        assert widget.isVisible(), widget
        box = widget.rect().translated(widget.mapTo(win, widget.rect().topLeft()))
        assert frame.contains(box), (widget, box)
    for widget in docked:  # in a scroll area: scrolled to, it shows whole inside the window
        area = next(p for p in _parents(widget) if isinstance(p, QScrollArea))
        area.ensureWidgetVisible(widget)
        box = widget.rect().translated(widget.mapTo(win, widget.rect().topLeft()))
        viewport = area.viewport().rect().translated(area.viewport().mapTo(win, area.viewport().rect().topLeft()))
        assert viewport.contains(box) and frame.contains(box), (widget, box, viewport)
    tabs = {dock.windowTitle() for dock in win.tabifiedDockWidgets(win.brush_dock)}
    assert {"Custom experts", "Performance"} <= tabs


def _parents(widget):
    while widget is not None:
        widget = widget.parentWidget()
        yield widget


# ------------------------------------------------------------------------------ 3. zoom and pan
def _wheel(widget, pos, notches: int) -> None:
    from PySide6.QtCore import QPoint, QPointF
    from PySide6.QtGui import QWheelEvent

    event = QWheelEvent(QPointF(pos), QPointF(widget.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, 120 * notches),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_zoom_fit_one_to_one_and_pan_with_a_tool_that_does_not_paint(qtbot, ready_window) -> None:
    from PySide6.QtCore import QPoint

    win = ready_window
    canvas, view = win.canvas, win.preview.view
    win.default_layout((1366, 740))
    qtbot.waitUntil(lambda: canvas.width() > 300, timeout=2_000)
    qtbot.wait(100)  # the docks settle
    assert win.zoom.state.fit
    fit_width = canvas.image_rect().width()
    # the wheel zooms about the cursor: the portrait pixel under it stays under it
    spot = QPoint(canvas.width() // 2 + 30, canvas.height() // 2 - 20)
    before = canvas.to_image(spot.toPointF())
    _wheel(canvas, spot, 1)
    assert canvas.image_rect().width() == pytest.approx(fit_width * 1.25, rel=1e-3)
    assert canvas.to_image(spot.toPointF()) == pytest.approx(before, abs=1e-3)
    # Ctrl+1: one screen pixel per portrait pixel; the preview follows; Ctrl+0: fit again
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert canvas.image_rect().width() == pytest.approx(canvas.portrait.shape[1])
    assert "100 %" in win.zoom.state.label((1, 1), (1, 1))
    assert view.image_rect().width() == pytest.approx(view.image_size()[0])
    qtbot.keyClick(canvas, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    assert canvas.image_rect().width() == pytest.approx(canvas.portrait.shape[1] / 1.25)
    qtbot.keyClick(canvas, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    assert canvas.image_rect().width() == pytest.approx(canvas.portrait.shape[1])
    qtbot.keyClick(canvas, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert win.zoom.state.fit and canvas.image_rect().width() == pytest.approx(fit_width)
    # the middle button pans with the brush tool, and paints nothing
    _wheel(canvas, spot, 1)
    x0 = canvas.image_rect().x()
    centre = QPoint(canvas.width() // 2, canvas.height() // 2)
    qtbot.mousePress(canvas, Qt.MouseButton.MiddleButton, pos=centre)
    qtbot.mouseMove(canvas, centre + QPoint(40, 0))
    qtbot.mouseRelease(canvas, Qt.MouseButton.MiddleButton, pos=centre + QPoint(40, 0))
    assert canvas.image_rect().x() == pytest.approx(x0 + 40, abs=1.0)
    assert not win.doc.masks.any()
    # the pan tool (H): a left drag moves the view and paints nothing; B paints again
    qtbot.keyClick(canvas, Qt.Key.Key_H)
    assert win.act_pan.isChecked() and not canvas.paint_enabled
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseMove(canvas, centre + QPoint(0, 30))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=centre + QPoint(0, 30))
    assert not win.doc.masks.any() and win.doc.undo_stack.count() == 0
    qtbot.keyClick(canvas, Qt.Key.Key_B)
    assert canvas.paint_enabled
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=centre)
    assert win.doc.masks.any()
    # the preview: a double-click toggles fit and 1:1
    qtbot.keyClick(canvas, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    qtbot.mouseDClick(view, Qt.MouseButton.LeftButton, pos=QPoint(view.width() // 2, view.height() // 2))
    assert not win.zoom.state.fit and win.zoom.state.scale == pytest.approx(1.0)


def test_space_drag_pans_and_a_space_tap_still_plays(qtbot, clip_window) -> None:
    from PySide6.QtCore import QPoint

    win = clip_window
    canvas = win.canvas
    win.default_layout((1366, 740))
    qtbot.wait(100)
    _wheel(canvas, QPoint(canvas.width() // 2, canvas.height() // 2), 1)
    canvas.setFocus()
    qtbot.waitUntil(canvas.hasFocus, timeout=2_000)
    x0 = canvas.image_rect().x()
    centre = QPoint(canvas.width() // 2, canvas.height() // 2)
    qtbot.keyPress(canvas, Qt.Key.Key_Space)  # held: a left drag pans, nothing is painted, nothing plays
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseMove(canvas, centre + QPoint(-25, 0))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=centre + QPoint(-25, 0))
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    assert canvas.image_rect().x() == pytest.approx(x0 - 25, abs=1.0)
    assert not win.doc.masks.any() and not win.transport.playing
    qtbot.keyClick(canvas, Qt.Key.Key_Space)  # a tap plays, as everywhere else
    assert win.transport.playing
    qtbot.keyClick(canvas, Qt.Key.Key_Space)
    assert not win.transport.playing


def test_the_flipbook_keeps_frames_at_the_zoomed_views_resolution() -> None:
    from studio.flipbook import FLIPBOOK_MAX_SIDE, Flipbook, FlipbookJob

    book = Flipbook()
    big = np.zeros((1024, 1024, 3), np.uint8)
    small = np.zeros((300, 300, 3), np.uint8)
    book._wanted = [("a",), ("b",)]
    assert book.store(FlipbookJob(0, ("a",), None), big)
    assert book.store(FlipbookJob(1, ("b",), None), small)
    assert book.frame(0).shape[0] == FLIPBOOK_MAX_SIDE
    assert book.set_max_side(1024)  # the shrunk frame goes (it re-renders sharper); the small one stays
    assert book.frame(0) is None and book.frame(1) is not None
    assert book.store(FlipbookJob(0, ("a",), None), big) and book.frame(0).shape[0] == 1024
    assert not book.set_max_side(640)  # never shrinks what it keeps


# ------------------------------------------------------------------------------ 5. a fast start
def test_the_window_module_imports_without_torch_or_diffusers() -> None:
    import subprocess
    import sys

    code = ("import sys, studio.app, studio.main_window, studio.engine_api as e; e.cancel_token(); "
            "print(sorted(m for m in ('torch', 'diffusers', 'engine.diffusion.pipeline') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_the_portrait_shows_at_once_while_the_model_loads(qtbot, astronaut_path) -> None:

    from studio.main_window import LOADING_MODEL, MainWindow
    from tests.studio.conftest import dispose

    win = MainWindow(show_dialogs=False, autosave=False)  # the bundled model loads on the engine thread
    win.flipbook.enabled = False
    qtbot.addWidget(win)
    try:
        assert win.open_portrait(astronaut_path)
        assert not win._model_ready
        assert win.canvas.image_size() == (512, 512) and win.canvas.loading_text == LOADING_MODEL
        assert win.preview.status.text() == LOADING_MODEL
        win.canvas.grab()  # it paints (no portrait array yet: nothing can be painted on it)
        with qtbot.waitSignal(win.previewSettled, timeout=60_000):
            pass
        assert win.canvas.portrait is not None and win.canvas.loading_text == ""
    finally:
        dispose(win)


# ----------------------------------------------------------------------------- 7. export options
def test_export_options_size_quality_rate_prores_alpha_and_estimate(qtbot, portrait_animator, astronaut_path,
                                                                    tmp_path) -> None:
    import av

    from studio.export_dialog import ExportDialog
    from studio.main_window import MainWindow
    from tests.studio.conftest import dispose

    win = MainWindow(animator=portrait_animator, show_dialogs=False, autosave=False)
    win.flipbook.enabled = False
    # (no qtbot.addWidget: dispose() below deletes the window)

    def export(dialog, path) -> None:
        dialog.path.setText(str(path))
        job = dialog.start_export()
        assert job is not None
        qtbot.waitUntil(lambda: job.result is not None, timeout=120_000)
        assert job.result == (True, str(path)), job.result

    try:
        with qtbot.waitSignal(win.previewSettled, timeout=60_000):
            assert win.open_portrait(astronaut_path)
        with qtbot.waitSignal(win.preparedReady, timeout=30_000):
            win.audio_panel.length_box.setValue(0.2)  # a 5-frame silent clip
        dialog = ExportDialog(win, win)
        assert dialog.cap.value() == 1024 and dialog.output_size() == (512, 512)  # the portrait's own, cap shown
        # ProRes 4444 with the person matte as alpha, at the 720p preset
        dialog.format.setCurrentIndex(dialog.format.findData("prores"))
        dialog.size_preset.setCurrentIndex(dialog.size_preset.findData("720"))
        assert dialog.output_size() == (720, 720)
        text = dialog.estimate.text()
        assert "720 × 720 px" in text and "5 frames" in text and "MB" in text and "to render" in text
        assert not dialog.quality.isEnabled()
        export(dialog, tmp_path / "clip.mov")
        with av.open(str(tmp_path / "clip.mov")) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "prores" and "a" in stream.codec_context.pix_fmt.split("p")[0]
            frames = [f.to_ndarray(format="rgba") for f in container.decode(video=0)]
        assert len(frames) == 5 and frames[0].shape == (720, 720, 4)
        assert frames[0][..., 3].min() < 128 < frames[0][..., 3].max()  # background out, the astronaut in
        # H.264 at a bit rate and another frame rate: the estimate follows the bit rate
        dialog.format.setCurrentIndex(dialog.format.findData("mp4"))
        dialog.size_preset.setCurrentIndex(dialog.size_preset.findData("own"))
        dialog.quality.setCurrentIndex(dialog.quality.findData("bitrate"))
        assert dialog.bit_rate.isVisibleTo(dialog)
        dialog.bit_rate.setValue(4.0)
        dialog.fps.setValue(10)
        assert dialog.writer_options() == {"bit_rate": 4_000_000}
        assert "2 frames at 10 fps" in dialog.estimate.text()
        export(dialog, tmp_path / "clip.mp4")
        from engine.io.video import probe_video

        info = probe_video(str(tmp_path / "clip.mp4"))
        assert info.fps == pytest.approx(10) and (info.width, info.height) == (512, 512)
        # a lower cap renders the portrait smaller (a re-prepare under the cap)
        dialog.fps.setValue(25)
        dialog.format.setCurrentIndex(dialog.format.findData("png"))
        dialog.cap.setValue(384)  # (the face must stay 64 px wide)
        assert dialog.output_size() == (384, 384) and "384 × 384 px" in dialog.estimate.text()
        export(dialog, tmp_path / "frames")
        from PIL import Image

        pngs = sorted((tmp_path / "frames").glob("frame_*.png"))
        assert len(pngs) == 5 and Image.open(pngs[0]).size == (384, 384)
        dialog.deleteLater()
    finally:
        dispose(win)


def test_prores_and_bit_rate_writers(tmp_path) -> None:
    import av

    from engine.errors import OutputError
    from engine.io.video import open_writer, probe_video

    frame = np.zeros((30, 40, 4), np.uint8)
    frame[..., 1] = 180
    frame[5:20, 5:20, 3] = 255
    with open_writer(tmp_path / "a.mov", 25, format="prores", alpha=True) as writer:
        for _ in range(3):
            writer.write(frame)
    with av.open(str(tmp_path / "a.mov")) as container:
        decoded = next(container.decode(video=0)).to_ndarray(format="rgba")
    assert decoded[0, 0, 3] == 0 and decoded[10, 10, 3] == 255 and abs(int(decoded[10, 10, 1]) - 180) <= 2
    with open_writer(tmp_path / "b.mp4", 25, bit_rate=500_000) as writer:
        for _ in range(3):
            writer.write(frame[..., :3])
    assert probe_video(str(tmp_path / "b.mp4")).video_codec == "h264"
    with pytest.raises(OutputError, match="transparency"):
        open_writer(tmp_path / "c.mp4", 25, alpha=True)
    with pytest.raises(OutputError, match="bit rate"):
        open_writer(tmp_path / "d.mp4", 25, bit_rate=0)
