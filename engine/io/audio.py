"""Audio: loading, resampling, log-mel features per video frame, prosody and loudness envelopes.

* :func:`load_audio` turns a file (wav/flac/ogg via soundfile; mp3/m4a/aac/anything else via PyAV),
  an ``(array, rate)`` pair or an :class:`AudioClip` into a mono ``float32`` clip at 16 kHz, with a
  windowed-sinc polyphase resampler (:func:`resample`) and clear :class:`InputAudioError` messages;
  the clip also keeps the recording as it was (its rate and channels) for exports.
* :func:`log_mel` computes a log-mel spectrogram (own STFT + Slaney mel filterbank) normalised by a
  *fixed* affine map, so the same sound gives the same features in every clip.
* :func:`frame_windows` cuts it into one fixed-length window per video frame (the audio attention's
  input); :func:`num_video_frames` says how many frames a duration makes.
* :func:`prosody_features` describes the tone of a clip in :data:`PROSODY_FEATURE_NAMES` order
  (the audio branch of Emotion-to-Latents); :func:`envelope_per_frame` and :func:`waveform_preview`
  serve lip-sync evaluation and the studio's waveform.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import InputAudioError

#: The model's audio sample rate.
DEFAULT_SAMPLE_RATE = 16_000
#: Clips shorter than this (seconds) are refused by default.
DEFAULT_MIN_DURATION = 0.2
#: A clip whose peak absolute sample is below this is "silent".
SILENCE_PEAK = 1e-4
#: Sample rates a recording may have (Hz); outside this range the header is damaged or lies (a 22 KB
#: file "at 1 Hz" would be read as three hours of audio).
MIN_SOURCE_RATE = 8_000
MAX_SOURCE_RATE = 192_000
#: Longest clip accepted by default (seconds). A render's time and memory grow with its length, so a
#: longer clip must be asked for explicitly (``load_audio(max_duration=...)``, ``moee render --max-duration``).
DEFAULT_MAX_DURATION = 600.0
#: Bytes per sample of the uncompressed (PCM / float) WAV subtypes, to check a header against the file size.
PCM_SAMPLE_BYTES = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}
#: libsndfile formats whose samples are stored as they are (FLAC and OGG compress theirs).
UNCOMPRESSED_FORMATS = frozenset({"WAV", "WAVEX", "W64", "RF64", "AIFF", "AU"})
#: Suffixes read with soundfile (libsndfile); anything else is decoded with PyAV (FFmpeg).
SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".w64"})
#: An array with at most this many rows and more columns than rows is read as ``(channels, n)``.
MAX_CHANNELS_FIRST = 8

# --- resampler -------------------------------------------------------------------------------------
#: Zero crossings of the sinc kernel on each side, measured at the lower of the two rates.
RESAMPLE_ZERO_CROSSINGS = 16
#: Cut-off as a fraction of the lower Nyquist frequency (leaves room for the transition band).
RESAMPLE_ROLLOFF = 0.94
#: Kaiser window shape parameter (about 80 dB stop-band attenuation).
RESAMPLE_KAISER_BETA = 8.6
#: Output samples computed per block (bounds the temporary gather matrix).
RESAMPLE_BLOCK = 65_536

# --- log-mel ---------------------------------------------------------------------------------------
#: Power floor before the logarithm (about -100 dB re a full-scale sine).
MEL_POWER_FLOOR = 1e-10
#: Fixed affine normalisation of the natural-log mel power: ``(log_mel - MEL_LOG_MEAN) / MEL_LOG_STD``.
#: Chosen so speech at about -20 dBFS with pauses lands near zero mean and unit variance.
MEL_LOG_MEAN = -18.0
MEL_LOG_STD = 5.0
#: Normalised value of a silent mel bin: what :func:`frame_windows` pads with.
MEL_SILENCE = (math.log(MEL_POWER_FLOOR) - MEL_LOG_MEAN) / MEL_LOG_STD
#: Lowest mel filter edge (Hz).
MEL_FMIN = 20.0

# --- prosody ---------------------------------------------------------------------------------------
PROSODY_FRAME = 0.040  # seconds per analysis frame (holds two periods of a 50 Hz voice)
PROSODY_HOP = 0.010  # seconds between analysis frames
PITCH_MIN_HZ = 60.0
PITCH_MAX_HZ = 500.0
PITCH_REF_HZ = 150.0  # log-pitch features are octaves relative to this
VOICING_THRESHOLD = 0.45
PITCH_OCTAVE_TOLERANCE = 0.9  # see _pitch_track  # normalised autocorrelation peak above which a frame is voiced
ENERGY_FLOOR_DB = 60.0  # frame energies are floored this far below the loud level
ACTIVE_RANGE_DB = 30.0  # frames within this many dB of the loud frames are "active" (speech)
LOUD_PERCENTILE = 95.0
QUIET_PERCENTILE = 5.0
ROLLOFF_FRACTION = 0.85
LOW_BAND_HZ = 500.0
MID_BAND_HZ = 2000.0
HIGH_BAND_HZ = 4000.0
SYLLABLE_SMOOTH = 0.05  # seconds of envelope smoothing before counting syllable-like peaks
SYLLABLE_PROMINENCE_DB = 3.0
EPS = 1e-12

#: Names of the prosody features, in the order :func:`prosody_features` returns them.
PROSODY_FEATURE_NAMES: tuple[str, ...] = (
    "energy_mean_db",  # mean frame energy of active frames, dB relative to the loud level / 20
    "energy_std_db",  # std of active-frame energy (dB) / 10
    "energy_range_db",  # loud minus quiet percentile of energy (dB) / 40
    "active_fraction",  # fraction of frames within ACTIVE_RANGE_DB of the loud level
    "voiced_fraction",  # fraction of active frames that are voiced
    "pitch_mean",  # mean log2(f0 / 150 Hz) over voiced frames (octaves)
    "pitch_std",  # std of log2 f0 (octaves)
    "pitch_range",  # 90th minus 10th percentile of log2 f0 (octaves)
    "pitch_slope",  # linear trend of log2 f0 (octaves per second)
    "pitch_jump",  # mean |delta log2 f0| between consecutive voiced frames, x 10
    "voicing_strength",  # mean normalised autocorrelation peak of voiced frames
    "harmonicity",  # mean 10 log10(r / (1 - r)) of voiced frames / 20 (HNR proxy)
    "centroid_mean",  # spectral centroid / Nyquist
    "centroid_std",
    "rolloff_mean",  # 85 % roll-off frequency / Nyquist
    "rolloff_std",
    "flatness_mean",  # spectral flatness (geometric / arithmetic mean), 0..1
    "flatness_std",
    "bandwidth_mean",  # spectral spread around the centroid / Nyquist
    "flux_mean",  # mean L1 change of the sum-normalised spectrum between frames
    "low_band_ratio",  # energy share below 500 Hz
    "mid_band_ratio",  # energy share 500..2000 Hz
    "high_band_ratio",  # energy share above 4000 Hz
    "spectral_slope",  # slope of the dB spectrum versus log2 frequency (dB per octave) / 20
    "zcr_mean",  # zero crossings per sample
    "zcr_std",
    "syllable_rate",  # energy peaks per second of active speech / 10 (speaking-rate proxy)
    "pause_rate",  # pauses (active -> inactive transitions) per second
    "segment_duration",  # mean duration of active runs (s)
    "energy_delta",  # mean |frame-to-frame energy change| (dB) / 10
    "energy_attack",  # 90th percentile of rising energy change (dB) / 10
    "energy_skew",  # skewness of active-frame energy (dB) / 5
)

@dataclass
class AudioClip:
    """Mono audio for analysis: ``samples`` float32 in -1..1 at ``sample_rate`` Hz, and where it came from.

    ``recording`` (optional) is the sound as it was recorded: float32 ``(n, channels)`` at
    ``recording_rate`` Hz, before the conversion to mono at the model's rate. Exports carry it
    (:meth:`export_samples`), so a 48 kHz stereo take leaves the program as 48 kHz stereo; the lips,
    envelope and mel features read ``samples``.
    """

    samples: np.ndarray
    sample_rate: int
    source: str = "<array>"
    recording: np.ndarray | None = field(default=None, repr=False)
    recording_rate: int | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / float(self.sample_rate)

    @property
    def export_rate(self) -> int:
        """Sample rate of :meth:`export_samples` (the recording's, where it is kept)."""
        return int(self.recording_rate if self.recording is not None and self.recording_rate else self.sample_rate)

    @property
    def channels(self) -> int:
        """Number of channels of :meth:`export_samples`."""
        return int(self.recording.shape[1]) if self.recording is not None else 1

    def export_samples(self) -> np.ndarray:
        """The sound to write into an export: float32 ``(n, channels)`` at :attr:`export_rate`."""
        if self.recording is not None:
            return np.asarray(self.recording, dtype=np.float32)
        return np.asarray(self.samples, dtype=np.float32)[:, None]

    def between(self, start: float, stop: float | None = None) -> AudioClip:
        """The part from ``start`` to ``stop`` seconds (None: to the end), analysis and recording alike."""

        def cut(rate: int, length: int) -> slice:
            first = min(length, max(0, int(round(start * rate))))
            last = length if stop is None else min(length, max(first, int(round(stop * rate))))
            return slice(first, last)

        recording = None
        if self.recording is not None:
            recording = self.recording[cut(self.export_rate, len(self.recording))]
        return AudioClip(self.samples[cut(self.sample_rate, len(self.samples))], self.sample_rate, self.source,
                         recording, self.recording_rate)


@dataclass
class AudioConfig:
    """How audio becomes per-video-frame features (a model's ``audio`` section; see :func:`log_mel`)."""

    sample_rate: int = 16_000
    n_mels: int = 40
    hop_length: int = 160  # 10 ms at 16 kHz
    win_length: int = 400  # 25 ms at 16 kHz
    context_frames: int = 2  # video frames on each side of the current one in the audio window



#: What :func:`load_audio` accepts.
AudioSource = str | os.PathLike | AudioClip | tuple


# ==================================================================================================
# Loading
# ==================================================================================================


def load_audio(
    source: AudioSource,
    target_rate: int = DEFAULT_SAMPLE_RATE,
    min_duration: float = DEFAULT_MIN_DURATION,
    max_duration: float | None = DEFAULT_MAX_DURATION,
) -> AudioClip:
    """Load audio as a mono float32 :class:`AudioClip` at ``target_rate``.

    ``source``: a file path, an ``(array, sample_rate)`` pair (array ``(n,)``, ``(n, channels)`` or
    ``(channels, n)``; float or integer PCM) or an :class:`AudioClip`. Channels are averaged, the rate
    converted with :func:`resample`. Raises :class:`InputAudioError` for a missing or unreadable file,
    a file without audio, a header that lies (a sample rate outside :data:`MIN_SOURCE_RATE` ..
    :data:`MAX_SOURCE_RATE`, more samples than the file holds), a clip longer than ``max_duration``
    seconds (None: no limit; checked from the header before decoding), empty, non-finite, too short or
    silent audio.
    """
    recording: np.ndarray | None = None
    if isinstance(source, AudioClip):  # already analysed: keep the recording it carries
        name = source.source
        data, rate = np.asarray(source.samples), _check_rate(source.sample_rate, name)
        recording, recording_rate = source.recording, source.recording_rate
    elif isinstance(source, tuple):
        if len(source) != 2:
            raise InputAudioError("give audio as a file path, an AudioClip or an (array, sample_rate) pair")
        name, data, rate = "<array>", np.asarray(source[0]), _check_rate(source[1], "<array>")
    elif isinstance(source, (str, os.PathLike)):
        name = str(source)
        data, rate = _read_file(Path(source), max_duration)
    else:
        raise InputAudioError(
            f"cannot use a {type(source).__name__} as audio; give a file path, an AudioClip or (array, rate)"
        )
    channels = _to_channels_float(data, name)
    mono = channels.mean(axis=1, dtype=np.float32)
    if mono.size == 0:
        raise InputAudioError(f"{name} contains no audio samples")
    if not np.all(np.isfinite(channels)):
        raise InputAudioError(f"{name} contains NaN or infinite samples; re-export the audio")
    duration = mono.size / rate
    _check_duration(duration, max_duration, name)
    if duration < min_duration:
        raise InputAudioError(
            f"{name} is {duration:.3f} s long; at least {min_duration:g} s of audio is needed"
        )
    peak = float(np.max(np.abs(mono)))
    if peak < SILENCE_PEAK:
        raise InputAudioError(f"{name} is silent (peak level {peak:.1e}); choose a recording with speech")
    if recording is None:  # the recording as it is, for exports (float beyond full scale is scaled down)
        loudest = float(np.max(np.abs(channels)))
        recording = channels / loudest if loudest > 1.0 else channels
        recording_rate = rate
    if peak > 1.0:  # float input beyond full scale: scale down rather than clip
        mono = mono / peak
    samples = resample(mono, rate, target_rate)
    return AudioClip(samples=np.clip(samples, -1.0, 1.0).astype(np.float32), sample_rate=int(target_rate),
                     source=name, recording=recording, recording_rate=recording_rate)


def _check_rate(rate: object, name: str) -> int:
    """A sample rate as an int, refused outside :data:`MIN_SOURCE_RATE` .. :data:`MAX_SOURCE_RATE`."""
    try:
        value = int(rate)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputAudioError(f"{name}: sample rate {rate!r} is not a number") from exc
    if value <= 0:
        raise InputAudioError(f"{name}: sample rate must be positive, got {value}")
    if not MIN_SOURCE_RATE <= value <= MAX_SOURCE_RATE:
        raise InputAudioError(
            f"{name}: the file says its sample rate is {value:,} Hz; audio is recorded at "
            f"{MIN_SOURCE_RATE // 1000}-{MAX_SOURCE_RATE // 1000} kHz, so its header is damaged or wrong; "
            f"re-export the audio (e.g. as a 16 or 48 kHz WAV)"
        )
    return value


def _check_duration(seconds: float, max_duration: float | None, name: str) -> None:
    """Refuse a clip longer than ``max_duration`` seconds (None: no limit)."""
    if max_duration is not None and seconds > max_duration:
        raise InputAudioError(
            f"{name} is {seconds:,.1f} s long; clips are limited to {max_duration:g} s by default, since the "
            f"render's time and memory grow with the length; trim it, or raise the limit "
            f"(moee render --max-duration SECONDS)"
        )


def _to_channels_float(data: np.ndarray, name: str) -> np.ndarray:
    """PCM of any integer/float type and ``(n,)``, ``(n, ch)`` or ``(ch, n)`` layout -> float32 ``(n, ch)``."""
    if data.ndim == 0 or data.ndim > 2:
        raise InputAudioError(f"{name}: audio must be 1-D or 2-D (samples x channels), got {data.shape}")
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        if info.min == 0:  # unsigned PCM (8-bit wav): centre on zero
            middle = (int(info.max) + 1) / 2.0
            data = (data.astype(np.float64) - middle) / middle
        else:
            data = data.astype(np.float64) / (int(info.max) + 1)
    elif np.issubdtype(data.dtype, np.floating) or data.dtype == np.bool_:
        data = data.astype(np.float64)
    else:
        raise InputAudioError(f"{name}: unsupported sample type {data.dtype}")
    if data.ndim == 1:
        return data.astype(np.float32)[:, None]
    if data.size == 0:
        return np.zeros((0, 1), dtype=np.float32)
    if data.shape[0] < data.shape[1] and data.shape[0] <= MAX_CHANNELS_FIRST:
        data = data.T
    return np.ascontiguousarray(data, dtype=np.float32)


def _read_file(path: Path, max_duration: float | None = DEFAULT_MAX_DURATION) -> tuple[np.ndarray, int]:
    """Decode a file to ``(samples (n, channels), rate)``, after checking what its header claims."""
    if not path.exists():
        raise InputAudioError(f"audio file not found: {path}")
    if path.is_dir():
        raise InputAudioError(f"{path} is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise InputAudioError(f"audio file is empty: {path}")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            return _read_soundfile(path, max_duration)
        except InputAudioError:
            raise
        except Exception:  # libsndfile refused it: let FFmpeg try before giving up
            pass
    return _read_pyav(path, max_duration)


def _read_soundfile(path: Path, max_duration: float | None = DEFAULT_MAX_DURATION) -> tuple[np.ndarray, int]:
    """Read a file libsndfile knows, once its header's rate, length and size agree with the file."""
    import soundfile

    info = soundfile.info(str(path))
    rate = _check_rate(info.samplerate, str(path))
    width = PCM_SAMPLE_BYTES.get(info.subtype) if info.format in UNCOMPRESSED_FORMATS else None
    if width is not None:
        claimed = int(info.frames) * int(info.channels) * width
        size = path.stat().st_size
        if claimed > size:
            raise InputAudioError(
                f"{path}: the header claims {info.frames:,} samples ({claimed:,} bytes), but the file holds only "
                f"{size:,} bytes; it is truncated or its header is wrong; re-export the audio"
            )
    _check_duration(int(info.frames) / rate, max_duration, str(path))
    data, read_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data, int(read_rate)


def _read_pyav(path: Path, max_duration: float | None = DEFAULT_MAX_DURATION) -> tuple[np.ndarray, int]:
    """Decode any FFmpeg-readable file's first audio stream to float32 ``(n, channels)``.

    The rate and (where the container states it) the duration are checked before decoding; decoding
    stops as soon as more than ``max_duration`` seconds came out (a container that understates its length).
    """
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)  # FFmpeg's words, not "[Errno 1094995529] ..."
        raise InputAudioError(f"{path} is not a readable audio file ({reason})") from exc
    try:
        if not container.streams.audio:
            raise InputAudioError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        channels = int(stream.codec_context.layout.nb_channels or 1)
        if rate <= 0:
            raise InputAudioError(f"{path}: the audio stream has no sample rate")
        rate = _check_rate(rate, str(path))
        if stream.duration is not None and stream.time_base is not None:
            _check_duration(float(stream.duration * stream.time_base), max_duration, str(path))
        elif container.duration is not None:
            _check_duration(container.duration / av.time_base, max_duration, str(path))
        limit = None if max_duration is None else int(max_duration * rate) + 1
        resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout.name, rate=rate)
        chunks: list[np.ndarray] = []
        decoded = 0
        for frame in container.decode(stream):
            for converted in resampler.resample(frame):
                chunks.append(converted.to_ndarray().reshape(channels, -1))
                decoded += chunks[-1].shape[1]
            if limit is not None and decoded > limit:
                _check_duration(decoded / rate, max_duration, str(path))
        for converted in resampler.resample(None):
            chunks.append(converted.to_ndarray().reshape(channels, -1))
    except InputAudioError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputAudioError(f"{path}: the audio could not be decoded ({exc})") from exc
    finally:
        container.close()
    if not chunks:
        return np.zeros((0, channels), dtype=np.float32), rate
    return np.concatenate(chunks, axis=1).T, rate


# ==================================================================================================
# Resampling
# ==================================================================================================


def resample(samples: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited rate conversion of a 1-D signal (polyphase windowed sinc, Kaiser window).

    The kernel's cut-off is :data:`RESAMPLE_ROLLOFF` of the lower Nyquist frequency, so downsampling
    does not alias; each phase is normalised to unit DC gain. The output has
    ``round(len * target_rate / orig_rate)`` samples; the signal is zero outside its ends.
    """
    samples = np.asarray(samples, dtype=np.float32)
    orig_rate, target_rate = int(orig_rate), int(target_rate)
    if orig_rate == target_rate or samples.size == 0:
        return samples.copy()
    divisor = math.gcd(orig_rate, target_rate)
    up, down = target_rate // divisor, orig_rate // divisor
    # Cut-off in cycles per input sample, and kernel half-width in input samples.
    cutoff = 0.5 * min(1.0, up / down) * RESAMPLE_ROLLOFF
    half = int(math.ceil(RESAMPLE_ZERO_CROSSINGS / (2.0 * cutoff)))
    taps = np.arange(-half, half + 1, dtype=np.float64)
    # Phase p: the output sits p/up of an input sample after its base input sample.
    phases = np.arange(up, dtype=np.float64)[:, None] / up
    offsets = taps[None, :] - phases  # input-sample distance of each tap from the output point
    kernel = 2.0 * cutoff * np.sinc(2.0 * cutoff * offsets)
    ratio = np.clip(offsets / (half + 1), -1.0, 1.0)
    kernel *= np.i0(RESAMPLE_KAISER_BETA * np.sqrt(1.0 - ratio**2)) / np.i0(RESAMPLE_KAISER_BETA)
    kernel /= kernel.sum(axis=1, keepdims=True)
    kernel = kernel.astype(np.float32)

    n_out = int(round(samples.size * up / down))
    padded = np.concatenate([np.zeros(half, np.float32), samples, np.zeros(half + 1, np.float32)])
    out = np.empty(n_out, dtype=np.float32)
    for start in range(0, n_out, RESAMPLE_BLOCK):
        index = np.arange(start, min(n_out, start + RESAMPLE_BLOCK), dtype=np.int64)
        position = index * down
        base, phase = position // up, position % up
        gather = padded[base[:, None] + np.arange(2 * half + 1)[None, :]]
        out[index] = np.einsum("ij,ij->i", gather, kernel[phase])
    return out


# ==================================================================================================
# Log-mel features
# ==================================================================================================


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    linear = freq / f_sp
    log = min_log_mel + np.log(np.maximum(freq, EPS) / min_log_hz) / logstep
    return np.where(freq >= min_log_hz, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = MEL_FMIN,
                   fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filters, shape ``(n_mels, n_fft // 2 + 1)``."""
    fmax = sample_rate / 2.0 if fmax is None else fmax
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_freqs[None, :] - lower) / (centre - lower)
    falling = (upper - fft_freqs[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal area per filter
    return weights.astype(np.float32)


def _n_fft(win_length: int) -> int:
    """FFT size: the next power of two at or above the window length."""
    return 1 << (int(win_length) - 1).bit_length()


def power_spectrogram(samples: np.ndarray, n_fft: int, win_length: int, hop: int) -> np.ndarray:
    """Centred STFT power ``(T, n_fft // 2 + 1)`` with a Hann window, normalised by the window sum.

    Frame ``t`` is centred on sample ``t * hop``; ``T = 1 + len // hop``. A full-scale sine gives a
    peak bin power of about 0.25 whatever the window length.
    """
    samples = np.asarray(samples, dtype=np.float32)
    window = np.zeros(n_fft, dtype=np.float32)
    offset = (n_fft - win_length) // 2
    window[offset : offset + win_length] = np.hanning(win_length + 2)[1:-1]
    padded = np.pad(samples, (n_fft // 2, n_fft // 2))
    n_frames = 1 + samples.size // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    padded = np.pad(padded, (0, max(0, int(index.max()) + 1 - padded.size)))
    spectrum = np.fft.rfft(padded[index] * window[None, :], axis=1)
    return (np.abs(spectrum) ** 2 / float(window.sum()) ** 2).astype(np.float32)


def log_mel(samples: np.ndarray | AudioClip, cfg: AudioConfig) -> np.ndarray:
    """Normalised log-mel spectrogram ``(T, cfg.n_mels)`` float32, ``T = 1 + len // hop``.

    Natural log of the mel power (floored at :data:`MEL_POWER_FLOOR`), then the fixed affine map
    ``(x - MEL_LOG_MEAN) / MEL_LOG_STD`` — never per-clip statistics, so features are comparable
    across clips. An :class:`AudioClip` at another rate is resampled to ``cfg.sample_rate`` first.
    """
    if isinstance(samples, AudioClip):
        samples = resample(samples.samples, samples.sample_rate, cfg.sample_rate)
    n_fft = _n_fft(cfg.win_length)
    power = power_spectrogram(samples, n_fft, cfg.win_length, cfg.hop_length)
    mel = power @ mel_filterbank(cfg.sample_rate, n_fft, cfg.n_mels).T
    return ((np.log(np.maximum(mel, MEL_POWER_FLOOR)) - MEL_LOG_MEAN) / MEL_LOG_STD).astype(np.float32)


def num_video_frames(duration: float, fps: float) -> int:
    """Number of video frames that cover ``duration`` seconds at ``fps`` (rounded, at least 1)."""
    return max(1, int(round(float(duration) * float(fps))))


def mel_frames_per_video_frame(fps: float, cfg: AudioConfig) -> float:
    """Mel frames per video frame (``sample_rate / hop / fps``; may be fractional)."""
    return cfg.sample_rate / cfg.hop_length / float(fps)


def window_length(fps: float, cfg: AudioConfig) -> int:
    """Mel frames in one video frame's window: ``(2 * context + 1)`` video frames' worth, rounded."""
    return max(1, int(round((2 * cfg.context_frames + 1) * mel_frames_per_video_frame(fps, cfg))))


def frame_windows(mel: np.ndarray, num_frames: int, fps: float, cfg: AudioConfig) -> np.ndarray:
    """One fixed-length mel window per video frame: ``(num_frames, window, n_mels)`` float32.

    Video frame ``i`` shows time ``[i / fps, (i + 1) / fps)``; its window is centred on that
    interval's middle and spans ``context_frames`` video frames on each side. Mel frames before the
    start or after the end of the audio are filled with :data:`MEL_SILENCE` (the value silence has).
    """
    mel = np.asarray(mel, dtype=np.float32)
    per_frame = mel_frames_per_video_frame(fps, cfg)
    length = window_length(fps, cfg)
    centres = (np.arange(num_frames, dtype=np.float64) + 0.5) * per_frame
    starts = np.round(centres - length / 2.0).astype(np.int64)
    index = starts[:, None] + np.arange(length)[None, :]
    valid = (index >= 0) & (index < mel.shape[0])
    out = np.full((num_frames, length, mel.shape[1]), MEL_SILENCE, dtype=np.float32)
    out[valid] = mel[index[valid]]
    return out


def silent_windows(num_frames: int, fps: float, cfg: AudioConfig) -> np.ndarray:
    """The :func:`frame_windows` of silence: the null audio condition of lip guidance."""
    return frame_windows(np.zeros((0, cfg.n_mels), np.float32), num_frames, fps, cfg)


# ==================================================================================================
# Loudness envelope and waveform preview
# ==================================================================================================


def envelope_per_frame(clip: AudioClip, num_frames: int, fps: float) -> np.ndarray:
    """RMS level of the samples under each video frame ``[i / fps, (i + 1) / fps)``; 0 past the end."""
    samples = np.asarray(clip.samples, dtype=np.float64)
    energy = np.concatenate([[0.0], np.cumsum(samples**2)])
    edges = np.round(np.arange(num_frames + 1) * clip.sample_rate / float(fps)).astype(np.int64)
    edges = np.clip(edges, 0, samples.size)
    counts = np.diff(edges)
    sums = energy[edges[1:]] - energy[edges[:-1]]
    rms = np.sqrt(np.maximum(sums, 0.0) / np.maximum(counts, 1))
    return np.where(counts > 0, rms, 0.0).astype(np.float32)


def waveform_preview(clip: AudioClip, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin (min, max) of the samples in ``points`` equal bins, for drawing a waveform."""
    samples = np.asarray(clip.samples, dtype=np.float32)
    if points <= 0 or samples.size == 0:
        return np.zeros(max(points, 0), np.float32), np.zeros(max(points, 0), np.float32)
    starts = np.minimum((np.arange(points) * samples.size) // points, samples.size - 1)
    return np.minimum.reduceat(samples, starts), np.maximum.reduceat(samples, starts)


# ==================================================================================================
# Prosody
# ==================================================================================================


def _frames(samples: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Non-centred frames ``(n, length)`` (the signal is zero-padded to fill the last one)."""
    n = max(1, 1 + max(0, samples.size - length + hop - 1) // hop)
    padded = np.pad(samples, (0, max(0, (n - 1) * hop + length - samples.size)))
    return padded[np.arange(length)[None, :] + hop * np.arange(n)[:, None]]


def _safe_stat(values: np.ndarray, fn: Callable[[np.ndarray], float]) -> float:
    """``fn(values)`` or 0 for an empty array."""
    return float(fn(values)) if values.size else 0.0


def _pitch_track(frames: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame f0 (Hz) and normalised autocorrelation peak, from the FFT autocorrelation."""
    length = frames.shape[1]
    centred = frames - frames.mean(axis=1, keepdims=True)
    windowed = centred * np.hanning(length)[None, :]
    n_fft = _n_fft(2 * length)
    spectrum = np.fft.rfft(windowed, n=n_fft, axis=1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, n=n_fft, axis=1)[:, :length]
    window_acf = np.correlate(np.hanning(length), np.hanning(length), mode="full")[length - 1 :]
    acf = acf / np.maximum(acf[:, :1], EPS) / np.maximum(window_acf / window_acf[0], EPS)[None, :]
    low, high = int(rate / PITCH_MAX_HZ), min(length - 1, int(rate / PITCH_MIN_HZ))
    search = acf[:, low:high]
    # Local maxima of the autocorrelation; the shortest lag within PITCH_OCTAVE_TOLERANCE of the best
    # one wins, which avoids picking a multiple of the true period (an octave too low).
    inner = search[:, 1:-1]
    is_peak = np.zeros_like(search, dtype=bool)
    is_peak[:, 1:-1] = (inner > search[:, :-2]) & (inner >= search[:, 2:])
    peaks = np.where(is_peak, search, -np.inf)
    best = peaks.max(axis=1, keepdims=True)
    good = is_peak & (peaks >= PITCH_OCTAVE_TOLERANCE * best)
    first = np.where(good.any(axis=1), np.argmax(good, axis=1), np.argmax(search, axis=1))
    lag = low + first
    strength = acf[np.arange(len(acf)), lag]
    # Parabolic refinement of the peak lag.
    left = acf[np.arange(len(acf)), np.maximum(lag - 1, 0)]
    right = acf[np.arange(len(acf)), np.minimum(lag + 1, length - 1)]
    denom = left - 2 * strength + right
    shift = np.where(np.abs(denom) > EPS, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0.0)
    f0 = rate / np.maximum(lag + np.clip(shift, -0.5, 0.5), 1.0)
    return f0, np.clip(strength, 0.0, 1.0)


def _runs(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in a boolean array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    changes = np.diff(padded)
    return np.flatnonzero(changes == -1) - np.flatnonzero(changes == 1)


def _skew(values: np.ndarray) -> float:
    if values.size < 3:
        return 0.0
    std = values.std()
    return float(((values - values.mean()) ** 3).mean() / max(std**3, EPS))


@dataclass(frozen=True)
class _EnergyTrack:
    """Per-analysis-frame energy of a clip, relative to its own loud level (so gain-independent)."""

    energy_db: np.ndarray  # (frames,) dB, floored ENERGY_FLOOR_DB below the loud level
    loud: float  # LOUD_PERCENTILE of the frame energies (dB)
    quiet: float  # QUIET_PERCENTILE of the floored frame energies (dB)
    active: np.ndarray  # (frames,) bool: within ACTIVE_RANGE_DB of the loud level (speech)
    active_db: np.ndarray  # energies of the active frames relative to the loud level (dB)


def _energy_track(frames: np.ndarray) -> _EnergyTrack:
    """Step 1: frame energies in dB, the loud / quiet levels and which frames are active speech."""
    energy_db = 10.0 * np.log10(np.mean(frames**2, axis=1) + EPS)
    loud = np.percentile(energy_db, LOUD_PERCENTILE)
    energy_db = np.maximum(energy_db, loud - ENERGY_FLOOR_DB)  # digital silence: gain-independent floor
    quiet = np.percentile(energy_db, QUIET_PERCENTILE)
    active = energy_db > loud - ACTIVE_RANGE_DB
    return _EnergyTrack(energy_db, loud, quiet, active, energy_db[active] - loud)


def _energy_features(track: _EnergyTrack) -> list[float]:
    """Step 2: ``energy_mean_db`` .. ``active_fraction`` (level and spread of the active frames)."""
    return [
        _safe_stat(track.active_db, np.mean) / 20.0,
        _safe_stat(track.active_db, np.std) / 10.0,
        float(track.loud - track.quiet) / 40.0,
        float(track.active.mean()),
    ]


def _pitch_features(frames: np.ndarray, rate: int, active: np.ndarray, frame_rate: float) -> list[float]:
    """Step 3: ``voiced_fraction`` .. ``harmonicity`` (autocorrelation pitch over the voiced active frames)."""
    f0, strength = _pitch_track(frames, rate)
    voiced = active & (strength > VOICING_THRESHOLD)
    log_f0 = np.log2(f0[voiced] / PITCH_REF_HZ)
    voiced_strength = strength[voiced]
    slope = 0.0
    if log_f0.size >= 2:
        times = np.flatnonzero(voiced) / frame_rate
        slope = float(np.polyfit(times, log_f0, 1)[0]) if np.ptp(times) > 0 else 0.0
    consecutive = np.flatnonzero(voiced[1:] & voiced[:-1])
    jumps = np.abs(np.log2(f0[consecutive + 1] / f0[consecutive]))
    clipped_strength = np.clip(voiced_strength, EPS, 1.0 - 1e-6)
    hnr = 10.0 * np.log10(clipped_strength / (1.0 - clipped_strength))
    return [
        float(voiced.sum() / max(active.sum(), 1)),
        _safe_stat(log_f0, np.mean),
        _safe_stat(log_f0, np.std),
        float(np.percentile(log_f0, 90) - np.percentile(log_f0, 10)) if log_f0.size else 0.0,
        slope,
        _safe_stat(jumps, np.mean) * 10.0,
        _safe_stat(voiced_strength, np.mean),
        _safe_stat(hnr, np.mean) / 20.0,
    ]


def _spectral_features(frames: np.ndarray, rate: int, active: np.ndarray) -> list[float]:
    """Step 4: ``centroid_mean`` .. ``spectral_slope`` (shape of the active frames' power spectra)."""
    n_fft = _n_fft(frames.shape[1])
    power = np.abs(np.fft.rfft(frames[active] * np.hanning(frames.shape[1])[None, :], n=n_fft, axis=1)) ** 2
    freqs = np.linspace(0.0, rate / 2.0, n_fft // 2 + 1)
    nyquist = rate / 2.0
    total = power.sum(axis=1) + EPS
    share = power / total[:, None]
    centroid = share @ freqs
    spread = np.sqrt(np.maximum(share @ freqs**2 - centroid**2, 0.0))
    rolloff = freqs[np.argmax(np.cumsum(share, axis=1) >= ROLLOFF_FRACTION, axis=1)]
    flatness = np.exp(np.mean(np.log(power + EPS), axis=1)) / (np.mean(power, axis=1) + EPS)
    flux = np.abs(np.diff(share, axis=0)).sum(axis=1) if len(share) > 1 else np.zeros(0)
    mean_share = share.mean(axis=0) if len(share) else np.zeros_like(freqs)
    band = freqs > PITCH_MIN_HZ
    spectral_slope = 0.0
    if len(share) and band.sum() > 1:
        mean_db = 10.0 * np.log10(mean_share[band] + EPS)
        spectral_slope = float(np.polyfit(np.log2(freqs[band]), mean_db, 1)[0])
    return [
        _safe_stat(centroid, np.mean) / nyquist,
        _safe_stat(centroid, np.std) / nyquist,
        _safe_stat(rolloff, np.mean) / nyquist,
        _safe_stat(rolloff, np.std) / nyquist,
        _safe_stat(flatness, np.mean),
        _safe_stat(flatness, np.std),
        _safe_stat(spread, np.mean) / nyquist,
        _safe_stat(flux, np.mean),
        float(mean_share[freqs < LOW_BAND_HZ].sum()),
        float(mean_share[(freqs >= LOW_BAND_HZ) & (freqs < MID_BAND_HZ)].sum()),
        float(mean_share[freqs >= HIGH_BAND_HZ].sum()),
        spectral_slope / 20.0,
    ]


def _zero_crossing_features(frames: np.ndarray, active: np.ndarray) -> list[float]:
    """Step 5: ``zcr_mean``, ``zcr_std`` (zero crossings per sample of the active frames)."""
    signs = np.signbit(frames)
    zcr = np.mean(signs[:, 1:] != signs[:, :-1], axis=1)[active]
    return [_safe_stat(zcr, np.mean), _safe_stat(zcr, np.std)]


def _rhythm_features(track: _EnergyTrack, frame_rate: float, duration: float) -> list[float]:
    """Step 6: ``syllable_rate``, ``pause_rate``, ``segment_duration`` (energy peaks and active runs).

    ``duration`` is the clip's length in seconds (pauses are counted per second of the whole clip).
    """
    energy_db, active = track.energy_db, track.active
    smooth = max(1, int(round(SYLLABLE_SMOOTH * frame_rate)))
    envelope = np.convolve(energy_db, np.ones(smooth) / smooth, mode="same")
    is_peak = (envelope[1:-1] > envelope[:-2]) & (envelope[1:-1] >= envelope[2:]) & active[1:-1]
    peak_idx = np.flatnonzero(is_peak) + 1
    prominent = [i for i in peak_idx
                 if envelope[i] - envelope[max(0, i - smooth * 2) : i + smooth * 2 + 1].min() > SYLLABLE_PROMINENCE_DB]
    active_seconds = max(active.sum() / frame_rate, 1.0 / frame_rate)
    runs = _runs(active)
    pauses = max(0, len(runs) - 1)
    return [
        len(prominent) / active_seconds / 10.0,
        pauses / max(duration, EPS),
        _safe_stat(runs.astype(np.float64), np.mean) / frame_rate,
    ]


def _energy_dynamics_features(track: _EnergyTrack) -> list[float]:
    """Step 7: ``energy_delta``, ``energy_attack``, ``energy_skew`` (how the energy moves)."""
    delta = np.diff(track.energy_db)
    return [
        _safe_stat(np.abs(delta), np.mean) / 10.0,
        float(np.percentile(delta[delta > 0], 90)) / 10.0 if np.any(delta > 0) else 0.0,
        _skew(track.active_db) / 5.0,
    ]


def prosody_features(clip: AudioClip, n: int = len(PROSODY_FEATURE_NAMES)) -> np.ndarray:
    """A fixed-length, gain-independent description of a clip's tone: ``(n,)`` float32.

    The features are :data:`PROSODY_FEATURE_NAMES` in order (pitch by autocorrelation over voiced
    frames, energy statistics in dB relative to the clip's loud level, spectral shape, zero-crossing
    rate and rhythm), each scaled to roughly -1..1. Energy is measured relative to the clip itself,
    so scaling the audio does not change the result. Deterministic. ``n`` smaller than the number
    of named features keeps the first ``n``; larger pads with zeros.
    """
    rate = DEFAULT_SAMPLE_RATE
    samples = np.asarray(resample(clip.samples, clip.sample_rate, rate), dtype=np.float64)
    hop = int(round(PROSODY_HOP * rate))
    frames = _frames(samples, int(round(PROSODY_FRAME * rate)), hop)
    frame_rate = rate / hop
    track = _energy_track(frames)  # 1
    values = [
        *_energy_features(track),  # 2
        *_pitch_features(frames, rate, track.active, frame_rate),  # 3
        *_spectral_features(frames, rate, track.active),  # 4
        *_zero_crossing_features(frames, track.active),  # 5
        *_rhythm_features(track, frame_rate, clip.duration),  # 6
        *_energy_dynamics_features(track),  # 7
    ]
    features = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    out = np.zeros(n, dtype=np.float32)
    out[: min(n, features.size)] = features[:n]
    return out
