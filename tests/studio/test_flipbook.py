"""The flipbook (issue 18 §1): the clip renders in the background, Play shows the performance moving in
sync with the clock, uncached frames show as a band, and an edit re-renders only the frames it touches.
On the bundled PortraitAnimator with a real photograph (skimage's astronaut)."""

from __future__ import annotations

import numpy as np
import pytest

from studio.keyframes import Keyframe
from tests.studio.conftest import portrait_window

ANGER = 2


@pytest.fixture
def fwin(qtbot, portrait_animator, astronaut_path, speech_path):
    """A window on the bundled model with the astronaut and a 0.6 s voice (15 frames), flipbook on."""
    with portrait_window(qtbot, portrait_animator, astronaut_path) as win:
        with qtbot.waitSignal(win.preparedReady, timeout=60_000):
            assert win.open_audio(speech_path)
        yield win


def _keys_calm_to_angry(win) -> None:
    last = win.timeline.num_frames - 1
    n = len(win.doc.emotions)
    angry = [0.0] * n
    angry[ANGER] = 1.0
    win.doc.add_keyframe(Keyframe(0, [0.0] * n))
    win.doc.add_keyframe(Keyframe(last, angry))


def _wait_complete(qtbot, win) -> None:
    """Every frame is cached and the band has been redrawn since (the last frame's signal reaches the UI
    thread after the flipbook already holds it)."""
    qtbot.waitUntil(win.flipbook.is_complete, timeout=60_000)
    qtbot.waitUntil(lambda: not win.band_timer.isActive() and len(win.timeline.uncached) == win.flipbook.num_frames
                    and not win.timeline.uncached.any(), timeout=5_000)


def test_flipbook_renders_the_clip_and_the_band_shows_what_is_missing(qtbot, fwin) -> None:
    win = fwin
    _keys_calm_to_angry(win)
    assert win.timeline.uncached.any() or not win.flipbook.is_complete()
    _wait_complete(qtbot, win)
    assert win.flipbook.num_frames == win.timeline.num_frames == 15
    assert not win.timeline.uncached.any()  # the band is gone once every frame is cached
    first, last = win.flipbook.frame(0), win.flipbook.frame(14)
    assert first is not None and last is not None and first.shape == last.shape
    assert np.abs(first.astype(int) - last.astype(int)).mean() > 0.5  # calm vs angry differ


def test_an_edit_rerenders_only_the_frames_it_touches(qtbot, fwin) -> None:
    win = fwin
    n = len(win.doc.emotions)
    for frame, anger in ((0, 0.0), (5, 1.0), (14, 0.0)):
        w = [0.0] * n
        w[ANGER] = anger
        win.doc.add_keyframe(Keyframe(frame, w))
    _wait_complete(qtbot, win)
    rendered: list[int] = []
    win.service.flipbookFrame.connect(rendered.append)
    key = next(k for k in win.doc.keyframes if k.frame == 14)
    win.timeline.move_keyframe(key.uid, 10)  # only frames after the key at 5 change
    # frames 6-13 change (the ramp down now ends at 10); 0-5 and 14 (anger 0 before and after) do not
    cached = win.flipbook.cached()
    assert cached[:6].all() and cached[14]
    _wait_complete(qtbot, win)
    assert set(rendered) == set(range(6, 14))


def test_play_shows_the_performance_moving(qtbot, fwin) -> None:
    win = fwin
    _keys_calm_to_angry(win)
    _wait_complete(qtbot, win)
    win.set_playhead(0)
    captions: list[str] = []
    images: list[np.ndarray] = []

    def grab() -> None:
        captions.append(win.preview.view.caption)
        images.append(win.flipbook.frame(win.playhead))

    from PySide6.QtCore import QTimer

    timer = QTimer()
    timer.setInterval(40)
    timer.timeout.connect(grab)
    timer.start()
    win.toggle_play()
    assert win.transport.playing
    qtbot.waitUntil(lambda: not win.transport.playing, timeout=10_000)
    timer.stop()
    frames = {int(c.split()[1]) for c in captions if c.startswith("frame ")}
    assert len(frames) >= 8, f"the preview showed frames {sorted(frames)} during playback"
    assert win.preview.view.caption.startswith("frame 14")
    assert win.palette.rows[ANGER].spin.value() == pytest.approx(1.0)  # the sliders follow the curve


def test_scrubbing_shows_cached_frames_at_once(qtbot, fwin) -> None:
    win = fwin
    _keys_calm_to_angry(win)
    _wait_complete(qtbot, win)
    win.timeline.playheadMoved.emit(9)  # as a drag of the playhead does
    assert win.preview.view.caption.startswith("frame 9")  # no render needed: shown synchronously
