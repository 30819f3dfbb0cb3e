"""The studio on the pixel renderer shows the whole portrait (issue "One engine", item 3): where the renderer can
paste its face crop back (``Capabilities.paste_back``), the preview, the flipbook and the export show the
full-resolution frame, while the canvas paints on the model's crop (where the masks live). The real tiny pixel
model on the 64 px test portrait (its crop is 32 px)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studio import engine_api

PORTRAIT_SIDE, CROP_SIDE = 64, 32


def test_preview_flipbook_and_export_show_the_pasted_back_portrait(qtbot, ready_window, tmp_path: Path) -> None:
    win = ready_window
    assert engine_api.can(win.service.animator, "paste_back")
    prepared = win.service.prepared_inputs
    assert prepared.portrait.shape == (CROP_SIDE, CROP_SIDE, 3)  # the model's crop, where the brush paints
    assert win.canvas.portrait.shape == (CROP_SIDE, CROP_SIDE, 3)
    assert engine_api.frame_shape(prepared) == (PORTRAIT_SIDE, PORTRAIT_SIDE)
    assert win.last_result.image.shape == (PORTRAIT_SIDE, PORTRAIT_SIDE, 3)  # the preview: the whole portrait
    assert win.preview.view.image_size() == (PORTRAIT_SIDE, PORTRAIT_SIDE)

    win.flipbook.enabled = True
    win.refresh_flipbook()
    qtbot.waitUntil(win.flipbook.is_complete, timeout=60_000)
    assert win.flipbook.frame(0).shape == (PORTRAIT_SIDE, PORTRAIT_SIDE, 3)

    from studio.export_dialog import ExportDialog

    dialog = ExportDialog(win)
    qtbot.addWidget(dialog)
    assert dialog.render_size == (PORTRAIT_SIDE, PORTRAIT_SIDE)
    out = tmp_path / "clip.mp4"
    dialog.format.setCurrentIndex([dialog.format.itemData(i) for i in range(dialog.format.count())].index("mp4"))
    dialog.path.setText(str(out))
    dialog.steps.setValue(2)
    with qtbot.waitSignal(dialog.exported, timeout=120_000):
        assert dialog.start_export() is not None
    info = engine_api.probe_video(str(out))
    assert (info.width, info.height) == (PORTRAIT_SIDE, PORTRAIT_SIDE)


def test_a_painted_mask_stays_in_the_crops_space(qtbot, ready_window, recorder) -> None:
    win = ready_window
    win.brush_panel.emotion.setCurrentIndex(2)  # anger
    win.brush_panel.radius.setValue(3)
    with qtbot.waitSignal(win.previewSettled, timeout=30_000):
        win.canvas.stroke([(8.0, 8.0), (16.0, 8.0)])
    gates = recorder.calls[-1]["gates"]
    assert np.asarray(gates.local_masks).shape[1:] == (CROP_SIDE, CROP_SIDE)
    assert win.last_result.image.shape == (PORTRAIT_SIDE, PORTRAIT_SIDE, 3)
