"""The emotion palette: one slider + spin box per expert (the global gates g), swatch, presets, text."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from studio.commands import SetWeightCommand, SetWeightsCommand, new_slider_session
from studio.document import Document
from studio.engine_api import COMPOUND_PRESETS, mix_to_vector
from studio.qtutil import mix_colour

SLIDER_STEPS = 1000
#: Keyboard steps of a slider and its spin box: arrow keys 0.05, PageUp/PageDown 0.25.
ARROW_STEP, PAGE_STEP = 0.05, 0.25


class Swatch(QFrame):
    """A rounded colour chip showing the current mix."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(34)
        self.set_colour(QColor(128, 128, 128), "neutral")

    def set_colour(self, colour: QColor, text: str) -> None:
        self.colour = colour
        fg = "#000" if colour.lightness() > 140 else "#fff"
        self.setStyleSheet(
            f"background: {colour.name()}; border-radius: 6px; border: 1px solid #55585f; color: {fg};"
        )
        self.setToolTip(text)


class EmotionRow:
    """Widgets of one emotion: colour dot, name, slider, spin box."""

    def __init__(self, name: str, colour: str) -> None:
        self.dot = QLabel()
        self.dot.setFixedSize(12, 12)
        self.dot.setStyleSheet(f"background: {colour}; border-radius: 6px;")
        self.label = QLabel(name.capitalize())
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setSingleStep(round(ARROW_STEP * SLIDER_STEPS))
        self.slider.setPageStep(round(PAGE_STEP * SLIDER_STEPS))
        self.slider.setToolTip(f"{name.capitalize()}: the global gate of its expert (arrows ±{ARROW_STEP}, "
                               f"PageUp/PageDown ±{PAGE_STEP})")
        self.slider.setObjectName(f"slider_{name}")
        self.slider.setStyleSheet(
            f"QSlider::sub-page:horizontal {{ background: {colour}; border-radius: 3px; }}"
        )
        self.spin = QDoubleSpinBox()
        self.spin.setRange(0.0, 1.0)
        self.spin.setSingleStep(ARROW_STEP)
        self.spin.setToolTip(f"{name.capitalize()} (type a value, Enter; shortcuts such as K keep working)")
        self.spin.setDecimals(2)
        self.spin.setFixedWidth(62)


class PaletteWidget(QWidget):
    """Sliders bound to the document's weights; every user edit is an undoable command."""

    describeRequested = Signal(str)  # text to turn into a mix (done off the UI thread by the caller)

    def __init__(self, doc: Document, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc = doc
        self.rows: list[EmotionRow] = []
        self._updating = False

        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        mix_box = QGroupBox("Emotion mix (global gates)")
        self.grid = QGridLayout(mix_box)
        self.grid.setHorizontalSpacing(8)
        self.grid.setVerticalSpacing(6)
        outer.addWidget(mix_box)

        swatch_row = QHBoxLayout()
        self.swatch = Swatch()
        self.mix_label = QLabel("neutral")
        self.mix_label.setObjectName("title")
        swatch_row.addWidget(self.swatch, 1)
        outer.addLayout(swatch_row)
        outer.addWidget(self.mix_label)

        tools = QHBoxLayout()
        self.normalise_box = QCheckBox("Normalise (sum = 1)")
        self.normalise_box.toggled.connect(self.doc.set_normalise)
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("All sliders to 0 (neutral face)")
        self.reset_button.clicked.connect(self.reset)
        tools.addWidget(self.normalise_box)
        tools.addStretch(1)
        tools.addWidget(self.reset_button)
        outer.addLayout(tools)

        preset_box = QGroupBox("Compound presets")
        pl = QVBoxLayout(preset_box)
        self.presets = QComboBox()
        self.presets.addItem("Choose a compound emotion…")
        for name in COMPOUND_PRESETS:
            self.presets.addItem(name)
        self.presets.activated.connect(self._preset_chosen)
        pl.addWidget(self.presets)
        outer.addWidget(preset_box)

        text_box = QGroupBox("Describe the emotion")
        text_column = QVBoxLayout(text_box)
        tl = QHBoxLayout()
        self.text = QLineEdit()
        self.text.setPlaceholderText("e.g. a little sad, happy but a bit scared")
        self.describe_button = QPushButton("Apply")
        self.text.returnPressed.connect(self._describe)
        self.describe_button.clicked.connect(self._describe)
        tl.addWidget(self.text, 1)
        tl.addWidget(self.describe_button)
        text_column.addLayout(tl)
        self.describe_message = QLabel()  # how the text was read, or why it was not
        self.describe_message.setWordWrap(True)
        self.describe_message.setVisible(False)
        text_column.addWidget(self.describe_message)
        outer.addWidget(text_box)
        outer.addStretch(1)

        doc.emotionsChanged.connect(self.rebuild)
        doc.weightsChanged.connect(self.refresh)
        self.rebuild()

    # ------------------------------------------------------------- layout
    def rebuild(self) -> None:
        """(Re)create one row per emotion (custom experts appear as extra rows)."""
        for row in self.rows:
            for w in (row.dot, row.label, row.slider, row.spin):
                self.grid.removeWidget(w)
                w.deleteLater()
        self.rows = []
        for i, (name, colour) in enumerate(zip(self.doc.emotions, self.doc.colours, strict=True)):
            row = EmotionRow(name, colour)
            row.slider.valueChanged.connect(lambda v, i=i: self._slider_moved(i, v))
            row.slider.sliderReleased.connect(new_slider_session)
            row.spin.valueChanged.connect(lambda v, i=i: self._spin_changed(i, v))
            row.spin.editingFinished.connect(new_slider_session)
            self.grid.addWidget(row.dot, i, 0)
            self.grid.addWidget(row.label, i, 1)
            self.grid.addWidget(row.slider, i, 2)
            self.grid.addWidget(row.spin, i, 3)
            self.rows.append(row)
        self.grid.setColumnStretch(2, 1)
        self.refresh()

    def refresh(self) -> None:
        """Show the document's weights (without creating commands)."""
        self._updating = True
        try:
            for row, value in zip(self.rows, self.doc.weights, strict=False):
                row.slider.setValue(round(value * SLIDER_STEPS))
                row.spin.setValue(value)
            self.normalise_box.setChecked(self.doc.state.normalise)
        finally:
            self._updating = False
        eff = self.doc.effective_weights()
        self.swatch.set_colour(mix_colour(eff, self.doc.colours), self.describe_mix(eff))
        self.mix_label.setText(self.describe_mix(eff))

    def describe_mix(self, weights: list[float]) -> str:
        """A short text of the mix, e.g. 'happiness 0.60 · surprise 0.40'."""
        parts = [(w, n) for w, n in zip(weights, self.doc.emotions, strict=False) if w > 0.005]
        if not parts:
            return "neutral"
        parts.sort(key=lambda p: -p[0])  # stable: ties keep the expert order
        return " · ".join(f"{n} {w:.2f}" for w, n in parts[:4])

    # -------------------------------------------------------------- edits
    def set_weight(self, index: int, value: float) -> None:
        """Programmatic equivalent of the user moving slider ``index`` (undoable, merged)."""
        value = min(1.0, max(0.0, float(value)))
        if abs(value - self.doc.weights[index]) < 1e-9:
            return
        self.doc.undo_stack.push(SetWeightCommand(self.doc, index, value))

    def _slider_moved(self, index: int, raw: int) -> None:
        if not self._updating:
            self.set_weight(index, raw / SLIDER_STEPS)

    def _spin_changed(self, index: int, value: float) -> None:
        if not self._updating:
            self.set_weight(index, value)

    def apply_mix(self, mix: dict[str, float], text: str) -> None:
        """Set all sliders from a name->weight mix (one undo step)."""
        known = {k: v for k, v in mix.items() if k in self.doc.emotions}
        values = mix_to_vector(known, self.doc.emotions)
        new_slider_session()
        self.doc.undo_stack.push(SetWeightsCommand(self.doc, values, text))
        new_slider_session()

    def apply_preset(self, name: str) -> None:
        """Apply a compound preset (engine.emotions.COMPOUND_PRESETS)."""
        self.apply_mix(COMPOUND_PRESETS[name], f"Preset: {name}")

    def reset(self) -> None:
        """All sliders to zero (neutral)."""
        new_slider_session()
        self.doc.undo_stack.push(SetWeightsCommand(self.doc, [0.0] * len(self.doc.emotions), "Reset mix"))
        new_slider_session()

    def _preset_chosen(self, index: int) -> None:
        if index > 0:
            self.apply_preset(self.presets.itemText(index))
            self.presets.setCurrentIndex(0)

    def _describe(self) -> None:
        text = self.text.text().strip()
        if text:
            self.describe_button.setEnabled(False)
            self.describeRequested.emit(text)

    def describe_done(self, message: str = "", understood: bool = True) -> None:
        """Re-enable the describe button (after the engine answered or failed) and show ``message``.

        ``understood=False``: the text was not read as an emotion (the sliders were left alone).
        """
        self.describe_button.setEnabled(True)
        self.describe_message.setText(message)
        self.describe_message.setStyleSheet("" if understood else "color: #e8a33d;")
        self.describe_message.setVisible(bool(message))
