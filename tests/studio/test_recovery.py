"""Crash recovery never loses work (issue 19): per-instance autosaves, offered on open, never over a newer save.

A kill -9 is simulated by leaving behind the recovery file of a process that has ended (the pid
of a finished subprocess), exactly what a crashed studio leaves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton

from studio import project_io, settings
from studio.document import DocumentState
from tests.studio.conftest import dispose

WEIGHTS_SAVED = [0.5, 0.0, 0.0, 0.0, 0.0, 0.0]
WEIGHTS_AUTOSAVED = [0.0, 0.0, 0.75, 0.0, 0.0, 0.25]
AN_HOUR = 3600


@pytest.fixture
def recovery_dir(tmp_path: Path) -> Iterator[Path]:
    """A private recovery folder for this test (set before any window is made)."""
    folder = tmp_path / "recovery"
    s = settings.make_settings()
    s.setValue("recovery_dir", str(folder))
    s.sync()
    yield folder
    s = settings.make_settings()
    s.remove("recovery_dir")
    s.sync()


@pytest.fixture
def make_window(qtbot, animator):
    """Build main windows with dialogs on (the recovery question is a real modal QMessageBox)."""
    from studio.main_window import MainWindow

    made = []

    def make(dialogs: bool = True) -> MainWindow:
        win = MainWindow(animator=animator, show_dialogs=dialogs, autosave=False)
        win.show()  # not qtbot.addWidget: it would close the window before dialogs are turned off
        made.append(win)
        return win

    yield make
    for win in made:
        win.show_dialogs = False  # no "discard changes?" question while tearing down
        dispose(win)


class Answerer:
    """Answers every recovery question that appears (by clicking the named button) and records it."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.asked: list[str] = []
        self.timer = QTimer()
        self.timer.timeout.connect(self._poll)

    def _poll(self) -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            self.asked.append(box.text())
            box.findChild(QPushButton, f"recovery_{self.answer}").click()

    def __enter__(self) -> Answerer:
        self.timer.start(20)
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.stop()


def dead_pid() -> int:
    """The pid of a process that has ended (what a studio killed with -9 leaves in its file name)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def state(weights: list[float]) -> DocumentState:
    return DocumentState(weights=list(weights))


def save(path: Path, weights: list[float], age_s: float = 0.0) -> Path:
    """Save a project (its modification time ``age_s`` seconds in the past)."""
    project_io.save_project(state(weights), path)
    if age_s:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
    return path


def leave_recovery(folder: Path, pid: int, weights: list[float], original: Path | None, age_s: float = 0.0) -> Path:
    """The recovery file an instance ``pid`` autosaved (``age_s`` seconds ago) before it died."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"recovery-{pid}.moee"
    data = project_io.state_to_json(state(weights), path)
    data["recovered_from"] = None if original is None else str(original.resolve())
    path.write_text(json.dumps(data))
    if age_s:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
    return path


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


# --------------------------------------------------------------------------- item 2
def test_opening_a_project_offers_its_recovery(qtbot, make_window, recovery_dir: Path, tmp_path: Path) -> None:
    """`moee-studio r2.moee` after a kill -9: the autosaved edits are offered, as a copy."""
    project = save(tmp_path / "r2.moee", WEIGHTS_SAVED, age_s=AN_HOUR)
    before = snapshot(project)
    orphan = leave_recovery(recovery_dir, dead_pid(), WEIGHTS_AUTOSAVED, project)
    other = leave_recovery(recovery_dir, dead_pid(), WEIGHTS_SAVED, tmp_path / "other.moee")
    win = make_window()
    with Answerer("recover") as answers:
        assert win.open_project(str(project))
    assert len(answers.asked) == 1 and "r2.moee" in answers.asked[0]  # only this project's autosave
    assert win.doc.weights == pytest.approx(WEIGHTS_AUTOSAVED)
    assert win.doc.path is None and win.doc.is_modified()
    assert "recovered copy of r2.moee" in win.windowTitle()
    assert snapshot(project) == before
    assert not orphan.exists() and win.recovery_path.exists()  # the work moved to this window's file
    assert other.exists()  # another project's autosave waits for that project
    win.show_dialogs = False
    win.shutdown()
    assert not win.recovery_path.exists()


# --------------------------------------------------------------------------- item 3
def test_autosave_older_than_the_save_is_not_offered(qtbot, make_window, recovery_dir: Path, tmp_path: Path) -> None:
    """Edit A, autosave, edit B, save, kill -9: restarting never offers A over B."""
    orphan = leave_recovery(recovery_dir, dead_pid(), WEIGHTS_AUTOSAVED, tmp_path / "p.moee", age_s=AN_HOUR)
    project = save(tmp_path / "p.moee", WEIGHTS_SAVED)
    before = snapshot(project)
    win = make_window()
    with Answerer("recover") as answers:
        assert win.offer_recovery() is False
    assert answers.asked == []
    assert not orphan.exists()
    assert snapshot(project) == before


def test_autosave_identical_to_the_save_is_not_offered(qtbot, make_window, recovery_dir: Path, tmp_path: Path) -> None:
    project = save(tmp_path / "same.moee", WEIGHTS_SAVED, age_s=AN_HOUR)
    orphan = leave_recovery(recovery_dir, dead_pid(), WEIGHTS_SAVED, project)
    win = make_window()
    with Answerer("recover") as answers:
        assert win.offer_recovery() is False
    assert answers.asked == [] and not orphan.exists()


def test_recovered_copy_is_never_saved_over_the_project(qtbot, make_window, recovery_dir: Path, tmp_path: Path) -> None:
    """Ctrl+S on a recovered copy asks where to save; it never silently writes over X."""
    project = save(tmp_path / "x.moee", WEIGHTS_SAVED, age_s=AN_HOUR)
    before = snapshot(project)
    leave_recovery(recovery_dir, dead_pid(), WEIGHTS_AUTOSAVED, project)
    win = make_window()
    with Answerer("recover") as answers:
        assert win.offer_recovery()
    assert len(answers.asked) == 1 and "x.moee" in answers.asked[0]
    assert "recovered copy of x.moee" in win.windowTitle()
    win.show_dialogs = False  # no file dialog to answer: Save must then write nothing
    win.act_save.trigger()
    assert win.save_project() is False
    assert snapshot(project) == before
    copy = tmp_path / "x-recovered.moee"
    assert win.save_project(str(copy))  # an explicit choice of file
    assert win.doc.path == str(copy.resolve()) and "recovered copy" not in win.windowTitle()
    assert project_io.load_project(copy).weights == pytest.approx(WEIGHTS_AUTOSAVED)
    assert snapshot(project) == before


def test_saving_clears_the_autosave(qtbot, make_window, recovery_dir: Path, tmp_path: Path) -> None:
    win = make_window(dialogs=False)
    win.palette.apply_preset("hatred")
    recovery = win.autosave()
    assert recovery is not None and recovery.exists()
    assert win.save_project(str(tmp_path / "saved.moee"))
    assert not recovery.exists()


# --------------------------------------------------------------------------- item 4
def test_live_instances_autosave_is_never_offered_or_deleted(qtbot, make_window, recovery_dir: Path, tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        theirs = leave_recovery(recovery_dir, live.pid, WEIGHTS_AUTOSAVED, None)
        first, second = make_window(), make_window()
        assert first.recovery_path != second.recovery_path
        second.palette.apply_preset("hatred")
        sibling = second.autosave()
        assert sibling is not None
        with Answerer("discard") as answers:
            assert first.offer_recovery() is False
        assert answers.asked == []
        assert theirs.exists() and sibling.exists()
        first.show_dialogs = False
        first.shutdown()  # a clean exit removes only this window's own file
        assert theirs.exists() and sibling.exists()
    finally:
        live.kill()
        live.wait()
    third = make_window()  # the other instance has died now: its work is offered
    with Answerer("keep") as answers:
        assert third.offer_recovery() is False
    assert len(answers.asked) == 1 and theirs.exists()  # "Later" keeps it
    with Answerer("discard") as answers:
        third.offer_recovery()
    assert len(answers.asked) == 1 and not theirs.exists()


def test_orphan_listing_follows_the_owner_process(recovery_dir: Path) -> None:
    recovery_dir.mkdir(parents=True)
    own = settings.recovery_file()
    own.write_text("{}")
    dead = recovery_dir / f"recovery-{dead_pid()}.moee"
    dead.write_text("{}")
    (recovery_dir / ".recovery-1.abc.tmp.moee").write_text("{}")  # an unfinished atomic write
    assert settings.orphan_recovery_files() == [dead]
    assert settings.pid_alive(os.getpid())


# --------------------------------------------------------------------------- item 12
def test_closing_while_the_model_loads_prints_nothing(qtbot, animator, monkeypatch, capfd) -> None:
    """The window is deleted while a (slow) model load runs; the load's end must not emit."""
    from studio import engine_api, render_service
    from studio.engine_thread import engine_pool
    from studio.main_window import MainWindow

    started, release = threading.Event(), threading.Event()
    real_load = engine_api.load_animator

    def slow_load(model_dir: str | None, **options):
        started.set()
        release.wait(30)
        return real_load(model_dir, **options)

    monkeypatch.setattr(engine_api, "load_animator", slow_load)
    monkeypatch.setattr(render_service, "SHUTDOWN_WAIT_MS", 100, raising=False)
    win = MainWindow(model_dir=engine_api.TINY, show_dialogs=False, autosave=False)
    assert started.wait(10)
    capfd.readouterr()
    win.close()
    win.deleteLater()
    from PySide6.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    release.set()
    assert engine_pool().waitForDone(30_000)
    qtbot.wait(50)
    err = capfd.readouterr().err
    assert "Signal source has been deleted" not in err
    assert "Traceback" not in err
