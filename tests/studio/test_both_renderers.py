"""The studio's everyday workflow on both renderers: a slider changes the preview, a brush stroke changes the
frame where it was painted, and an export plays back (read with PyAV) at the preview's size.

``portrait``: the bundled model's PortraitAnimator on a real photograph (skimage's astronaut, 512 x 512), what
the studio opens by default. ``pixel``: the U-Net renderer on the tiny model with its new modules randomised
(so every slider and stroke has an effect) on a 64 px test image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from studio import engine_api
from tests.studio.conftest import dispose

#: MediaPipe face-mesh indices of both eyebrows (where the portrait renderer's stroke goes).
BROWS = [70, 63, 105, 66, 107, 336, 296, 334, 293, 300]
SURPRISE = 5
#: A pixel counts as changed when a channel moved by more than this (uint8 levels; the tiny pixel model's
#: sliders move its face by about 10).
CHANGED = 2
#: Frames the export test writes.
EXPORT_FRAMES = 4


@dataclass
class Setup:
    """One renderer's window and where its brush stroke goes."""

    win: object
    stroke: list[tuple[float, float]]


@pytest.fixture(scope="module")
def pixel_animator():
    """The pixel renderer on the tiny model, new modules randomised (sliders and strokes change the frame)."""
    import torch

    from engine.diffusion.pipeline import Animator
    from tests.engine_helpers import tiny_model

    torch.set_num_threads(1)
    return Animator(tiny_model(), device="cpu")


def _open(qtbot, animator, portrait: str):
    from studio.main_window import MainWindow

    win = MainWindow(animator=animator, show_dialogs=False, autosave=False)
    win.doc.render.preview_steps = 2
    win.doc.render.refine_steps = 2
    win.doc.render.refine_delay_ms = 60_000  # no refine pass between the compared frames
    win.flipbook.enabled = False
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    with qtbot.waitSignal(win.previewSettled, timeout=60_000):
        assert win.open_portrait(portrait)
    return win


@pytest.fixture(params=["portrait", "pixel"])
def setup(request, qtbot, portrait_animator, pixel_animator, astronaut_path):
    if request.param == "portrait":
        win = _open(qtbot, portrait_animator, astronaut_path)
        _render_after(qtbot, win, lambda: win.life_panel.spins["head_motion"].setValue(0.0))  # only emotions move
        stroke = [(float(x), float(y)) for x, y in win.canvas.landmarks[BROWS]]
    else:
        win = _open(qtbot, pixel_animator, astronaut_path)
        height, width = win.canvas.portrait.shape[:2]  # the model's face crop, where the brush paints
        win.brush_panel.radius.setValue(max(2, width // 10))
        stroke = [(0.3 * width, 0.35 * height), (0.7 * width, 0.35 * height)]  # across the brows
    yield Setup(win, stroke)
    dispose(win)


def _render_after(qtbot, win, change) -> np.ndarray:
    """Run ``change``; the preview image of the newest request it caused."""
    shown: list = []
    win.previewShown.connect(shown.append)
    change()
    qtbot.waitUntil(lambda: bool(shown) and shown[-1].request_id == win.service.latest_request_id, timeout=60_000)
    win.previewShown.disconnect(shown.append)
    return shown[-1].image.copy()


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > CHANGED


def test_slider_changes_the_preview(qtbot, setup) -> None:
    win = setup.win
    neutral = win.last_result.image.copy()
    moved = _render_after(qtbot, win, lambda: win.palette.rows[SURPRISE].slider.setValue(900))
    assert list(win.last_result.gates.global_weights)[SURPRISE] == pytest.approx(0.9)
    assert moved.shape == neutral.shape
    assert np.count_nonzero(_changed(moved, neutral)) > 0.002 * neutral.shape[0] * neutral.shape[1]
    back = _render_after(qtbot, win, lambda: win.palette.rows[SURPRISE].slider.setValue(0))
    assert np.array_equal(back, neutral)  # the slider back at 0 is the neutral frame again


def test_brush_paints_where_it_was_painted(qtbot, setup) -> None:
    """The engine gets the stroke as a local mask (only there); on the portrait renderer the frame changes at
    the stroke. (The tiny pixel model's U-Net answers a local mask by about one level: too little to locate,
    so there only the mask is checked; tests/engine/diffusion covers its local gates.)"""
    win = setup.win
    neutral = win.last_result.image.copy()
    win.brush_panel.emotion.setCurrentIndex(SURPRISE)  # its slider is at 0: only the stroke can change the frame
    painted = _render_after(qtbot, win, lambda: win.canvas.stroke(setup.stroke))
    mask = np.asarray(win.last_result.gates.local_masks)[SURPRISE]
    assert mask.max() > 0.9 and mask.mean() < 0.1  # the engine got the stroke, and only the stroke
    ys, xs = np.nonzero(mask > 0.5)
    (x0, y0), (x1, y1) = np.min(setup.stroke, axis=0), np.max(setup.stroke, axis=0)
    reach = win.brush.radius + 1
    assert ys.min() >= y0 - reach and ys.max() <= y1 + reach and xs.min() >= x0 - reach and xs.max() <= x1 + reach
    if not engine_api.is_portrait_animator(win.service.animator):
        return
    changed = _changed(painted, neutral)
    assert changed.any(), "the stroke did not change the frame"
    cy, cx = np.nonzero(changed)
    centre = np.array(painted.shape[:2]) / 2
    stroke = np.array([(y0 + y1) / 2, (x0 + x1) / 2])
    assert np.hypot(cy.mean() - stroke[0], cx.mean() - stroke[1]) < np.hypot(*(centre - stroke))
    assert np.count_nonzero(changed[int(y1 + 4 * reach):]) < 0.1 * np.count_nonzero(changed)  # the mouth stays


def test_export_plays_back_at_the_preview_size(qtbot, setup, speech_path, tmp_path: Path) -> None:
    from engine.io.video import probe_video, read_frames

    win = setup.win
    with qtbot.waitSignal(win.preparedReady, timeout=60_000):
        win.open_audio(speech_path)
    win.palette.rows[0].slider.setValue(600)
    dialog = win.show_export()
    qtbot.addWidget(dialog)
    dialog.format.setCurrentIndex(dialog.format.findData("mp4"))
    out = tmp_path / "clip.mp4"
    dialog.path.setText(str(out))
    dialog.start.setValue(0)
    dialog.stop.setValue(EXPORT_FRAMES)
    with qtbot.waitSignal(dialog.exported, timeout=120_000):
        assert dialog.start_export() is not None
    info = probe_video(out)
    frames = list(read_frames(out))
    height, width = win.last_result.image.shape[:2]
    assert info.frames == len(frames) == EXPORT_FRAMES and info.audio_codec is not None
    assert all(frame.shape == (height, width, 3) for frame in frames)
    assert max(float(frame.std()) for frame in frames) > 5  # pictures, not blank frames
