"""The rendered frame at the playhead, with a quality badge and a busy indicator."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from studio.qtutil import rgb_to_qimage


class FrameView(QWidget):
    """Draws one frame scaled to fit (smooth), with a caption."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image: QImage | None = None
        self.caption = ""
        self.setMinimumSize(260, 260)

    def set_frame(self, image: np.ndarray | None, caption: str = "") -> None:
        self.image = None if image is None else rgb_to_qimage(image)
        self.caption = caption
        self.update()

    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.fillRect(self.rect(), QColor("#141518"))
        if self.image is None:
            p.setPen(QColor("#6b6f78"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "The rendered frame appears here")
            return
        w, h = self.image.width(), self.image.height()
        scale = min(self.width() / w, self.height() / h)
        r = QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)
        p.drawImage(r, self.image)
        if self.caption:
            font = QFont(p.font())
            font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
            p.setFont(font)
            tw = p.fontMetrics().horizontalAdvance(self.caption) + 14
            badge = QRectF(r.x() + 8, r.y() + 8, tw, 20)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(0, 0, 0, 160))
            p.drawRoundedRect(badge, 4, 4)
            p.setPen(QColor("#e6e6e6"))
            p.drawText(badge, Qt.AlignmentFlag.AlignCenter, self.caption)


class PreviewPanel(QWidget):
    """The preview: frame view + status line + progress indicator."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("PREVIEW")
        title.setObjectName("title")
        self.view = FrameView()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        self.status = QLabel("idle")
        self.status.setObjectName("title")
        row = QHBoxLayout()
        row.addWidget(title)
        row.addStretch(1)
        row.addWidget(self.status)
        layout.addLayout(row)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.progress)
        self.shown_request = 0
        self.shown_quality = ""
        self.busy = False
        self.idle_text = "idle"  # the status line when no work runs (the shown frame's line)

    def set_busy(self, busy: bool, text: str = "") -> None:
        """Show an indeterminate bar while the worker renders.

        Done without a ``text`` of its own, the status goes back to what the frame on screen is (the
        last result's line, or "idle"): a busy text such as "rendering…" never outlives the work.
        """
        self.busy = busy
        if busy:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
        if text:
            self.status.setText(text)
            if not busy:
                self.idle_text = text
        elif not busy:
            self.status.setText(self.idle_text)

    def show_result(self, image: np.ndarray, request_id: int, quality: str, frame: int, steps: int, seconds: float) -> None:
        """Display a finished render (``steps=0``: a renderer without sampling steps, shown as final)."""
        self.shown_request = request_id
        self.shown_quality = quality
        label = {"refine": "refined", "flipbook": "flipbook"}.get(quality, "preview")
        h, w = image.shape[:2]
        detail = f"{label} · {steps} steps" if steps > 0 else f"{w} × {h} px"
        self.view.set_frame(image, f"frame {frame} · {detail}")
        self.idle_text = "flipbook (cached)" if quality == "flipbook" else f"{label}: {seconds * 1000:.0f} ms"
        if not self.busy:
            self.status.setText(self.idle_text)
