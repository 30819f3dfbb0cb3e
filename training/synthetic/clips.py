"""Clips and stills: a person talking with an emotion over time, or single frames with varied expressions.

:func:`synthesize_clip` renders one talking clip with its ground truth (:class:`SyntheticClip`): the
AUs follow the emotion mix (with a slow +-5 % wobble), the mouth follows the audio, blinks
(:func:`blink_track`) and small head motion (:func:`head_motion`) follow the seed.
:func:`au_varied_frames` and :func:`mixed_emotion_frames` render single frames of random expressions,
the ground truth of a recogniser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.emotions import BASIC_EMOTIONS
from training.synthetic.identities import AU_LIST, EMOTION_PROTOTYPES, Identity, aus_to_vector, emotion_to_aus
from training.synthetic.renderer import DEFAULT_SIZE, LIPS_OUTER, N_LANDMARKS, FaceRenderer, Pose
from training.synthetic.speech import SAMPLE_RATE, make_speech, mouth_open_from_audio

DEFAULT_FPS = 25

# blinks and head motion
BLINK_INTERVAL_S = (1.8, 4.5)
BLINK_FRAMES = 5
HEAD_ROLL_DEG = 3.0
HEAD_SHIFT = 0.012  # fraction of the image size
HEAD_SCALE = 0.015


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


def head_motion(rng: np.random.Generator, n_frames: int, fps: float) -> list[Pose]:
    """Small smooth seeded head motion (sums of slow sines)."""
    t = np.arange(n_frames) / fps

    def wave(amp: float) -> np.ndarray:
        f = rng.uniform(0.15, 0.6, 2)
        p = rng.uniform(0, 2 * np.pi, 2)
        return amp * (0.7 * np.sin(2 * np.pi * f[0] * t + p[0]) + 0.3 * np.sin(2 * np.pi * f[1] * t + p[1]))

    roll, dx, dy, sc = wave(HEAD_ROLL_DEG), wave(HEAD_SHIFT), wave(HEAD_SHIFT), wave(HEAD_SCALE)
    return [Pose(float(roll[i]), float(dx[i]), float(dy[i]), float(1 + sc[i])) for i in range(n_frames)]


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


def synthesize_clip(identity: Identity, emotion: Mapping[str, float], seconds: float = 2.0,
                    fps: float = DEFAULT_FPS, size: int = DEFAULT_SIZE, seed: int = 0, audio: np.ndarray | None = None,
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
#: Per-frame, per-AU jitter of a still, as the +-5 % wobble of :func:`synthesize_clip`.
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

    The AUs are the mix's EMFACS union (:func:`emotion_to_aus`, as :func:`synthesize_clip` renders a
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
