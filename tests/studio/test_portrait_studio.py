"""The studio at the portrait's own resolution (issue 17): preview, sliders, brush and export with the
bundled model's PortraitAnimator on a real photograph (skimage's astronaut, 512 x 512)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.studio.conftest import dispose, portrait_window

# MediaPipe face-mesh indices: both eyebrows, and the outer lip contour.
BROW_LEFT = [70, 63, 105, 66, 107]
BROW_RIGHT = [336, 296, 334, 293, 300]
LIPS = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]
SURPRISE = 5


@pytest.fixture
def pwin(qtbot, portrait_animator, astronaut_path):
    """A window on the PortraitAnimator with the astronaut prepared and its first preview shown."""
    with portrait_window(qtbot, portrait_animator, astronaut_path, flipbook=False) as win:  # compares previews
        yield win


def _box(points: np.ndarray, margin: float, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """Rows and columns of the points' bounding box, grown by ``margin`` of its size on each side."""
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    h, w = shape[:2]
    return (slice(max(0, int(y0 - my)), min(h, int(np.ceil(y1 + my)) + 1)),
            slice(max(0, int(x0 - mx)), min(w, int(np.ceil(x1 + mx)) + 1)))


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)


def _render_after(qtbot, win, change) -> np.ndarray:
    """Run ``change`` and return the preview image of the newest request it caused."""
    shown: list = []
    win.previewShown.connect(shown.append)
    change()
    qtbot.waitUntil(lambda: bool(shown) and shown[-1].request_id == win.service.latest_request_id, timeout=30_000)
    win.previewShown.disconnect(shown.append)
    return shown[-1].image


def test_default_model_is_the_portrait_animator() -> None:
    from studio import engine_api

    assert engine_api.has_motion_model(None)
    assert engine_api.is_portrait_animator(engine_api.load_animator(None))
    assert not engine_api.is_portrait_animator(engine_api.load_animator(None, renderer="pixel"))
    assert not engine_api.is_portrait_animator(engine_api.load_animator(engine_api.TINY))


def test_default_window_previews_at_the_portraits_size(qtbot, astronaut_path) -> None:
    """No animator given: the window loads the bundled model and previews 512 x 512, not a 64 px crop."""
    from studio.main_window import MainWindow

    win = MainWindow(show_dialogs=False, autosave=False)
    qtbot.addWidget(win)
    try:
        qtbot.waitUntil(lambda: win.service.animator is not None, timeout=60_000)
        with qtbot.waitSignal(win.previewSettled, timeout=60_000) as blocker:
            win.open_portrait(astronaut_path)
        result = blocker.args[0]
        assert result.image.shape == (512, 512, 3) and result.image.dtype == np.uint8
        assert win.canvas.portrait.shape == (512, 512, 3)
        assert win.preview.view.image.width() == 512 and win.preview.view.image.height() == 512
        assert win.doc.masks.shape == (6, 512, 512)
        assert "portrait" in win.model_label.text()
    finally:
        dispose(win)


def test_brush_default_radius_is_in_portrait_pixels(pwin) -> None:
    landmarks = pwin.canvas.landmarks
    face = float(np.ptp(landmarks[:, 0]))
    brow = landmarks[BROW_LEFT]
    brow_height = float(np.ptp(brow[:, 1])) + 0.1 * face  # the brow's slope plus its thickness
    assert landmarks.shape == (478, 2) and face > 60
    assert 2 <= pwin.brush.radius <= 0.05 * face
    assert 2 * pwin.brush.radius < brow_height + 0.05 * face


def test_slider_changes_the_face_and_nothing_outside_it(qtbot, pwin) -> None:
    _render_after(qtbot, pwin, lambda: pwin.life_panel.spins["head_motion"].setValue(0.0))  # surprise lifts the head
    neutral = pwin.last_result.image.copy()
    moved = _render_after(qtbot, pwin, lambda: pwin.palette.rows[SURPRISE].slider.setValue(900))
    assert list(pwin.last_result.gates.global_weights)[SURPRISE] == pytest.approx(0.9)
    assert moved.shape == neutral.shape == (512, 512, 3)
    diff = _diff(moved, neutral)
    face = _box(pwin.canvas.landmarks, 0.5, diff.shape)
    inside = np.zeros(diff.shape, bool)
    inside[face] = True
    assert np.count_nonzero(diff[inside] > 8) > 200  # the face moved
    assert np.count_nonzero(diff[~inside]) == 0  # the rest of the photograph is the photograph
    assert not pwin.refine_timer.isActive()  # the preview is already the final frame: no refine pass
    assert "512 × 512 px" in pwin.preview.view.caption
    lifted = _render_after(qtbot, pwin, lambda: pwin.life_panel.spins["head_motion"].setValue(1.0))
    assert pwin.doc.render.head_motion == 1.0 and pwin.doc.is_modified
    head_moved = _diff(lifted, moved)
    assert np.count_nonzero(head_moved[~inside] > 8) > 200  # with head motion the head lifts, hair and all
    assert np.count_nonzero(head_moved[:, :40]) == 0 and np.count_nonzero(head_moved[-40:, :]) == 0  # far away: still

    # the live preview follows the slider: newest request wins, the last value is what is shown
    for value in (100, 300, 600):
        pwin.palette.rows[SURPRISE].slider.setValue(value)
    last = _render_after(qtbot, pwin, lambda: pwin.palette.rows[SURPRISE].slider.setValue(0))
    assert list(pwin.last_result.gates.global_weights)[SURPRISE] == pytest.approx(0.0)
    assert np.array_equal(last, neutral)


def test_brush_on_the_brows_changes_the_brows_not_the_mouth(qtbot, pwin) -> None:
    win = pwin
    landmarks = win.canvas.landmarks
    neutral = win.last_result.image.copy()
    win.brush_panel.emotion.setCurrentIndex(SURPRISE)  # slider at 0: only the stroke can move the face
    assert win.doc.weights[SURPRISE] == 0.0

    def paint() -> None:
        for brow in (BROW_LEFT, BROW_RIGHT):
            win.canvas.stroke([(float(x), float(y)) for x, y in landmarks[brow]])

    painted = _render_after(qtbot, win, paint)
    gates = win.last_result.gates
    masks = np.asarray(gates.local_masks)
    assert masks.shape == (6, 512, 512)  # the engine gets the mask at the portrait's resolution
    x, y = np.round(landmarks[BROW_LEFT[2]]).astype(int)
    assert masks[SURPRISE, y, x] > 0.9
    mouth = _box(landmarks[LIPS], 0.3, masks.shape[1:])
    assert masks[SURPRISE][mouth].max() == 0.0  # the stroke stayed on the brows

    diff = _diff(painted, neutral)
    brows = _box(landmarks[BROW_LEFT + BROW_RIGHT], 0.15, diff.shape)
    assert np.count_nonzero(diff[brows] > 8) > 50  # the brows rose
    assert diff[mouth].max() <= 2  # the mouth did not move


def test_region_preset_fills_the_brows_at_full_resolution(pwin) -> None:
    pwin.brush_panel.emotion.setCurrentIndex(SURPRISE)
    assert pwin.fill_region("brows")
    mask = pwin.doc.masks[SURPRISE]
    assert mask.shape == (512, 512)
    x, y = np.round(pwin.canvas.landmarks[BROW_RIGHT[2]]).astype(int)
    assert mask[y, x] > 0.5
    assert mask[_box(pwin.canvas.landmarks[LIPS], 0.3, mask.shape)].max() < 0.01  # only the feather's tail


def test_export_writes_the_portraits_size_with_progress(qtbot, pwin, tmp_path: Path) -> None:
    from studio import engine_api

    pwin.palette.rows[0].slider.setValue(600)
    dialog = pwin.show_export()
    dialog.stop.setValue(dialog.stop.maximum())
    out = tmp_path / "astronaut.mp4"
    dialog.path.setText(str(out))
    progress: list[float] = []
    job = dialog.start_export()
    job.progress.connect(lambda _i, p: progress.append(p))
    with qtbot.waitSignal(dialog.exported, timeout=60_000):
        pass
    info = engine_api.probe_video(str(out))
    assert (info.width, info.height) == (512, 512) and info.frames == pwin.service.prepared_inputs.num_frames
    assert dialog.bar.value() == 1000


def test_png_export_replaces_an_earlier_folder_only_when_confirmed(qtbot, pwin, tmp_path: Path) -> None:
    from PIL import Image

    dialog = pwin.show_export()
    dialog.format.setCurrentIndex(dialog.format.findData("png"))
    assert dialog.fmt() == "png"
    folder = tmp_path / "frames"
    dialog.path.setText(str(folder))
    with qtbot.waitSignal(dialog.exported, timeout=60_000):
        dialog.start_export()
    first = sorted(p.name for p in folder.glob("*.png"))
    assert first and Image.open(folder / first[0]).size == (512, 512)

    job = dialog.start_export()  # without dialogs nobody confirmed: the engine refuses, nothing changes
    assert job.wait(60_000)
    qtbot.waitUntil(lambda: job.result is not None)
    assert job.result[0] is False and "earlier" in job.result[1]
    assert sorted(p.name for p in folder.glob("*.png")) == first

    with qtbot.waitSignal(dialog.exported, timeout=60_000):
        dialog.start_export(overwrite=True)  # the user said yes
    assert sorted(p.name for p in folder.glob("*.png")) == first


def test_live_stroke_overlay_matches_a_full_redraw(pwin) -> None:
    """While a stroke runs only the dabs' rectangle is redrawn; the result equals a full redraw."""
    from studio.qtutil import overlay_rgba, rgb_to_qimage

    def pixels(image) -> np.ndarray:
        image = image.convertToFormat(image.Format.Format_RGBA8888)
        rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
        return rows[:, : 4 * image.width()].reshape(image.height(), image.width(), 4).copy()

    canvas = pwin.canvas
    pwin.brush_panel.emotion.setCurrentIndex(1)
    canvas.begin_stroke(200.0, 200.0)
    for x in range(205, 300, 7):
        canvas.continue_stroke(float(x), 200.0 + (x - 200) * 0.3)
    live = pixels(canvas._overlay)
    full = pixels(rgb_to_qimage(overlay_rgba(pwin.doc.masks, pwin.doc.colours)))
    canvas.end_stroke()
    assert live[..., 3].max() > 0
    assert np.array_equal(live, full)


def test_surprised_brows_on_an_angry_face_stay_on_the_brows(qtbot, pwin) -> None:
    """Issue 18 §2: with Anger=1 and Surprise=0, painting Surprise on the brows shows surprise inside the
    stroke at the painted strength (it is not multiplied away by the slider at 0) and nothing moves
    elsewhere: the mouth of the angry face is unchanged."""
    win = pwin
    landmarks = win.canvas.landmarks
    angry = _render_after(qtbot, win, lambda: win.palette.set_weight(2, 1.0))
    assert win.doc.weights[SURPRISE] == 0.0
    win.brush_panel.emotion.setCurrentIndex(SURPRISE)

    def paint() -> None:
        for brow in (BROW_LEFT, BROW_RIGHT):
            win.canvas.stroke([(float(x), float(y)) for x, y in landmarks[brow]])

    painted = _render_after(qtbot, win, paint)
    diff = _diff(painted, angry)
    brows = _box(landmarks[BROW_LEFT + BROW_RIGHT], 0.15, diff.shape)
    mouth = _box(landmarks[LIPS], 0.3, diff.shape)
    assert np.count_nonzero(diff[brows] > 8) > 50, "the painted surprise did not show on the angry brows"
    assert diff[mouth].max() <= 2, "the brows-only stroke moved the mouth"
