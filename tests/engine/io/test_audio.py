"""Audio loading, resampling, log-mel windows, prosody and envelopes."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from engine.errors import InputAudioError
from engine.io.audio import (
    MEL_SILENCE,
    PROSODY_FEATURE_NAMES,
    AudioClip,
    AudioConfig,
    envelope_per_frame,
    frame_windows,
    load_audio,
    log_mel,
    num_video_frames,
    prosody_features,
    resample,
    waveform_preview,
    window_length,
)

TARGET = 16_000
TONE_HZ = 440.0


def _tone(rate: int, seconds: float, freq: float = TONE_HZ, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1.0 / rate)[np.argmax(spectrum)])


def _encode_with_pyav(path: Path, samples: np.ndarray, rate: int, codec: str, fmt: str) -> None:
    """Write a mono float signal with an FFmpeg encoder (test fixture for mp3/m4a)."""
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        sample_format = stream.codec_context.codec.audio_formats[0].name
        frame = av.AudioFrame.from_ndarray(samples[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate)
        for converted in resampler.resample(frame):
            container.mux(stream.encode(converted))
        container.mux(stream.encode(None))


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000])
def test_stereo_int16_wav_loads_as_mono_16k(tmp_path: Path, rate: int) -> None:
    tone = _tone(rate, 1.5)
    stereo = np.stack([tone, tone], axis=1)
    pcm = (stereo * 32767).astype(np.int16)
    soundfile.write(tmp_path / "a.wav", pcm, rate, subtype="PCM_16")
    clip = load_audio(tmp_path / "a.wav")
    assert clip.sample_rate == TARGET and clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.duration == pytest.approx(1.5, abs=1.0 / TARGET)
    assert _peak_frequency(clip.samples, TARGET) == pytest.approx(TONE_HZ, abs=1.0)
    assert np.max(np.abs(clip.samples)) == pytest.approx(0.5, abs=0.02)
    assert clip.source.endswith("a.wav")


def test_array_inputs_int32_and_channels_first() -> None:
    tone = _tone(44_100, 1.0)
    int32 = (np.stack([tone, -tone * 0 + tone]) * 2**31 * 0.99).astype(np.int32)  # (2, n) layout
    clip = load_audio((int32, 44_100))
    assert clip.duration == pytest.approx(1.0, abs=1e-3)
    assert _peak_frequency(clip.samples, TARGET) == pytest.approx(TONE_HZ, abs=1.0)
    again = load_audio(clip)
    np.testing.assert_array_equal(again.samples, clip.samples)


def test_the_recording_is_kept_for_exports(tmp_path: Path) -> None:
    left, right = _tone(48_000, 1.0), _tone(48_000, 1.0, freq=660.0, amplitude=0.2)
    soundfile.write(tmp_path / "take.wav", np.stack([left, right], axis=1), 48_000, subtype="FLOAT")
    clip = load_audio(tmp_path / "take.wav")
    assert (clip.sample_rate, clip.export_rate, clip.channels) == (TARGET, 48_000, 2)
    np.testing.assert_array_equal(clip.export_samples(), np.stack([left, right], axis=1))
    again = load_audio(clip)  # re-loading the clip (as the render does) keeps the recording
    assert again.export_rate == 48_000 and again.export_samples().shape == (48_000, 2)
    part = clip.between(0.25, 0.75)
    assert part.duration == pytest.approx(0.5) and part.export_samples().shape == (24_000, 2)
    np.testing.assert_array_equal(part.export_samples()[:, 1], right[12_000:36_000])
    plain = AudioClip(np.zeros(TARGET, np.float32), TARGET)  # no recording: the analysis samples are exported
    assert (plain.export_rate, plain.channels, plain.export_samples().shape) == (TARGET, 1, (TARGET, 1))


def test_resampler_does_not_alias() -> None:
    high = _tone(48_000, 1.0, freq=12_000.0)  # above the 8 kHz Nyquist of 16 kHz
    out = resample(high, 48_000, TARGET)
    assert out.size == TARGET
    assert np.sqrt(np.mean(out[500:-500] ** 2)) < 1e-3
    up = resample(_tone(8_000, 0.5), 8_000, TARGET)
    np.testing.assert_allclose(up[200:-200], _tone(TARGET, 0.5)[200:-200], atol=1e-3)


def test_flac_and_multichannel(tmp_path: Path) -> None:
    tone = _tone(48_000, 0.5)
    soundfile.write(tmp_path / "a.flac", np.stack([tone, tone, tone, tone], axis=1), 48_000)
    clip = load_audio(tmp_path / "a.flac")
    assert clip.duration == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize(("name", "codec", "fmt"), [("a.m4a", "aac", "mp4"), ("a.mp3", "libmp3lame", "mp3")])
def test_compressed_round_trip(tmp_path: Path, name: str, codec: str, fmt: str) -> None:
    _encode_with_pyav(tmp_path / name, _tone(44_100, 1.0), 44_100, codec, fmt)
    clip = load_audio(tmp_path / name)
    assert clip.sample_rate == TARGET
    assert clip.duration == pytest.approx(1.0, abs=0.08)  # encoder padding/priming
    assert _peak_frequency(clip.samples, TARGET) == pytest.approx(TONE_HZ, abs=2.0)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InputAudioError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "garbage.mp3").write_bytes(b"\x00garbage" * 200)
    with pytest.raises(InputAudioError, match="garbage.mp3"):
        load_audio(tmp_path / "garbage.mp3")
    (tmp_path / "garbage.wav").write_bytes(b"RIFF1234WAVEjunkjunk" * 20)
    with pytest.raises(InputAudioError, match="garbage.wav"):
        load_audio(tmp_path / "garbage.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(InputAudioError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    soundfile.write(tmp_path / "silent.wav", np.zeros(16_000, np.int16), 16_000)
    with pytest.raises(InputAudioError, match="silent"):
        load_audio(tmp_path / "silent.wav")
    soundfile.write(tmp_path / "short.wav", _tone(16_000, 0.1), 16_000)
    with pytest.raises(InputAudioError, match="0.100 s long"):
        load_audio(tmp_path / "short.wav")
    soundfile.write(tmp_path / "none.wav", np.zeros((0, 1), np.float32), 16_000)
    with pytest.raises(InputAudioError, match="no audio samples"):
        load_audio(tmp_path / "none.wav")
    bad = _tone(16_000, 1.0)
    bad[100] = np.nan
    with pytest.raises(InputAudioError, match="NaN"):
        load_audio((bad, 16_000))
    with pytest.raises(InputAudioError, match="sample rate"):
        load_audio((bad, 0))


def _wav_with_header(path: Path, rate: int | None = None, data_bytes: int | None = None) -> Path:
    """A 22 KB speech-like PCM WAV whose header is then patched to lie (rate at 24, data size at 40)."""
    import struct

    soundfile.write(path, _tone(16_000, 0.7), 16_000, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    if rate is not None:
        raw[24:28], raw[28:32] = struct.pack("<I", rate), struct.pack("<I", rate * 2)
    if data_bytes is not None:
        raw[40:44] = struct.pack("<I", data_bytes)
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("rate", [1, 4_000, 500_000])
def test_a_header_that_lies_about_the_rate_is_refused_at_once(tmp_path: Path, rate: int) -> None:
    """A 22 KB file "at 1 Hz" was read as 11,025 s: 17.5 GB of memory and an 18-minute hang."""
    with pytest.raises(InputAudioError, match=rf"sample rate is {rate:,} Hz.*8-192 kHz"):
        load_audio(_wav_with_header(tmp_path / "lying.wav", rate=rate))


def test_clip_length_is_capped_unless_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    soundfile.write(path, _tone(8_000, 3.0), 8_000)
    with pytest.raises(InputAudioError, match=r"3.0 s long.*limited to 2 s.*--max-duration"):
        load_audio(path, max_duration=2.0)
    assert load_audio(path, max_duration=3.5).duration == pytest.approx(3.0)
    with pytest.raises(InputAudioError, match="limited to 1 s"):
        load_audio((_tone(16_000, 1.5), 16_000), max_duration=1.0)
    _encode_with_pyav(tmp_path / "long.m4a", _tone(16_000, 3.0), 16_000, "aac", "mp4")
    with pytest.raises(InputAudioError, match="limited to 2 s"):
        load_audio(tmp_path / "long.m4a", max_duration=2.0)


def test_a_wav_header_claiming_more_samples_than_the_file_holds(tmp_path: Path) -> None:
    import struct

    path = _wav_with_header(tmp_path / "short.wav")
    raw = bytearray(path.read_bytes())
    raw[22:24] = struct.pack("<H", 2)  # "stereo": twice the bytes per frame the data holds
    path.write_bytes(bytes(raw))
    # libsndfile clamps the frame count to the file, so this one is read; the check must not refuse it
    assert load_audio(path).duration == pytest.approx(0.35, abs=0.01)


def test_file_without_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "video_only.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(InputAudioError, match="no audio stream"):
        load_audio(path)


def test_log_mel_shape_and_fixed_normalisation() -> None:
    cfg = AudioConfig()
    tone = _tone(TARGET, 1.0)
    mel = log_mel(tone, cfg)
    assert mel.shape == (1 + TARGET // cfg.hop_length, cfg.n_mels) and mel.dtype == np.float32
    # Fixed affine normalisation: a quieter copy is shifted down by exactly log(gain^2) / std, not rescaled.
    quiet = log_mel(tone * 0.1, cfg)
    loud_bin = int(np.argmax(mel[50]))
    assert mel[50, loud_bin] - quiet[50, loud_bin] == pytest.approx(np.log(100.0) / 5.0, rel=1e-3)
    assert np.isclose(log_mel(np.zeros(1600, np.float32), cfg), MEL_SILENCE).all()
    # The tone's energy is in the mel bin that holds 440 Hz, not elsewhere.
    assert loud_bin < cfg.n_mels // 3


@pytest.mark.parametrize("fps", [25, 30])
def test_frame_windows_shapes_and_alignment(fps: int) -> None:
    cfg = AudioConfig()
    duration, click_time = 2.0, 1.0
    samples = np.zeros(int(TARGET * duration), np.float32)
    samples[int(click_time * TARGET)] = 1.0
    mel = log_mel(samples, cfg)
    frames = num_video_frames(duration, fps)
    windows = frame_windows(mel, frames, fps, cfg)
    length = window_length(fps, cfg)
    assert windows.shape == (frames, length, cfg.n_mels)
    energy = windows.mean(axis=2)
    click_frame = int(click_time * fps)
    # The click sits in the middle of its own frame's window ...
    centre = int(np.argmax(energy[click_frame]))
    assert abs(centre - length // 2) <= length // (2 * cfg.context_frames + 1)
    # ... is seen by the frames within the context, and not by frames further away.
    assert energy[click_frame].max() > MEL_SILENCE + 1.0
    far = [click_frame - cfg.context_frames - 2, click_frame + cfg.context_frames + 2]
    assert np.allclose(energy[far], MEL_SILENCE)
    # Edges are padded with silence.
    assert np.allclose(windows[0, 0], MEL_SILENCE)


def test_num_video_frames() -> None:
    assert num_video_frames(2.0, 25) == 50
    assert num_video_frames(1.37, 25) == 34
    assert num_video_frames(0.001, 25) == 1


def test_prosody_features_deterministic_and_gain_free() -> None:
    rate = TARGET
    t = np.arange(rate * 2) / rate
    f0 = 180 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 20)) * (np.sin(2 * np.pi * 3 * t) > -0.3)
    clip = AudioClip((0.2 * voice).astype(np.float32), rate)
    features = prosody_features(clip)
    assert features.shape == (len(PROSODY_FEATURE_NAMES),) == (32,) and features.dtype == np.float32
    assert np.all(np.isfinite(features))
    np.testing.assert_array_equal(features, prosody_features(clip))
    quieter = prosody_features(AudioClip(clip.samples * 0.1, rate))
    np.testing.assert_allclose(features, quieter, atol=0.02)
    pitch = features[PROSODY_FEATURE_NAMES.index("pitch_mean")]
    assert pitch == pytest.approx(np.log2(180 / 150), abs=0.1)
    assert prosody_features(clip, n=8).shape == (8,)
    noise = AudioClip(np.random.default_rng(0).uniform(-0.3, 0.3, rate).astype(np.float32), rate)
    noisy = prosody_features(noise)
    flat = PROSODY_FEATURE_NAMES.index("flatness_mean")
    assert noisy[flat] > features[flat]


def test_envelope_and_waveform_preview() -> None:
    rate, fps = TARGET, 25
    samples = np.zeros(rate, np.float32)
    samples[rate // 2 :] = _tone(rate, 0.5)
    clip = AudioClip(samples, rate)
    env = envelope_per_frame(clip, 30, fps)
    assert env.shape == (30,) and env.dtype == np.float32
    assert np.all(env[:12] == 0) and np.allclose(env[13:25], 0.5 / np.sqrt(2), atol=0.01)
    assert np.all(env[25:] == 0)  # past the end of the audio
    low, high = waveform_preview(clip, 100)
    assert low.shape == high.shape == (100,)
    assert np.all(low <= high) and high[:49].max() == 0 and high[60] == pytest.approx(0.5, abs=0.01)
    low, high = waveform_preview(AudioClip(samples[:10], rate), 50)
    assert low.shape == (50,)
