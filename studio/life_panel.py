"""The performance panel: how alive the portrait is (blinks per minute, head motion, gaze).

Each control is a slider with a spin box bound to the document's render settings; an edit re-renders the
preview and the flipbook frames (the settings are part of every frame's signature) and is saved in the
project. The renderer's own tracks (engine/portrait/performance.py) decide when a blink, a nod or a glance happens;
the project's seed makes them repeatable.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QGridLayout, QLabel, QSlider, QVBoxLayout, QWidget

from studio.document import Document
from studio.engine_api import LIFE_RANGES

SLIDER_STEPS = 300

#: (render setting, label, maximum, spin step, decimals, tooltip)
CONTROLS: tuple[tuple[str, str, float, float, int, str], ...] = (
    ("blinks_per_minute", "Blinks / min", LIFE_RANGES["blinks_per_minute"][1], 1.0, 0,
     "Blinks per minute (natural speech: 15-30; 0 turns blinks off). Fear and surprise blink less."),
    ("head_motion", "Head motion", LIFE_RANGES["head_motion"][1], 0.1, 2,
     "Nods on stressed syllables, turns, idle sway and the emotion's posture (1 natural, 0 a still head)."),
    ("gaze", "Gaze", LIFE_RANGES["gaze"][1], 0.1, 2,
     "Eye movements: fixations and glances (1 natural, 0 a fixed look at the viewer)."),
)


class LifePanel(QWidget):
    """Sliders + spin boxes for the document's blinks, head motion and gaze."""

    changed = Signal()  # the user changed a setting (the document already holds it)

    def __init__(self, doc: Document, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self._syncing = False
        self.sliders: dict[str, QSlider] = {}
        self.spins: dict[str, QDoubleSpinBox] = {}
        grid = QGridLayout()
        for row, (name, label, maximum, step, decimals, tip) in enumerate(CONTROLS):
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, SLIDER_STEPS)
            slider.setObjectName(f"life_{name}")
            slider.setToolTip(tip)
            spin = QDoubleSpinBox()
            spin.setRange(0.0, maximum)
            spin.setSingleStep(step)
            spin.setDecimals(decimals)
            spin.setFixedWidth(66)
            spin.setToolTip(tip)
            spin.setObjectName(f"life_spin_{name}")
            text = QLabel(label)
            text.setToolTip(tip)
            grid.addWidget(text, row, 0)
            grid.addWidget(slider, row, 1)
            grid.addWidget(spin, row, 2)
            slider.valueChanged.connect(lambda v, n=name, m=maximum: self._slider_moved(n, v * m / SLIDER_STEPS))
            spin.valueChanged.connect(lambda v, n=name: self._set(n, float(v)))
            self.sliders[name], self.spins[name] = slider, spin
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        note = QLabel("Portrait renderer; repeatable with the project's seed.")
        note.setWordWrap(True)
        note.setStyleSheet("color: #8a8f98;")
        layout.addWidget(note)
        layout.addStretch(1)
        doc.settingsChanged.connect(self.sync)
        self.sync()

    def value(self, name: str) -> float:
        return float(getattr(self.doc.render, name))

    def sync(self) -> None:
        """Show the document's settings (after opening a project, or an edit elsewhere)."""
        self._syncing = True
        try:
            for name, _label, maximum, *_rest in CONTROLS:
                value = self.value(name)
                self.spins[name].setValue(value)
                self.sliders[name].setValue(round(value / maximum * SLIDER_STEPS))
        finally:
            self._syncing = False

    def _slider_moved(self, name: str, value: float) -> None:
        if not self._syncing:
            self.spins[name].setValue(value)  # rounds to the spin box's decimals, then _set

    def _set(self, name: str, value: float) -> None:
        if self._syncing or abs(value - self.value(name)) < 1e-9:
            return
        setattr(self.doc.render, name, float(value))
        self._syncing = True
        try:
            maximum = next(c[2] for c in CONTROLS if c[0] == name)
            self.sliders[name].setValue(round(value / maximum * SLIDER_STEPS))
        finally:
            self._syncing = False
        self.doc.mark_dirty()
        self.changed.emit()
