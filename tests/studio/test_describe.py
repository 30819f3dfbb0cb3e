"""The palette's "Describe the emotion" box: unknown text leaves the sliders alone; intensity words count."""

from __future__ import annotations


def _describe(qtbot, win, text: str, signal) -> None:
    win.palette.text.setText(text)
    with qtbot.waitSignal(signal, timeout=60_000):
        win.palette.describe_button.click()
    qtbot.waitUntil(lambda: win.palette.describe_button.isEnabled(), timeout=5000)


def test_unknown_word_leaves_the_sliders_and_says_so(qtbot, ready_window) -> None:
    win = ready_window
    win.palette.set_weight(win.doc.emotions.index("happiness"), 0.5)
    before = list(win.doc.weights)
    undo_steps = win.doc.undo_stack.count()
    _describe(qtbot, win, "asdfgh", win.service.textMixFailed)
    assert win.doc.weights == before  # not reset to neutral
    assert win.doc.undo_stack.count() == undo_steps
    message = win.palette.describe_message
    assert message.isVisibleTo(win.palette) and "asdfgh" in message.text() and "happy" in message.text()


def test_a_little_sad_sets_a_low_sadness(qtbot, ready_window) -> None:
    win = ready_window
    _describe(qtbot, win, "a little sad", win.service.textMixReady)
    weights = dict(zip(win.doc.emotions, win.doc.weights, strict=True))
    assert 0.15 <= weights["sadness"] <= 0.5
    assert all(w == 0.0 for name, w in weights.items() if name != "sadness")
    assert "sadness" in win.palette.describe_message.text()
    _describe(qtbot, win, "not angry at all", win.service.textMixReady)
    assert win.doc.weights == [0.0] * len(win.doc.emotions)
    assert "neutral" in win.palette.describe_message.text()
