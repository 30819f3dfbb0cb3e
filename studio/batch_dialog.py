"""Batch export: many lines of dialogue with the current project's character (File > Batch export…).

The source is a folder of audio files (one clip per file, named after it) or a ``moee batch`` manifest
(CSV or JSON lines). Every clip gets the current project's settings, saved beside the clips as
:data:`SETTINGS_FILE` (portrait, sliders, keyframes, masks, fps, blinks, head motion, gaze, seed): a manifest
row that names no emotion, text or project takes them, and no portrait, the project's portrait.

The batch is the engine's (engine/batch.py, the same as ``moee batch``): the whole source is checked
first and every problem listed; each clip is written atomically; a failed clip is listed in the report and
the others go on; running the batch again into the same folder renders only what is missing or changed.
It runs on its own thread (the preview stays live), with progress, and Cancel stops within a frame.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio import engine_api
from studio.engine_api import MoEEError

#: The current project's settings, written into the output folder for the batch's jobs.
SETTINGS_FILE = "moee-batch-settings.moee"
#: Audio files a folder source renders (one clip each).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac"})
#: The long side of the clips (the studio renders the portrait up to this size).
BATCH_MAX_SIZE = 1024


def folder_rows(folder: Path) -> list[tuple[int, dict[str, Any]]]:
    """One manifest row per audio file of ``folder`` (sorted by name): the clip is named after the file."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise MoEEError(f"{folder} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    return [(i + 1, {"audio": str(p), "output": p.stem + ".mp4"}) for i, p in enumerate(files)]


def with_project(rows: list[tuple[int, dict[str, Any]]], project: Path) -> list[tuple[int, dict[str, Any]]]:
    """Rows that set no emotion (mix, text or project) take the current project's settings."""
    return [(line, row if {"emotion", "text", "project"} & set(row) else {**row, "project": str(project)})
            for line, row in rows]


class BatchJob(QObject):
    """Checks and renders a batch on its own thread; reports each clip as it is finished."""

    progress = Signal(int, int, int, int, float)  # done, failed, left, skipped, eta seconds (-1: unknown)
    done = Signal(bool, str)  # ok (nothing failed, not cancelled), message

    def __init__(self, source: str, out_dir: str, project_state: Any, workers: int = 1) -> None:
        super().__init__()
        self.source, self.out_dir, self.state, self.workers = Path(source), Path(out_dir), project_state, int(workers)
        self.stop = threading.Event()
        self.result: tuple[bool, str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="moee-batch", daemon=True)
        self._thread.start()

    def isRunning(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        if self._thread is not None:
            self._thread.join(timeout_ms / 1000.0)
        return not self.isRunning()

    def cancel(self) -> None:
        """Stop within a frame; the clip in progress is not written, the finished ones are kept."""
        self.stop.set()

    def run(self) -> None:
        try:
            self.result = self._run()
        except MoEEError as exc:
            self.result = (False, str(exc))
        except Exception as exc:  # the thread must always answer
            self.result = (False, f"{type(exc).__name__}: {exc}")
        self.done.emit(*self.result)

    def _run(self) -> tuple[bool, str]:
        from studio.project_io import save_project

        if self.source.is_dir():
            rows = folder_rows(self.source)
            manifest = self.source / "(audio folder)"
        else:
            rows = engine_api.read_manifest(self.source)
            manifest = self.source
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise MoEEError(f"the output folder {self.out_dir} is a file")
        project = self.out_dir / SETTINGS_FILE
        rows = with_project(rows, project)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_project(self.state, project)  # portrait path stored relative to it: the same file every run
        plan = engine_api.plan_batch(manifest, self.out_dir, engine_api.BatchDefaults(max_size=BATCH_MAX_SIZE),
                                     rows=rows)
        pending = len(plan.pending)
        self.progress.emit(0, 0, pending, len(plan.done), -1.0)
        start = time.monotonic()

        def on_result(_result: Any, summary: Any) -> None:
            finished = summary.done + summary.failed
            eta = (time.monotonic() - start) / finished * summary.left if finished else -1.0
            self.progress.emit(summary.done, summary.failed, summary.left, summary.skipped, eta)

        summary = engine_api.run_batch(plan, workers=self.workers, on_result=on_result, stop_event=self.stop)
        report = self.out_dir / engine_api.BATCH_REPORT_FILE
        text = (f"{summary.done} rendered, {summary.failed} failed, {summary.skipped} already done"
                + (f", {summary.left} left (cancelled)" if summary.interrupted else "") + f"; report: {report}")
        return not summary.failed and not summary.interrupted, text


class BatchDialog(QDialog):
    """Pick a folder of audio files or a manifest and an output folder; render with progress and cancel."""

    finished_batch = Signal(bool, str)

    def __init__(self, window: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Batch export")
        self.window_ = window
        self.job: BatchJob | None = None
        self.source = QLineEdit()
        self.source.setPlaceholderText("a folder of audio files, or a manifest (.csv / .jsonl)")
        folder_button, manifest_button, out_button = QPushButton("Folder…"), QPushButton("Manifest…"), QPushButton("…")
        folder_button.clicked.connect(self._pick_folder)
        manifest_button.clicked.connect(self._pick_manifest)
        out_button.clicked.connect(self._pick_output)
        source_row = QHBoxLayout()
        for widget in (self.source, folder_button, manifest_button):
            source_row.addWidget(widget, 1 if widget is self.source else 0)
        self.output = QLineEdit()
        out_row = QHBoxLayout()
        out_row.addWidget(self.output, 1)
        out_row.addWidget(out_button)
        self.workers = QSpinBox()
        self.workers.setRange(1, max(1, os.cpu_count() or 1))
        self.workers.setValue(1)
        self.workers.setToolTip("Processes rendering at once (each loads the model once)")
        self.bar = QProgressBar()
        self.status = QLabel("Each clip uses this project's portrait, emotions, keyframes, masks and life settings.")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Source", source_row)
        form.addRow("Output folder", out_row)
        form.addRow("Workers", self.workers)
        self.render_button, self.cancel_button, close = QPushButton("Render"), QPushButton("Cancel"), QPushButton("Close")
        self.render_button.setDefault(True)
        self.cancel_button.setEnabled(False)
        self.render_button.clicked.connect(self.start_batch)
        self.cancel_button.clicked.connect(self.cancel_batch)
        close.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.render_button, self.cancel_button, close):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.resize(560, 240)

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of audio files")
        if path:
            self.source.setText(path)
            if not self.output.text():
                self.output.setText(str(Path(path) / "clips"))

    def _pick_manifest(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Batch manifest", "", "Manifests (*.csv *.jsonl *.ndjson);;All (*)")
        if path:
            self.source.setText(path)
            if not self.output.text():
                self.output.setText(str(Path(path).with_suffix("")) + "-clips")

    def _pick_output(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder for the clips")
        if path:
            self.output.setText(path)

    def start_batch(self) -> BatchJob | None:
        """Start the batch (returns the job; ``None`` when something is missing)."""
        state = self.window_.doc.state
        if not state.portrait_path:
            self.status.setText("Open a portrait first: every clip animates the project's portrait.")
            return None
        if not self.source.text().strip() or not self.output.text().strip():
            self.status.setText("Choose a source (audio folder or manifest) and an output folder.")
            return None
        snapshot = copy.deepcopy(state)  # the user may go on editing while the batch runs
        self.job = BatchJob(self.source.text().strip(), self.output.text().strip(), snapshot, self.workers.value())
        self.job.progress.connect(self._progress)
        self.job.done.connect(self._done)
        self.render_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.bar.setRange(0, 0)  # busy until the source is checked
        self.status.setText("Checking the source…")
        self.job.start()
        return self.job

    def cancel_batch(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("Cancelling… (the clip in progress is not written)")

    def _progress(self, done: int, failed: int, left: int, skipped: int, eta: float) -> None:
        total = done + failed + left
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(done + failed)
        remaining = "" if eta < 0 else f", about {eta:.0f} s left"
        self.status.setText(f"done {done}, failed {failed}, left {left}"
                            + (f" ({skipped} already done)" if skipped else "") + remaining)

    def _done(self, ok: bool, message: str) -> None:
        self.render_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1)
        self.status.setText(message)
        self.finished_batch.emit(ok, message)

    def reject(self) -> None:
        if self.job is not None and self.job.isRunning():
            self.job.cancel()
            self.job.wait(30_000)
        super().reject()
