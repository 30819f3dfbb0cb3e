"""Issue 18 §3: edits never go stale, shortcuts work everywhere, rejected inputs change nothing.

Each test drives the real window (tiny model, offscreen) the way the issue's reproduction steps do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from studio.keyframes import Keyframe

ANGER = 2


def _keys_calm_and_angry(win, last: int = 14) -> None:
    n = len(win.doc.emotions)
    angry = [0.0] * n
    angry[ANGER] = 1.0
    win.doc.add_keyframe(Keyframe(0, [0.0] * n))
    win.doc.add_keyframe(Keyframe(last, angry))


@pytest.fixture
def clip_window(qtbot, ready_window, speech_path):
    """The ready window with a 15-frame voice track."""
    with qtbot.waitSignal(ready_window.preparedReady, timeout=30_000):
        assert ready_window.open_audio(speech_path)
    return ready_window


def test_moving_a_key_updates_the_sliders_at_the_playhead(qtbot, clip_window) -> None:
    win = clip_window
    _keys_calm_and_angry(win)
    win.set_playhead(7)
    before = win.palette.rows[ANGER].spin.value()
    key = next(k for k in win.doc.keyframes if k.frame == 14)
    win.timeline.move_keyframe(key.uid, 9)  # the ramp now ends at 9: frame 7 is angrier
    after = win.palette.rows[ANGER].spin.value()
    assert after > before + 0.2
    win.doc.undo_stack.undo()
    assert win.palette.rows[ANGER].spin.value() == pytest.approx(before, abs=0.01)
    win.interp.setCurrentText("linear")
    assert win.doc.weights[ANGER] == pytest.approx(0.5, abs=0.01)  # 7/14 of the way, linearly


def test_reopened_project_shows_the_curve_at_the_playhead(qtbot, clip_window, tmp_path) -> None:
    win = clip_window
    _keys_calm_and_angry(win)
    win.set_playhead(14)  # the live sliders read anger 1
    path = str(tmp_path / "p.moee")
    assert win.save_project(path)
    assert win.open_project(path)
    assert win.playhead == 0
    assert win.doc.weights[ANGER] == pytest.approx(0.0)  # the calm key, not the saved live sliders


def test_k_works_after_typing_into_a_spin_box(qtbot, clip_window) -> None:
    win = clip_window
    spin = win.palette.rows[ANGER].spin
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus, timeout=2_000)
    spin.selectAll()
    qtbot.keyClicks(spin, "1")
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert win.doc.weights[ANGER] == pytest.approx(1.0)
    qtbot.keyClick(spin, Qt.Key.Key_K)
    assert [k.frame for k in win.doc.keyframes] == [win.playhead]
    assert win.doc.keyframes[0].weights[ANGER] == pytest.approx(1.0)


def test_slider_keyboard_steps_are_005_and_025(qtbot, clip_window) -> None:
    win = clip_window
    slider = win.palette.rows[0].slider
    slider.setFocus()
    qtbot.keyClick(slider, Qt.Key.Key_Right)
    assert win.doc.weights[0] == pytest.approx(0.05)
    qtbot.keyClick(slider, Qt.Key.Key_PageUp)
    assert win.doc.weights[0] == pytest.approx(0.30)


def test_navigation_shortcuts(qtbot, clip_window) -> None:
    win = clip_window
    _keys_calm_and_angry(win, last=10)
    win.act_last_frame.trigger()
    assert win.playhead == 14
    win.act_prev_key.trigger()
    assert win.playhead == 10
    win.act_prev_frame.trigger()
    assert win.playhead == 9
    win.act_next_frame.trigger()
    win.act_next_frame.trigger()
    assert win.playhead == 11
    win.act_first_frame.trigger()
    assert win.playhead == 0
    win.act_next_key.trigger()
    assert win.playhead == 10
    table = dict(win.shortcut_table())
    for name in ("Add keyframe", "Play / pause", "Next keyframe", "Previous frame", "First frame", "Export"):
        assert name in table, f"{name} is missing from Help > Keyboard shortcuts"
    assert "(K)" in win.act_key.toolTip()


def test_plain_click_on_a_key_moves_the_playhead_without_selecting_it(qtbot, clip_window) -> None:
    win = clip_window
    _keys_calm_and_angry(win)
    win.set_playhead(7)
    key0 = next(k for k in win.doc.keyframes if k.frame == 0)

    class Click:
        def __init__(self, mods: Qt.KeyboardModifier, double: bool = False) -> None:
            self._mods, self._double = mods, double

        def modifiers(self) -> Qt.KeyboardModifier:
            return self._mods

        def double(self) -> bool:
            return self._double

    line = win.timeline._key_lines[key0.uid]
    line.sigClicked.emit(line, Click(Qt.KeyboardModifier.NoModifier))
    assert win.playhead == 0 and win.timeline.selected_uid == 0
    assert not win.timeline.delete_selected()  # Delete after rewinding removes nothing
    assert len(win.doc.keyframes) == 2
    line.sigClicked.emit(line, Click(Qt.KeyboardModifier.ShiftModifier))
    assert win.timeline.selected_uid == key0.uid


def test_a_stroke_under_key_masks_is_keyed_and_survives_a_playhead_move(qtbot, clip_window) -> None:
    win = clip_window
    win.set_playhead(7)
    win.add_keyframe()
    win.brush_panel.emotion.setCurrentIndex(ANGER)
    win.canvas.stroke([(10.0, 10.0), (20.0, 10.0)])
    painted = win.doc.masks[ANGER].copy()
    assert painted.max() > 0
    win.set_playhead(3)
    win.set_playhead(7)
    assert np.allclose(win.doc.masks[ANGER], painted)  # keyed automatically, not lost


def test_a_rejected_portrait_does_not_become_the_projects(qtbot, clip_window, tmp_path) -> None:
    from studio import engine_api

    if engine_api.is_portrait_animator(clip_window.service.animator):
        pytest.skip("needs the crop model")
    win = clip_window
    before = win.doc.state.portrait_path
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"nope")
    assert not win.open_portrait(str(bad))
    assert win.doc.state.portrait_path == before


def test_a_no_face_image_is_refused_and_the_project_keeps_its_portrait(qtbot, portrait_animator, astronaut_path,
                                                                       tmp_path) -> None:
    from PIL import Image

    from tests.studio.conftest import portrait_window

    with portrait_window(qtbot, portrait_animator, astronaut_path, flipbook=False, show=False) as win:
        blank = tmp_path / "blank.png"
        Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(blank)
        with qtbot.waitSignal(win.errorReported, timeout=30_000) as blocker:
            win.open_portrait(str(blank))
        assert "face" in blocker.args[0].lower()
        assert win.doc.state.portrait_path == str(Path(astronaut_path).resolve())
        assert win.preview.status.text() != "rendering…"
        assert win.service.prepared_inputs is not None  # the astronaut still renders
        # a project whose own portrait has no face opens, and shows no face rather than the astronaut
        proj = tmp_path / "p.moee"
        win.doc.set_input(portrait=str(blank))
        assert win.save_project(str(proj))
        with qtbot.waitSignal(win.errorReported, timeout=30_000):
            assert win.open_project(str(proj))
        qtbot.waitUntil(lambda: win.service.prepared_inputs is None, timeout=10_000)
        assert win.canvas.portrait is None
