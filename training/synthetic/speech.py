"""Speech for the synthetic clips and the mouth opening it drives.

Speech comes from ``espeak-ng`` when it is installed (random sentences, voice/pitch/speed varied
by seed) and otherwise from a procedural voice (glottal pulse train, formant resonators, syllable
envelope); both are deterministic given the seed (:func:`make_speech`). The mouth opening is a
deterministic function of the audio's RMS envelope (:func:`mouth_open_from_audio`).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from typing import Any

import numpy as np

from training.synthetic.identities import _pick

SAMPLE_RATE = 16_000

# mouth-opening model
ENVELOPE_REFERENCE_PERCENTILE = 95.0  # RMS percentile mapped to opening 1
ENVELOPE_FLOOR = 0.08  # fraction of the reference RMS below which the mouth is closed
SMOOTHING_KERNEL = np.array([0.25, 0.5, 0.25], dtype=np.float64)

_WORDS = ["the", "cat", "sat", "on", "a", "warm", "mat", "near", "the", "window", "while", "rain", "fell", "softly", "over", "quiet", "hills", "and", "old", "trees", "we", "never", "thought", "that", "this", "morning", "would", "bring", "such", "strange", "news", "from", "home", "she", "told", "me", "about", "the", "garden", "her", "brother", "planted", "last", "spring", "please", "bring", "the", "blue", "book", "to", "the", "kitchen", "table", "today", "I", "really", "cannot", "believe", "what", "happened", "at", "the", "station", "yesterday", "evening", "they", "are", "going", "to", "open", "a", "small", "shop", "by", "the", "river", "next", "summer"]
_ESPEAK_VOICES = ("en+f1", "en+f2", "en+f3", "en+f4", "en+m1", "en+m2", "en+m3", "en-us+f3", "en-us+m3")


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` executable is on the PATH."""
    return shutil.which("espeak-ng") is not None


def random_sentence(rng: np.random.Generator, n_words: tuple[int, int] = (5, 11)) -> str:
    """A random sequence of common English words."""
    n = int(rng.integers(n_words[0], n_words[1] + 1))
    return " ".join(_pick(rng, _WORDS) for _ in range(n))


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return x.astype(np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def espeak_speech(text: str, voice: str, speed: int, pitch: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Render ``text`` with espeak-ng; float32 mono at ``sr``."""
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "speech.wav")
        subprocess.run(
            ["espeak-ng", "-w", path, "-v", voice, "-s", str(speed), "-p", str(pitch), text],
            check=True, capture_output=True, timeout=60,
        )
        x, sr_in = sf.read(path, dtype="float32", always_2d=True)
    return _resample(x.mean(axis=1), int(sr_in), sr)


def procedural_speech(rng: np.random.Generator, seconds: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A speech-like signal: glottal pulses through vowel formants under a syllable envelope."""
    from scipy.signal import lfilter

    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    f0_base = rng.uniform(95, 230)
    f0 = f0_base * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 6.28)))
    phase = np.cumsum(f0 / sr)
    saw = phase - np.floor(phase)
    glottal = np.where(saw < 0.6, np.sin(np.pi * saw / 0.6) ** 2, 0.0) - 0.36
    glottal = glottal + 0.02 * rng.standard_normal(n)
    vowels = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))
    out = np.zeros(n)
    env = np.zeros(n)
    pos = int(rng.uniform(0.05, 0.3) * sr)
    while pos < n:
        dur = int(rng.uniform(0.12, 0.28) * sr)
        seg = slice(pos, min(n, pos + dur))
        m = seg.stop - seg.start
        formants = _pick(rng, vowels)
        y = glottal[seg].copy()
        acc = np.zeros(m)
        for fc, bw in zip(formants, (80, 100, 150), strict=True):
            r = math.exp(-math.pi * bw / sr)
            a = [1.0, -2 * r * math.cos(2 * math.pi * fc / sr), r * r]
            acc += lfilter([1 - r], a, y)
        out[seg] += acc
        env[seg] = np.sin(np.linspace(0, np.pi, m)) ** 0.7
        pos = seg.stop + int(rng.uniform(0.02, 0.1) * sr)
        if rng.random() < 0.15:  # a pause between phrases
            pos += int(rng.uniform(0.2, 0.5) * sr)
    out *= env
    peak = np.abs(out).max()
    return (0.6 * out / peak if peak > 0 else out).astype(np.float32)


def make_speech(rng: np.random.Generator, seconds: float, sr: int = SAMPLE_RATE,
                use_espeak: bool | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Speech of exactly ``seconds`` (padded with silence / trimmed), deterministic from ``rng``.

    Returns ``(samples float32, info)`` where info records the voice, text and method.
    """
    n = int(round(seconds * sr))
    if use_espeak is None:
        use_espeak = espeak_available()
    info: dict[str, Any]
    if use_espeak:
        text = random_sentence(rng)
        voice = _pick(rng, _ESPEAK_VOICES)
        speed = int(rng.integers(135, 185))
        pitch = int(rng.integers(25, 75))
        speech = espeak_speech(text, voice, speed, pitch, sr)
        info = {"method": "espeak-ng", "text": text, "voice": voice, "speed": speed, "pitch": pitch}
    else:
        speech = procedural_speech(rng, seconds * rng.uniform(0.7, 0.95), sr)
        info = {"method": "procedural"}
    speech = speech[: n]
    out = np.zeros(n, dtype=np.float32)
    lead = int(rng.integers(0, max(1, n - len(speech)) // 2 + 1))
    out[lead: lead + len(speech)] = speech
    return out, info


def rms_envelope(samples: np.ndarray, sr: int, fps: float, n_frames: int) -> np.ndarray:
    """RMS of the audio in a window of one video frame centred on each frame time."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    hop = sr / fps
    half = int(round(hop / 2))
    out = np.zeros(n_frames)
    for i in range(n_frames):
        c = int(round((i + 0.5) * hop))
        seg = x[max(0, c - half - half // 2): c + half + half // 2]
        out[i] = math.sqrt(float(np.mean(seg * seg))) if len(seg) else 0.0
    return out


def mouth_open_from_audio(samples: np.ndarray, sr: int, fps: float, n_frames: int) -> np.ndarray:
    """Speech-driven mouth opening per video frame, float32 in 0..1.

    Deterministic function of the RMS envelope: normalised by its 95th percentile, a floor
    removes breath/noise, a square-root compresses the range, then a [1/4, 1/2, 1/4] smoothing.
    """
    env = rms_envelope(samples, sr, fps, n_frames)
    ref = float(np.percentile(env, ENVELOPE_REFERENCE_PERCENTILE)) if n_frames else 0.0
    if ref <= 1e-6:
        return np.zeros(n_frames, dtype=np.float32)
    level = np.clip((env / ref - ENVELOPE_FLOOR) / (1 - ENVELOPE_FLOOR), 0.0, 1.0)
    level = np.sqrt(level)
    padded = np.pad(level, 1, mode="edge")
    smooth = np.convolve(padded, SMOOTHING_KERNEL, mode="valid")
    return np.clip(smooth, 0.0, 1.0).astype(np.float32)
