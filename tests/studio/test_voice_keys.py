"""The studio's "Keyframes from the voice's tone": ordinary keyframes of the sliders, one undo step."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def agitated_speech(tmp_path: Path) -> str:
    """Fast, high espeak-ng speech (it reads as fear and anger)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    import soundfile

    from training.synthetic.speech import espeak_speech

    samples = espeak_speech("I really did not expect to see you here today, after all this time.", "en", 230, 85,
                            16000)
    path = tmp_path / "agitated.wav"
    soundfile.write(str(path), samples.astype(np.float32), 16000)
    return str(path)


def test_keys_from_the_voice_are_editable_keyframes(qtbot, ready_window, agitated_speech) -> None:
    win = ready_window
    assert win.keys_from_voice() == 0  # no audio yet: a message, no keys
    with qtbot.waitSignal(win.preparedReady, timeout=30_000):
        assert win.open_audio(agitated_speech)
    added = win.keys_from_voice()
    keys = win.doc.state.keyframes
    assert added >= 2 and len(keys) == added
    assert all(len(k.weights) == len(win.doc.emotions) for k in keys)
    fear = win.doc.emotions.index("fear")
    assert max(k.weights[fear] for k in keys) >= 0.5
    assert max(k.frame for k in keys) <= win.timeline.num_frames - 1
    win.doc.undo_stack.undo()  # one step takes them all back
    assert not win.doc.state.keyframes
