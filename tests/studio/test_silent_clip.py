"""Emotion-only clips in the studio (issue 25, item 6): without audio the user sets the clip's length;
the timeline, flipbook, playback and export follow it, and the project keeps it. Real widgets, the
bundled PortraitAnimator on a real photograph (skimage's astronaut), the export read back with PyAV."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PySide6.QtCore import Qt

from engine.io.video import probe_video, read_frames
from studio.document import DocumentState
from studio.project_io import ProjectError, load_project, save_project, state_from_json, state_to_json
from tests.studio.conftest import portrait_window

FPS = 25


@pytest.fixture
def silent_win(qtbot, portrait_animator, astronaut_path):
    """A window on the PortraitAnimator with the astronaut prepared, no audio."""
    with portrait_window(qtbot, portrait_animator, astronaut_path) as win:
        yield win


def test_a_clip_without_audio_lasts_the_length_the_user_sets(qtbot, silent_win, tmp_path: Path) -> None:
    win = silent_win
    assert win.timeline.num_frames == 1 and win.audio_panel.length_box.text() == "still"
    assert win.audio_panel.length_box.isEnabled()
    with qtbot.waitSignal(win.preparedReady, timeout=60_000):
        win.audio_panel.length_box.setValue(2.0)  # what typing 2 and Enter does (no keyboard tracking)
    assert win.doc.state.duration == 2.0
    assert (win.timeline.num_frames, win.timeline.fps) == (50, FPS)
    assert win.transport.num_frames == 50 and win.flipbook.num_frames == 50
    # keyframes over the whole length: neutral at the start, happiness at the last frame
    win.set_playhead(0)
    win.add_keyframe()
    win.set_playhead(49)
    assert win.playhead == 49
    win.palette.rows[0].slider.setValue(1000)
    win.add_keyframe()
    win.set_playhead(0)

    qtbot.mouseClick(win.audio_panel.play_button, Qt.MouseButton.LeftButton)  # the panel's Play button
    assert win.transport.playing
    qtbot.waitUntil(lambda: win.playhead > 0, timeout=10_000)
    qtbot.mouseClick(win.audio_panel.play_button, Qt.MouseButton.LeftButton)
    assert not win.transport.playing

    dialog = win.show_export()
    qtbot.addWidget(dialog)
    assert dialog.stop.maximum() == 50 and dialog.stop.value() == 50
    out = tmp_path / "reaction.mp4"
    dialog.path.setText(str(out))
    with qtbot.waitSignal(dialog.exported, timeout=120_000):
        assert dialog.start_export() is not None
    info = probe_video(out)
    assert info.frames == 50 and info.duration == pytest.approx(2.0, abs=1e-3)
    assert info.audio_codec == "aac" and info.audio_duration == pytest.approx(2.0, abs=1024 / 48_000)
    with av.open(str(out)) as container:
        silence = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    assert np.max(np.abs(silence)) < 1e-4
    frames = list(read_frames(out))
    change = [np.abs(f.astype(np.int16) - frames[0].astype(np.int16)).mean() for f in (frames[1], frames[-1])]
    assert change[1] > 4 * change[0] and change[1] > 0.1  # the keyed emotion plays out over the clip (face only)


def test_the_length_is_saved_in_the_project_and_old_projects_load(tmp_path: Path) -> None:
    state = DocumentState(duration=3.5)
    path = tmp_path / "reaction.moee"
    save_project(state, path)
    assert load_project(path).duration == 3.5
    data = state_to_json(DocumentState(), path)
    assert data["duration"] is None
    del data["duration"]  # a project saved before the field existed
    assert state_from_json(data, path).duration is None
    for bad in (0, -1, "2", True, 1e9, float("nan")):
        data["duration"] = bad
        with pytest.raises(ProjectError, match="'duration'"):
            state_from_json(json.loads(json.dumps(data)), path)
