"""Autosave and crash recovery of the main window: each window autosaves unsaved work to its own recovery
file; files left by instances that ended without a clean exit are judged against their saved project and
offered as an untitled recovered copy (studio/README.md, "Autosave and recovery").

:class:`RecoveryMixin` is a part of :class:`studio.main_window.MainWindow` (it uses the window's document,
``recovery_path``, ``recovered_from`` and messages).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from PySide6.QtWidgets import QMessageBox

from studio import project_io, settings
from studio.engine_api import MoEEError, atomic_write_text


def same_path_key(path: str | os.PathLike[str]) -> str:
    """A key equal for two spellings of one file (resolved, case-folded where the file system folds case)."""
    return os.path.normcase(str(Path(path).resolve()))


class RecoveryMixin:
    """Autosave and recovery of the window's work (mixed into :class:`studio.main_window.MainWindow`)."""

    def autosave(self) -> Path | None:
        """Write this window's recovery file when there are unsaved changes (returns its path)."""
        if not self.doc.is_modified():
            return None
        target = self.recovery_path
        try:
            data = project_io.state_to_json(self.doc.state, target)
            data["recovered_from"] = self.doc.path or self.recovered_from
            data["autosaved_at"] = time.time()
            data["pid"] = os.getpid()
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, json.dumps(data))
        except (MoEEError, OSError) as exc:
            self.status(f"Autosave failed: {exc}")
            return None
        return target

    def _drop_own_recovery(self) -> None:
        """Delete this window's recovery file (after a save, a discard, or a clean exit)."""
        try:
            self.recovery_path.unlink(missing_ok=True)
        except OSError as exc:
            self.status(f"Cannot remove the autosave file: {exc}")

    @staticmethod
    def recovery_status(path: str | os.PathLike[str]) -> tuple[str, str | None]:
        """Judge a recovery file against the project it was autosaved from.

        Returns ``(verdict, project path or None)``, the verdict one of ``"offer"`` (it holds work
        newer than any save), ``"older"`` (the project was saved after this autosave),
        ``"identical"`` (the saved project holds the same work) or ``"unreadable"``.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            original = data.get("recovered_from") if isinstance(data, dict) else None
            recovered = project_io.state_from_json(data, path)
        except (MoEEError, OSError, ValueError):
            return "unreadable", None
        if not isinstance(original, str) or not original:
            return "offer", None
        saved_path = Path(original)
        try:
            if saved_path.stat().st_mtime_ns > path.stat().st_mtime_ns:
                return "older", original
            saved = project_io.load_project(saved_path)
        except (MoEEError, OSError):
            return "offer", original  # the saved file is gone or unreadable: the autosave is all there is
        if project_io.state_to_json(recovered, saved_path) == project_io.state_to_json(saved, saved_path):
            return "identical", original
        return "offer", original

    def pending_recovery(self, project: str | os.PathLike[str] | None = None) -> list[Path]:
        """Recovery files of ended instances worth offering (of ``project`` only, when given).

        Files older than, or identical to, their saved project are deleted here: the save is newer.
        Files of instances that still run are never listed (see ``settings.orphan_recovery_files``).
        """
        wanted = None if project is None else same_path_key(project)
        found = []
        for path in settings.orphan_recovery_files():
            verdict, original = self.recovery_status(path)
            if wanted is not None and (original is None or same_path_key(original) != wanted):
                continue
            if verdict in ("older", "identical"):
                with contextlib.suppress(OSError):
                    path.unlink()
                self.status(f"Discarded an autosave of {Path(original or '').name}: the saved project is newer")
            elif verdict == "offer":
                found.append(path)
        return found

    def recover(self, path: str | os.PathLike[str]) -> bool:
        """Open a recovery file as an unsaved *copy*: untitled, so Save asks where (the original is untouched)."""
        path = Path(path)
        try:
            state = project_io.load_project(path)
            data = json.loads(path.read_text(encoding="utf-8"))
        except (MoEEError, OSError, ValueError) as exc:
            self.report_error(f"The recovery file cannot be read: {exc}")
            return False
        original = data.get("recovered_from") if isinstance(data, dict) else None
        self._load_state(state, None)
        self.recovered_from = original if isinstance(original, str) and original else None
        self.doc.mark_dirty()
        self._update_title()
        if path.resolve() != self.recovery_path.resolve() and self.autosave() is not None:
            with contextlib.suppress(OSError):  # the work now lives in this window's own recovery file
                path.unlink()
        self.status("Recovered unsaved work: save it to keep it")
        return True

    def offer_recovery(self, project: str | os.PathLike[str] | None = None) -> bool:
        """Offer the work of instances that did not exit cleanly (of ``project`` only, when given).

        Returns True when a recovered copy was opened. Without dialogs nothing is asked or deleted.
        """
        for path in self.pending_recovery(project):
            answer = self._ask_recovery(path)
            if answer == "recover":
                return self.recover(path)
            if answer == "discard":
                with contextlib.suppress(OSError):
                    path.unlink()
        return False

    def _ask_recovery(self, path: Path) -> str:
        """Ask about one recovery file: ``"recover"``, ``"discard"`` or ``"keep"`` (ask again later)."""
        if not self.show_dialogs:
            return "keep"
        _verdict, original = self.recovery_status(path)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
        what = f"unsaved changes to {Path(original).name}" if original else "an unsaved project"
        box = QMessageBox(QMessageBox.Icon.Question, "Recover unsaved work?",
                          f"MoEE Studio did not exit cleanly and left {what} (autosaved {when}).\n\n"
                          "Open them as a recovered copy? The saved project is not changed until you "
                          "save the copy yourself.", QMessageBox.StandardButton.NoButton, self)
        buttons = {
            "recover": box.addButton("Open recovered copy", QMessageBox.ButtonRole.AcceptRole),
            "discard": box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole),
            "keep": box.addButton("Later", QMessageBox.ButtonRole.RejectRole),
        }
        for name, button in buttons.items():
            button.setObjectName(f"recovery_{name}")
        box.setDefaultButton(buttons["recover"])
        box.setEscapeButton(buttons["keep"])
        box.exec()
        clicked = box.clickedButton()
        box.deleteLater()
        return next((name for name, button in buttons.items() if button is clicked), "keep")
