"""The rendered frame at the playhead, with a quality badge and a busy indicator."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QWheelEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from studio.qtutil import draw_badge, rgb_to_qimage
from studio.zoom import PIXELATED_SCALE
from studio.zoom_view import ZoomHandler, ZoomModel


class FrameView(QWidget):
    """Draws one frame, fit or zoomed and panned (shared with the canvas), with a caption.

    ``reference_size`` is the full render's (w, h) (the portrait's): a flipbook frame kept smaller is
    drawn at the same place and size as the full frame, so 1:1 means one screen pixel per render pixel.
    Wheel: zoom; drag (left or middle): pan; double-click: fit <-> 1:1.
    """

    def __init__(self, parent: QWidget | None = None, zoom: ZoomModel | None = None) -> None:
        super().__init__(parent)
        self.image: QImage | None = None
        self.caption = ""
        self.reference_size: tuple[int, int] | None = None
        self.zoom = zoom if zoom is not None else ZoomModel(self)
        self.zoomer = ZoomHandler(self, self.zoom, self.image_size, lambda: True)
        self.setMinimumSize(260, 260)
        self.setCursor(Qt.CursorShape.OpenHandCursor)

    def set_frame(self, image: np.ndarray | None, caption: str = "") -> None:
        self.image = None if image is None else rgb_to_qimage(image)
        self.caption = caption
        self.update()

    def image_size(self) -> tuple[int, int] | None:
        """The size the frame stands for: the full render's, else the image's own."""
        if self.image is None:
            return None
        return self.reference_size or (self.image.width(), self.image.height())

    def image_rect(self) -> QRectF | None:
        return self.zoomer.image_rect()

    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.fillRect(self.rect(), QColor("#141518"))
        r = self.image_rect()
        if self.image is None or r is None:
            p.setPen(QColor("#6b6f78"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "The rendered frame appears here")
            return
        if not self.zoom.state.fit and self.zoom.state.scale >= PIXELATED_SCALE:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        p.drawImage(r, self.image)
        if self.caption:
            draw_badge(p, QRectF(self.rect()), self.caption, bottom=False)
        size = self.image_size() or (1, 1)
        draw_badge(p, QRectF(self.rect()), self.zoom.state.label((self.width(), self.height()), size))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.zoomer.press(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        self.zoomer.move(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self.zoomer.release(event)

    def mouseDoubleClickEvent(self, _event: QMouseEvent) -> None:
        self.zoomer.toggle_fit()

    def wheelEvent(self, event: QWheelEvent) -> None:
        if not self.zoomer.wheel(event):
            super().wheelEvent(event)


class PreviewPanel(QWidget):
    """The preview: frame view + status line + progress indicator."""

    def __init__(self, parent: QWidget | None = None, zoom: ZoomModel | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("PREVIEW")
        title.setObjectName("title")
        self.view = FrameView(zoom=zoom)
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
