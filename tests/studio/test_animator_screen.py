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

