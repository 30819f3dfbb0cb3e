"""Export dialog: MP4 (H.264 + AAC), PNG sequence (optionally with alpha), GIF; progress and cancel.

The render runs on the engine thread (:class:`ExportJob`) through :func:`engine.export.export_clip`,
the same export path as ``moee render``: with the studio's animator (the portrait at its own
resolution by default) and the prepared inputs the preview uses. Engine writers are atomic, so a
cancelled or failed export leaves nothing behind: the file is complete or absent. An earlier PNG
sequence folder is replaced only after the user confirmed it (``overwrite``).
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio import engine_api
from studio.engine_api import CancelledError, MoEEError
from studio.engine_thread import run_on_engine_thread

FORMATS = {
    "mp4": "MP4 video (H.264 + AAC)",
    "png": "PNG sequence (folder)",
    "png-alpha": "PNG sequence with alpha (person matte)",
    "gif": "Animated GIF",
}
SUFFIX = {"mp4": ".mp4", "png": "", "png-alpha": "", "gif": ".gif"}


def with_alpha(image: np.ndarray) -> np.ndarray:
    """RGBA frame whose alpha is the engine's person matte of ``image``."""
    matte = engine_api.person_matte(image)
    alpha = np.clip(np.round(matte * 255.0), 0, 255).astype(np.uint8)
    return np.concatenate([image, alpha[..., None]], axis=2)


class _WithAlpha:
    """The animator seen through a person matte: its clip frames come out RGBA (PNG sequence with alpha).

    Only :meth:`render_clip` is wrapped, so :func:`engine.export.export_clip` stays the one render loop.
    """

    def __init__(self, animator: Any) -> None:
        self.animator = animator

    def render_clip(self, *args: Any, **kwargs: Any) -> Any:
        for result in self.animator.render_clip(*args, **kwargs):
            result.image = with_alpha(result.image)
            yield result


def earlier_export(path: str, fmt: str) -> bool:
    """True when ``path`` is a non-empty folder a PNG sequence would replace (needs the user's yes)."""
    target = Path(path)
    return fmt in ("png", "png-alpha") and target.is_dir() and any(target.iterdir())


class ExportJob(QObject):
    """Renders frames ``start..stop-1`` into ``path`` on the engine thread (see studio.engine_thread)."""

    progress = Signal(int, float)  # frame index, 0..1
    done = Signal(bool, str)  # ok, message (path or error)

    def __init__(
        self,
        animator: Any,
        prepared: Any,
        schedule: Any,
        path: str,
        fmt: str,
        start: int,
        stop: int,
        steps: int,
        seed: int,
        fps: int | None = None,
        lock: threading.RLock | None = None,
        prepare_args: tuple[Any, Any, float | None] | None = None,
        overwrite: bool = False,
        life: Any = None,
    ) -> None:
        super().__init__()
        self.animator, self.prepared, self.schedule = animator, prepared, schedule
        self.path, self.fmt = path, fmt
        self.start_frame, self.stop_frame = int(start), int(stop)
        self.steps, self.seed = int(steps), int(seed)
        self.fps = fps
        self.lock = lock or threading.RLock()
        self.prepare_args = prepare_args
        self.overwrite = bool(overwrite)
        self.life = life  # blinks, head motion and gaze (engine_api.LifeConfig) or None: the renderer's own
        self.token = engine_api.cancel_token()
        self.result: tuple[bool, str] | None = None
        self._finished = threading.Event()
        self._started = False

    def start(self) -> None:
        """Queue the export on the engine thread (returns at once)."""
        self._started = True
        run_on_engine_thread(self.run)

    def isRunning(self) -> bool:
        return self._started and not self._finished.is_set()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until the export finished (True) or the timeout passed (False)."""
        return not self._started or self._finished.wait(timeout_ms / 1000.0)

    def cancel(self) -> None:
        """Stop at the next denoising step; the partial output is discarded."""
        self.token.cancel()

    def run(self) -> None:
        try:
            self._export()
        except CancelledError:
            self.result = (False, "Export cancelled; nothing was written")
        except MoEEError as exc:
            self.result = (False, str(exc))
        except Exception as exc:
            self.result = (False, f"{type(exc).__name__}: {exc}")
        else:
            self.result = (True, self.path)
        finally:
            self._finished.set()
        self.done.emit(*self.result)

    def _export(self) -> None:
        with self.lock:
            prepared = self.prepared
            portrait, audio, duration = self.prepare_args or (None, None, None)
            if self.fps and int(self.fps) != int(prepared.fps) and self.prepare_args is not None:
                prepared = engine_api.prepare_inputs(self.animator, portrait, audio, duration, fps=int(self.fps))
            engine_api.apply_life(prepared, self.life)
            stop = min(self.stop_frame, prepared.num_frames)
            start = min(self.start_frame, stop - 1)
            if self.fmt != "mp4" and prepared.audio is not None:  # only the MP4 carries the track
                prepared = dataclasses.replace(prepared, audio=None)
            count = len(self.animator.emotions)
            schedule = self.schedule

            def gates(frame: int) -> Any:
                return engine_api.fit_gates(schedule(frame), count)

            def on_frame(index: int, progress: float) -> None:
                self.token.check()  # raising here discards the partial output (the writer is atomic)
                self.progress.emit(int(index), float(progress))

            animator = _WithAlpha(self.animator) if self.fmt == "png-alpha" else self.animator
            engine_api.export_clip(
                animator, prepared, self.path, gates=gates, steps=self.steps, seed=self.seed, start=start,
                stop=stop, format="png" if self.fmt == "png-alpha" else self.fmt, cancel=self.token,
                on_frame=on_frame, overwrite=self.overwrite, duration=duration if prepared.audio is None else None,
            )


class ExportDialog(QDialog):
    """Choose format, range, fps, steps and seed; run the export with progress and cancel."""

    exported = Signal(str)

    def __init__(self, window: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export clip")
        self.window_ = window
        self.job: ExportJob | None = None
        prepared = window.service.prepared_inputs
        num_frames = int(prepared.num_frames) if prepared is not None else 1
        fps = int(prepared.fps) if prepared is not None else window.doc.render.fps

        self.format = QComboBox()
        for key, label in FORMATS.items():
            self.format.addItem(label, key)
        self.path = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path, 1)
        path_row.addWidget(browse)
        self.start = QSpinBox()
        self.stop = QSpinBox()
        for s in (self.start, self.stop):
            s.setRange(0, max(0, num_frames))
        self.start.setValue(0)
        self.stop.setValue(num_frames)
        self.fps = QSpinBox()
        self.fps.setRange(1, 120)
        self.fps.setValue(fps)
        self.steps = QSpinBox()
        self.steps.setRange(1, 200)
        self.steps.setValue(window.doc.render.export_steps)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(window.doc.render.seed)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Format", self.format)
        form.addRow("Output", path_row)
        range_row = QHBoxLayout()
        range_row.addWidget(self.start)
        range_row.addWidget(QLabel("to (excl.)"))
        range_row.addWidget(self.stop)
        form.addRow("Frames", range_row)
        form.addRow("FPS", self.fps)
        form.addRow("Steps", self.steps)
        form.addRow("Seed", self.seed)
        if engine_api.is_portrait_animator(window.service.animator):
            # the portrait renderer has no sampling steps or seed: no fields that look editable but do nothing
            form.setRowVisible(self.steps, False)
            form.setRowVisible(self.seed, False)
        self.export_button = QPushButton("Export")
        self.export_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        self.export_button.clicked.connect(self.start_export)
        self.cancel_button.clicked.connect(self.cancel_export)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.export_button, self.cancel_button, close):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.format.currentIndexChanged.connect(self._format_changed)
        base = Path(window.doc.path).with_suffix("") if window.doc.path else Path.cwd() / "moee-export"
        self.path.setText(str(base) + SUFFIX["mp4"])
        self.resize(520, 300)

    def fmt(self) -> str:
        return str(self.format.currentData())

    def _format_changed(self) -> None:
        text = self.path.text()
        stem = text
        for suffix in (".mp4", ".gif"):
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
        self.path.setText(stem + SUFFIX[self.fmt()])

    def _browse(self) -> None:
        if self.fmt() in ("png", "png-alpha"):
            path = QFileDialog.getExistingDirectory(self, "Folder for the PNG frames")
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export to", self.path.text(), f"*{SUFFIX[self.fmt()]}")
        if path:
            self.path.setText(path)

    def confirm_overwrite(self, path: str) -> bool:
        """Ask whether an earlier export folder may be replaced (without dialogs: no)."""
        if not getattr(self.window_, "show_dialogs", True):
            return False
        answer = QMessageBox.question(
            self, "Replace the earlier export?",
            f"{path} already holds exported frames.\n\nReplace them with this export?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def start_export(self, overwrite: bool | None = None) -> ExportJob | None:
        """Start the export job (returns it; ``None`` if nothing can be exported).

        ``overwrite``: replace an earlier PNG-sequence folder; ``None`` asks the user when there is one.
        """
        w = self.window_
        prepared = w.service.prepared_inputs
        if w.service.animator is None or prepared is None:
            self.status.setText("Load a portrait (and a model) before exporting.")
            return None
        if self.stop.value() <= self.start.value():
            self.status.setText("The frame range is empty: 'to' must be larger than 'from'.")
            return None
        path = self.path.text().strip()
        if overwrite is None:
            overwrite = earlier_export(path, self.fmt()) and self.confirm_overwrite(path)
            if earlier_export(path, self.fmt()) and not overwrite and self.window_.show_dialogs:
                self.status.setText("Not exported: choose another folder, or confirm replacing the earlier one.")
                return None
        self.job = ExportJob(
            w.service.animator, prepared, w.doc.schedule(), path, self.fmt(),
            self.start.value(), self.stop.value(), self.steps.value(), self.seed.value(), self.fps.value(),
            w.service.engine_lock,
            (w.doc.state.portrait_path or prepared.portrait, w.doc.state.audio_path, w.doc.state.duration),
            bool(overwrite), w.life_config(seed=self.seed.value()),
        )
        self.job.progress.connect(lambda _i, p: self.bar.setValue(int(p * 1000)))
        self.job.done.connect(self._done)
        self.export_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.bar.setValue(0)
        self.status.setText("Rendering…")
        self.job.start()
        return self.job

    def cancel_export(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("Cancelling…")

    def _done(self, ok: bool, message: str) -> None:
        self.export_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if ok:
            self.bar.setValue(1000)
            self.status.setText(f"Exported to {message}")
            self.exported.emit(message)
        else:
            self.status.setText(message)

    def reject(self) -> None:
        if self.job is not None and self.job.isRunning():
            self.job.cancel()
            self.job.wait(10_000)
        super().reject()
