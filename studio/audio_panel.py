"""Audio: open a track, record from the microphone, and play with the playhead in sync.

``sounddevice`` is imported lazily: without PortAudio or a sound card it raises ``OSError``; the
panel then explains that in its status line and plays silently (the playhead still runs).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QElapsedTimer, QObject, QTimer, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QWidget

AUDIO_FILTER = "Audio (*.wav *.flac *.ogg *.mp3 *.m4a *.aac);;All files (*)"
#: The "Length" box of a clip without audio: longest value (s, the engine's longest clip), step (s), decimals.
MAX_LENGTH_SECONDS = 600.0
LENGTH_STEP_SECONDS = 0.5
LENGTH_DECIMALS = 2


def sound_module(kind: str = "output") -> tuple[Any, str]:
    """``(sounddevice, "")`` if a default ``kind`` (output/input) device exists, else ``(None, reason)``.

    Never raises: a missing PortAudio library (OSError at import), no sound card, or any backend
    error all become a reason the UI can show.
    """
    try:
        import sounddevice
    except OSError as exc:
        return None, f"no sound support ({exc}); install PortAudio (libportaudio2)"
    except Exception as exc:
        return None, f"no sound support ({type(exc).__name__}: {exc})"
    try:
        sounddevice.query_devices(kind=kind)
        return sounddevice, ""
    except Exception as exc:
        use = "recording" if kind == "input" else "playback"
        return None, f"no sound device available for {use} ({exc})"


class Transport(QObject):
    """Plays the clip: a QTimer advances the playhead from wall-clock time (sound optional)."""

    frameChanged = Signal(int)
    playingChanged = Signal(bool)
    message = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.timer = QTimer(self)
        self.timer.setInterval(15)
        self.timer.timeout.connect(self._tick)
        self.clock = QElapsedTimer()
        self.num_frames = 1
        self.fps = 25.0
        self.start_frame = 0
        self.frame = 0
        self.clip: Any = None
        self._sd: Any = None

    @property
    def playing(self) -> bool:
        return self.timer.isActive()

    def configure(self, num_frames: int, fps: float, clip: Any = None) -> None:
        self.num_frames = max(1, int(num_frames))
        self.fps = float(fps)
        self.clip = clip

    def play(self, from_frame: int) -> None:
        """Start playback at ``from_frame`` (sound if a device exists, else silently)."""
        if self.playing:
            return
        self.start_frame = 0 if from_frame >= self.num_frames - 1 else int(from_frame)
        self.frame = self.start_frame
        self.clock.start()
        self.timer.start()
        self.playingChanged.emit(True)
        if self.clip is not None:
            sd, reason = sound_module()
            if sd is None:
                self.message.emit(f"Playing silently: {reason}")
            else:
                try:
                    start = int(self.start_frame / self.fps * self.clip.sample_rate)
                    sd.play(np.asarray(self.clip.samples[start:], np.float32), self.clip.sample_rate)
                    self._sd = sd
                except Exception as exc:
                    self.message.emit(f"Playing silently: cannot open the sound device ({exc})")
        else:
            self.message.emit("Playing (no audio track)")

    def stop(self) -> None:
        """Stop playback (and the sound)."""
        if not self.playing:
            return
        self.timer.stop()
        if self._sd is not None:
            with contextlib.suppress(Exception):
                self._sd.stop()
            self._sd = None
        self.playingChanged.emit(False)

    def toggle(self, from_frame: int) -> None:
        if self.playing:
            self.stop()
        else:
            self.play(from_frame)

    def _tick(self) -> None:
        frame = self.start_frame + int(self.clock.elapsed() / 1000.0 * self.fps)
        if frame >= self.num_frames:
            self.frame = self.num_frames - 1
            self.frameChanged.emit(self.frame)
            self.stop()
            return
        if frame != self.frame:
            self.frame = frame
            self.frameChanged.emit(frame)


class Recorder(QObject):
    """Records the microphone into a WAV file (16 kHz mono)."""

    finished = Signal(str)  # path of the WAV
    message = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._stream: Any = None
        self._chunks: list[np.ndarray] = []
        self.sample_rate = 16_000
        self.out_dir = Path.cwd()  # where recordings are saved (the window keeps it beside the project)

    def start(self) -> bool:
        """Start recording; returns False (with a message) when there is no input device."""
        sd, reason = sound_module("input")
        if sd is None:
            self.message.emit(f"Cannot record: {reason}")
            return False
        self._chunks = []
        try:
            self._stream = sd.InputStream(
                samplerate=self.sample_rate, channels=1, dtype="float32",
                callback=lambda data, _n, _t, _s: self._chunks.append(data.copy()),
            )
            self._stream.start()
        except Exception as exc:
            self._stream = None
            self.message.emit(f"Cannot record: no usable microphone ({exc})")
            return False
        self.message.emit("Recording… press Record again to stop")
        return True

    def stop(self) -> str | None:
        """Stop and save; returns the WAV path (also emitted as ``finished``)."""
        if self._stream is None:
            return None
        try:
            self._stream.stop()
            self._stream.close()
        finally:
            self._stream = None
        if not self._chunks:
            self.message.emit("Nothing was recorded")
            return None
        samples = np.concatenate(self._chunks)[:, 0]
        path = Path(self.out_dir) / f"recording-{time.strftime('%Y%m%d-%H%M%S')}.wav"
        import soundfile

        from studio.engine_api import atomic_path

        with atomic_path(path) as tmp:
            soundfile.write(str(tmp), samples, self.sample_rate, format="WAV")
        self.message.emit(f"Recorded {len(samples) / self.sample_rate:.1f} s to {path.name}")
        self.finished.emit(str(path))
        return str(path)


class AudioPanel(QWidget):
    """A compact transport row: open audio, record, play/pause, time read-out, and the length of a clip
    without audio (an emotion-only clip: "still" = one frame)."""

    openRequested = Signal(str)
    lengthChanged = Signal(float)  # seconds of a clip without audio (0: a still)
    message = Signal(str)

    def __init__(self, transport: Transport, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.transport = transport
        self.recorder = Recorder(self)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        self.open_button = QPushButton("Open audio…")
        self.record_button = QPushButton("● Record")
        self.record_button.setCheckable(True)
        self.play_button = QPushButton("▶ Play")
        self.play_button.setToolTip("Play / pause (Space)")
        self.time_label = QLabel("0.00 s · frame 0")
        self.track_label = QLabel("no audio")
        self.track_label.setObjectName("title")
        self.length_box = QDoubleSpinBox()
        self.length_box.setRange(0.0, MAX_LENGTH_SECONDS)
        self.length_box.setDecimals(LENGTH_DECIMALS)
        self.length_box.setSingleStep(LENGTH_STEP_SECONDS)
        self.length_box.setSuffix(" s")
        self.length_box.setSpecialValueText("still")
        self.length_box.setKeyboardTracking(False)  # one change per committed value, not per keystroke
        self.length_box.setToolTip("Length of a clip without audio: the emotions and keyframes play, the mouth "
                                   "stays closed (\"still\" = one frame)")
        for w in (self.play_button, self.open_button, self.record_button):
            layout.addWidget(w)
        layout.addSpacing(12)
        layout.addWidget(self.time_label)
        layout.addStretch(1)
        layout.addWidget(self.track_label)
        layout.addWidget(QLabel("Length"))
        layout.addWidget(self.length_box)
        self.length_box.valueChanged.connect(self.lengthChanged.emit)
        self.open_button.clicked.connect(self._open)
        self.record_button.toggled.connect(self._record_toggled)
        self.recorder.message.connect(self.message.emit)
        self.recorder.finished.connect(self.openRequested.emit)
        transport.message.connect(self.message.emit)
        transport.playingChanged.connect(lambda on: self.play_button.setText("❚❚ Pause" if on else "▶ Play"))

    def show_frame(self, frame: int, fps: float) -> None:
        self.time_label.setText(f"{frame / max(fps, 1e-6):.2f} s · frame {frame}")

    def set_track(self, name: str | None, duration: float | None = None) -> None:
        self.track_label.setText("no audio" if not name else f"{name} · {duration or 0:.1f} s")

    def set_length(self, seconds: float | None, has_audio: bool) -> None:
        """Show the clip's length; it can be set only without audio (the audio's length decides otherwise)."""
        self.length_box.blockSignals(True)
        self.length_box.setValue(float(seconds or 0.0))
        self.length_box.blockSignals(False)
        self.length_box.setEnabled(not has_audio)
        self.length_box.setToolTip("The audio sets the clip's length" if has_audio else
                                   "Length of a clip without audio: the emotions and keyframes play, the mouth "
                                   "stays closed (\"still\" = one frame)")

    def _open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open audio", "", AUDIO_FILTER)
        if path:
            self.openRequested.emit(path)

    def _record_toggled(self, on: bool) -> None:
        if on:
            if not self.recorder.start():
                self.record_button.blockSignals(True)
                self.record_button.setChecked(False)
                self.record_button.blockSignals(False)
        else:
            self.recorder.stop()
