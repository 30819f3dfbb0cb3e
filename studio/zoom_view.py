"""Qt side of zoom and pan: the shared :class:`ZoomModel` and the mouse handling both image views use.

Wheel: zoom about the cursor. Middle-button drag (or a left drag where the view does not paint): pan.
Double-click (preview): toggle fit and 1:1. The geometry itself is :mod:`studio.zoom` (Qt-free).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QWidget

from studio.zoom import ZOOM_STEP, ZoomState, wheel_factor


class ZoomModel(QObject):
    """One :class:`ZoomState` shared by the portrait canvas and the preview; ``changed`` repaints both."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = ZoomState()

    def fit(self) -> None:
        self.state.set_fit()
        self.changed.emit()

    def actual_pixels(self, view: tuple[float, float], image: tuple[int, int]) -> None:
        """1:1: one screen pixel per image pixel, about the view's centre."""
        self.state.set_scale(1.0, view, image)
        self.changed.emit()

    def zoom(self, factor: float, view: tuple[float, float], image: tuple[int, int],
             anchor: tuple[float, float] | None = None) -> None:
        self.state.zoom(factor, view, image, anchor)
        self.changed.emit()

    def zoom_in(self, view: tuple[float, float], image: tuple[int, int]) -> None:
        self.zoom(ZOOM_STEP, view, image)

    def zoom_out(self, view: tuple[float, float], image: tuple[int, int]) -> None:
        self.zoom(1.0 / ZOOM_STEP, view, image)

    def pan(self, dx: float, dy: float, view: tuple[float, float], image: tuple[int, int]) -> None:
        self.state.pan(dx, dy, view, image)
        self.changed.emit()


class ZoomHandler:
    """Mouse handling of zoom and pan for one view widget (it forwards its events here first).

    ``image_size()`` gives the image's (w, h) or None; ``left_pans()`` says whether a plain left drag pans.
    """

    def __init__(self, widget: QWidget, model: ZoomModel, image_size: Callable[[], tuple[int, int] | None],
                 left_pans: Callable[[], bool]) -> None:
        self.widget = widget
        self.model = model
        self.image_size = image_size
        self.left_pans = left_pans
        self._last: QPointF | None = None
        model.changed.connect(widget.update)

    def view(self) -> tuple[float, float]:
        return float(self.widget.width()), float(self.widget.height())

    def image_rect(self) -> QRectF | None:
        size = self.image_size()
        if size is None:
            return None
        return QRectF(*self.model.state.rect(self.view(), size))

    @property
    def panning(self) -> bool:
        return self._last is not None

    def wheel(self, event: QWheelEvent) -> bool:
        size = self.image_size()
        if size is None or not event.angleDelta().y():
            return False
        pos = event.position()
        self.model.zoom(wheel_factor(event.angleDelta().y()), self.view(), size, (pos.x(), pos.y()))
        event.accept()
        return True

    def press(self, event: QMouseEvent) -> bool:
        """Start a pan (middle button, or left where left pans); True when the event was used."""
        if self.image_size() is None:
            return False
        if event.button() == Qt.MouseButton.MiddleButton or (
                event.button() == Qt.MouseButton.LeftButton and self.left_pans()):
            self._last = event.position()
            self.widget.setCursor(Qt.CursorShape.ClosedHandCursor)
            return True
        return False

    def move(self, event: QMouseEvent) -> bool:
        size = self.image_size()
        if self._last is None or size is None:
            return False
        pos = event.position()
        self.model.pan(pos.x() - self._last.x(), pos.y() - self._last.y(), self.view(), size)
        self._last = pos
        return True

    def release(self, _event: QMouseEvent) -> bool:
        if self._last is None:
            return False
        self._last = None
        self.restore_cursor()
        return True

    def restore_cursor(self) -> None:
        if self.left_pans():
            self.widget.setCursor(Qt.CursorShape.OpenHandCursor)
        else:
            self.widget.unsetCursor()

    def toggle_fit(self) -> None:
        """Double-click: fit <-> 1:1."""
        size = self.image_size()
        if size is None:
            return
        if self.model.state.fit:
            self.model.actual_pixels(self.view(), size)
        else:
            self.model.fit()
