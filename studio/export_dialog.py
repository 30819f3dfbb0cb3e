"""Export dialog: MP4 (H.264 + AAC), ProRes 4444 with alpha, PNG sequence (optionally with alpha), GIF;
output size (the portrait's own under a changeable cap, or a preset such as 1080p), H.264 quality or
bit rate, frame rate; the output's size and an estimate of the file size and render time; progress
and cancel.

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
    QDoubleSpinBox,
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
    "prores": "ProRes 4444 .mov with alpha (person matte)",
    "png": "PNG sequence (folder)",
    "png-alpha": "PNG sequence with alpha (person matte)",
    "gif": "Animated GIF",
}
SUFFIX = {"mp4": ".mp4", "prores": ".mov", "png": "", "png-alpha": "", "gif": ".gif"}
#: Formats whose frames carry the person matte as alpha.
ALPHA_FORMATS = ("prores", "png-alpha")
#: Output sizes: the portrait's own (under the cap), or a frame height (the width follows the portrait).
SIZE_PRESETS = {"own": "Portrait's own", "720": "720p (height 720)", "1080": "1080p (height 1080)",
                "2160": "4K (height 2160)"}
#: H.264 quality: constant rate factors (lower = better, bigger), or a bit rate.
QUALITIES = {"high": ("High (CRF 18)", 18), "standard": ("Standard (CRF 23)", 23), "small": ("Small (CRF 28)", 28),
             "bitrate": ("Bit rate…", None)}
DEFAULT_BIT_RATE_MBPS = 8.0
#: Bits per pixel per frame of each output, for the file-size estimate (measured on the astronaut with the
#: demo speech, 512 and 1080 px: H.264 CRF 18 0.045-0.065, ProRes 4444 and PNG with alpha about 16).
BITS_PER_PIXEL = {"mp4-18": 0.07, "mp4-23": 0.035, "mp4-28": 0.018, "prores": 16.0, "png": 13.0,
                  "png-alpha": 16.0, "gif": 2.0}
AUDIO_BITS_PER_SECOND = 128_000
#: Seconds per frame assumed for the render before any preview was timed.
DEFAULT_SECONDS_PER_FRAME = 0.08
#: Seconds per output megapixel per frame to resize and encode (measured as above, 2 shared cores),
#: and per frame for the person matte of the alpha formats.
ENCODE_SECONDS_PER_MEGAPIXEL = {"mp4": 0.045, "prores": 0.12, "png": 0.08, "png-alpha": 0.08, "gif": 0.06}
MATTE_SECONDS = 0.03
#: Largest cap on the long side the dialog offers (px).
MAX_CAP = 4096


def even(value: float) -> int:
    """``value`` rounded to an even number of pixels (video encoders want even sizes), at least 2."""
    return max(2, int(round(value / 2.0)) * 2)


def output_size(render: tuple[int, int], preset: str) -> tuple[int, int]:
    """The exported frame size (w, h) for a render of ``render`` (w, h) and a size preset."""
    w, h = render
    if preset == "own":
        return w, h
    height = int(preset)
    return even(w * height / h), even(height)


def estimate_bytes(fmt: str, size: tuple[int, int], frames: int, fps: float, crf: int | None,
                   bit_rate: float | None, audio: bool) -> float:
    """A rough file size of the export (bytes): the bit rate, or typical bits per pixel of the format."""
    seconds = frames / max(fps, 1e-6)
    if fmt == "mp4" and bit_rate:
        video_bits = bit_rate * seconds
    else:
        key = f"mp4-{crf}" if fmt == "mp4" else fmt
        video_bits = BITS_PER_PIXEL.get(key, BITS_PER_PIXEL["mp4-18"]) * size[0] * size[1] * frames
    audio_bits = AUDIO_BITS_PER_SECOND * seconds if audio and fmt in ("mp4", "prores") else 0.0
    return (video_bits + audio_bits) / 8.0


def human_bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000.0
    return f"{count:.1f} GB"


def human_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    return f"{int(seconds // 60)} min {int(round(seconds % 60)):02d} s"


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

    @property
    def capabilities(self) -> Any:
        """The wrapped animator's (the export passes it the render options it reads)."""
        return engine_api.capabilities(self.animator)

    def render_clip(self, *args: Any, **kwargs: Any) -> Any:
        for result in self.animator.render_clip(*args, **kwargs):
            result.image = with_alpha(result.image)
            yield result


class _Resized:
    """The animator's clip frames resized to ``size`` (w, h) (a preset such as 1080p): area-averaged
    when shrinking, Lanczos when enlarging. RGBA frames keep their alpha."""

    def __init__(self, animator: Any, size: tuple[int, int]) -> None:
        self.animator = animator
        self.size = (int(size[0]), int(size[1]))

    @property
    def capabilities(self) -> Any:
        """The wrapped animator's (the export passes it the render options it reads)."""
        return engine_api.capabilities(self.animator)

    def render_clip(self, *args: Any, **kwargs: Any) -> Any:
        import cv2

        for result in self.animator.render_clip(*args, **kwargs):
            h, w = result.image.shape[:2]
            if (w, h) != self.size:
                shrink = self.size[0] * self.size[1] < w * h
                result.image = cv2.resize(result.image, self.size,
                                          interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4)
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
        size: tuple[int, int] | None = None,
        max_size: int | None = None,
        writer_options: dict[str, Any] | None = None,
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
        self.size = size  # the exported frame size (w, h); None: the render's own
        self.max_size = max_size  # the portrait renderer's cap on the long side; None: as prepared
        self.writer_options = dict(writer_options or {})
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
            new_fps = bool(self.fps) and int(self.fps) != int(prepared.fps)
            new_cap = self.max_size is not None and engine_api.can(self.animator, "full_resolution")
            if (new_fps or new_cap) and self.prepare_args is not None:
                prepared = engine_api.prepare_inputs(self.animator, portrait, audio, duration,
                                                     fps=int(self.fps or prepared.fps),
                                                     max_size=self.max_size if new_cap else None)
            engine_api.apply_life(prepared, self.life)
            stop = min(self.stop_frame, prepared.num_frames)
            start = min(self.start_frame, stop - 1)
            if self.fmt not in ("mp4", "prores") and prepared.audio is not None:  # only the videos carry the track
                prepared = dataclasses.replace(prepared, audio=None)
            count = len(self.animator.emotions)
            schedule = self.schedule

            def gates(frame: int) -> Any:
                return engine_api.fit_gates(schedule(frame), count)

            def on_frame(index: int, progress: float) -> None:
                self.token.check()  # raising here discards the partial output (the writer is atomic)
                self.progress.emit(int(index), float(progress))

            animator = _WithAlpha(self.animator) if self.fmt in ALPHA_FORMATS else self.animator
            if self.size is not None:
                animator = _Resized(animator, self.size)
            options = dict(self.writer_options)
            if self.fmt in ALPHA_FORMATS:
                options["alpha"] = True
            engine_api.export_clip(
                animator, prepared, self.path, gates=gates, steps=self.steps, seed=self.seed, start=start,
                stop=stop, format="png" if self.fmt == "png-alpha" else self.fmt, cancel=self.token,
                on_frame=on_frame, overwrite=self.overwrite, duration=duration if prepared.audio is None else None,
                writer_options=options,
            )


class ExportDialog(QDialog):
    """Choose format, range, size, quality, fps (steps and seed for the pixel model); see the output's size
    and an estimate of the file size and render time; run the export with progress and cancel."""

    exported = Signal(str)

    def __init__(self, window: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export clip")
        self.window_ = window
        self.job: ExportJob | None = None
        prepared = window.service.prepared_inputs
        num_frames = int(prepared.num_frames) if prepared is not None else 1
        fps = int(prepared.fps) if prepared is not None else window.doc.render.fps
        self.portrait_mode = engine_api.can(window.service.animator, "full_resolution")
        self.samples = engine_api.can(window.service.animator, "sampling")  # steps and seed apply
        self.render_size = engine_api.frame_shape(prepared)[::-1] if prepared is not None else (1, 1)
        source = window.doc.state.portrait_path
        self.source_size = (engine_api.image_size(source) if source and self.portrait_mode else None) or self.render_size

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
        self.fps.setSuffix(" fps")
        # output size: the portrait's own (under the cap) or a preset height
        self.size_preset = QComboBox()
        for key, label in SIZE_PRESETS.items():
            self.size_preset.addItem(label, key)
        self.cap = QSpinBox()
        self.cap.setRange(64, MAX_CAP)
        self.cap.setSingleStep(128)
        self.cap.setSuffix(" px")
        self.cap.setValue(engine_api.DEFAULT_PORTRAIT_CAP if self.portrait_mode else max(self.render_size))
        self.cap.setToolTip("The portrait renderer's cap on the long side: the portrait is rendered at its own "
                            f"resolution up to this (default {engine_api.DEFAULT_PORTRAIT_CAP} px; larger renders take longer)")
        self.cap.setEnabled(self.portrait_mode)
        size_row = QHBoxLayout()
        size_row.addWidget(self.size_preset, 1)
        size_row.addWidget(QLabel("long side cap"))
        size_row.addWidget(self.cap)
        # H.264 quality
        self.quality = QComboBox()
        for key, (label, _crf) in QUALITIES.items():
            self.quality.addItem(label, key)
        self.bit_rate = QDoubleSpinBox()
        self.bit_rate.setRange(0.1, 400.0)
        self.bit_rate.setDecimals(1)
        self.bit_rate.setSuffix(" Mbit/s")
        self.bit_rate.setValue(DEFAULT_BIT_RATE_MBPS)
        quality_row = QHBoxLayout()
        quality_row.addWidget(self.quality, 1)
        quality_row.addWidget(self.bit_rate)
        self.steps = QSpinBox()
        self.steps.setRange(1, 200)
        self.steps.setValue(window.doc.render.export_steps)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(window.doc.render.seed)
        self.estimate = QLabel("")
        self.estimate.setWordWrap(True)
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
        form.addRow("Size", size_row)
        form.addRow("Quality", quality_row)
        form.addRow("Frame rate", self.fps)
        form.addRow("Steps", self.steps)
        form.addRow("Seed", self.seed)
        form.addRow("Estimate", self.estimate)
        self.form = form
        if not self.samples:
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
        for box in (self.start, self.stop, self.fps, self.cap, self.bit_rate, self.steps):
            box.valueChanged.connect(self.update_estimate)
        for combo in (self.size_preset, self.quality):
            combo.currentIndexChanged.connect(self.update_estimate)
        base = Path(window.doc.path).with_suffix("") if window.doc.path else Path.cwd() / "moee-export"
        self.path.setText(str(base) + SUFFIX["mp4"])
        self.resize(560, 360)
        self.update_estimate()

    # ------------------------------------------------------------ the options
    def capped_render_size(self) -> tuple[int, int]:
        """The render's size under the cap (the portrait's own resolution, long side at most the cap)."""
        if not self.portrait_mode:
            return self.render_size
        w, h = self.source_size
        scale = min(1.0, self.cap.value() / max(w, h))
        return max(1, round(w * scale)), max(1, round(h * scale))

    def output_size(self) -> tuple[int, int]:
        """The exported frame size (w, h)."""
        size = output_size(self.capped_render_size(), str(self.size_preset.currentData()))
        if self.fmt() in ("mp4", "prores"):
            size = (size[0] + size[0] % 2, size[1] + size[1] % 2)  # the encoder pads odd sizes by a pixel
        return size

    def crf(self) -> int | None:
        return QUALITIES[str(self.quality.currentData())][1]

    def writer_options(self) -> dict[str, Any]:
        """Options for the engine's writer: H.264 crf or bit rate."""
        if self.fmt() != "mp4":
            return {}
        crf = self.crf()
        return {"crf": crf} if crf is not None else {"bit_rate": int(self.bit_rate.value() * 1_000_000)}

    def export_frames(self) -> int:
        """Frames the export writes (the range, at the chosen frame rate)."""
        prepared = self.window_.service.prepared_inputs
        native = float(prepared.fps) if prepared is not None else float(self.fps.value())
        return max(0, round((self.stop.value() - self.start.value()) * self.fps.value() / native))

    def update_estimate(self) -> None:
        """Show the output's size and about how big the file gets and how long the render takes."""
        fmt = self.fmt()
        self.quality.setEnabled(fmt == "mp4")
        self.bit_rate.setVisible(fmt == "mp4" and self.crf() is None)
        w, h = self.output_size()
        frames = self.export_frames()
        prepared = self.window_.service.prepared_inputs
        audio = prepared is not None and getattr(prepared, "audio", None) is not None
        size = estimate_bytes(fmt, (w, h), frames, self.fps.value(), self.crf(),
                              self.bit_rate.value() * 1_000_000 if self.crf() is None else None, audio)
        self.estimate.setText(f"{w} × {h} px · {frames} frames at {self.fps.value()} fps · "
                              f"about {human_bytes(size)} · about {human_seconds(self.seconds_per_frame() * frames)}"
                              " to render")

    def seconds_per_frame(self) -> float:
        """Seconds per exported frame: the render (the last timed preview, scaled by pixels), the matte
        (alpha formats) and the resize and encoder (per output megapixel)."""
        result = getattr(self.window_, "last_result", None)
        seconds = float(getattr(result, "seconds", 0.0) or 0.0)
        if seconds <= 0:
            seconds = DEFAULT_SECONDS_PER_FRAME
        rw, rh = self.render_size
        cw, ch = self.capped_render_size()
        steps = 1.0
        if self.samples and getattr(result, "steps", 0):
            steps = self.steps.value() / max(1, int(result.steps))
        ow, oh = self.output_size()
        encode = ENCODE_SECONDS_PER_MEGAPIXEL.get(self.fmt(), 0.05) * ow * oh / 1e6
        matte = MATTE_SECONDS if self.fmt() in ALPHA_FORMATS else 0.0
        return seconds * steps * (cw * ch) / max(1, rw * rh) + encode + matte

    def fmt(self) -> str:
        return str(self.format.currentData())

    def _format_changed(self) -> None:
        self.update_estimate()
        text = self.path.text()
        stem = text
        for suffix in (".mp4", ".mov", ".gif"):
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
            size=self.output_size() if self.output_size() != self.capped_render_size() else None,
            max_size=self.cap.value() if self.portrait_mode and self.capped_render_size() != self.render_size else None,
            writer_options=self.writer_options(),
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
