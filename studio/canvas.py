"""The portrait canvas: shows the portrait, face box and landmarks, painted masks, gate heat maps,
and turns mouse strokes into undoable mask edits. Accepts dropped image files.

Zoom and pan (shared with the preview, :mod:`studio.zoom_view`): the wheel zooms about the cursor,
the middle button and Space-drag pan, and with the pan tool (``paint_enabled = False``) a left drag pans too, so a
click on the portrait does not always paint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from studio.brush import BrushSettings, apply_dab, apply_segment
from studio.commands import MaskEditCommand
from studio.document import Document
from studio.qtutil import draw_badge, heat_rgba, overlay_rgba, rgb_to_qimage
from studio.zoom import PIXELATED_SCALE
from studio.zoom_view import ZoomHandler, ZoomModel

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class PortraitCanvas(QWidget):
    """Paintable view of the portrait (mask space = portrait pixels)."""

    imageDropped = Signal(str)
    strokeFinished = Signal(int)  # emotion index
    spaceTapped = Signal()  # Space pressed and released without a drag (the window's play / pause)

    def __init__(self, doc: Document, brush: BrushSettings, parent: QWidget | None = None,
                 zoom: ZoomModel | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.brush = brush
        self.portrait: np.ndarray | None = None
        self._portrait_image: QImage | None = None
        self.landmarks: np.ndarray | None = None
        self.show_landmarks = True
        self.show_face_box = True
        self.show_masks = True
        self.heat_emotion = -1  # emotion whose model gate map is shown, -1 = none
        self.gate_maps: np.ndarray | None = None
        self.paint_enabled = True  # False: the pan tool (a left drag pans, nothing is painted)
        self.loading_text = ""  # shown over the portrait while the model loads or the face is checked
        self.zoom = zoom if zoom is not None else ZoomModel(self)
        self.zoomer = ZoomHandler(self, self.zoom, self.image_size, lambda: not self.paint_enabled or self._space_held)
        self._space_held = False  # Space held down on the canvas: a left drag pans (as in Krita, Photoshop)
        self._space_dragged = False
        self._overlay: QImage | None = None
        self._stroke_before: np.ndarray | None = None
        self._last: tuple[float, float] | None = None
        self._hover: QPointF | None = None
        self.setAcceptDrops(True)
        self.setMouseTracking(True)
        self.setMinimumSize(260, 260)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # Enter in a spin box hands the focus back here
        doc.masksChanged.connect(self._masks_changed)

    # ------------------------------------------------------------- content
    def show_placeholder(self, image: np.ndarray, text: str) -> None:
        """Show ``image`` at once, before the engine prepared it (the model still loads): nothing can be
        painted yet and the masks are left alone; ``text`` says what is being waited for."""
        self.portrait = None
        self.landmarks = None
        self._portrait_image = rgb_to_qimage(image)
        self.loading_text = text
        self._masks_changed(-1)

    def set_loading_text(self, text: str) -> None:
        self.loading_text = text
        self.update()

    def set_portrait(self, image: np.ndarray | None, landmarks: np.ndarray | None = None) -> None:
        """Show ``image`` (RGB uint8); masks are resized to its resolution."""
        self.loading_text = ""
        self.portrait = image
        self.landmarks = None if landmarks is None else np.asarray(landmarks, np.float32)
        self._portrait_image = None if image is None else rgb_to_qimage(image)
        if image is not None:
            self.doc.resize_masks(int(image.shape[0]), int(image.shape[1]))
        self._masks_changed(-1)

    def set_gate_maps(self, maps: np.ndarray | None) -> None:
        self.gate_maps = maps
        self.update()

    def set_heat_emotion(self, index: int) -> None:
        self.heat_emotion = index
        self.update()

    def face_box(self) -> QRectF | None:
        """Bounding box of the landmarks (portrait pixels), slightly enlarged."""
        if self.landmarks is None or len(self.landmarks) == 0:
            return None
        x0, y0 = self.landmarks.min(axis=0)
        x1, y1 = self.landmarks.max(axis=0)
        mx, my = (x1 - x0) * 0.08, (y1 - y0) * 0.08
        return QRectF(float(x0 - mx), float(y0 - my), float(x1 - x0 + 2 * mx), float(y1 - y0 + 2 * my))

    def _stroke_changed(self, points: list[tuple[float, float]]) -> None:
        """Redraw the overlay only around the dabs at ``points`` (a full redraw of a 1024 px mask set
        takes tens of milliseconds, too slow for every mouse move)."""
        if self._overlay is None or self.portrait is None:
            self._masks_changed(self.brush.emotion)
            return
        h, w = self.portrait.shape[:2]
        pad = int(np.ceil(self.brush.radius)) + 2
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1 = max(0, int(min(xs)) - pad), min(w, int(np.ceil(max(xs))) + pad + 1)
        y0, y1 = max(0, int(min(ys)) - pad), min(h, int(np.ceil(max(ys))) + pad + 1)
        if x0 >= x1 or y0 >= y1:
            return
        patch = rgb_to_qimage(overlay_rgba(self.doc.masks[:, y0:y1, x0:x1], self.doc.colours))
        painter = QPainter(self._overlay)
        painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        painter.drawImage(x0, y0, patch)
        painter.end()
        self.update()

    def _masks_changed(self, _index: int) -> None:
        if self.portrait is not None and self.doc.masks.shape[1:] == self.portrait.shape[:2]:
            self._overlay = rgb_to_qimage(overlay_rgba(self.doc.masks, self.doc.colours))
        else:
            self._overlay = None
        self.update()

    # ------------------------------------------------------------ geometry
    def image_size(self) -> tuple[int, int] | None:
        """The shown portrait's (width, height), or None."""
        if self.portrait is not None:
            return int(self.portrait.shape[1]), int(self.portrait.shape[0])
        if self._portrait_image is not None:  # the placeholder while the model loads
            return self._portrait_image.width(), self._portrait_image.height()
        return None

    def image_rect(self) -> QRectF:
        """Where the portrait is drawn (fit and centred, or zoomed and panned)."""
        rect = self.zoomer.image_rect()
        return QRectF(self.rect()) if rect is None else rect

    def set_pan_tool(self, on: bool) -> None:
        """The pan tool: a left drag moves the view instead of painting."""
        self.paint_enabled = not on
        self.zoomer.restore_cursor()
        self.update()

    def to_image(self, pos: QPointF) -> tuple[float, float]:
        """Widget position -> portrait pixel coordinates (pixel centres at .0)."""
        r = self.image_rect()
        h, w = self.portrait.shape[:2] if self.portrait is not None else (1, 1)
        return ((pos.x() - r.x()) / r.width() * w - 0.5, (pos.y() - r.y()) / r.height() * h - 0.5)

    def to_widget(self, x: float, y: float) -> QPointF:
        """Portrait pixel coordinates -> widget position."""
        r = self.image_rect()
        h, w = self.portrait.shape[:2] if self.portrait is not None else (1, 1)
        return QPointF(r.x() + (x + 0.5) / w * r.width(), r.y() + (y + 0.5) / h * r.height())

    # ---------------------------------------------------------------- paint
    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.fillRect(self.rect(), QColor("#141518"))
        if self._portrait_image is None:
            p.setPen(QColor("#6b6f78"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                       self.loading_text or "Open or drop a portrait image\n(File ▸ Open portrait…)")
            return
        r = self.image_rect()
        if not self.zoom.state.fit and self.zoom.state.scale >= PIXELATED_SCALE:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)  # zoomed in: see the pixels
        p.drawImage(r, self._portrait_image)
        if self.show_masks and self._overlay is not None:
            p.drawImage(r, self._overlay)
        if self.gate_maps is not None and 0 <= self.heat_emotion < len(self.gate_maps):
            p.drawImage(r, rgb_to_qimage(heat_rgba(self.gate_maps[self.heat_emotion])))
        w, h = self.image_size() or (1, 1)
        sx, sy = r.width() / w, r.height() / h
        box = self.face_box()
        if self.show_face_box and box is not None:
            p.setPen(QPen(QColor("#4ad991"), 1.5, Qt.PenStyle.DashLine))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(QRectF(r.x() + box.x() * sx, r.y() + box.y() * sy, box.width() * sx, box.height() * sy))
        if self.show_landmarks and self.landmarks is not None:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(120, 230, 255, 150 if len(self.landmarks) > 100 else 210))
            rad = max(1.0, min(2.5, sx * (0.12 if len(self.landmarks) > 100 else 0.5)))
            for x, y in self.landmarks:
                p.drawEllipse(self.to_widget(float(x), float(y)), rad, rad)
        if self._hover is not None and self.paint_enabled and self.portrait is not None:
            colour = QColor("#ffffff") if self.brush.eraser else QColor(self.doc.colours[self.brush.emotion])
            p.setPen(QPen(colour, 1.2))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawEllipse(self._hover, self.brush.radius * sx, self.brush.radius * sy)
        badges = [self.zoom.state.label((self.width(), self.height()), self.image_size() or (1, 1))]
        if self.loading_text:
            badges.insert(0, self.loading_text)
        draw_badge(p, QRectF(self.rect()), "  ·  ".join(badges))

    # ---------------------------------------------------------------- mouse
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self._stroke_before is None and self.zoomer.press(event):
            return
        if event.button() != Qt.MouseButton.LeftButton or self.portrait is None or not self.paint_enabled:
            return
        self.begin_stroke(*self.to_image(event.position()))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        self._hover = event.position()
        if self.zoomer.move(event):
            self._space_dragged = self._space_dragged or self._space_held
            return
        if self._stroke_before is not None:
            self.continue_stroke(*self.to_image(event.position()))
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self.zoomer.release(event):
            return
        if event.button() == Qt.MouseButton.LeftButton and self._stroke_before is not None:
            self.end_stroke()

    def wheelEvent(self, event: QWheelEvent) -> None:
        if not self.zoomer.wheel(event):
            super().wheelEvent(event)

    # ------------------------------------------------------------ space-drag
    def event(self, event: QEvent) -> bool:
        """Take Space from the window's play shortcut while the canvas has the focus: held, a drag pans;
        tapped, ``spaceTapped`` asks the window to play or pause as the shortcut would."""
        if (event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent)
                and event.key() == Qt.Key.Key_Space and event.modifiers() == Qt.KeyboardModifier.NoModifier
                and self.image_size() is not None):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and self.image_size() is not None:
            if not event.isAutoRepeat():
                self._space_held, self._space_dragged = True, False
                self.setCursor(Qt.CursorShape.OpenHandCursor)
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and self._space_held:
            if event.isAutoRepeat():
                return
            self._space_held = False
            self.zoomer.restore_cursor()
            if not self._space_dragged:
                self.spaceTapped.emit()
            return
        super().keyReleaseEvent(event)

    def leaveEvent(self, _event: object) -> None:
        self._hover = None
        self.update()

    # --------------------------------------------------------------- strokes
    def begin_stroke(self, x: float, y: float) -> None:
        """Start a stroke at portrait pixel (x, y)."""
        index = self.brush.emotion
        self._stroke_before = self.doc.masks[index].copy()
        self._last = (x, y)
        apply_dab(self.doc.masks[index], x, y, self.brush)
        self._stroke_changed([(x, y)])

    def continue_stroke(self, x: float, y: float) -> None:
        """Extend the stroke to (x, y) (live overlay, no render yet)."""
        if self._stroke_before is None or self._last is None:
            return
        apply_segment(self.doc.masks[self.brush.emotion], self._last, (x, y), self.brush)
        self._stroke_changed([self._last, (x, y)])
        self._last = (x, y)

    def end_stroke(self) -> None:
        """Finish the stroke: one undoable command with the mask before and after."""
        if self._stroke_before is None:
            return
        index = self.brush.emotion
        after = self.doc.masks[index].copy()
        before = self._stroke_before
        self._stroke_before = None
        self._last = None
        self.doc.masks[index] = before  # the command re-applies "after" (and notifies)
        text = "Erase" if self.brush.eraser else f"Paint {self.doc.emotions[index]}"
        stack = self.doc.undo_stack
        stack.beginMacro(text)  # the stroke and what listeners add for it (an auto-key) undo as one step
        try:
            stack.push(MaskEditCommand(self.doc, index, before, after, text))
            self.strokeFinished.emit(index)
        finally:
            stack.endMacro()

    def stroke(self, points: list[tuple[float, float]]) -> None:
        """Paint a whole stroke through portrait pixel points (used by scripts and tests)."""
        if not points:
            return
        self.begin_stroke(*points[0])
        for x, y in points[1:]:
            self.continue_stroke(x, y)
        self.end_stroke()

    # ----------------------------------------------------------------- drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_image(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_image(event)
        if path is not None:
            event.acceptProposedAction()
            self.imageDropped.emit(path)

    @staticmethod
    def _dropped_image(event: QDragEnterEvent | QDropEvent) -> str | None:
        mime = event.mimeData()
        if not mime.hasUrls():
            return None
        for url in mime.urls():
            path = url.toLocalFile()
            if path and Path(path).suffix.lower() in IMAGE_SUFFIXES:
                return path
        return None
