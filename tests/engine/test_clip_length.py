"""`moee render` keeps the clip's length: at any --fps, and for emotion-only clips (--duration, no audio).

Real renders of the bundled demo photo (256 px) with the bundled motion model, read back with PyAV.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.io.video import probe_video
from tests.engine_helpers import demo_speech_excerpt

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "demo"
PHOTO = ASSETS / "photo.png"


def _audio_samples(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        planes = [frame.to_ndarray().reshape(stream.codec_context.channels, -1) for frame in container.decode(stream)]
        return np.concatenate(planes, axis=1), int(stream.codec_context.sample_rate)


def test_one_frame_per_second_keeps_the_audios_length(tmp_path: Path) -> None:
    speech = demo_speech_excerpt(tmp_path, 1.61)
    out = tmp_path / "out.mp4"
    assert main(["render", str(PHOTO), str(speech), "-o", str(out), "--fps", "1"]) == 0
    info = probe_video(out)
    assert info.frames == 2 and info.duration == pytest.approx(1.61, abs=1e-3)  # was 2.00 s
    decoded, decoded_rate = _audio_samples(out)
    assert abs(decoded.shape[1] - 1.61 * decoded_rate) <= 1024  # within one AAC frame


def test_an_emotion_only_clip_lasts_its_duration_with_a_silent_track(tmp_path: Path) -> None:
    out, frames = tmp_path / "smile.mp4", tmp_path / "frames"
    code = main(["render", str(PHOTO), "--duration", "1.3", "--fps", "5", "--emotion", "happiness=1",
                 "-o", str(out), "--frames-dir", str(frames)])
    assert code == 0
    info = probe_video(out)
    assert info.frames == 6 and info.duration == pytest.approx(1.3, abs=1e-3)
    assert info.audio_codec == "aac" and info.audio_duration == pytest.approx(1.3, abs=1024 / 48_000)
    decoded, _rate = _audio_samples(out)
    assert np.max(np.abs(decoded)) < 1e-4  # silence
    pngs = sorted(frames.glob("frame_*.png"))
    assert len(pngs) == 6 and not (frames / "audio.wav").exists()
    photo = np.asarray(Image.open(PHOTO).convert("RGB"), np.float32)
    smile = np.asarray(Image.open(pngs[0]).convert("RGB"), np.float32)
    assert smile.shape == photo.shape and np.abs(smile - photo).mean() > 0.2  # the emotion plays


@pytest.mark.parametrize(("args", "message"), [
    ([], "no audio: give a speech file, or --duration SECONDS"),
    (["SPEECH", "--duration", "2"], "leave out --duration"),
    (["--duration", "700"], "raise the limit with --max-duration"),
    (["--duration", "0"], "--duration must be above 0"),
    (["--duration", "nan"], "--duration must be a finite number"),
])
def test_clip_length_mistakes_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                        message: str) -> None:
    args = [str(ASSETS / "speech.wav") if a == "SPEECH" else a for a in args]
    out = tmp_path / "out.mp4"
    assert main(["render", str(PHOTO), *args, "-o", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
