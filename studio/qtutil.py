"""Small Qt helpers shared by the widgets: numpy <-> QImage, colour mixing, the dark theme."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPalette
from PySide6.QtWidgets import QApplication


def rgb_to_qimage(image: np.ndarray) -> QImage:
    """An ``H x W x 3`` (RGB) or ``H x W x 4`` (RGBA) uint8 array as a QImage (copied)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = image.shape[:2]
    if image.ndim == 3 and image.shape[2] == 4:
        return QImage(image.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
    if image.ndim == 2:
        image = np.ascontiguousarray(np.repeat(image[..., None], 3, axis=2))
    return QImage(image.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def mix_colour(weights: Sequence[float], colours: Sequence[str]) -> QColor:
    """The palette swatch: colours blended by weight over a neutral grey (all zero = grey)."""
    total = float(sum(weights))
    neutral = np.array([128.0, 128.0, 128.0])
    if total <= 0:
        return QColor(*neutral.astype(int))
    acc = np.zeros(3)
    for w, c in zip(weights, colours, strict=False):
        q = QColor(c)
        acc += float(w) * np.array([q.red(), q.green(), q.blue()])
    mixed = acc / total
    strength = min(1.0, total)
    out = neutral * (1.0 - strength) + mixed * strength
    return QColor(*np.clip(out, 0, 255).astype(int))


def overlay_rgba(masks: np.ndarray, colours: Sequence[str], opacity: float = 0.55) -> np.ndarray:
    """Colour overlay ``H x W x 4`` of a mask stack: each emotion's colour, alpha = its mask."""
    e, h, w = masks.shape
    rgb = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    for i in range(e):
        m = masks[i]
        if float(m.max(initial=0.0)) <= 0:
            continue
        q = QColor(colours[i % len(colours)])
        col = np.array([q.red(), q.green(), q.blue()], np.float32)
        a = m * opacity
        rgb = rgb * (1 - a[..., None]) + col * a[..., None]
        alpha = alpha + a * (1 - alpha)
    out = np.zeros((h, w, 4), np.uint8)
    safe = np.maximum(alpha, 1e-6)[..., None]
    out[..., :3] = np.clip(rgb / safe * (alpha[..., None] > 0), 0, 255).astype(np.uint8)
    out[..., 3] = np.clip(alpha * 255, 0, 255).astype(np.uint8)
    return out


def heat_rgba(values: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """A heat map (black-red-yellow-white, alpha by value) of a float map in 0..1."""
    v = np.clip(values.astype(np.float32), 0.0, 1.0)
    r = np.clip(v * 3.0, 0, 1)
    g = np.clip(v * 3.0 - 1.0, 0, 1)
    b = np.clip(v * 3.0 - 2.0, 0, 1)
    out = np.stack([r, g, b, np.full_like(v, opacity) * v], axis=-1)
    return (out * 255).astype(np.uint8)


DARK_QSS = """
QWidget { background: #1e1f22; color: #dcdde1; font-size: 12px; }
QMainWindow::separator { background: #2b2d31; width: 3px; height: 3px; }
QDockWidget { titlebar-close-icon: none; }
QDockWidget::title { background: #2b2d31; padding: 5px 8px; font-weight: 600; color: #f0f0f0; }
QGroupBox { border: 1px solid #34363c; border-radius: 6px; margin-top: 14px; padding: 8px 6px 6px 6px; }
QGroupBox::title { subcontrol-origin: margin; left: 10px; padding: 0 4px; color: #9aa0aa; font-weight: 600; }
QPushButton, QToolButton { background: #2f3136; border: 1px solid #41444b; border-radius: 4px; padding: 4px 10px; }
QPushButton:hover, QToolButton:hover { background: #3a3d44; }
QPushButton:pressed, QToolButton:checked { background: #4a6fa5; border-color: #5b84c4; }
QPushButton:disabled { color: #6b6f78; }
QLineEdit, QSpinBox, QDoubleSpinBox, QComboBox, QPlainTextEdit {
    background: #141518; border: 1px solid #3a3d44; border-radius: 4px; padding: 2px 4px; }
QSlider::groove:horizontal { height: 6px; background: #34363c; border-radius: 3px; }
QSlider::handle:horizontal { width: 12px; margin: -5px 0; border-radius: 6px; background: #e6e6e6; }
QProgressBar { background: #141518; border: 1px solid #3a3d44; border-radius: 4px; text-align: center; height: 12px; }
QProgressBar::chunk { background: #4a90d9; border-radius: 3px; }
QStatusBar { background: #17181b; color: #9aa0aa; }
QMenuBar { background: #17181b; } QMenuBar::item:selected { background: #2f3136; }
QMenu { background: #232428; border: 1px solid #3a3d44; } QMenu::item:selected { background: #4a6fa5; }
QTabBar::tab { background: #2b2d31; padding: 5px 12px; border-top-left-radius: 4px; border-top-right-radius: 4px; }
QTabBar::tab:selected { background: #3a3d44; }
QToolBar { background: #17181b; border: none; spacing: 4px; padding: 3px; }
QLabel#title { color: #9aa0aa; font-weight: 600; }
"""


def draw_badge(painter: QPainter, area: QRectF, text: str, bottom: bool = True) -> None:
    """A small rounded caption in a corner of ``area`` (bottom-left, or top-left with ``bottom=False``)."""
    if not text:
        return
    painter.save()
    font = QFont(painter.font())
    font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
    painter.setFont(font)
    width = painter.fontMetrics().horizontalAdvance(text) + 14
    y = area.bottom() - 28 if bottom else area.y() + 8
    badge = QRectF(area.x() + 8, y, width, 20)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(0, 0, 0, 160))
    painter.drawRoundedRect(badge, 4, 4)
    painter.setPen(QColor("#e6e6e6"))
    painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
    painter.restore()


def apply_dark_theme(app: QApplication) -> None:
    """Fusion style with a dark palette and the studio style sheet."""
    app.setStyle("Fusion")
    pal = QPalette()
    for role, colour in (
        (QPalette.ColorRole.Window, "#1e1f22"),
        (QPalette.ColorRole.WindowText, "#dcdde1"),
        (QPalette.ColorRole.Base, "#141518"),
        (QPalette.ColorRole.AlternateBase, "#232428"),
        (QPalette.ColorRole.Text, "#dcdde1"),
        (QPalette.ColorRole.Button, "#2f3136"),
        (QPalette.ColorRole.ButtonText, "#dcdde1"),
        (QPalette.ColorRole.Highlight, "#4a6fa5"),
        (QPalette.ColorRole.HighlightedText, "#ffffff"),
    ):
        pal.setColor(role, QColor(colour))
    app.setPalette(pal)
    app.setStyleSheet(DARK_QSS)
