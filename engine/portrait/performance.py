"""The life of a performance: blinks, head motion and gaze as per-frame tracks (pure numpy, seeded).

A talking portrait whose eyes never blink and whose head never moves looks dead, whatever its lips do.
This module plans, once per clip, *when* things happen; the emotion of each frame then shapes them:

* **blinks** (:func:`plan_blinks`, :func:`blink_closure`): a jittered schedule at a natural rate for speech (about 15-30 per
  minute, gaps drawn from a gamma distribution, 100-200 ms each, fast close and slower open, the peak on a
  frame so every blink reaches full closure). Fear and surprise blink less (a blink is dropped with
  probability :attr:`LifeConfig.alert_blink_drop` x the emotion).
* **head motion** (:func:`head_track`): idle sway (a few slow sinusoids), nods on the stressed syllables
  (rises of the speech envelope) and a settle at phrase ends, plus an emotion posture
  (:data:`EMOTION_POSTURE`: sadness lowers the head, surprise lifts it, anger pushes forward).
* **gaze** (:func:`gaze_track`): fixations of jittered length joined by fast saccades, mostly at the
  viewer with occasional glances away; fear glances sideways, sadness looks down.

Every function here is deterministic for a given seed; nothing depends on the frame being rendered
before it, so a preview of frame 40 equals frame 40 of the export.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Natural blink rate during speech (blinks per minute) and the accepted range of ``--blinks``.
DEFAULT_BLINKS_PER_MINUTE = 20.0
MAX_BLINKS_PER_MINUTE = 60.0
#: Largest ``--head-motion`` scale (1 = the natural amount).
MAX_HEAD_MOTION = 3.0
#: Largest ``--gaze`` scale (1 = the natural amount).
MAX_GAZE = 3.0
#: The accepted range of each user setting of :class:`LifeConfig` (CLI flags, projects, batch rows, the studio).
LIFE_RANGES: dict[str, tuple[float, float]] = {
    "blinks_per_minute": (0.0, MAX_BLINKS_PER_MINUTE), "head_motion": (0.0, MAX_HEAD_MOTION), "gaze": (0.0, MAX_GAZE)}

#: Loudness (0..1 envelope) above which a frame counts as speech.
SPEECH_LEVEL = 0.08
#: The pose channels of :func:`head_track`, in column order. ``roll`` in degrees (positive: clockwise on
#: screen); ``yaw`` / ``pitch`` in face units of the nose tip's shift (positive: to the image's right /
#: down, a nod); ``scale``: 1 + the head's growth (toward the camera); ``tx`` / ``ty`` in face units.
POSE_CHANNELS = ("roll", "yaw", "pitch", "scale", "tx", "ty")

#: Posture of each emotion at slider 1, added to the pose (same channels as POSE_CHANNELS, scale as +growth).
EMOTION_POSTURE: dict[str, tuple[float, ...]] = {
    "happiness": (1.5, 0.0, -0.015, 0.0, 0.0, -0.012),
    "sadness": (-2.0, 0.0, 0.05, -0.01, 0.0, 0.05),
    "anger": (0.0, 0.0, 0.025, 0.035, 0.0, 0.02),
    "disgust": (-1.5, -0.015, -0.01, -0.015, 0.0, -0.01),
    "fear": (0.0, 0.01, -0.015, -0.03, 0.0, -0.02),
    "surprise": (0.0, 0.0, -0.04, -0.012, 0.0, -0.035),
}

#: Gaze of each emotion at slider 1 (iris radii: x to the image's right, y down).
EMOTION_GAZE: dict[str, tuple[float, float]] = {
    "sadness": (0.0, 0.35),
    "fear": (0.2, 0.05),  # the sign of x alternates from glance to glance
    "disgust": (0.2, 0.1),
}


@dataclass(frozen=True)
class LifeConfig:
    """How alive a performance is: the user's settings and the constants of the natural motions."""

    #: Blinks per minute (0: no blinks).
    blinks_per_minute: float = DEFAULT_BLINKS_PER_MINUTE
    #: Scale of all head motion (0: a perfectly still head).
    head_motion: float = 1.0
    #: Scale of the eyes' movements (0: a fixed stare at the viewer).
    gaze: float = 1.0
    #: Seed of every random choice of the tracks.
    seed: int = 0

    # -- blinks
    blink_seconds: tuple[float, float] = (0.10, 0.20)
    blink_close_share: float = 0.4  # of a blink's duration spent closing (the rest opens, slower)
    blink_hold_seconds: float = 0.04  # closed after the peak (within the blink's duration: one frame at 25 fps)
    blink_gap_shape: float = 3.0  # gamma shape of the gaps (higher: more regular)
    min_blink_gap: float = 0.6  # seconds
    first_blink_by: float = 2.5  # seconds: any clip of 3 s or more has a blink
    alert_blink_drop: float = 0.7  # share of blinks fear / surprise at 1 drop

    # -- head motion (amplitudes at head_motion = 1, pose units of POSE_CHANNELS)
    sway_amplitude: tuple[float, ...] = (2.0, 0.04, 0.025, 0.008, 0.04, 0.025)
    sway_hz: tuple[float, float] = (0.07, 0.3)
    speech_sway_gain: float = 1.6  # sway grows while the person speaks
    nod_pitch: float = 0.06  # face units of nose travel of a full-strength nod
    nod_yaw: float = 0.02
    nod_seconds: float = 0.45
    min_nod_gap: float = 0.5  # seconds between nods
    stress_threshold: float = 0.12  # rise of the loudness envelope (0..1) that makes a stress
    phrase_pause: float = 0.35  # seconds of quiet after speech that end a phrase
    settle_roll: float = 1.5  # degrees of the head's settle at a phrase end

    # -- gaze (iris radii)
    fixation_seconds: float = 1.1
    fixation_spread: float = 0.12
    glance_probability: float = 0.18
    glance_size: float = 0.4
    saccade_seconds: float = 0.05

    def problems(self) -> list[str]:
        """What is out of range (empty: the settings are usable)."""
        found = []
        for name, (low, high) in LIFE_RANGES.items():
            value = getattr(self, name)
            if not (np.isfinite(value) and low <= value <= high):
                found.append(f"{name.replace('_', ' ')} must be {low:g}..{high:g}, not {value}")
        return found


#: A performance with no life: no blink, a still head, a fixed stare (what a still image needs).
STILL_LIFE = LifeConfig(blinks_per_minute=0.0, head_motion=0.0, gaze=0.0)


@dataclass(frozen=True)
class Blink:
    """One planned blink: its peak (frame index), its duration (frames), and its draw for dropping it."""

    peak: int
    frames: float
    draw: float  # uniform 0..1: dropped when below the frame's drop probability
    seconds: float = 0.15  # its duration


@dataclass(frozen=True)
class LifeTracks:
    """What :func:`plan_life` decided for a clip (emotion-free; :func:`blink_closure` etc. add the emotion)."""

    blinks: tuple[Blink, ...]
    pose: np.ndarray  # (num_frames, 6) POSE_CHANNELS without posture
    gaze: np.ndarray  # (num_frames, 2) iris radii without emotion
    glance_side: np.ndarray  # (num_frames,) +1 / -1: the side of the current fixation's glance (0: at the viewer)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, stream])


def plan_blinks(num_frames: int, fps: float, cfg: LifeConfig) -> tuple[Blink, ...]:
    """Blink peaks at a jittered natural rate: gaps ~ Gamma(shape, mean / shape), the first within
    :attr:`LifeConfig.first_blink_by` seconds, each peak on a frame (so it reaches full closure)."""
    if cfg.blinks_per_minute <= 0 or num_frames < 2:
        return ()
    rng = _rng(cfg.seed, 1)
    mean_gap = 60.0 / cfg.blinks_per_minute
    duration = num_frames / fps
    t = rng.uniform(0.5, min(cfg.first_blink_by, max(0.6, mean_gap)))
    blinks = []
    while t < duration - 0.05:
        seconds = rng.uniform(*cfg.blink_seconds)
        peak = int(round(t * fps))
        if peak < num_frames:
            blinks.append(Blink(peak, seconds * fps, float(rng.uniform()), seconds))
        t += max(cfg.min_blink_gap, rng.gamma(cfg.blink_gap_shape, mean_gap / cfg.blink_gap_shape))
    return tuple(blinks)


def blink_profile(offset: np.ndarray | float, frames: float, close_share: float, hold: float = 0.0) -> np.ndarray:
    """Lid closure (0 open .. 1 closed) at ``offset`` frames from a blink's peak: a raised-cosine close over
    ``close_share`` of the blink, closed for ``hold`` frames after the peak, and a slower open over the rest."""
    offset = np.asarray(offset, np.float64)
    close, open_ = max(frames * close_share, 1e-6), max(frames * (1 - close_share) - hold, 1e-6)
    phase = np.where(offset < 0, -offset / close, np.maximum(offset - hold, 0.0) / open_)
    return np.where(phase < 1, 0.5 + 0.5 * np.cos(np.pi * np.clip(phase, 0, 1)), 0.0)


def blink_closure(blinks: tuple[Blink, ...], frame: int, alert_at: Callable[[int], float], cfg: LifeConfig) -> float:
    """Closure 0..1 of the lids by blinks at ``frame``. A blink is dropped when its draw falls below
    ``alert_blink_drop * alert_at(peak)`` (how much fear / surprise the face shows at the blink's peak)."""
    closure = 0.0
    for blink in blinks:
        if abs(frame - blink.peak) > blink.frames + 1:
            continue
        if blink.draw < cfg.alert_blink_drop * alert_at(blink.peak):
            continue
        hold = cfg.blink_hold_seconds * blink.frames / max(blink.seconds, 1e-6)
        closure = max(closure, float(blink_profile(frame - blink.peak, blink.frames, cfg.blink_close_share, hold)))
    return closure


def moving_average(values: np.ndarray, width: int, kernel: np.ndarray | None = None) -> np.ndarray:
    """``values`` smoothed over ``width`` samples (edge-padded: same length, no fade at the ends)."""
    values = np.asarray(values, np.float64)
    kernel = np.ones(max(1, width)) if kernel is None else np.asarray(kernel, np.float64)
    kernel = kernel / kernel.sum()
    pad = len(kernel)
    padded = np.pad(values, pad, mode="edge")
    return np.convolve(padded, kernel, mode="same")[pad: pad + len(values)]


def _sway(num_frames: int, fps: float, rng: np.random.Generator, cfg: LifeConfig) -> np.ndarray:
    """(num_frames, 6) idle sway: per channel a sum of three slow sinusoids of random frequency and phase."""
    t = np.arange(num_frames) / fps
    sway = np.zeros((num_frames, len(POSE_CHANNELS)))
    for c, amplitude in enumerate(cfg.sway_amplitude):
        freqs = rng.uniform(*cfg.sway_hz, size=3)
        phases = rng.uniform(0, 2 * np.pi, size=3)
        weights = rng.uniform(0.5, 1.0, size=3)
        wave = (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0)
        sway[:, c] = amplitude * (wave - wave[0]) / weights.sum()  # at rest on the first frame
    return sway


def speech_events(envelope: np.ndarray, fps: float, cfg: LifeConfig) -> tuple[list[tuple[int, float]], list[int]]:
    """(stresses, phrase ends) of a loudness envelope (0..1 per frame): a stress is a rise of at least
    :attr:`LifeConfig.stress_threshold` over 3 frames, at least :attr:`LifeConfig.min_nod_gap` apart (frame,
    strength); a phrase ends where speech is followed by :attr:`LifeConfig.phrase_pause` seconds of quiet."""
    envelope = np.asarray(envelope, np.float64)
    n = len(envelope)
    stresses: list[tuple[int, float]] = []
    if n >= 4:
        rise = np.zeros(n)
        rise[3:] = envelope[3:] - envelope[:-3]
        gap = int(round(cfg.min_nod_gap * fps))
        for i in np.argsort(-rise):
            if rise[i] < cfg.stress_threshold:
                break
            if all(abs(int(i) - j) >= gap for j, _ in stresses):
                stresses.append((int(i), float(min(1.0, rise[i] / (3 * cfg.stress_threshold)))))
        stresses.sort()
    ends = []
    quiet = envelope < SPEECH_LEVEL
    pause = max(1, int(round(cfg.phrase_pause * fps)))
    for i in range(1, n - pause + 1):
        if not quiet[i - 1] and quiet[i: i + pause].all():
            ends.append(i)
    return stresses, ends


def head_track(num_frames: int, fps: float, envelope: np.ndarray | None, cfg: LifeConfig) -> np.ndarray:
    """(num_frames, 6) head pose without the emotion's posture (POSE_CHANNELS; scale as growth):
    idle sway, larger while speaking, nods at stresses and a settle at phrase ends, times ``head_motion``."""
    pose = np.zeros((num_frames, len(POSE_CHANNELS)))
    if cfg.head_motion <= 0 or num_frames == 0:
        return pose
    rng = _rng(cfg.seed, 2)
    sway = _sway(num_frames, fps, rng, cfg)
    if envelope is not None and len(envelope) == num_frames:
        active = moving_average(np.asarray(envelope, np.float64) > SPEECH_LEVEL, int(round(fps)))
        sway *= 1.0 + (cfg.speech_sway_gain - 1.0) * active[:, None]
        stresses, ends = speech_events(envelope, fps, cfg)
    else:
        stresses, ends = [], []
    pose += sway
    frames = np.arange(num_frames)
    nod_frames = cfg.nod_seconds * fps
    for frame, strength in stresses:
        phase = (frames - frame) / nod_frames
        pulse = np.where((phase >= 0) & (phase <= 1), np.sin(np.pi * np.clip(phase, 0, 1)) ** 2, 0.0)
        pose[:, 2] += cfg.nod_pitch * strength * pulse
        pose[:, 1] += cfg.nod_yaw * strength * rng.choice([-1.0, 1.0]) * pulse
    settle = np.zeros(num_frames)
    level = 0.0
    for frame in ends:
        target = float(rng.uniform(-1, 1)) * cfg.settle_roll
        settle[frame:] += target - level
        level = target
    pose[:, 0] += moving_average(settle, 0, np.hanning(max(3, int(fps * 0.8)) + 2)[1:-1])
    return pose * cfg.head_motion


def posture(weights: dict[str, float], cfg: LifeConfig) -> np.ndarray:
    """(6,) the emotion mix's posture (sum of each emotion's :data:`EMOTION_POSTURE` x its weight) x head_motion."""
    total = np.zeros(len(POSE_CHANNELS))
    for name, value in weights.items():
        if name in EMOTION_POSTURE:
            total += float(value) * np.asarray(EMOTION_POSTURE[name], np.float64)
    return total * cfg.head_motion


def gaze_track(num_frames: int, fps: float, cfg: LifeConfig) -> tuple[np.ndarray, np.ndarray]:
    """((num_frames, 2) gaze in iris radii, (num_frames,) glance side): fixations of jittered length
    (mostly near the viewer, sometimes a glance away) joined by saccades of :attr:`LifeConfig.saccade_seconds`.
    The first fixation is at the viewer (side 0: an emotion's glance aside waits for the next one)."""
    gaze = np.zeros((num_frames, 2))
    side = np.ones(num_frames)
    if cfg.gaze <= 0 or num_frames == 0:
        return gaze, side
    rng = _rng(cfg.seed, 3)
    saccade = max(1, int(round(cfg.saccade_seconds * fps)))
    current = np.zeros(2)
    current_side = 1.0
    frame = 0
    while frame < num_frames:
        length = max(saccade + 2, int(round(rng.gamma(2.0, cfg.fixation_seconds / 2.0) * fps)))
        if frame == 0:  # the clip opens looking at the viewer
            target = np.zeros(2)
        elif rng.uniform() < cfg.glance_probability:
            target = np.array([rng.choice([-1.0, 1.0]) * cfg.glance_size, rng.uniform(-0.1, 0.25)])
        else:
            target = rng.normal(0.0, cfg.fixation_spread, size=2)
        current_side = float(rng.choice([-1.0, 1.0]))
        if frame == 0:
            current_side = 0.0  # nor does an emotion's glance aside (fear's) start before the next fixation
        start = current.copy()
        for k in range(min(length, num_frames - frame)):
            mix = min(1.0, (k + 1) / saccade)
            gaze[frame + k] = start + (target - start) * mix
            side[frame + k] = current_side
        current = target
        frame += length
    return gaze * cfg.gaze, side


def emotion_gaze(weights: dict[str, float], side: float, cfg: LifeConfig) -> np.ndarray:
    """(2,) the emotion's gaze offset (iris radii): sadness down, fear to the current glance side."""
    total = np.zeros(2)
    for name, (x, y) in EMOTION_GAZE.items():
        value = float(weights.get(name, 0.0))
        total += value * np.array([x * side, y])
    return total * cfg.gaze


def plan_life(num_frames: int, fps: float, envelope: np.ndarray | None, cfg: LifeConfig) -> LifeTracks:
    """Every emotion-free track of a clip (see module docstring)."""
    gaze, side = gaze_track(num_frames, fps, cfg)
    return LifeTracks(blinks=plan_blinks(num_frames, fps, cfg), pose=head_track(num_frames, fps, envelope, cfg),
                      gaze=gaze, glance_side=side)
