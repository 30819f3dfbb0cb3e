"""Custom-expert trainer panel.

Runs ``python -m training.trainer expert --data DIR --name NAME --out DIR --log LOG.jsonl --steps N``
(plus ``--model`` = the studio's model folder, so the pack fits the loaded base model) in a separate
process (QProcess), tails the JSON-lines log to plot the loss live, and loads the finished expert
pack ``OUT/NAME.moeexpert.safetensors`` as a new slider.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QProcess, QTimer, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
PACK_SUFFIX = ".moeexpert.safetensors"


class LogTail:
    """Reads new complete JSON lines appended to a log file (robust to partial last lines)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.offset = 0
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        """Records appended since the last call (lines that are not JSON objects are skipped)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
                self.offset = fh.tell()
        except FileNotFoundError:
            return []
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # incomplete line, finished by a later write
        out = []
        for line in lines:
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict):
                out.append(record)
        return out


class TrainerPanel(QWidget):
    """Pick data + a new emotion name, train an expert in a child process, watch the loss."""

    expertReady = Signal(str)  # path of the produced expert pack
    message = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.process: QProcess | None = None
        self.tail: LogTail | None = None
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.python = sys.executable
        self.module_args: list[str] = ["-m", "training.trainer", "expert"]
        self.workdir = str(Path(__file__).resolve().parent.parent)
        self.base_model: str | None = None  # the studio's model folder: the pack must match it

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        box = QGroupBox("Train a custom expert")
        form = QFormLayout(box)
        self.data = QLineEdit()
        self.data.setPlaceholderText("folder of labelled clips of the new emotion")
        browse = QPushButton("…")
        browse.setFixedWidth(34)
        browse.clicked.connect(self._browse_data)
        row = QHBoxLayout()
        row.addWidget(self.data, 1)
        row.addWidget(browse)
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. smug")
        self.out = QLineEdit(str(Path.home() / "moee-experts"))
        self.steps_box = QSpinBox()
        self.steps_box.setRange(1, 1_000_000)
        self.steps_box.setValue(300)
        form.addRow("Data", row)
        form.addRow("Emotion", self.name)
        form.addRow("Output", self.out)
        form.addRow("Steps", self.steps_box)
        layout.addWidget(box)

        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start training")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        layout.addLayout(buttons)

        self.plot = pg.PlotWidget(background="#141518")
        self.plot.setMinimumHeight(140)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.curve = self.plot.plot([], [], pen=pg.mkPen("#4a90d9", width=2))
        layout.addWidget(self.plot, 1)
        self.status = QLabel("idle")
        self.status.setWordWrap(True)
        self.status.setObjectName("title")
        layout.addWidget(self.status)

        self.poll = QTimer(self)
        self.poll.setInterval(250)
        self.poll.timeout.connect(self.read_log)

    # ------------------------------------------------------------------
    def _browse_data(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Training data folder")
        if path:
            self.data.setText(path)

    def command(self) -> tuple[str, list[str], Path, Path]:
        """(program, arguments, log path, expected pack path) for the current fields."""
        name = self.name.text().strip().lower()
        out = Path(self.out.text().strip()).expanduser()
        log = out / f"{name}.log.jsonl"
        args = [*self.module_args, "--data", self.data.text().strip(), "--name", name, "--out", str(out),
                "--log", str(log), "--steps", str(self.steps_box.value()), "--no-progress"]
        if self.base_model and Path(self.base_model).is_dir():
            args += ["--model", self.base_model]
        return self.python, args, log, out / f"{name}{PACK_SUFFIX}"

    def validate(self) -> str | None:
        """A message when the fields cannot start a training, else ``None``."""
        if not self.data.text().strip() or not Path(self.data.text().strip()).is_dir():
            return "Choose an existing data folder."
        if not NAME_RE.match(self.name.text().strip().lower()):
            return "The emotion name must be a short lowercase word (letters, digits, - or _)."
        if not self.out.text().strip():
            return "Choose an output folder."
        return None

    def start(self) -> bool:
        """Start the trainer process; returns False (with a message) if it cannot start."""
        problem = self.validate()
        if problem:
            self._say(problem)
            return False
        program, args, log, pack = self.command()
        log.parent.mkdir(parents=True, exist_ok=True)
        if log.exists():
            log.unlink()
        self.tail = LogTail(log)
        self.pack_path = pack
        self.steps, self.losses = [], []
        self.curve.setData([], [])
        proc = QProcess(self)
        proc.setWorkingDirectory(self.workdir)
        proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        proc.finished.connect(self._finished)
        proc.errorOccurred.connect(self._error)
        proc.readyReadStandardOutput.connect(lambda: self._output(proc))
        self.process = proc
        proc.start(program, args)
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.poll.start()
        self._say(f"Training '{self.name.text().strip()}'…")
        return True

    def stop(self) -> None:
        """Ask the trainer to stop (terminate, then kill after 3 s)."""
        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            self.process.terminate()
            QTimer.singleShot(3000, self._kill_if_running)
            self._say("Stopping…")

    def _kill_if_running(self) -> None:
        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            self.process.kill()

    def read_log(self) -> int:
        """Plot any new log records; returns how many were read."""
        if self.tail is None:
            return 0
        records = self.tail.read()
        for r in records:
            if "loss" in r:
                try:
                    loss = float(r["loss"])
                    step = float(r.get("step", len(self.steps)))
                except (TypeError, ValueError):
                    continue
                self.steps.append(step)
                self.losses.append(loss)
        if records:
            self.curve.setData(self.steps, self.losses)
            last = records[-1]
            sps = last.get("samples_per_s")
            lr = last.get("lr")
            parts = [f"step {last.get('step', '?')}"]
            if "loss" in last:
                parts.append(f"loss {float(last['loss']):.4f}")
            if lr is not None:
                parts.append(f"lr {float(lr):.2e}")
            if sps is not None:
                parts.append(f"{float(sps):.1f} samples/s")
            self.status.setText(" · ".join(parts))
        return len(records)

    def _output(self, proc: QProcess) -> None:
        text = bytes(proc.readAllStandardOutput().data()).decode("utf-8", "replace").strip()
        if text:
            self.last_output = text.splitlines()[-1]

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._say("The trainer could not start (is the project installed?)")
            self._reset_buttons()

    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self.read_log()
        self.poll.stop()
        self._reset_buttons()
        pack = getattr(self, "pack_path", None)
        if status == QProcess.ExitStatus.NormalExit and code == 0 and pack is not None and pack.exists():
            self._say(f"Finished: {pack.name}; loading it as a new slider")
            self.expertReady.emit(str(pack))
        elif status != QProcess.ExitStatus.NormalExit:
            self._say("Training stopped.")
        else:
            detail = getattr(self, "last_output", "")
            self._say(f"Training failed (exit code {code}). {detail}")

    def _reset_buttons(self) -> None:
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.message.emit(text)
