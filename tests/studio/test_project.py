"""Project files: save/open round trip, corrupt files change nothing, autosave + recovery, settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from studio import project_io, settings
from studio.keyframes import Keyframe


def _edit(win) -> None:
    win.palette.apply_preset("sadly angry")
    win.brush_panel.emotion.setCurrentIndex(4)
    win.canvas.stroke([(5.0, 5.0), (12.0, 20.0)])
    win.set_playhead(7)
    win.add_keyframe()
    win.doc.render.seed = 42


def test_save_open_round_trip(qtbot, ready_window, speech_path, tmp_path: Path) -> None:
    win = ready_window
    with qtbot.waitSignal(win.preparedReady, timeout=30_000):
        assert win.open_audio(speech_path)
    _edit(win)
    path = tmp_path / "shot.moee"
    assert win.save_project(str(path))
    assert not win.doc.is_modified()
    data = json.loads(path.read_text())
    assert data["format"] == "moee-project" and data["version"] == project_io.VERSION
    before = win.doc.state
    masks_before = win.doc.masks.copy()

    state = project_io.load_project(path)
    assert state.weights == pytest.approx(before.weights)
    assert state.portrait_path == before.portrait_path and state.audio_path == before.audio_path
    assert np.abs(state.masks - masks_before).max() < 1e-4  # 16-bit PNG precision
    assert [k.frame for k in state.keyframes] == [7]
    assert state.keyframes[0].masks is not None
    assert state.render.seed == 42
    assert settings.recent_files()[0] == str(path.resolve())

    win.new_project()
    assert win.doc.weights == [0.0] * 6
    with qtbot.waitSignal(win.preparedReady, timeout=30_000):
        assert win.open_project(str(path))
    assert win.doc.weights == pytest.approx(before.weights)
    assert np.abs(win.doc.masks - masks_before).max() < 1e-4
    assert win.doc.path == str(path.resolve())


@pytest.mark.parametrize(
    "content",
    [
        "{ this is not json",
        json.dumps({"format": "something-else", "version": 1}),
        json.dumps({"format": "moee-project", "version": 99}),
        json.dumps({"format": "moee-project", "version": 1, "emotions": ["happiness"], "weights": [7]}),
        json.dumps({"format": "moee-project", "version": 1, "emotions": ["a", "b"], "weights": [0, 0],
                    "masks": {"height": 4, "width": 4, "png": ["!!notbase64!!", None]}}),
    ],
)
def test_corrupt_project_reports_error_and_changes_nothing(qtbot, ready_window, tmp_path: Path, content: str) -> None:
    win = ready_window
    win.palette.apply_preset("awed")
    win.add_keyframe()
    weights, keys, path_before = win.doc.weights, [k.frame for k in win.doc.keyframes], win.doc.path
    undo_count = win.doc.undo_stack.count()
    bad = tmp_path / "broken.moee"
    bad.write_text(content)
    with qtbot.waitSignal(win.errorReported, timeout=2000) as blocker:
        assert win.open_project(str(bad)) is False
    assert "broken.moee" in blocker.args[0]
    assert win.doc.weights == weights
    assert [k.frame for k in win.doc.keyframes] == keys
    assert win.doc.path == path_before
    assert win.doc.undo_stack.count() == undo_count


def test_missing_project_file_is_reported(qtbot, window, tmp_path: Path) -> None:
    with qtbot.waitSignal(window.errorReported, timeout=2000) as blocker:
        assert not window.open_project(str(tmp_path / "nope.moee"))
    assert "not found" in blocker.args[0]


def test_autosave_and_recovery(qtbot, ready_window) -> None:
    win = ready_window
    assert win.doc.is_modified()  # choosing a portrait is an unsaved change
    win.doc.mark_saved()
    assert win.autosave() is None  # nothing to save
    win.palette.apply_preset("hatred")
    recovery = win.autosave()
    assert recovery is not None and recovery.exists() and recovery == win.recovery_path
    assert recovery not in win.pending_recovery()  # this instance's own file is never offered
    weights = win.doc.weights
    kept = recovery.with_name("kept-copy.moee")
    kept.write_bytes(recovery.read_bytes())

    win.new_project()
    assert win.doc.weights == [0.0] * 6
    assert not recovery.exists()  # starting a new project discards the old one's autosave
    assert win.recover(kept)
    assert win.doc.weights == pytest.approx(weights)
    assert win.doc.is_modified()
    assert recovery.exists() and not kept.exists()  # the recovered work lives in this window's file now
    win.shutdown()  # a clean exit removes the recovery file
    assert not recovery.exists()


def test_atomic_save_leaves_no_temp_files(qtbot, window, tmp_path: Path) -> None:
    window.doc.add_keyframe(Keyframe(0, [0.1] * 6))
    path = tmp_path / "p.moee"
    assert window.save_project(str(path))
    assert window.save_project(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.moee"]


def test_window_state_goes_to_private_settings(qtbot, window, _private_settings: Path) -> None:
    window.save_window_state()
    assert _private_settings.exists()
    assert "geometry" in _private_settings.read_text()
