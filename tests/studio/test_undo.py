"""Undo/redo of slider moves (merged per drag), presets, strokes and keyframes."""

from __future__ import annotations

import numpy as np
import pytest

from studio.brush import BrushSettings
from studio.canvas import PortraitCanvas
from studio.commands import new_slider_session
from studio.document import Document
from studio.palette import PaletteWidget


@pytest.fixture
def doc(qtbot) -> Document:
    return Document()


def test_slider_moves_merge_and_undo(qtbot, doc: Document) -> None:
    palette = PaletteWidget(doc)
    qtbot.addWidget(palette)
    new_slider_session()
    for value in (100, 300, 550):  # one drag of the anger slider
        palette.rows[2].slider.setValue(value)
    assert doc.weights[2] == pytest.approx(0.55)
    assert doc.undo_stack.count() == 1  # merged with mergeWith
    new_slider_session()  # user released the slider
    palette.rows[2].spin.setValue(0.8)
    assert doc.undo_stack.count() == 2
    doc.undo_stack.undo()
    assert doc.weights[2] == pytest.approx(0.55)
    assert palette.rows[2].slider.value() == 550
    doc.undo_stack.undo()
    assert doc.weights[2] == 0.0
    doc.undo_stack.redo()
    assert doc.weights[2] == pytest.approx(0.55)


def test_preset_and_reset_are_single_steps(qtbot, doc: Document) -> None:
    palette = PaletteWidget(doc)
    qtbot.addWidget(palette)
    palette.apply_preset("happily surprised")
    assert doc.weights == pytest.approx([0.5, 0, 0, 0, 0, 0.5])
    palette.reset()
    assert doc.weights == [0.0] * 6
    doc.undo_stack.undo()
    assert doc.weights == pytest.approx([0.5, 0, 0, 0, 0, 0.5])
    doc.undo_stack.undo()
    assert doc.weights == [0.0] * 6


def test_stroke_undo_restores_mask(qtbot, doc: Document) -> None:
    brush = BrushSettings(emotion=1, radius=3, hardness=1.0)
    canvas = PortraitCanvas(doc, brush)
    qtbot.addWidget(canvas)
    canvas.set_portrait(np.zeros((40, 40, 3), np.uint8))
    canvas.stroke([(10, 10), (20, 10)])
    assert doc.masks[1].max() > 0.9
    assert doc.undo_stack.count() == 1
    doc.undo_stack.undo()
    assert doc.masks[1].max() == 0.0
    doc.undo_stack.redo()
    assert doc.masks[1][10, 15] > 0.9


def test_keyframe_add_move_delete_undo(qtbot, doc: Document) -> None:
    from studio.commands import AddKeyframeCommand, DeleteKeyframeCommand, MoveKeyframeCommand
    from studio.keyframes import Keyframe

    doc.undo_stack.push(AddKeyframeCommand(doc, Keyframe(3, [0.5] * 6)))
    uid = doc.keyframes[0].uid
    doc.undo_stack.push(MoveKeyframeCommand(doc, uid, 3, 9))
    assert doc.keyframes[0].frame == 9
    doc.undo_stack.push(DeleteKeyframeCommand(doc, uid))
    assert doc.keyframes == []
    doc.undo_stack.undo()
    assert [k.frame for k in doc.keyframes] == [9]
    doc.undo_stack.undo()
    assert [k.frame for k in doc.keyframes] == [3]
    doc.undo_stack.undo()
    assert doc.keyframes == []


def test_mouse_stroke_on_the_canvas_paints_under_the_cursor(qtbot, doc: Document) -> None:
    from PySide6.QtCore import QPoint, Qt

    brush = BrushSettings(emotion=0, radius=2, hardness=1.0)
    canvas = PortraitCanvas(doc, brush)
    qtbot.addWidget(canvas)
    canvas.resize(400, 400)
    canvas.show()
    canvas.set_portrait(np.zeros((40, 40, 3), np.uint8))  # drawn 400x400: 10 widget px per mask px
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(105, 105))
    qtbot.mouseMove(canvas, QPoint(205, 105))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(205, 105))
    mask = doc.masks[0]
    assert mask[10, 10] == 1.0 and mask[10, 20] == 1.0 and mask[10, 15] == 1.0
    assert mask[30, 30] == 0.0 and mask[20, 15] == 0.0
    assert doc.undo_stack.count() == 1


def test_normalise_toggle_and_swatch(qtbot, doc: Document) -> None:
    palette = PaletteWidget(doc)
    qtbot.addWidget(palette)
    assert palette.swatch.colour.name() == "#808080"  # neutral grey when all zero
    doc.set_weights([0.2, 0, 0, 0, 0, 0.2])
    palette.normalise_box.setChecked(True)
    assert doc.effective_weights() == pytest.approx([0.5, 0, 0, 0, 0, 0.5])
    assert doc.weights == pytest.approx([0.2, 0, 0, 0, 0, 0.2])  # the sliders keep their values
    assert palette.mix_label.text().startswith("happiness 0.50")
