"""Procedural talking faces driven by FACS action units and an audio track, with ground truth.

The renderer draws a portrait (background, shoulders, hair, ears, face, eyes, brows, nose, lips,
optional glasses and beard) with antialiased OpenCV polygons. Everything is computed in *face
units* (1 = half the face width, origin between the eyes at nose height, y down) and mapped to
pixels by a per-frame head pose (roll, translation, scale), so the 68 ground-truth landmarks
(iBUG 68-point order) are exact by construction.

Expression = FACS action units with intensities in 0..1 (:data:`AU_LIST`); the six basic emotions
use the EMFACS prototypes (:data:`EMOTION_PROTOTYPES`), compound emotions are weighted AU unions
(:func:`emotion_to_aus`). The mouth opening is a deterministic function of the audio RMS envelope
(:func:`mouth_open_from_audio`); an emotion only adds to it through its own AUs (AU26 jaw drop,
AU16 lower-lip depressor). Blinks and small head motion are seeded.

Speech comes from ``espeak-ng`` when it is installed (random sentences, voice/pitch/speed varied
by seed) and otherwise from a procedural voice (glottal pulse train, formant resonators, syllable
envelope). Both are deterministic given the seed; the clip's ``meta.json`` says which was used.

Dataset layout written by :func:`generate_dataset`::

    out_dir/index.json                      # {"version", "clips": [{path, identity, emotion, split, ...}]}
    out_dir/<identity_id>/identity.json     # the Identity parameters
    out_dir/<identity_id>/<clip_name>/
        frames.npz      # "frames": (F, H, W, 3) uint8 RGB (compressed)
        audio.wav       # 16 kHz mono PCM16
        meta.json       # identity, emotion weights, fps, split, n_frames, voice, text
        landmarks.npy   # (F, 68, 2) float32 pixel coordinates
        aus.npy         # (F, len(AU_LIST)) float32 intensities 0..1
        mouth_open.npy  # (F,) float32 speech-driven opening 0..1 (before AU26)
        mouth_box.npy   # (F, 4) float32 x0, y0, x1, y1 pixels

Splits: identities are split train/test by seed (held-out identities); compound clips are only
ever written to the ``compound_eval`` split, never to ``train``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.emotions import BASIC_EMOTIONS, COMPOUND_PRESETS

# ----------------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------------

#: Action units the renderer implements, in the column order of ``aus.npy``.
AU_LIST: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 12, 15, 16, 20, 23, 26)

#: EMFACS prototypes: AU -> intensity at emotion weight 1.
EMOTION_PROTOTYPES: dict[str, dict[int, float]] = {
    "happiness": {6: 1.0, 12: 1.0},
    "sadness": {1: 1.0, 4: 0.7, 15: 1.0},
    "surprise": {1: 1.0, 2: 1.0, 5: 1.0, 26: 1.0},
    "fear": {1: 1.0, 2: 0.8, 4: 0.7, 5: 1.0, 7: 0.5, 20: 1.0, 26: 0.6},
    "anger": {4: 1.0, 5: 0.7, 7: 1.0, 23: 1.0},
    "disgust": {9: 1.0, 15: 0.8, 16: 0.8},
}

#: Emotion names accepted by the renderer: neutral (no AU) plus the six basic emotions.
NEUTRAL = "neutral"
RENDER_EMOTIONS: tuple[str, ...] = (NEUTRAL, *BASIC_EMOTIONS)

#: Number of ground-truth landmarks (iBUG 68-point order).
N_LANDMARKS = 68
SAMPLE_RATE = 16_000
DEFAULT_FPS = 25
DEFAULT_SIZE = 128
#: Fraction of identities held out as the ``test`` split.
TEST_FRACTION = 0.2
SPLIT_TRAIN, SPLIT_TEST, SPLIT_COMPOUND = "train", "test", "compound_eval"
INDEX_VERSION = 1

# landmark index ranges (iBUG 68)
JAW = slice(0, 17)
BROW_L, BROW_R = slice(17, 22), slice(22, 27)
NOSE_BRIDGE, NOSE_BOTTOM = slice(27, 31), slice(31, 36)
EYE_L, EYE_R = slice(36, 42), slice(42, 48)
LIPS_OUTER, LIPS_INNER = slice(48, 60), slice(60, 68)

# mouth-opening model
SPEECH_OPEN_GAIN = 0.22  # face units of lip separation at mouth_open = 1
AU26_OPEN_GAIN = 0.20  # face units of lip separation added by AU26 at intensity 1
ENVELOPE_REFERENCE_PERCENTILE = 95.0  # RMS percentile mapped to opening 1
ENVELOPE_FLOOR = 0.08  # fraction of the reference RMS below which the mouth is closed
SMOOTHING_KERNEL = np.array([0.25, 0.5, 0.25], dtype=np.float64)

# blinks and head motion
BLINK_INTERVAL_S = (1.8, 4.5)
BLINK_FRAMES = 5
HEAD_ROLL_DEG = 3.0
HEAD_SHIFT = 0.012  # fraction of the image size
HEAD_SCALE = 0.015

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_SUB = 1 << _SHIFT
_AA = cv2.LINE_AA

SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (255, 224, 196), (241, 194, 160), (224, 172, 135), (198, 134, 96),
    (170, 110, 75), (141, 85, 55), (110, 65, 42), (80, 50, 35), (234, 200, 170),
)
HAIR_COLOURS: tuple[tuple[int, int, int], ...] = (
    (25, 20, 18), (60, 40, 28), (105, 70, 40), (160, 120, 70), (220, 190, 120),
    (150, 60, 30), (170, 170, 170), (235, 235, 230), (45, 30, 22), (90, 55, 35), (90, 40, 110),
)
IRIS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (70, 45, 25), (110, 70, 35), (60, 110, 170), (80, 130, 80), (130, 110, 60), (110, 120, 130),
)
HAIR_STYLES: tuple[str, ...] = ("short", "long", "bob", "bun", "buzz", "curly", "bald", "fringe")
BEARD_STYLES: tuple[str, ...] = ("full", "goatee", "moustache", "stubble")

_WORDS = ["the", "cat", "sat", "on", "a", "warm", "mat", "near", "the", "window", "while", "rain", "fell", "softly", "over", "quiet", "hills", "and", "old", "trees", "we", "never", "thought", "that", "this", "morning", "would", "bring", "such", "strange", "news", "from", "home", "she", "told", "me", "about", "the", "garden", "her", "brother", "planted", "last", "spring", "please", "bring", "the", "blue", "book", "to", "the", "kitchen", "table", "today", "I", "really", "cannot", "believe", "what", "happened", "at", "the", "station", "yesterday", "evening", "they", "are", "going", "to", "open", "a", "small", "shop", "by", "the", "river", "next", "summer"]
_ESPEAK_VOICES = ("en+f1", "en+f2", "en+f3", "en+f4", "en+m1", "en+m2", "en+m3", "en-us+f3", "en-us+m3")


# ----------------------------------------------------------------------------------------------
# Identity
# ----------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _jitter_colour(rng: np.random.Generator, colour: Sequence[int], amount: float) -> tuple[int, int, int]:
    c = np.asarray(colour, dtype=np.float64) + rng.normal(0.0, amount, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


@dataclass
class Identity:
    """All appearance parameters of one synthetic person (face units unless stated)."""

    seed: int
    face_scale: float  # face half-width as a fraction of the image size
    chin: float  # chin depth below the face centre
    jaw_power: float  # superellipse exponent of the jaw: 2 round .. 3.2 square
    jaw_taper: float
    head_height: float  # skull height above the face centre
    skin: tuple[int, int, int]
    hair_style: str
    hair_colour: tuple[int, int, int]
    hairline: float
    eye_sep: float
    eye_w: float
    eye_h: float
    eye_tilt: float
    iris_colour: tuple[int, int, int]
    iris_r: float
    brow_y: float
    brow_len: float
    brow_thick: float
    brow_arch: float
    brow_colour: tuple[int, int, int]
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_upper: float
    lip_lower: float
    lip_colour: tuple[int, int, int]
    glasses: str | None
    glasses_colour: tuple[int, int, int]
    beard: str | None
    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    gradient: bool
    shirt: tuple[int, int, int]
    blush: float
    extra: dict[str, float] = field(default_factory=dict)

    @classmethod
    def random(cls, rng: np.random.Generator | int) -> Identity:
        """Draw a random identity from ``rng`` (a Generator or an integer seed)."""
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(int(rng))
        return cls.from_seed(int(rng.integers(2**31 - 1)))

    @classmethod
    def from_seed(cls, seed: int) -> Identity:
        """The identity whose ``seed`` field is ``seed`` (what ``identity.json`` records)."""
        r = np.random.default_rng(seed)
        skin = _jitter_colour(r, _pick(r, SKIN_TONES), 6)
        hair = _jitter_colour(r, _pick(r, HAIR_COLOURS), 8)
        feminine = r.random() < 0.5
        style = _pick(r, ("long", "bob", "bun", "curly", "fringe") if feminine else HAIR_STYLES)
        dark_hair = np.mean(hair) < 200
        brow = tuple(int(v * 0.75) for v in hair) if dark_hair else (110, 90, 70)
        lip_base = np.array(skin, dtype=np.float64) * np.array([0.9, 0.55, 0.55]) + np.array([30, 0, 5])
        lip = _jitter_colour(r, np.clip(lip_base, 0, 255), 8)
        bg1 = tuple(int(v) for v in r.integers(40, 230, 3))
        bg2 = tuple(int(v) for v in np.clip(np.array(bg1) + r.integers(-70, 70, 3), 0, 255))
        beard = None if feminine or r.random() < 0.65 else _pick(r, BEARD_STYLES)
        glasses = _pick(r, ("round", "square")) if r.random() < 0.25 else None
        return cls(
            seed=seed,
            face_scale=float(r.uniform(0.225, 0.262)),
            chin=float(r.uniform(0.92, 1.12)),
            jaw_power=float(r.uniform(2.0, 3.2)),
            jaw_taper=float(r.uniform(0.0, 0.3)),
            head_height=float(r.uniform(1.25, 1.45)),
            skin=skin,
            hair_style=style,
            hair_colour=hair,
            hairline=float(r.uniform(-0.98, -0.82)),
            eye_sep=float(r.uniform(0.36, 0.44)),
            eye_w=float(r.uniform(0.17, 0.22)),
            eye_h=float(r.uniform(0.075, 0.105)),
            eye_tilt=float(r.uniform(-0.03, 0.03)),
            iris_colour=_jitter_colour(r, _pick(r, IRIS_COLOURS), 10),
            iris_r=float(r.uniform(0.085, 0.105)),
            brow_y=float(r.uniform(-0.58, -0.50)),
            brow_len=float(r.uniform(0.32, 0.42)),
            brow_thick=float(r.uniform(0.045, 0.09) * (0.8 if feminine else 1.15)),
            brow_arch=float(r.uniform(0.02, 0.08)),
            brow_colour=brow,  # type: ignore[arg-type]
            nose_len=float(r.uniform(0.14, 0.24)),
            nose_w=float(r.uniform(0.12, 0.18)),
            mouth_y=float(r.uniform(0.46, 0.54)),
            mouth_w=float(r.uniform(0.32, 0.42)),
            lip_upper=float(r.uniform(0.04, 0.07) * (1.2 if feminine else 1.0)),
            lip_lower=float(r.uniform(0.06, 0.09) * (1.2 if feminine else 1.0)),
            lip_colour=lip,
            glasses=glasses,
            glasses_colour=_pick(r, ((20, 20, 20), (120, 70, 30), (170, 170, 180), (140, 30, 40))),
            beard=beard,
            background=(bg1, bg2),  # type: ignore[arg-type]
            gradient=bool(r.random() < 0.6),
            shirt=tuple(int(v) for v in r.integers(20, 235, 3)),  # type: ignore[arg-type]
            blush=float(r.uniform(0.0, 0.25) if feminine else r.uniform(0.0, 0.1)),
            extra={"part": float(r.uniform(-0.4, 0.4)), "curl_seed": float(r.integers(1 << 20))},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters."""
        return asdict(self)


# ----------------------------------------------------------------------------------------------
# Emotions -> AUs
# ----------------------------------------------------------------------------------------------


def emotion_to_aus(weights: Mapping[str, float], mode: str = "max") -> dict[int, float]:
    """Map emotion weights (``{"happiness": 0.5, "surprise": 0.5}``) to AU intensities 0..1.

    Each emotion contributes its EMFACS prototype scaled by its weight; several emotions are merged
    as a weighted AU union: ``mode="max"`` keeps the strongest contribution per AU, ``mode="sum"``
    adds them and clips to 1. ``neutral`` (or an empty mix) gives no AU.
    """
    if mode not in ("max", "sum"):
        raise ValueError(f"mode must be 'max' or 'sum', not {mode!r}")
    out = dict.fromkeys(AU_LIST, 0.0)
    for name, w in weights.items():
        key = name.strip().lower()
        if key == NEUTRAL:
            continue
        if key not in EMOTION_PROTOTYPES:
            from engine.emotions import canonical_emotion

            key = canonical_emotion(key)
        w = float(np.clip(w, 0.0, 1.0))
        for au, a in EMOTION_PROTOTYPES[key].items():
            value = a * w
            out[au] = max(out[au], value) if mode == "max" else min(1.0, out[au] + value)
    return out


def aus_to_vector(aus: Mapping[int, float]) -> np.ndarray:
    """AU dict -> float32 vector in :data:`AU_LIST` order."""
    return np.array([float(aus.get(au, 0.0)) for au in AU_LIST], dtype=np.float32)


def emotion_label(weights: Mapping[str, float]) -> str:
    """Short folder-safe label of a mix, e.g. ``happiness`` or ``happiness+surprise``."""
    names = [k for k, v in sorted(weights.items()) if v > 0 and k != NEUTRAL]
    return "+".join(names) if names else NEUTRAL


# ----------------------------------------------------------------------------------------------
# Audio: speech and mouth opening
# ----------------------------------------------------------------------------------------------


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


def blink_track(rng: np.random.Generator, n_frames: int, fps: float) -> np.ndarray:
    """Eye closure 0..1 per frame: seeded blinks every 1.8-4.5 s, each ~5 frames."""
    out = np.zeros(n_frames, dtype=np.float32)
    t = rng.uniform(0.3, BLINK_INTERVAL_S[1])
    shape = np.array([0.4, 0.9, 1.0, 0.7, 0.3], dtype=np.float32)
    while t * fps < n_frames:
        start = int(t * fps)
        for k, v in enumerate(shape[:BLINK_FRAMES]):
            if start + k < n_frames:
                out[start + k] = max(out[start + k], v)
        t += rng.uniform(*BLINK_INTERVAL_S)
    return out


@dataclass
class Pose:
    """Head pose of one frame: roll in degrees, shift in fractions of the image, scale factor."""

    roll: float = 0.0
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0


def head_motion(rng: np.random.Generator, n_frames: int, fps: float) -> list[Pose]:
    """Small smooth seeded head motion (sums of slow sines)."""
    t = np.arange(n_frames) / fps

    def wave(amp: float) -> np.ndarray:
        f = rng.uniform(0.15, 0.6, 2)
        p = rng.uniform(0, 2 * np.pi, 2)
        return amp * (0.7 * np.sin(2 * np.pi * f[0] * t + p[0]) + 0.3 * np.sin(2 * np.pi * f[1] * t + p[1]))

    roll, dx, dy, sc = wave(HEAD_ROLL_DEG), wave(HEAD_SHIFT), wave(HEAD_SHIFT), wave(HEAD_SCALE)
    return [Pose(float(roll[i]), float(dx[i]), float(dy[i]), float(1 + sc[i])) for i in range(n_frames)]


# ----------------------------------------------------------------------------------------------
# Renderer
# ----------------------------------------------------------------------------------------------

_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 28, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 28, endpoint=False))], axis=1)
_U = np.linspace(-1.0, 1.0, 13)  # parameter across eyes and lips


def _ellipse(cx: float, cy: float, rx: float, ry: float, a0: float = 0.0, a1: float = 2 * np.pi,
             n: int = 28) -> np.ndarray:
    if a0 == 0.0 and a1 == 2 * np.pi and n == 28:
        return _CIRCLE * (rx, ry) + (cx, cy)
    a = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _mix(c1: Sequence[float], c2: Sequence[float], t: float) -> tuple[int, int, int]:
    return (int(c1[0] + (c2[0] - c1[0]) * t), int(c1[1] + (c2[1] - c1[1]) * t), int(c1[2] + (c2[2] - c1[2]) * t))


def _shade(c: Sequence[float], f: float) -> tuple[int, int, int]:
    return (min(255, int(c[0] * f)), min(255, int(c[1] * f)), min(255, int(c[2] * f)))


class FaceRenderer:
    """Draws one identity at a fixed size. ``render(aus, mouth_open, blink, pose)`` -> (image, landmarks)."""

    def __init__(self, identity: Identity, size: int = DEFAULT_SIZE) -> None:
        self.identity = identity
        self.size = int(size)
        self._background = self._make_background()
        r = np.random.default_rng(int(identity.extra.get("curl_seed", 0)))
        self._curls = r.uniform(0, 1, (40, 2))

    def _make_background(self) -> np.ndarray:
        s = self.size
        c1, c2 = (np.array(c, dtype=np.float32) for c in self.identity.background)
        if self.identity.gradient:
            t = np.linspace(0.0, 1.0, s, dtype=np.float32)[:, None, None]
            col = c1 * (1 - t) + c2 * t
            return np.broadcast_to(col, (s, s, 3)).astype(np.uint8).copy()
        return np.broadcast_to(c1.astype(np.uint8), (s, s, 3)).copy()

    # -- geometry -------------------------------------------------------------------------------
    def _transform(self, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
        idn = self.identity
        a = idn.face_scale * self.size * pose.scale
        th = math.radians(pose.roll)
        m = a * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        c = np.array([0.5 + pose.dx, 0.53 + pose.dy]) * self.size
        return m, c

    def geometry(self, aus: Mapping[int, float], mouth_open: float, blink: float) -> dict[str, Any]:
        """All shapes in face units for the given expression (used by :meth:`render`)."""
        idn = self.identity
        au = {k: float(aus.get(k, 0.0)) for k in AU_LIST}
        g: dict[str, Any] = {}

        # mouth
        opening = SPEECH_OPEN_GAIN * float(np.clip(mouth_open, 0, 1)) + AU26_OPEN_GAIN * au[26]
        my = idn.mouth_y
        corner_dy = -0.13 * au[12] + 0.12 * au[15] + 0.025 * au[20] - 0.02 * au[9]
        mw = idn.mouth_w * (1 + 0.22 * au[12] + 0.3 * au[20] - 0.18 * au[23] - 0.05 * au[9])
        up_c = my - 0.3 * opening - 0.05 * au[9]
        lo_c = my + 0.7 * opening
        jaw_drop = 0.7 * opening
        u = _U
        f = 1 - u * u
        fb = np.sqrt(np.clip(f, 0, 1))
        corner_y = my + corner_dy
        in_up = corner_y + (up_c - corner_y) * fb
        in_lo = corner_y + (lo_c - corner_y) * fb + 0.09 * au[16] * f
        t_up = idn.lip_upper * (1 - 0.55 * au[23] - 0.3 * au[20] - 0.35 * au[12])
        t_lo = idn.lip_lower * (1 - 0.5 * au[23] - 0.2 * au[20] - 0.25 * au[12]) + 0.015 * au[16]
        cupid = 1 - 0.3 * np.exp(-((u / 0.16) ** 2)) + 0.12 * np.exp(-(((np.abs(u) - 0.3) / 0.15) ** 2))
        out_up = in_up - t_up * fb ** 0.6 * cupid
        out_lo = in_lo + t_lo * fb ** 0.6
        # the lips are slightly wider outside than inside
        x_out = u * mw
        x_in = u * mw * 0.92
        g["mouth"] = dict(x_out=x_out, x_in=x_in, in_up=in_up, in_lo=in_lo, out_up=out_up, out_lo=out_lo,
                          opening=opening, au16=au[16], au12=au[12])

        # jaw (17 points) + skull
        n = idn.jaw_power
        th = np.linspace(np.pi, 0, 17)
        c, s = np.cos(th), np.sin(th)
        jx = np.sign(c) * np.abs(c) ** (2 / n) * (1 - idn.jaw_taper * s ** 3)
        jy_top = -0.3
        jy = jy_top + (idn.chin - jy_top) * np.abs(s) ** (2 / n)
        below = np.clip((jy - (my - 0.05)) / max(1e-3, idn.chin - my + 0.05), 0, 1)
        jy = jy + jaw_drop * below
        g["jaw"] = np.stack([jx, jy], axis=1)
        g["skull"] = _ellipse(0, -0.3, 1.0, idn.head_height - 0.3 + 0.3, np.pi, 2 * np.pi, 24)

        # brows (from outer to inner on the left, inner to outer on the right)
        brows = []
        for side in (-1, 1):
            t = np.linspace(0, 1, 5)  # 0 inner .. 1 outer
            inner_x, outer_x = side * 0.13, side * (0.13 + idn.brow_len + 0.1)
            x = inner_x + (outer_x - inner_x) * t
            y = idn.brow_y - idn.brow_arch * np.sin(np.pi * (0.15 + 0.7 * t)) + 0.03 * t
            d_in = -0.17 * au[1] + 0.13 * au[4] + 0.06 * au[9]
            d_out = -0.17 * au[2] + 0.05 * au[4] + 0.03 * au[9] + 0.02 * au[1]
            y = y + d_in * (1 - t) ** 1.3 + d_out * (1 - (1 - t) ** 1.3)
            x = x - side * 0.06 * au[4] * (1 - t)
            pts = np.stack([x, y], axis=1)
            brows.append(pts[::-1] if side < 0 else pts)
        g["brows"] = brows

        # eyes
        eyes = []
        hu = idn.eye_h * (1 + 0.9 * au[5] - 0.35 * au[7] - 0.3 * au[6] - 0.15 * au[4] - 0.15 * au[9])
        hl = idn.eye_h * 0.75 * (1 - 0.55 * au[7] - 0.5 * au[6] + 0.15 * au[5])
        hu = max(hu, 0.0)
        b = float(np.clip(blink, 0, 1))
        hu_eff = hu * (1 - b) - hl * 0.6 * b
        for side in (-1, 1):
            cx, cy = side * idn.eye_sep, -0.3
            ex = cx + u * idn.eye_w
            tilt = -idn.eye_tilt * (u * side)
            up = cy + tilt - hu_eff * (1 - u * u) ** 0.8
            lo = cy + tilt + hl * (1 - u * u) ** 0.9
            eyes.append(dict(cx=cx, cy=cy + 0.1 * (hl - hu_eff) * 0.3, x=ex, up=up, lo=lo, open=hu_eff + hl))
        g["eyes"] = eyes
        g["au"] = au
        return g

    def landmarks_face_units(self, g: Mapping[str, Any]) -> np.ndarray:
        """The 68 landmarks (iBUG order) in face units from :meth:`geometry`."""
        idn = self.identity
        pts = np.zeros((N_LANDMARKS, 2))
        pts[JAW] = g["jaw"]
        pts[BROW_L] = g["brows"][0]
        pts[BROW_R] = g["brows"][1]
        nose_top, tip = -0.3, 0.02 + idn.nose_len * 0.5
        pts[NOSE_BRIDGE] = np.stack([np.zeros(4), np.linspace(nose_top, tip, 4)], axis=1)
        au9 = g["au"][9]
        ny = tip + 0.08 - 0.04 * au9
        nw = idn.nose_w * (1 + 0.15 * au9)
        pts[NOSE_BOTTOM] = np.stack([np.linspace(-nw, nw, 5), ny + np.array([0, 0.02, 0.03, 0.02, 0])], axis=1)
        for k, eye in enumerate(g["eyes"]):
            x, up, lo = eye["x"], eye["up"], eye["lo"]
            idx = [0, 4, 8, 12] if k == 0 else [0, 4, 8, 12]
            corners = [(x[0], (up[0] + lo[0]) / 2), (x[12], (up[12] + lo[12]) / 2)]
            if k == 0:  # left eye: 36 outer(left) 37 38 upper 39 inner 40 41 lower
                seq = [corners[0], (x[idx[1]], up[4]), (x[8], up[8]), corners[1], (x[8], lo[8]), (x[4], lo[4])]
                pts[EYE_L] = seq
            else:  # right eye: 42 inner(left) 43 44 upper 45 outer 46 47 lower
                seq = [corners[0], (x[4], up[4]), (x[8], up[8]), corners[1], (x[8], lo[8]), (x[4], lo[4])]
                pts[EYE_R] = seq
        m = g["mouth"]
        xo, xi = m["x_out"], m["x_in"]
        # outer: 48 left corner, 49..53 upper, 54 right corner, 55..59 lower (right to left)
        up_idx = [0, 3, 5, 6, 7, 9, 12]
        lo_idx = [9, 7, 6, 5, 3]
        corner_l = (xo[0], (m["out_up"][0] + m["out_lo"][0]) / 2)
        corner_r = (xo[12], (m["out_up"][12] + m["out_lo"][12]) / 2)
        outer = [corner_l] + [(xo[i], m["out_up"][i]) for i in up_idx[1:-1]] + [corner_r]
        outer += [(xo[i], m["out_lo"][i]) for i in lo_idx]
        pts[LIPS_OUTER] = outer
        inner = [(xi[1], (m["in_up"][1] + m["in_lo"][1]) / 2)] + [(xi[i], m["in_up"][i]) for i in (4, 6, 8)]
        inner += [(xi[11], (m["in_up"][11] + m["in_lo"][11]) / 2)] + [(xi[i], m["in_lo"][i]) for i in (8, 6, 4)]
        pts[LIPS_INNER] = inner
        return pts

    # -- drawing --------------------------------------------------------------------------------
    def render(self, aus: Mapping[int, float] | None = None, mouth_open: float = 0.0, blink: float = 0.0,
               pose: Pose | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw one frame. Returns ``(image (S,S,3) uint8 RGB, landmarks (68,2) float32 pixels)``."""
        aus = aus or {}
        pose = pose or Pose()
        idn = self.identity
        g = self.geometry(aus, mouth_open, blink)
        m, c = self._transform(pose)
        scale = float(np.hypot(*m[0]))

        def px(p: np.ndarray) -> np.ndarray:
            return np.asarray(p, dtype=np.float64) @ m.T + c

        img = self._background.copy()

        def fill(pts: np.ndarray, colour: Sequence[int]) -> None:
            q = np.round(px(pts) * _SUB).astype(np.int32)
            cv2.fillPoly(img, [q], colour, _AA, _SHIFT)

        def line(pts: np.ndarray, colour: Sequence[int], width: float, closed: bool = False) -> None:
            q = np.round(px(pts) * _SUB).astype(np.int32)
            cv2.polylines(img, [q], closed, colour, max(1, int(round(width * scale))), _AA, _SHIFT)

        au = g["au"]
        skin = idn.skin
        hair = idn.hair_colour
        jaw = g["jaw"]
        hh = idn.head_height

        # shoulders and neck
        fill(_ellipse(0, 2.45, 2.3, 1.15), idn.shirt)
        # long hair behind the head
        if idn.hair_style in ("long", "bob"):
            bottom = 1.55 if idn.hair_style == "long" else 0.75
            width = 1.32 if idn.hair_style == "long" else 1.22
            back = np.concatenate([_ellipse(0, -0.25, width, hh + 0.05, np.pi, 2 * np.pi, 16),
                                   [[width, bottom], [-width, bottom]]])
            fill(back, _shade(hair, 0.85))
        fill(np.array([[-0.42, 0.3], [0.42, 0.3], [0.5, 1.6], [-0.5, 1.6]]), _shade(skin, 0.82))
        # ears
        for side in (-1, 1):
            fill(_ellipse(side * 1.01, -0.15, 0.13, 0.23), _shade(skin, 0.9))
            line(_ellipse(0.0, -0.15, 0.06, 0.13, -np.pi / 2, np.pi / 2, 8) * [side, 1] + [side * 1.02, 0],
                 _shade(skin, 0.72), 0.025)
        # face
        face = np.concatenate([g["jaw"], _ellipse(0, -0.3, 1.0, hh, 0, -np.pi, 20)[1:-1]])
        fill(face, skin)
        line(jaw[2:15], _shade(skin, 0.86), 0.03)
        # cheeks: blush rises with AU6
        cheek_y = 0.1 - 0.08 * au[6] - 0.05 * au[12]
        blush = min(0.35, idn.blush + 0.18 * au[6])
        if blush > 0.02:
            for side in (-1, 1):
                fill(_ellipse(side * 0.6, cheek_y, 0.2, 0.12), _mix(skin, (225, 95, 95), blush))
        # beard
        if idn.beard in ("full", "stubble", "goatee"):
            mo = g["mouth"]
            beard_col = hair if idn.beard != "stubble" else _mix(skin, hair, 0.45)
            if idn.beard == "goatee":
                poly = np.array([[-0.3, idn.mouth_y + 0.1], [0.3, idn.mouth_y + 0.1],
                                 [0.22, jaw[8, 1] + 0.03], [-0.22, jaw[8, 1] + 0.03]])
                poly[:2, 1] += mo["opening"] * 0.7
            else:
                poly = np.concatenate([jaw[2:15] + [0, 0.02], [[0.8, 0.2], [0.4, 0.28], [-0.4, 0.28], [-0.8, 0.2]]])
            fill(poly, beard_col)
        if idn.beard in ("full", "moustache", "goatee"):
            mo = g["mouth"]
            top = idn.mouth_y - idn.lip_upper - 0.14
            must = np.array([[-0.42, mo["out_up"][0] + 0.05], [-0.2, top], [0.2, top],
                             [0.42, mo["out_up"][12] + 0.05], [0, mo["out_up"][6] - 0.01]])
            fill(must, hair)
        # nasolabial folds (stronger with AU12/AU6/AU9)
        fold = min(1.0, 0.25 + 0.9 * max(au[12], au[9], 0.6 * au[6], 0.5 * au[20]))
        mo = g["mouth"]
        for side, k in ((-1, 0), (1, 12)):
            corner = np.array([mo["x_out"][k], mo["out_up"][k]])
            start = np.array([side * (idn.nose_w + 0.1), 0.02 + idn.nose_len * 0.5 + 0.02 - 0.04 * au[9]])
            mid = (start + corner) / 2 + [side * 0.12, 0]
            end = corner + [side * 0.07, 0.08]
            line(np.array([start, mid, end]), _mix(skin, _shade(skin, 0.6), fold), 0.03)
        # nose
        lm = self.landmarks_face_units(g)
        tip = lm[30]
        nb = lm[NOSE_BOTTOM]
        line(np.array([[0.1, -0.2], [0.12, tip[1] - 0.05], [nb[3, 0] + 0.02, nb[3, 1] - 0.05]]),
             _shade(skin, 0.8), 0.03)
        line(np.array([nb[0] + [0.0, -0.06], nb[0], nb[1], nb[2], nb[3], nb[4], nb[4] + [0.0, -0.06]]),
             _shade(skin, 0.68), 0.035)
        for side in (-1, 1):
            fill(_ellipse(side * idn.nose_w * 0.5, nb[2, 1] - 0.03, 0.05, 0.025), _shade(skin, 0.45))
        if au[9] > 0.1:  # nose wrinkles
            wr = _mix(skin, _shade(skin, 0.55), au[9])
            for k in range(3):
                y = -0.2 + 0.06 * k
                line(np.array([[-0.11, y + 0.015], [0, y], [0.11, y + 0.015]]), wr, 0.025)
        # forehead wrinkles (AU1/AU2) and glabella lines (AU4)
        raise_ = max(au[1], au[2])
        if raise_ > 0.15:
            wr = _mix(skin, _shade(skin, 0.62), raise_)
            for k in range(2):
                y = idn.brow_y - 0.27 - 0.1 * k
                line(np.array([[-0.45, y + 0.03], [0, y], [0.45, y + 0.03]]), wr, 0.025)
        if au[4] > 0.15:
            wr = _mix(skin, _shade(skin, 0.55), au[4])
            for side in (-1, 1):
                line(np.array([[side * 0.06, idn.brow_y - 0.05], [side * 0.08, idn.brow_y + 0.1]]), wr, 0.028)
        # hair in front (cap, fringe ...)
        self._draw_front_hair(fill, line, hh)
        # eyes
        for k, eye in enumerate(g["eyes"]):
            side = -1 if k == 0 else 1
            x, up, lo = eye["x"], eye["up"], eye["lo"]
            outline = np.concatenate([np.stack([x, up], 1), np.stack([x[::-1], lo[::-1]], 1)])
            # socket shadow and lower-lid bulge (AU6/AU7)
            line(np.stack([x[2:11], lo[2:11] + 0.05 + 0.02 * au[6]], 1),
                 _mix(skin, _shade(skin, 0.7), 0.25 + 0.6 * max(au[6], au[7])), 0.025)
            if eye["open"] > 0.015:
                fill(outline, (245, 243, 238))
                # iris, clipped to the eye opening in a small region of interest
                self._draw_iris(img, px, eye, scale)
            line(np.stack([x, up], 1), (35, 25, 25), 0.05)  # upper lid + lashes
            line(np.stack([x[1:12], lo[1:12]], 1), _shade(skin, 0.55), 0.02)
            line(np.array([[x[0], up[0]], [x[0] - side * 0.0 - 0.06 * (1 if k == 0 else -1), up[0] - 0.03]]),
                 (35, 25, 25), 0.04)
            if au[6] > 0.3:  # crow's feet
                wr = _mix(skin, _shade(skin, 0.6), au[6])
                ox = x[0] if k == 0 else x[12]
                for dy in (-0.05, 0.03, 0.1):
                    line(np.array([[ox + side * 0.06, eye["cy"] + dy * 0.6],
                                   [ox + side * 0.15, eye["cy"] + dy * 1.4]]), wr, 0.022)
        # brows as filled tapered polygons
        for k, pts in enumerate(g["brows"]):
            inner_first = pts if k == 1 else pts[::-1]
            w = idn.brow_thick * np.linspace(1.0, 0.55, 5)
            poly = np.concatenate([inner_first - np.stack([np.zeros(5), w / 2], 1),
                                   (inner_first + np.stack([np.zeros(5), w / 2], 1))[::-1]])
            fill(poly, idn.brow_colour)
        # mouth
        self._draw_mouth(fill, line, g["mouth"], au)
        # glasses
        if idn.glasses:
            col = idn.glasses_colour
            for side in (-1, 1):
                cx = side * idn.eye_sep
                if idn.glasses == "round":
                    shape = _ellipse(cx, -0.29, idn.eye_w + 0.1, 0.2)
                else:
                    w, h = idn.eye_w + 0.11, 0.17
                    shape = np.array([[cx - w, -0.29 - h], [cx + w, -0.29 - h], [cx + w * 0.9, -0.29 + h],
                                      [cx - w * 0.9, -0.29 + h]])
                line(shape, col, 0.04, closed=True)
                line(np.array([[side * (idn.eye_sep + idn.eye_w + 0.1), -0.32], [side * 0.98, -0.3]]), col, 0.035)
            line(np.array([[-idn.eye_sep + idn.eye_w + 0.08, -0.33], [0, -0.37],
                           [idn.eye_sep - idn.eye_w - 0.08, -0.33]]), col, 0.035)
        return img, px(lm).astype(np.float32)

    def _draw_iris(self, img: np.ndarray, px: Any, eye: Mapping[str, Any], scale: float) -> None:
        idn = self.identity
        x, up, lo = eye["x"], eye["up"], eye["lo"]
        outline = px(np.concatenate([np.stack([x, up], 1), np.stack([x[::-1], lo[::-1]], 1)]))
        x0, y0 = np.floor(outline.min(0)).astype(int) - 1
        x1, y1 = np.ceil(outline.max(0)).astype(int) + 2
        h, w = img.shape[:2]
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            return
        roi = img[y0:y1, x0:x1]
        drawn = roi.copy()
        off = np.array([x0, y0], dtype=np.float64)
        centre = px(np.array([[eye["cx"], -0.3]]))[0] - off
        r = idn.iris_r * scale
        q = lambda p: np.round(p * _SUB).astype(np.int32)  # noqa: E731
        cv2.circle(drawn, tuple(q(centre)), int(round(r * _SUB)), idn.iris_colour, -1, _AA, _SHIFT)
        cv2.circle(drawn, tuple(q(centre)), int(round(r * _SUB)), _shade(idn.iris_colour, 0.6), 1, _AA, _SHIFT)
        cv2.circle(drawn, tuple(q(centre)), int(round(r * 0.45 * _SUB)), (15, 12, 12), -1, _AA, _SHIFT)
        cv2.circle(drawn, tuple(q(centre - r * 0.35)), max(1, int(round(r * 0.22 * _SUB))), (255, 255, 255),
                   -1, _AA, _SHIFT)
        mask = np.zeros(roi.shape[:2], dtype=np.uint8)
        cv2.fillPoly(mask, [q(outline - off)], 255, _AA, _SHIFT)
        a = (mask.astype(np.float32) / 255.0)[..., None]
        roi[:] = (drawn * a + roi * (1 - a)).astype(np.uint8)

    def _draw_front_hair(self, fill: Any, line: Any, hh: float) -> None:
        idn = self.identity
        style = idn.hair_style
        col = idn.hair_colour
        hl = idn.hairline
        part = idn.extra.get("part", 0.0)
        if style == "bald":
            for side in (-1, 1):
                fill(np.array([[side * 1.02, -0.55], [side * 0.9, -0.75], [side * 0.96, -0.2], [side * 1.04, -0.2]]),
                     _shade(col, 0.9))
            return
        top = _ellipse(0, -0.3, 1.06, hh + 0.08, np.pi, 2 * np.pi, 22)
        ux = np.linspace(1.0, -1.0, 11)
        if style == "fringe":
            fy = np.full_like(ux, idn.brow_y - 0.2) + 0.04 * np.abs(np.sin(ux * 9))
        else:
            fy = hl + 0.18 * ux ** 4 - 0.12 * np.exp(-((ux - part) / 0.25) ** 2)
        side_y = -0.25 if style != "buzz" else -0.45
        front = np.concatenate([[[-1.06, side_y]], top, [[1.06, side_y], [0.98, hl + 0.25]],
                                np.stack([ux * 0.93, fy], 1), [[-0.98, hl + 0.25]]])
        c = _mix(col, idn.skin, 0.35) if style == "buzz" else col
        if style == "buzz":
            front = np.concatenate([top[:1] * [1, 1], top, [[1.04, -0.45]], np.stack([ux * 0.95, fy + 0.05], 1)])
        fill(front, c)
        if style == "bun":
            fill(_ellipse(0, -0.3 - hh - 0.12, 0.36, 0.28), c)
        if style == "curly":
            for u, v in self._curls:
                ang = np.pi + np.pi * u
                rr = 1.0 + 0.12 * v
                fill(_ellipse(rr * math.cos(ang), -0.3 + (hh + 0.05) * rr * math.sin(ang), 0.17, 0.17), c)
        if style not in ("buzz",):  # a few strands for texture
            strand = _shade(c, 0.75)
            for k in range(-2, 3):
                x = part + 0.22 * k
                if abs(x) < 0.8:
                    line(np.array([[x * 0.6, -0.3 - hh * 0.9], [x, hl + 0.05]]), strand, 0.02)

    def _draw_mouth(self, fill: Any, line: Any, mo: Mapping[str, Any], au: Mapping[int, float]) -> None:
        idn = self.identity
        xo, xi = mo["x_out"], mo["x_in"]
        lip = idn.lip_colour
        outer = np.concatenate([np.stack([xo, mo["out_up"]], 1), np.stack([xo[::-1], mo["out_lo"][::-1]], 1)])
        fill(outer, lip)
        gap = mo["in_lo"] - mo["in_up"]
        if mo["opening"] + 0.09 * mo["au16"] > 0.012:
            inner = np.concatenate([np.stack([xi, mo["in_up"]], 1), np.stack([xi[::-1], mo["in_lo"][::-1]], 1)])
            fill(inner, (70, 22, 28))
            teeth_h = 0.075
            t_bot = np.minimum(mo["in_up"] + teeth_h, mo["in_lo"])
            teeth = np.concatenate([np.stack([xi[1:-1] * 0.95, mo["in_up"][1:-1] + 0.003], 1),
                                    np.stack([xi[-2:0:-1] * 0.95, t_bot[-2:0:-1]], 1)])
            fill(teeth, (238, 236, 228))
            if mo["au16"] > 0.2 or mo["opening"] > 0.14:
                low_top = np.maximum(mo["in_lo"] - 0.045, t_bot)
                lower = np.concatenate([np.stack([xi[2:-2] * 0.9, low_top[2:-2]], 1),
                                        np.stack([xi[-3:1:-1] * 0.9, mo["in_lo"][-3:1:-1]], 1)])
                if np.any(gap > 0.08):
                    fill(lower, (225, 222, 214))
        seam = np.stack([xi, (mo["in_up"] + np.minimum(mo["in_lo"], mo["in_up"] + 0.004)) / 2], 1)
        line(seam, _shade(lip, 0.5), 0.025)
        # highlight on the lower lip
        hl = np.stack([xo[4:9] * 0.8, mo["out_lo"][4:9] - 0.6 * (mo["out_lo"][4:9] - mo["in_lo"][4:9])], 1)
        line(hl, _mix(lip, (255, 255, 255), 0.25), 0.02)


# ----------------------------------------------------------------------------------------------
# Clips
# ----------------------------------------------------------------------------------------------


@dataclass
class SyntheticClip:
    """One rendered clip with its ground truth."""

    frames: np.ndarray  # (F, S, S, 3) uint8
    audio: np.ndarray  # float32 mono at SAMPLE_RATE
    sample_rate: int
    fps: float
    landmarks: np.ndarray  # (F, 68, 2) float32 pixels
    aus: np.ndarray  # (F, len(AU_LIST)) float32
    mouth_open: np.ndarray  # (F,) float32 speech-driven opening
    mouth_box: np.ndarray  # (F, 4) float32
    emotion: dict[str, float]
    speech: dict[str, Any]


def mouth_box_from_landmarks(landmarks: np.ndarray, margin: float = 0.25) -> np.ndarray:
    """Box (x0, y0, x1, y1) around the outer lip landmarks, grown by ``margin`` of its width."""
    lips = landmarks[..., LIPS_OUTER, :]
    lo, hi = lips.min(axis=-2), lips.max(axis=-2)
    pad = (hi[..., :1] - lo[..., :1]) * margin
    return np.concatenate([lo - pad, hi + pad], axis=-1).astype(np.float32)


def render_clip(identity: Identity, emotion: Mapping[str, float], seconds: float = 2.0, fps: float = DEFAULT_FPS,
                size: int = DEFAULT_SIZE, seed: int = 0, audio: np.ndarray | None = None,
                use_espeak: bool | None = None, motion: bool = True) -> SyntheticClip:
    """Render one talking clip of ``identity`` with a (possibly compound) emotion mix.

    ``audio`` (float32, 16 kHz) may be given; otherwise speech is generated from ``seed``.
    The AU intensities follow the mix (with a slow +-5 % wobble), the mouth follows
    the audio, blinks and head motion follow ``seed``.
    """
    rng = np.random.default_rng([int(seed), identity.seed % (2**31)])
    n_frames = int(round(seconds * fps))
    info: dict[str, Any] = {"method": "given"}
    if audio is None:
        audio, info = make_speech(rng, seconds, SAMPLE_RATE, use_espeak)
    audio = np.asarray(audio, dtype=np.float32)
    opening = mouth_open_from_audio(audio, SAMPLE_RATE, fps, n_frames)
    blinks = blink_track(rng, n_frames, fps)
    poses = head_motion(rng, n_frames, fps) if motion else [Pose()] * n_frames
    target = aus_to_vector(emotion_to_aus(emotion))
    wobble = 1.0 + 0.05 * np.sin(np.arange(n_frames)[:, None] / fps * 2 * np.pi * rng.uniform(0.2, 0.5))
    aus = np.clip(target[None, :] * wobble, 0, 1).astype(np.float32)
    renderer = FaceRenderer(identity, size)
    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    lms = np.empty((n_frames, N_LANDMARKS, 2), dtype=np.float32)
    for i in range(n_frames):
        au_i = dict(zip(AU_LIST, aus[i].tolist(), strict=True))
        frames[i], lms[i] = renderer.render(au_i, float(opening[i]), float(blinks[i]), poses[i])
    return SyntheticClip(frames=frames, audio=audio, sample_rate=SAMPLE_RATE, fps=float(fps), landmarks=lms,
                         aus=aus, mouth_open=opening, mouth_box=mouth_box_from_landmarks(lms),
                         emotion={k: float(v) for k, v in emotion.items()}, speech=info)


#: AU-varied frames (:func:`au_varied_frames`): how many emotions a frame mixes, and the spread of
#: the per-AU factor that decorrelates the AUs of one emotion.
AU_VARIED_MAX_EMOTIONS = 3
AU_VARIED_FACTOR = (0.4, 1.3)
AU_VARIED_NEUTRAL_SHARE = 0.1
AU_VARIED_EXTRA_AU_SHARE = 0.3
AU_VARIED_DROPOUT = 0.2


def random_au_vector(rng: np.random.Generator) -> np.ndarray:
    """AU intensities (in :data:`AU_LIST` order) of a random, mostly emotional expression.

    A mix of 1..``AU_VARIED_MAX_EMOTIONS`` emotions at random weights (merged by max or sum, as
    :func:`emotion_to_aus`), each AU then scaled by its own random factor (or dropped) and, now and then, one
    stray AU added: the AUs vary independently, so a recogniser trained on these frames reads each
    AU's intensity instead of recognising which prototype it belongs to. Some frames are neutral.
    """
    if rng.random() < AU_VARIED_NEUTRAL_SHARE:
        return np.zeros(len(AU_LIST), np.float32)
    names = list(EMOTION_PROTOTYPES)
    chosen = rng.choice(len(names), size=int(rng.integers(1, AU_VARIED_MAX_EMOTIONS + 1)), replace=False)
    mix = {names[i]: float(rng.uniform(0.15, 1.0)) for i in chosen}
    aus = aus_to_vector(emotion_to_aus(mix, mode="max" if rng.random() < 0.5 else "sum"))
    aus = aus * rng.uniform(*AU_VARIED_FACTOR, size=len(AU_LIST)) * (rng.random(len(AU_LIST)) >= AU_VARIED_DROPOUT)
    if rng.random() < AU_VARIED_EXTRA_AU_SHARE:
        aus[rng.integers(len(AU_LIST))] = rng.uniform(0.2, 1.0)
    return np.clip(aus, 0.0, 1.0).astype(np.float32)


def _random_stills(identities: Sequence[Identity], count: int, size: int, rng: np.random.Generator,
                   expression: Callable[[np.random.Generator], np.ndarray]) -> dict[str, np.ndarray]:
    """``count`` single frames of random ``identities``, AUs drawn by ``expression(rng)``.

    Random speech opening, blinks and head pose as well. Returns ``frames`` (N, S, S, 3) uint8,
    ``aus`` (N, 13) and ``landmarks`` (N, 68, 2) px.
    """
    if not identities:
        raise ValueError("random still frames need at least one identity")
    renderers = [FaceRenderer(identity, size) for identity in identities]
    frames = np.empty((count, size, size, 3), np.uint8)
    aus = np.empty((count, len(AU_LIST)), np.float32)
    landmarks = np.empty((count, N_LANDMARKS, 2), np.float32)
    for i in range(count):
        aus[i] = expression(rng)
        opening = float(rng.uniform(0, 1)) if rng.random() < 0.7 else 0.0
        blink = float(rng.uniform(0, 1)) if rng.random() < 0.1 else 0.0
        pose = Pose(float(rng.uniform(-1, 1) * HEAD_ROLL_DEG), float(rng.uniform(-1, 1) * HEAD_SHIFT),
                    float(rng.uniform(-1, 1) * HEAD_SHIFT), float(1 + rng.uniform(-1, 1) * HEAD_SCALE))
        renderer = renderers[int(rng.integers(len(renderers)))]
        frames[i], landmarks[i] = renderer.render(dict(zip(AU_LIST, aus[i].tolist(), strict=True)), opening, blink, pose)
    return {"frames": frames, "aus": aus, "landmarks": landmarks}


def au_varied_frames(identities: Sequence[Identity], count: int, size: int = DEFAULT_SIZE,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """``count`` single frames of ``identities`` with :func:`random_au_vector` expressions.

    Random speech opening, blinks and head pose too. Returns ``frames`` (N, S, S, 3) uint8,
    ``aus`` (N, 13) and ``landmarks`` (N, 68, 2) px: ground truth for an AU recogniser.
    """
    return _random_stills(identities, count, size, np.random.default_rng(seed), random_au_vector)


#: Mixed-emotion stills (:func:`mixed_emotion_frames`): shares of neutral and single-emotion frames
#: (the rest mix two emotions), the range of a mix's total intensity and of the first emotion's share.
MIXED_NEUTRAL_SHARE = 0.1
MIXED_SINGLE_SHARE = 0.25
MIXED_TOTAL = (0.6, 1.0)
MIXED_SPLIT = (0.2, 0.8)
MIXED_SINGLE_WEIGHT = (0.15, 1.0)
#: Per-frame, per-AU jitter of a still, as the +-5 % wobble of :func:`render_clip`.
MIXED_WOBBLE = 0.05


def random_emotion_mix(rng: np.random.Generator) -> dict[str, float]:
    """A random expression as emotion weights: neutral, one emotion, or two emotions.

    Two emotions ``{a: s p, b: s (1 - p)}`` with total ``s`` in :data:`MIXED_TOTAL` and share ``p`` in
    :data:`MIXED_SPLIT` (the compound presets are ``s = 1``, ``p`` = 0.4..0.6); one emotion at a weight in
    :data:`MIXED_SINGLE_WEIGHT`.
    """
    draw = rng.random()
    names = list(EMOTION_PROTOTYPES)
    if draw < MIXED_NEUTRAL_SHARE:
        return {}
    if draw < MIXED_NEUTRAL_SHARE + MIXED_SINGLE_SHARE:
        return {names[int(rng.integers(len(names)))]: float(rng.uniform(*MIXED_SINGLE_WEIGHT))}
    first, second = rng.choice(len(names), size=2, replace=False)
    total, share = float(rng.uniform(*MIXED_TOTAL)), float(rng.uniform(*MIXED_SPLIT))
    return {names[first]: total * share, names[second]: total * (1.0 - share)}


def mixed_emotion_frames(identities: Sequence[Identity], count: int, size: int = DEFAULT_SIZE,
                         seed: int = 0) -> dict[str, np.ndarray]:
    """``count`` stills of ``identities`` with :func:`random_emotion_mix` expressions, exactly labelled.

    The AUs are the mix's EMFACS union (:func:`emotion_to_aus`, as :func:`render_clip` renders a
    compound clip) with a small per-AU wobble; random mouth, blinks and pose. Returns what
    :func:`au_varied_frames` does plus ``emotion`` (N, 6) weights in ``BASIC_EMOTIONS`` order:
    ground truth that teaches an emotion recogniser what a mix of two emotions looks like.
    """
    mixes: list[dict[str, float]] = []

    def expression(rng: np.random.Generator) -> np.ndarray:
        mix = random_emotion_mix(rng)
        mixes.append(mix)
        aus = aus_to_vector(emotion_to_aus(mix)) * rng.uniform(1 - MIXED_WOBBLE, 1 + MIXED_WOBBLE, len(AU_LIST))
        return np.clip(aus, 0.0, 1.0).astype(np.float32)

    truth = _random_stills(identities, count, size, np.random.default_rng([seed, 15_485_863]), expression)
    truth["emotion"] = np.array([[mix.get(e, 0.0) for e in BASIC_EMOTIONS] for mix in mixes],
                                np.float32).reshape(-1, len(BASIC_EMOTIONS))
    return truth


def benchmark_fps(size: int = DEFAULT_SIZE, n_frames: int = 300, seed: int = 0) -> float:
    """Frames per second of :meth:`FaceRenderer.render` on this machine (one thread, varied expressions)."""
    rng = np.random.default_rng(seed)
    renderers = [FaceRenderer(Identity.random(rng), size) for _ in range(4)]
    emotions = list(EMOTION_PROTOTYPES)
    cv2.setNumThreads(1)
    renderers[0].render()  # warm-up
    start = time.perf_counter()
    for i in range(n_frames):
        aus = emotion_to_aus({emotions[i % len(emotions)]: 1.0})
        renderers[i % 4].render(aus, (i % 7) / 6.0, 0.0, Pose(roll=(i % 5) - 2.0))
    return n_frames / (time.perf_counter() - start)


def contact_sheet(identities: Sequence[Identity] | int = 8, emotions: Sequence[str] = RENDER_EMOTIONS,
                  size: int = DEFAULT_SIZE, seed: int = 0, mouth_open: float = 0.15) -> np.ndarray:
    """Grid image: one row per identity, one column per emotion (default neutral + six basic)."""
    if isinstance(identities, int):
        rng = np.random.default_rng(seed)
        identities = [Identity.random(rng) for _ in range(identities)]
    rows = []
    for idn in identities:
        r = FaceRenderer(idn, size)
        row = [r.render(emotion_to_aus({e: 1.0}), mouth_open)[0] for e in emotions]
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


# ----------------------------------------------------------------------------------------------
# Dataset generation
# ----------------------------------------------------------------------------------------------


def identity_id(seed: int, index: int) -> str:
    """Folder name of identity ``index`` of a dataset generated with ``seed``."""
    return f"s{seed}_id{index:04d}"


#: Weight range of the first emotion of a :func:`random_training_mix` (the second gets the rest).
TRAIN_MIX_WEIGHT = (0.3, 0.7)


def random_training_mix(rng: np.random.Generator) -> dict[str, float]:
    """A random two-emotion mix ``{a: w, b: 1 - w}``, ``w`` uniform in :data:`TRAIN_MIX_WEIGHT`."""
    first, second = rng.choice(len(EMOTION_PROTOTYPES), size=2, replace=False)
    names = list(EMOTION_PROTOTYPES)
    w = float(np.round(rng.uniform(*TRAIN_MIX_WEIGHT), 2))
    return {names[first]: w, names[second]: round(1.0 - w, 2)}


def split_identities(n: int, seed: int, test_fraction: float = TEST_FRACTION) -> list[str]:
    """Split labels (``train``/``test``) of ``n`` identities; at least one test identity when n >= 2."""
    n_test = 0 if n < 2 else max(1, int(round(n * test_fraction)))
    order = np.random.default_rng([seed, 7919]).permutation(n)
    labels = [SPLIT_TRAIN] * n
    for i in order[:n_test]:
        labels[int(i)] = SPLIT_TEST
    return labels


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def write_clip(clip: SyntheticClip, folder: Path, meta: Mapping[str, Any]) -> None:
    """Write one clip in the synthetic layout (frames.npz, audio.wav, meta.json, *.npy)."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "frames.npz", frames=clip.frames)
    sf.write(str(folder / "audio.wav"), clip.audio, clip.sample_rate, subtype="PCM_16")
    np.save(folder / "landmarks.npy", clip.landmarks)
    np.save(folder / "aus.npy", clip.aus)
    np.save(folder / "mouth_open.npy", clip.mouth_open)
    np.save(folder / "mouth_box.npy", clip.mouth_box)
    _write_json(folder / "meta.json", dict(meta))


@dataclass(frozen=True)
class _ClipTask:
    """One clip of :func:`generate_dataset`: everything a worker process needs to render and write it."""

    out: Path
    identity: str
    person: Identity
    name: str
    mix: dict[str, float]
    split: str
    clip_seconds: float
    fps: int
    size: int
    seed: int
    use_espeak: bool


def _render_and_write(task: _ClipTask) -> dict[str, Any]:
    """Render one clip, write it under ``task.out`` and return its index entry."""
    clip = render_clip(task.person, task.mix, task.clip_seconds, task.fps, task.size, seed=task.seed,
                       use_espeak=task.use_espeak)
    rel = f"{task.identity}/{task.name}"
    meta = {"identity": task.identity, "emotion": clip.emotion, "fps": task.fps, "split": task.split,
            "n_frames": int(clip.frames.shape[0]), "size": task.size, "sample_rate": clip.sample_rate,
            "compound": task.split == SPLIT_COMPOUND, "speech": clip.speech, "au_list": list(AU_LIST),
            "landmark_format": "ibug68"}
    write_clip(clip, task.out / rel, meta)
    return {"path": rel, **{k: meta[k] for k in ("identity", "emotion", "split", "n_frames", "fps")}}


def generate_dataset(out_dir: str | os.PathLike[str], identities: int = 10,
                     emotions: Sequence[str] = RENDER_EMOTIONS, intensities: Sequence[float] = (0.5, 1.0),
                     clip_seconds: float = 2.0, fps: int = DEFAULT_FPS, size: int = DEFAULT_SIZE, seed: int = 0,
                     compound: bool = False, clips_per_emotion: int = 1, use_espeak: bool | None = None,
                     progress: bool = True, train_mixes: int = 0, workers: int = 1) -> dict[str, Any]:
    """Render a synthetic dataset into ``out_dir`` (see the module docstring) and return the index.

    Per identity: one neutral clip (x ``clips_per_emotion``) and one clip per (emotion, intensity);
    with ``compound=True`` also one clip per :data:`engine.emotions.COMPOUND_PRESETS` entry, in the
    ``compound_eval`` split only. ``train_mixes``: per *train* identity, that many clips of a random
    two-emotion mix (:func:`random_training_mix`), so a model sees the gates of compound mixes in
    training; they are rendered after every other clip, so the rest of the set is unchanged.
    ``workers`` > 1 renders clips in that many processes; every clip has its own seed, so the data set
    is the same whatever the number of workers.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    id_rng = np.random.default_rng(seed)
    people = [Identity.random(id_rng) for _ in range(identities)]
    splits = split_identities(identities, seed)
    jobs: list[tuple[int, str, dict[str, float], str]] = []
    for i in range(identities):
        for e in emotions:
            levels = (1.0,) if e == NEUTRAL else tuple(intensities)
            for level in levels:
                for k in range(clips_per_emotion):
                    mix = {} if e == NEUTRAL else {e: float(level)}
                    name = f"{e}_{level:.2f}_{k}" if e != NEUTRAL else f"{NEUTRAL}_0.00_{k}"
                    jobs.append((i, name, mix, splits[i]))
        if compound:
            for preset, mix in COMPOUND_PRESETS.items():
                jobs.append((i, "compound_" + preset.replace(" ", "-") + "_1.00_0", dict(mix), SPLIT_COMPOUND))
    mix_rng = np.random.default_rng([seed, 104_729])
    for i in range(identities):
        for k in range(train_mixes if splits[i] == SPLIT_TRAIN else 0):
            mix = random_training_mix(mix_rng)
            jobs.append((i, f"mix_{emotion_label(mix)}_{max(mix.values()):.2f}_{k}", mix, SPLIT_TRAIN))
    voice = espeak_available() if use_espeak is None else use_espeak
    for i, person in enumerate(people):
        folder = out / identity_id(seed, i)
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / "identity.json", person.to_dict())
    tasks = [_ClipTask(out, identity_id(seed, i), people[i], name, mix, split, clip_seconds, fps, size,
                       seed * 100_003 + n, voice) for n, (i, name, mix, split) in enumerate(jobs)]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=workers)
        results: Any = pool.map(_render_and_write, tasks, chunksize=4)
    else:
        pool, results = None, map(_render_and_write, tasks)
    try:
        from tqdm import tqdm

        results = tqdm(results, total=len(tasks), desc="synth", unit="clip", disable=not progress)
    except ImportError:  # pragma: no cover
        pass
    try:
        entries = list(results)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    index = {"version": INDEX_VERSION, "generator": "moee-synthetic", "seed": seed, "size": size, "fps": fps,
             "au_list": list(AU_LIST), "identities": {identity_id(seed, i): splits[i] for i in range(identities)},
             "clips": entries}
    _write_json(out / "index.json", index)
    return index


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``moee synth OUT``."""
    parser.add_argument("out", help="output folder of the synthetic dataset")
    parser.add_argument("--identities", type=int, default=10, help="number of identities (default 10)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="frame size in pixels (default 128)")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length in seconds (default 2)")
    parser.add_argument("--fps", type=int, default=DEFAULT_FPS, help="frames per second (default 25)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--compound", action="store_true", help="also render compound-emotion eval clips")
    parser.add_argument("--train-mixes", type=int, default=0,
                        help="random two-emotion mix clips per train identity (training data for compound gates)")
    parser.add_argument("--intensities", default="0.5,1.0", help="comma-separated intensities (default 0.5,1.0)")
    parser.add_argument("--procedural-voice", action="store_true", help="do not use espeak-ng for speech")
    parser.add_argument("--workers", type=int, default=1,
                        help="render clips in this many processes (same data set whatever the number)")


def run_synth(args: argparse.Namespace) -> int:
    """Run ``moee synth`` with parsed arguments; returns the exit code."""
    from engine.errors import MoEEError

    try:
        levels = tuple(float(v) for v in str(args.intensities).split(",") if v.strip())
    except ValueError as exc:
        raise MoEEError(f"--intensities must be numbers like 0.5,1.0, not {args.intensities!r}") from exc
    if args.identities < 1 or args.size < 32 or args.seconds <= 0 or getattr(args, "workers", 1) < 1:
        raise MoEEError("need --identities >= 1, --size >= 32, --seconds > 0 and --workers >= 1")
    index = generate_dataset(args.out, identities=args.identities, intensities=levels, clip_seconds=args.seconds,
                             fps=args.fps, size=args.size, seed=args.seed, compound=args.compound,
                             train_mixes=getattr(args, "train_mixes", 0), workers=getattr(args, "workers", 1),
                             use_espeak=False if getattr(args, "procedural_voice", False) else None)
    print(f"wrote {len(index['clips'])} clips of {args.identities} identities to {args.out}")
    return 0


def _main() -> int:  # pragma: no cover - convenience entry
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_synth_arguments(parser)
    return run_synth(parser.parse_args())


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
