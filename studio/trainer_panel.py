"""Custom-expert trainer panel.

Runs ``python -m training.trainer expert --data DIR --name NAME --out OUT/NAME-training --log LOG.jsonl
--steps N --stop-file OUT/NAME-training/STOP`` (plus ``--model`` = the studio's model folder, so the
pack fits the loaded base model) in a separate process (QProcess), tails the JSON-lines log to plot the
loss and show "step x/N" with the time left, and loads the finished expert pack (moved to
``OUT/NAME.moeexpert.safetensors``) as a new slider.

The data folder is checked first (:func:`training.datasets.check_custom_emotion_data`): it must hold
clips labelled with the new emotion. Stop creates the stop file: the trainer saves a checkpoint after
the step it is on and exits; Resume continues from that checkpoint (``--resume``, exact) to the same N.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
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
RUN_SUFFIX = "-training"  # OUT/NAME-training holds one emotion's checkpoint, so each can be resumed
STOP_FILE = "STOP"
#: What the Data folder may hold (the trainer reads either; see training/motion_expert.py).
DATA_HELP = ("A folder holding either labels.csv (columns file, emotion: clips or photos labelled with the new "
             "emotion's name and 'neutral'), or, with no footage, an action-unit recipe recipe.json such as "
             '{"aus": {"12L": 1.0, "14L": 0.8}} (a one-sided smile: a smirk). On the portrait renderer the '
             "expert trains in about a minute; a few hundred steps are enough.")
#: A trainer that has not stopped this long after Stop at shutdown is killed (its last checkpoint stays).
SHUTDOWN_WAIT_MS = 10_000


def format_duration(seconds: float) -> str:
    """``"12 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


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
        self.total_steps = 0  # N of the run in progress
        self.stop_asked = False
        self._rate_origin: tuple[float, float] | None = None  # (time, step) of this process's first record

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        box = QGroupBox("Train a custom expert")
        form = QFormLayout(box)
        self.data = QLineEdit()
        self.data.setPlaceholderText("labelled clips, or an AU recipe")
        self.data.setToolTip(DATA_HELP)
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
        self.stop_button.setToolTip("Save a checkpoint after the current step and stop; Resume continues")
        self.stop_button.setEnabled(False)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the stopped training of this emotion from its checkpoint")
        self.resume_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.resume_button)
        layout.addLayout(buttons)

        self.plot = pg.PlotWidget(background="#141518")
        self.plot.setMinimumHeight(140)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.curve = self.plot.plot([], [], pen=pg.mkPen("#4a90d9", width=2))
        layout.addWidget(self.plot, 1)
        self.status = QLabel("idle")
        self.loading_pack: str | None = None  # a finished pack the studio is loading
        self.status.setWordWrap(True)
        self.status.setObjectName("title")
        layout.addWidget(self.status)

        self.poll = QTimer(self)
        self.poll.setInterval(250)
        self.poll.timeout.connect(self.read_log)
        self.name.textChanged.connect(self._update_resume)
        self.out.textChanged.connect(self._update_resume)
        self._update_resume()

    # ------------------------------------------------------------------
    def _browse_data(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Training data folder")
        if path:
            self.data.setText(path)

    def _emotion(self) -> str:
        return self.name.text().strip().lower()

    def run_dir(self) -> Path:
        """``OUT/NAME-training``: the trainer's output folder (checkpoint, stop file) for this emotion."""
        return Path(self.out.text().strip()).expanduser() / f"{self._emotion()}{RUN_SUFFIX}"

    def command(self, resume: bool = False) -> tuple[str, list[str], Path, Path]:
        """(program, arguments, log path, final pack path) for the current fields."""
        name = self._emotion()
        out = Path(self.out.text().strip()).expanduser()
        log = out / f"{name}.log.jsonl"
        run = self.run_dir()
        args = [*self.module_args, "--data", self.data.text().strip(), "--name", name, "--out", str(run),
                "--log", str(log), "--steps", str(self.steps_box.value()), "--no-progress",
                "--stop-file", str(run / STOP_FILE)]
        if self.base_model and Path(self.base_model).is_dir():
            args += ["--model", self.base_model]
        if resume:
            args.append("--resume")
        return self.python, args, log, out / f"{name}{PACK_SUFFIX}"

    def validate(self) -> str | None:
        """A message when the fields cannot start a training, else ``None``."""
        from studio.engine_api import MoEEError
        from training.datasets import check_custom_emotion_data

        if not self.data.text().strip() or not Path(self.data.text().strip()).is_dir():
            return "Choose an existing data folder."
        if not NAME_RE.match(self._emotion()):
            return "The emotion name must be a short lowercase word (letters, digits, - or _)."
        if not self.out.text().strip():
            return "Choose an output folder."
        try:
            check_custom_emotion_data(self.data.text().strip(), self._emotion())
        except MoEEError as exc:
            return f"This data folder cannot teach '{self._emotion()}': {exc}"
        return None

    def checkpoint_state(self) -> dict[str, Any] | None:
        """The saved state of this emotion's stopped training (step, steps, ...), or ``None``."""
        if not NAME_RE.match(self._emotion()) or not self.out.text().strip() or not self.run_dir().is_dir():
            return None
        from training.trainer import CHECKPOINT_DIR, STATE_FILE

        try:
            state = json.loads((self.run_dir() / CHECKPOINT_DIR / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("stage") != "expert":
            return None
        if int(state.get("step", 0)) >= int(state.get("steps", 0)):
            return None  # that training finished
        return state

    def _update_resume(self) -> None:
        running = self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning
        self.resume_button.setEnabled(not running and self.checkpoint_state() is not None)

    def start(self) -> bool:
        """Start a new training; returns False (with a message) if it cannot start."""
        return self._launch(resume=False)

    def resume(self) -> bool:
        """Continue the stopped training of this emotion from its checkpoint, to the same step count."""
        state = self.checkpoint_state()
        if state is None:
            self._say(f"There is no stopped training of '{self._emotion()}' in {self.out.text().strip()} to resume.")
            self._update_resume()
            return False
        self.steps_box.setValue(int(state["steps"]))  # the same N: the learning-rate schedule depends on it
        return self._launch(resume=True)

    def _launch(self, resume: bool) -> bool:
        problem = self.validate()
        if problem:
            self._say(problem)
            return False
        program, args, log, pack = self.command(resume)
        run = self.run_dir()
        run.mkdir(parents=True, exist_ok=True)
        (run / STOP_FILE).unlink(missing_ok=True)
        if log.exists() and not resume:
            log.unlink()  # a resumed trainer keeps the records up to its checkpoint
        self.tail = LogTail(log)
        self.pack_path = pack
        self.total_steps = self.steps_box.value()
        self.stop_asked = False
        self._rate_origin = None
        self.steps, self.losses = [], []
        self.curve.setData([], [])
        self.last_args = args
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
        self.stop_button.setText("Stop")
        self.resume_button.setEnabled(False)
        self.poll.start()
        verb = "Resuming" if resume else "Training"
        self._say(f"{verb} '{self._emotion()}' ({self.total_steps} steps)…")
        return True

    def stop(self) -> None:
        """Ask the trainer to save a checkpoint and stop after its current step; a second Stop kills it."""
        if self.process is None or self.process.state() == QProcess.ProcessState.NotRunning:
            return
        if self.stop_asked:
            self.process.kill()  # "Force stop": the last saved checkpoint stays
            return
        self.stop_asked = True
        try:
            (self.run_dir() / STOP_FILE).touch()
        except OSError:
            self.process.kill()
            return
        self.stop_button.setText("Force stop")
        self._say("Stopping after this step (a checkpoint is kept)…")

    def shutdown(self) -> None:
        """The studio closes: stop the trainer with a checkpoint, waiting at most SHUTDOWN_WAIT_MS."""
        if self.process is None or self.process.state() == QProcess.ProcessState.NotRunning:
            return
        self.stop()
        if not self.process.waitForFinished(SHUTDOWN_WAIT_MS):
            self.process.kill()
            self.process.waitForFinished(1000)

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
            parts = [self.progress_text(last.get("step"))]
            if "loss" in last:
                parts.append(f"loss {float(last['loss']):.4f}")
            if sps is not None:
                parts.append(f"{float(sps):.1f} samples/s")
            self.status.setText(" · ".join(parts))
        return len(records)

    def progress_text(self, step: Any, now: float | None = None) -> str:
        """``"step x/N · 1 min 05 s left"`` (the rate measured since this process's first log record)."""
        try:
            done = int(step)
        except (TypeError, ValueError):
            return f"step ?/{self.total_steps}"
        now = time.monotonic() if now is None else now
        if self._rate_origin is None or done < self._rate_origin[1]:
            self._rate_origin = (now, float(done))
        text = f"step {done}/{self.total_steps}"
        origin_time, origin_step = self._rate_origin
        if done >= self.total_steps:
            return text
        if done > origin_step and now > origin_time:
            seconds_per_step = (now - origin_time) / (done - origin_step)
            return f"{text} · {format_duration(seconds_per_step * (self.total_steps - done))} left"
        return f"{text} · estimating the time left…"

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
        (self.run_dir() / STOP_FILE).unlink(missing_ok=True)
        pack = getattr(self, "pack_path", None)
        produced = self.run_dir() / pack.name if pack is not None else None
        if status == QProcess.ExitStatus.NormalExit and code == 0 and produced is not None and produced.exists():
            os.replace(produced, pack)
            self.loading_pack = str(pack)
            self._say(f"Finished: {pack.name}; loading it as a new slider…")
            self.expertReady.emit(str(pack))
        elif (state := self.checkpoint_state()) is not None and (self.stop_asked or status != QProcess.ExitStatus.NormalExit):
            self._say(f"Stopped at step {state['step']}/{state['steps']}; Resume continues from there.")
        elif status != QProcess.ExitStatus.NormalExit:
            self._say("Training stopped.")
        else:
            detail = getattr(self, "last_output", "")
            self._say(f"Training failed (exit code {code}). {detail}")
        self._update_resume()

    def pack_loaded(self, name: str, path: str) -> None:
        """The studio loaded an expert pack: say so if it is the one this panel just trained."""
        if self.loading_pack is not None and path == self.loading_pack:
            self.loading_pack = None
            self._say(f"Finished: '{name}' is loaded as a new slider")

    def pack_refused(self, message: str) -> None:
        """The studio refused the pack this panel just trained: the panel says so (not "loading it")."""
        if self.loading_pack is None:
            return
        name = Path(self.loading_pack).name
        self.loading_pack = None
        self._say(f"Trained {name}, but the studio did not load it: {message}")

    def _reset_buttons(self) -> None:
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.stop_button.setText("Stop")

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.message.emit(text)
