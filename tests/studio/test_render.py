"""The render service against the real tiny Animator: gates reach the engine, newest request wins,
stale work is cancelled, and the UI thread stays responsive during a slow render."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QElapsedTimer, QTimer


def test_first_preview_shows_a_real_frame(ready_window, animator) -> None:
    """The preview is the engine's own frame for the project's gates, seed and steps, and the view shows it pixel
    for pixel: a black, blank or stale frame fails."""
    from studio import engine_api

    win = ready_window
    result = win.last_result
    assert result is not None
    assert result.image.shape == (64, 64, 3) and result.image.dtype == np.uint8  # pasted back into the portrait
    assert result.image.std() > 5 and 10 < result.image.mean() < 245, "the preview frame is blank"
    expected = animator.render_frame(win.service.prepared_inputs, win.playhead, engine_api.GateControl([0.0] * 6),
                                     steps=win.doc.render.preview_steps, seed=win.doc.render.seed)
    assert np.array_equal(result.image, expected), "the preview is not the engine's frame for these gates"
    assert result.gate_maps is not None and result.gate_maps.shape[0] == 6
    assert np.isfinite(result.gate_maps).all() and 0 <= result.gate_maps.min() <= result.gate_maps.max() <= 1
    shown = win.preview.view.image
    height, width = result.image.shape[:2]
    assert shown is not None and (shown.width(), shown.height()) == (width, height)
    pixels = np.array([[shown.pixelColor(x, y).getRgb()[:3] for x in range(width)] for y in range(height)], np.uint8)
    assert np.array_equal(pixels, result.image), "the view does not show the rendered frame"


def test_slider_move_sends_global_weight_to_engine(qtbot, ready_window, recorder) -> None:
    win = ready_window
    with qtbot.waitSignal(win.previewSettled, timeout=30_000):
        win.palette.rows[0].slider.setValue(700)  # happiness 0.7
    gates = recorder.calls[-1]["gates"]
    assert list(gates.global_weights) == pytest.approx([0.7, 0, 0, 0, 0, 0])
    assert recorder.calls[-1]["steps"] == win.doc.render.preview_steps
    with qtbot.waitSignal(win.previewSettled, timeout=30_000):
        win.palette.rows[5].spin.setValue(0.25)  # surprise 0.25
    assert list(recorder.calls[-1]["gates"].global_weights) == pytest.approx([0.7, 0, 0, 0, 0, 0.25])


def test_brush_stroke_changes_engine_mask_only_under_stroke(qtbot, ready_window, recorder) -> None:
    win = ready_window
    win.brush_panel.emotion.setCurrentIndex(2)  # anger
    win.brush_panel.radius.setValue(3)
    win.brush_panel.hardness.setValue(1.0)
    with qtbot.waitSignal(win.previewSettled, timeout=30_000):
        win.canvas.stroke([(8.0, 8.0), (16.0, 8.0)])
    gates = recorder.calls[-1]["gates"]
    masks = np.asarray(gates.local_masks)
    assert masks.shape == (6, 32, 32)
    assert masks[2, 8, 12] == pytest.approx(1.0)
    ys, xs = np.nonzero(masks[2])
    assert ys.min() >= 8 - 3 and ys.max() <= 8 + 3 and xs.min() >= 8 - 3 and xs.max() <= 16 + 3
    assert np.all(np.delete(masks, 2, axis=0) == 0)  # other emotions untouched
    assert gates.local_alpha[2] == pytest.approx(1.0) and sum(gates.local_alpha) == pytest.approx(1.0)
    # undo -> the engine gets no local override again
    with qtbot.waitSignal(win.previewSettled, timeout=30_000):
        win.doc.undo_stack.undo()
    assert recorder.calls[-1]["gates"].local_masks is None


def test_live_policy_running_preview_finishes_pending_ones_are_replaced(qtbot, ready_window) -> None:
    """Krita's live policy: during a drag the running preview finishes and shows, requests that did not
    start are replaced by the newest (never queued), and the newest request's frame shows last."""
    win = ready_window
    shown: list[int] = []
    cancelled: list[int] = []
    started: list[int] = []
    win.previewShown.connect(lambda r: shown.append(r.request_id))
    win.service.renderCancelled.connect(cancelled.append)
    win.service.renderStarted.connect(lambda rid, _q: started.append(rid))
    win.doc.render.preview_steps = 80  # slow enough that later requests overtake earlier ones
    ids = []
    for i in range(5):
        win.doc.set_weight(0, 0.1 * (i + 1))  # each change asks for a render
        ids.append(win.service.latest_request_id)
        qtbot.wait(10)
    qtbot.waitUntil(lambda: ids[-1] in shown, timeout=60_000)
    qtbot.waitUntil(win.service.is_idle, timeout=30_000)
    assert shown[-1] == ids[-1] and shown == sorted(shown)  # never an older frame over a newer one
    assert ids[0] in shown  # the first render was running: it finished and showed (live feedback)
    assert len(started) < len(ids)  # requests that never started were replaced, not queued
    assert set(ids) - set(started) <= set(cancelled)
    assert win.preview.shown_request == ids[-1]


def test_ui_stays_responsive_during_a_slow_render(qtbot, ready_window) -> None:
    win = ready_window
    gaps: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def tick() -> None:
        now = clock.elapsed()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    win.doc.render.preview_steps = 150  # deliberately slow
    started = time.perf_counter()
    timer.start()
    with qtbot.waitSignal(win.previewSettled, timeout=120_000):
        win.doc.set_weight(3, 0.9)
    timer.stop()
    render_s = time.perf_counter() - started
    assert render_s > 0.3, "the render was too fast to measure responsiveness"
    assert len(gaps) > 10
    print(f"max event-loop gap {max(gaps):.0f} ms over {len(gaps)} ticks during a {render_s:.2f} s render")
    assert max(gaps) < 100, f"event loop blocked for {max(gaps)} ms during a {render_s:.1f} s render"


def test_refine_renders_more_steps(qtbot, ready_window, recorder) -> None:
    win = ready_window
    win.doc.render.refine_delay_ms = 50
    results = []
    win.previewShown.connect(results.append)
    with qtbot.waitSignal(win.previewSettled, timeout=30_000, check_params_cb=lambda r: r.quality == "refine"):
        win.doc.set_weight(1, 0.5)
    assert [r.quality for r in results][-2:] == ["preview", "refine"]
    assert recorder.calls[-1]["steps"] == win.doc.render.refine_steps > win.doc.render.preview_steps
