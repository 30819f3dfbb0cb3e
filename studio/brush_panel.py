"""Brush controls: emotion, value, radius, hardness, eraser, mask alpha, region presets, overlays."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.brush import BrushSettings
from studio.document import Document


class BrushPanel(QWidget):
    """Edits a shared :class:`BrushSettings`; asks the window for region fills and overlay changes."""

    brushChanged = Signal()
    regionFillRequested = Signal(str)  # region name
    clearRequested = Signal()
    overlaysChanged = Signal()

    def __init__(self, doc: Document, brush: BrushSettings, regions: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.brush = brush
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)

        box = QGroupBox("Local gate brush")
        form = QFormLayout(box)
        self.emotion = QComboBox()
        self.value = QDoubleSpinBox()
        self.value.setRange(0.0, 1.0)
        self.value.setSingleStep(0.1)
        self.value.setValue(brush.value)
        self.radius = QSpinBox()
        self.radius.setRange(1, 256)
        self.radius.setSuffix(" px")
        self.radius.setValue(int(brush.radius))
        self.hardness = QDoubleSpinBox()
        self.hardness.setRange(0.0, 1.0)
        self.hardness.setSingleStep(0.1)
        self.hardness.setValue(brush.hardness)
        self.eraser = QCheckBox("Eraser (E)")
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.0, 1.0)
        self.alpha.setSingleStep(0.1)
        self.alpha.setToolTip("How much the painted mask overrides the model's own local gate s")
        form.addRow("Emotion", self.emotion)
        form.addRow("Value", self.value)
        form.addRow("Radius  [ ]", self.radius)
        form.addRow("Hardness", self.hardness)
        form.addRow("Override α", self.alpha)
        form.addRow("", self.eraser)
        outer.addWidget(box)

        region_box = QGroupBox("Region presets (from landmarks)")
        rl = QHBoxLayout(region_box)
        self.region = QComboBox()
        self.region.addItems(regions)
        self.fill_button = QPushButton("Fill")
        self.fill_button.clicked.connect(lambda: self.regionFillRequested.emit(self.region.currentText()))
        self.clear_button = QPushButton("Clear all")
        self.clear_button.clicked.connect(lambda _checked=False: self.clearRequested.emit())
        rl.addWidget(self.region, 1)
        rl.addWidget(self.fill_button)
        rl.addWidget(self.clear_button)
        outer.addWidget(region_box)

        view_box = QGroupBox("Overlays")
        vl = QFormLayout(view_box)
        self.show_masks = QCheckBox("Painted masks")
        self.show_masks.setChecked(True)
        self.show_landmarks = QCheckBox("Landmarks && face box")
        self.show_landmarks.setChecked(True)
        self.heat = QComboBox()
        vl.addRow(self.show_masks)
        vl.addRow(self.show_landmarks)
        vl.addRow("Model gate s", self.heat)
        outer.addWidget(view_box)
        outer.addStretch(1)

        for w in (self.value, self.hardness):
            w.valueChanged.connect(self._sync)
        self.radius.valueChanged.connect(self._sync)
        self.eraser.toggled.connect(self._sync)
        self.emotion.currentIndexChanged.connect(self._sync)
        self.alpha.valueChanged.connect(self._alpha_changed)
        self.show_masks.toggled.connect(lambda _on: self.overlaysChanged.emit())
        self.show_landmarks.toggled.connect(lambda _on: self.overlaysChanged.emit())
        self.heat.currentIndexChanged.connect(lambda _i: self.overlaysChanged.emit())
        doc.emotionsChanged.connect(self.rebuild)
        doc.masksChanged.connect(lambda _i: self._show_alpha())
        self.rebuild()

    def rebuild(self) -> None:
        """Refill the emotion lists (custom experts included)."""
        current = self.emotion.currentIndex()
        for combo in (self.emotion, self.heat):
            combo.blockSignals(True)
            combo.clear()
        self.heat.addItem("off")
        for name in self.doc.emotions:
            self.emotion.addItem(name)
            self.heat.addItem(name)
        self.emotion.setCurrentIndex(max(0, min(current, len(self.doc.emotions) - 1)))
        for combo in (self.emotion, self.heat):
            combo.blockSignals(False)
        self._sync()

    def heat_emotion(self) -> int:
        """Index of the emotion whose model gate map is shown (-1 = off)."""
        return self.heat.currentIndex() - 1

    def set_radius(self, radius: float) -> None:
        self.radius.setValue(int(round(radius)))

    def set_eraser(self, on: bool) -> None:
        self.eraser.setChecked(on)

    def _sync(self, *_args: object) -> None:
        self.brush.emotion = max(0, self.emotion.currentIndex())
        self.brush.value = self.value.value()
        self.brush.radius = float(self.radius.value())
        self.brush.hardness = self.hardness.value()
        self.brush.eraser = self.eraser.isChecked()
        self.brush.clamp()
        self._show_alpha()
        self.brushChanged.emit()

    def _show_alpha(self) -> None:
        self.alpha.blockSignals(True)
        self.alpha.setValue(self.doc.alpha[self.brush.emotion] if self.doc.alpha else 1.0)
        self.alpha.blockSignals(False)

    def _alpha_changed(self, value: float) -> None:
        self.doc.set_alpha(self.brush.emotion, value)
        self.doc.mark_dirty()


