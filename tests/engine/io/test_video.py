"""Streaming, atomic video writers (MP4 / PNG sequence / GIF) and the probe/read helpers."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from PIL import Image

from engine.errors import OutputError
from engine.io import atomic
from engine.io.audio import AudioClip, load_audio, num_video_frames
from engine.io.video import (
    FRAMES_MARKER,
    FrameError,
    GifWriter,
    Mp4Writer,
    PngSequenceWriter,
    VideoReadError,
    open_writer,
    probe_video,
    read_frames,
)

RATE = 16_000
FPS = 25


def _clip(seconds: float) -> AudioClip:
    t = np.arange(int(round(RATE * seconds))) / RATE
    return AudioClip((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE, "tone")


def _frame(i: int, height: int = 48, width: int = 64, channels: int = 3) -> np.ndarray:
    frame = np.zeros((height, width, channels), np.uint8)
    frame[..., 0] = (i * 20) % 256
    frame[..., 1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    if channels == 4:
        frame[..., 3] = 128
    return frame


def _decoded_audio(path: Path) -> tuple[np.ndarray, int]:
    """The MP4's audio track decoded with PyAV: ``(samples (channels, n) float32, sample rate)``."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        planes = [frame.to_ndarray().reshape(stream.codec_context.channels, -1)
                  for frame in container.decode(stream)]
        return np.concatenate(planes, axis=1).astype(np.float32), int(stream.codec_context.sample_rate)


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def _left_only_recording(folder: Path, rate: int, seconds: float) -> Path:
    """A WAV with a 440 Hz tone on the left channel and near-silence on the right."""
    t = np.arange(int(round(rate * seconds))) / rate
    left = 0.4 * np.sin(2 * np.pi * 440 * t)
    right = 0.001 * np.sin(2 * np.pi * 220 * t)
    path = folder / f"take_{rate}.wav"
    soundfile.write(path, np.stack([left, right], axis=1).astype(np.float32), rate, subtype="PCM_16")
    return path


@pytest.mark.parametrize("rate", [48_000, 44_100])
def test_mp4_keeps_the_recordings_rate_and_channels(tmp_path: Path, rate: int) -> None:
    seconds = 1.3
    clip = load_audio(_left_only_recording(tmp_path, rate, seconds))
    assert (clip.sample_rate, clip.samples.ndim) == (16_000, 1)  # the analysis copy stays 16 kHz mono
    path = tmp_path / "out.mp4"
    with open_writer(path, FPS, clip) as writer:
        for i in range(num_video_frames(clip.duration, FPS)):
            writer.write(_frame(i))
    info = probe_video(path)
    assert info.audio_sample_rate == rate
    samples, decoded_rate = _decoded_audio(path)
    assert decoded_rate == rate and samples.shape[0] == 2
    assert abs(samples.shape[1] - seconds * rate) <= 1024  # within one AAC frame
    assert info.audio_duration == pytest.approx(seconds, abs=1024 / rate)
    left, right = _rms(samples[0]), _rms(samples[1])
    assert left == pytest.approx(0.4 / np.sqrt(2), rel=0.05)
    assert right < 0.01 * left  # the tone stays on the left


@pytest.mark.parametrize(("fps", "seconds"), [(1, 1.61), (1, 1.4), (7, 1.61), (25, 1.37), (Fraction(30000, 1001), 0.75)])
def test_mp4_keeps_the_clips_duration_at_any_frame_rate(tmp_path: Path, fps: int | Fraction, seconds: float) -> None:
    clip = load_audio(_left_only_recording(tmp_path, 48_000, seconds))
    frames = num_video_frames(clip.duration, fps)
    path = tmp_path / "out.mp4"
    with open_writer(path, fps, clip) as writer:
        for i in range(frames):
            writer.write(_frame(i))
    info = probe_video(path)
    assert info.frames == frames
    if frames > 1:  # (one frame has no rate: it is shown for the whole clip)
        assert info.fps == pytest.approx(float(fps), rel=1e-3)
    assert info.duration == pytest.approx(seconds, abs=1e-3)  # the last frame lasts until the clip ends
    samples, rate = _decoded_audio(path)
    assert abs(samples.shape[1] - seconds * rate) <= 1024  # within one AAC frame of the input
    assert info.audio_duration == pytest.approx(seconds, abs=1024 / rate)
    starts = []
    with av.open(str(path)) as container:
        starts = [float(frame.time) for frame in container.decode(video=0)]
    np.testing.assert_allclose(starts, np.arange(frames) / float(fps), atol=1e-3)


def test_png_sequence_keeps_the_recording(tmp_path: Path) -> None:
    clip = load_audio(_left_only_recording(tmp_path, 48_000, 0.5))
    with open_writer(tmp_path / "frames", FPS, clip) as writer:
        for i in range(num_video_frames(clip.duration, FPS)):
            writer.write(_frame(i))
    samples, rate = soundfile.read(tmp_path / "frames" / "audio.wav", always_2d=True)
    assert rate == 48_000 and samples.shape == (24_000, 2)
    assert _rms(samples[:, 1]) < 0.01 * _rms(samples[:, 0])


def _hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("seconds", [1.0, 1.37])
def test_mp4_with_audio_round_trip(tmp_path: Path, seconds: float) -> None:
    clip = _clip(seconds)
    frames = num_video_frames(clip.duration, FPS)
    path = tmp_path / "out.mp4"
    with open_writer(path, FPS, clip) as writer:
        assert isinstance(writer, Mp4Writer)
        for i in range(frames):
            writer.write(_frame(i))
    info = probe_video(path)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height, info.fps, info.frames) == (64, 48, FPS, frames)
    assert info.audio_sample_rate == RATE
    assert abs(info.duration - frames / FPS) < 1.0 / FPS
    assert abs(info.audio_duration - info.duration) < 1.0 / FPS
    assert abs(info.audio_duration - clip.duration) < 1.0 / FPS
    decoded = list(read_frames(path))
    assert len(decoded) == frames and decoded[0].shape == (48, 64, 3)
    assert abs(int(decoded[5][20, 32, 0]) - 100) <= 6  # lossy, but close
    assert _hidden(tmp_path) == []


def test_mp4_audio_trimmed_to_fewer_frames_and_odd_size(tmp_path: Path) -> None:
    path = tmp_path / "short.mp4"
    with Mp4Writer(path, FPS, _clip(2.0), crf=30) as writer:
        for i in range(10):
            writer.write(_frame(i, 33, 45))
    info = probe_video(path)
    assert (info.width, info.height) == (46, 34)  # padded to even
    assert info.frames == 10
    assert abs(info.audio_duration - 10 / FPS) < 1.0 / FPS


def test_mp4_without_audio(tmp_path: Path) -> None:
    with Mp4Writer(tmp_path / "silent.mp4", 30) as writer:
        for i in range(6):
            writer.write(_frame(i))
    info = probe_video(tmp_path / "silent.mp4")
    assert info.audio_codec is None and info.frames == 6 and info.fps == 30


def test_exception_mid_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError), Mp4Writer(path, FPS, _clip(1.0)) as writer:
        for i in range(5):
            writer.write(_frame(i))
        raise RuntimeError("render crashed")
    assert list(tmp_path.iterdir()) == []


def test_existing_file_survives_failed_export(tmp_path: Path) -> None:
    path = tmp_path / "keep.mp4"
    path.write_bytes(b"previous export")
    with pytest.raises(FrameError, match="same size"), Mp4Writer(path, FPS) as writer:
        writer.write(_frame(0))
        writer.write(_frame(1, 32, 32))
    assert path.read_bytes() == b"previous export"
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((32, 32, 3), np.float32), "uint8"),
        (np.zeros((32, 32), np.uint8), "H x W x 3"),
        (np.zeros((32, 32, 4), np.uint8), "H x W x 3"),
        ([[0]], "numpy array"),
    ],
)
def test_invalid_frames(tmp_path: Path, frame: object, message: str) -> None:
    with pytest.raises(FrameError, match=message), Mp4Writer(tmp_path / "x.mp4", FPS) as writer:
        writer.write(frame)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_no_frames_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="no frames"), Mp4Writer(tmp_path / "x.mp4", FPS):
        pass
    assert list(tmp_path.iterdir()) == []


def test_read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic.os, "access", lambda *_args, **_kw: False)
    for target in ("a.mp4", "a.gif", "frames"):
        with pytest.raises(OutputError, match="read-only"), open_writer(tmp_path / target, FPS) as writer:
            writer.write(_frame(0))
    assert list(tmp_path.iterdir()) == []


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        open_writer(tmp_path / "nope" / "a.mp4", FPS)


def test_png_sequence_rgba_and_audio(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    with open_writer(folder, FPS, _clip(0.5)) as writer:
        assert isinstance(writer, PngSequenceWriter)
        assert not folder.exists()
        for i in range(4):
            writer.write(_frame(i, channels=4))
    names = sorted(p.name for p in folder.iterdir())
    assert names == [FRAMES_MARKER, "audio.wav", "frame_00000.png", "frame_00001.png", "frame_00002.png",
                     "frame_00003.png"]
    with Image.open(folder / "frame_00002.png") as image:
        assert image.mode == "RGBA"
        assert np.asarray(image)[0, 0, 3] == 128
    assert len(list(read_frames(folder))) == 4
    with pytest.raises(OutputError, match="--overwrite"), PngSequenceWriter(folder, FPS) as writer:
        writer.write(_frame(0))
    assert len(list(folder.glob("*.png"))) == 4
    with PngSequenceWriter(folder, FPS, overwrite=True) as writer:  # replaces our old sequence as a whole
        writer.write(_frame(0))
    assert sorted(p.name for p in folder.iterdir()) == [FRAMES_MARKER, "frame_00000.png"]
    assert _hidden(tmp_path) == []


def test_gif(tmp_path: Path) -> None:
    path = tmp_path / "loop.gif"
    with open_writer(path, 10) as writer:
        assert isinstance(writer, GifWriter)
        for i in range(6):
            writer.write(_frame(i))
    info = probe_video(path)
    assert info.video_codec == "gif" and info.frames == 6 and (info.width, info.height) == (64, 48)
    with Image.open(path) as image:
        assert image.n_frames == 6
        assert image.info.get("loop") == 0
        assert image.info.get("duration") == 100
    decoded = list(read_frames(path))
    assert abs(int(decoded[3][10, 10, 0]) - 60) <= 12


def test_format_choice_and_errors(tmp_path: Path) -> None:
    assert isinstance(open_writer(tmp_path / "x.bin", FPS, format="mp4"), Mp4Writer)
    with pytest.raises(OutputError, match="cannot tell"):
        open_writer(tmp_path / "x.avi", FPS)
    with pytest.raises(OutputError, match="unknown video format"):
        open_writer(tmp_path / "x.mp4", FPS, format="webm")
    assert isinstance(open_writer(tmp_path / "seq", FPS, fmt="png-alpha", alpha=True), PngSequenceWriter)
    with pytest.raises(OutputError, match="transparency"):
        open_writer(tmp_path / "x.mp4", FPS, alpha=True)
    with pytest.raises(VideoReadError, match="not found"):
        probe_video(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 100)
    with pytest.raises(VideoReadError, match="junk.mp4"):
        probe_video(tmp_path / "junk.mp4")


def test_png_sequence_never_replaces_a_folder_it_did_not_write(tmp_path: Path) -> None:
    """The data-loss bug: a PNG sequence written to an existing folder deleted the whole folder."""
    folder = tmp_path / "D"
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.txt").write_text("years of work")
    with pytest.raises(OutputError, match=r"did not write \(sub, thesis.txt\)"):
        open_writer(folder, FPS, overwrite=True)
    with pytest.raises(OutputError, match="did not write"), PngSequenceWriter(folder, FPS, overwrite=True) as writer:
        writer.write(_frame(0))
    assert (folder / "thesis.txt").read_text() == "years of work" and (folder / "sub").is_dir()
    ours = tmp_path / "ours"
    with open_writer(ours, FPS) as writer:
        writer.write(_frame(0))
    (ours / "notes.txt").write_text("mine now")  # someone's file in our old folder: no longer ours alone
    with pytest.raises(OutputError, match="notes.txt"):
        open_writer(ours, FPS, overwrite=True)
    assert (ours / "notes.txt").exists()
    assert _hidden(tmp_path) == []


def test_video_file_output_where_a_folder_is_is_refused(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").mkdir()
    with pytest.raises(OutputError, match="a folder with that name"):
        open_writer(tmp_path / "clip.mp4", FPS)
