"""File > Batch export…: a folder of audio files rendered with the current project's settings (issue 28)."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import pytest

from tests.studio.conftest import dispose


@pytest.fixture
def pwin(qtbot, portrait_animator, astronaut_path):
    """A window on the PortraitAnimator with the astronaut open (no preview needed)."""
    from studio.main_window import MainWindow

    win = MainWindow(animator=portrait_animator, show_dialogs=False, autosave=False)
    win.flipbook.enabled = False
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.previewSettled, timeout=60_000):
        assert win.open_portrait(astronaut_path)
    yield win
    dispose(win)


def test_batch_export_renders_a_folder_of_lines_with_the_project_settings(qtbot, pwin, speech_path, tmp_path):
    lines = tmp_path / "lines"
    lines.mkdir()
    for name in ("hello.wav", "goodbye.wav"):
        shutil.copy(speech_path, lines / name)
    (lines / "notes.txt").write_text("not audio")
    pwin.doc.set_weights([0.0, 0.0, 0.7, 0.0, 0.0, 0.0])
    pwin.doc.render.fps = 20
    dialog = pwin.show_batch_export()
    dialog.source.setText(str(lines))
    out = tmp_path / "clips"
    dialog.output.setText(str(out))
    with qtbot.waitSignal(dialog.finished_batch, timeout=90_000) as blocker:
        assert dialog.start_batch() is not None
    ok, message = blocker.args
    assert ok, message
    assert "2 rendered, 0 failed" in message
    for name in ("hello.mp4", "goodbye.mp4"):
        with av.open(str(out / name)) as container:
            assert container.streams.video[0].average_rate == 20  # the project's fps
    assert (out / "moee-batch-settings.moee").is_file()
    with qtbot.waitSignal(dialog.finished_batch, timeout=60_000) as again:  # nothing changed: nothing to render
        dialog.start_batch()
    assert "0 rendered, 0 failed, 2 already done" in again.args[1]
    assert dialog.status.text() == again.args[1]
    assert Path(out / "hello.mp4").stat().st_size > 0
