"""Emotion from the voice's tone: a speech clip -> slider weights over time (``--emotion-audio`` on the portrait path).

What the project had: :func:`engine.io.audio.prosody_features` describes a clip's tone (pitch, energy, spectrum,
rhythm), and the pixel model feeds those features through a linear layer into its emotion tokens. That layer
is never trained by ``moee train`` (no stage feeds it audio features), and no recogniser in
``assets/models/recognizer*`` hears a voice (both read frames). So this module reads the tone *explicitly*,
with the vocal cue profiles of the speech-emotion literature (Juslin & Laukka 2003, Table 7; Scherer 2003):

* anger: more energy variation and attack, a brighter spectrum, more pitch variation, faster;
* happiness: higher and more varied pitch, a little faster and more energetic;
* sadness: less energy variation, a darker spectrum, flat and low pitch, slower;
* fear: higher pitch, irregular pitch (jumps), faster, less pitch range;
* surprise: rising pitch and a wide pitch range;
* disgust: lower pitch, slower, a darker spectrum.

Each cue is a z-score of window features against :data:`NEUTRAL_REFERENCE` (neutral read speech: the bundled
demo voice and espeak-ng sentences); the pitch *level* is taken relative to the clip's own median, so a low
and a high voice read alike. A window's score per emotion is its profile's weighted mean of the cues; scores
above :data:`SCORE_THRESHOLD` map linearly to a slider weight (1 at ``SCORE_THRESHOLD + SCORE_SPAN``), the two
strongest emotions of a window are kept, and the weights are smoothed over time and sampled at each video
frame. Emotions the profiles do not name (custom experts) stay at 0. It is a heuristic reading of tone, not
a trained classifier: the result is meant as a starting point the user edits (keyframes in the studio).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.io.audio import PROSODY_FEATURE_NAMES, AudioClip, prosody_features

#: Analysis window and hop (seconds): long enough for a pitch contour, short enough to follow a change of tone.
WINDOW_SECONDS = 2.0
HOP_SECONDS = 0.5
#: A window with less speech than this (share of active frames) reads as neutral.
MIN_ACTIVE = 0.2
#: Neutral speech's (mean, spread) of each prosody feature a cue reads (measured on neutral read speech).
NEUTRAL_REFERENCE: dict[str, tuple[float, float]] = {
    "energy_std_db": (0.74, 0.08), "energy_attack": (0.41, 0.045), "pitch_std": (0.23, 0.086),
    "pitch_range": (0.35, 0.16), "pitch_slope": (-0.15, 0.13), "pitch_jump": (0.27, 0.18),
    "centroid_mean": (0.17, 0.025), "high_band_ratio": (0.116, 0.039), "syllable_rate": (0.55, 0.066)}
#: Spread (octaves) of the pitch level around the clip's median.
PITCH_LEVEL_SPREAD = 0.25
#: Cues: name -> the features (averaged z-scores) that make it up; ``pitch_level`` is relative to the clip.
CUES: dict[str, tuple[str, ...]] = {
    "energy": ("energy_std_db", "energy_attack"), "brightness": ("centroid_mean", "high_band_ratio"),
    "pitch_variation": ("pitch_std", "pitch_range"), "pitch_rise": ("pitch_slope",),
    "irregularity": ("pitch_jump",), "rate": ("syllable_rate",), "pitch_level": ()}
#: Each emotion's cue profile (signs and weights from the cue tables cited in the module docstring).
PROFILES: dict[str, dict[str, float]] = {
    "anger": {"energy": 1.0, "brightness": 1.0, "pitch_variation": 0.5, "rate": 0.5},
    "happiness": {"pitch_level": 1.0, "pitch_variation": 1.0, "rate": 0.3, "energy": 0.3},
    "sadness": {"energy": -1.0, "brightness": -1.0, "pitch_variation": -1.0, "rate": -1.0, "pitch_level": -0.5},
    "fear": {"pitch_level": 1.0, "irregularity": 1.0, "rate": 0.7, "pitch_variation": -0.3},
    "surprise": {"pitch_rise": 1.5, "pitch_variation": 0.7},
    "disgust": {"pitch_level": -0.7, "rate": -0.7, "brightness": -0.3},
}
#: Score (weighted mean z) at which an emotion starts to show, and the span over which it reaches slider 1.
SCORE_THRESHOLD = 1.0
SCORE_SPAN = 1.5
#: Emotions kept per window (the strongest), and the smoothing of the weights over time (seconds).
KEEP_PER_WINDOW = 2
SMOOTH_SECONDS = 1.0


@dataclass
class VoiceEmotionTrack:
    """The voice's emotion over time: per analysis window and per video frame, one weight per emotion."""

    emotions: tuple[str, ...]
    window_times: np.ndarray  # (W,) seconds, the middle of each window
    window_weights: np.ndarray  # (W, E) smoothed slider weights 0..1
    weights: np.ndarray  # (F, E) the same at each video frame
    fps: float

    def keyframes(self, every_seconds: float = HOP_SECONDS, min_change: float = 0.05) -> list[tuple[float, dict[str, float]]]:
        """(time s, {emotion: weight}) about every ``every_seconds``, dropping keys that change nothing
        (every weight within ``min_change`` of the previous key): what the studio's "from the voice" keys."""
        keys: list[tuple[float, dict[str, float]]] = []
        if not len(self.weights):
            return keys
        step = max(1, int(round(every_seconds * self.fps)))
        frames = sorted({*range(0, len(self.weights), step), len(self.weights) - 1})
        last: np.ndarray | None = None
        for frame in frames:
            row = self.weights[frame]
            if last is not None and np.all(np.abs(row - last) < min_change) and frame != frames[-1]:
                continue
            keys.append((frame / self.fps, {n: round(float(v), 3) for n, v in zip(self.emotions, row, strict=True)}))
            last = row
        return keys


def _cue_scores(features: np.ndarray, pitch_level: float) -> dict[str, float]:
    index = {name: i for i, name in enumerate(PROSODY_FEATURE_NAMES)}
    cues = {"pitch_level": pitch_level / PITCH_LEVEL_SPREAD}
    for cue, names in CUES.items():
        if names:
            cues[cue] = float(np.mean([(features[index[n]] - NEUTRAL_REFERENCE[n][0]) / NEUTRAL_REFERENCE[n][1]
                                       for n in names]))
    return cues


def emotion_scores(cues: dict[str, float]) -> dict[str, float]:
    """Each profiled emotion's score: the weighted mean of its cues (z units)."""
    return {name: sum(w * cues[c] for c, w in profile.items()) / sum(abs(w) for w in profile.values())
            for name, profile in PROFILES.items()}


def voice_emotion_track(clip: AudioClip, num_frames: int, fps: float,
                        emotions: tuple[str, ...] | list[str]) -> VoiceEmotionTrack:
    """The slider weights the voice's tone suggests, per video frame (``num_frames`` at ``fps``)."""
    emotions = tuple(emotions)
    rate = clip.sample_rate
    samples = np.asarray(clip.samples, np.float32).reshape(-1)
    window, hop = int(WINDOW_SECONDS * rate), int(HOP_SECONDS * rate)
    starts = list(range(0, max(1, len(samples) - window + 1), hop)) if len(samples) > window else [0]
    feats = np.stack([prosody_features(AudioClip(samples[s : s + window], rate, clip.source)) for s in starts])
    index = {name: i for i, name in enumerate(PROSODY_FEATURE_NAMES)}
    active = feats[:, index["active_fraction"]] >= MIN_ACTIVE
    pitch = feats[:, index["pitch_mean"]]
    voiced = active & (feats[:, index["voiced_fraction"]] > 0)
    median_pitch = float(np.median(pitch[voiced])) if voiced.any() else 0.0
    raw = np.zeros((len(starts), len(emotions)), np.float64)
    for w, row in enumerate(feats):
        if not active[w]:
            continue
        scores = emotion_scores(_cue_scores(row, float(pitch[w]) - median_pitch if voiced[w] else 0.0))
        values = np.array([np.clip((scores.get(n, -np.inf) - SCORE_THRESHOLD) / SCORE_SPAN, 0.0, 1.0)
                           for n in emotions])
        keep = np.argsort(values)[::-1][:KEEP_PER_WINDOW]
        raw[w, keep] = values[keep]
    width = max(1, int(round(SMOOTH_SECONDS / HOP_SECONDS)))
    kernel = np.hanning(width + 2)[1:-1]
    kernel = kernel / kernel.sum()
    smooth = np.stack([np.convolve(np.pad(raw[:, e], width, mode="edge"), kernel, mode="same")[width:-width]
                       for e in range(len(emotions))], axis=1) if len(emotions) else raw
    times = (np.asarray(starts, np.float64) + min(window, len(samples)) / 2) / rate
    frame_times = np.arange(int(num_frames)) / float(fps)
    weights = np.stack([np.interp(frame_times, times, smooth[:, e]) for e in range(len(emotions))], axis=1) \
        if len(emotions) else np.zeros((int(num_frames), 0))
    return VoiceEmotionTrack(emotions, times, smooth.astype(np.float32), np.clip(weights, 0, 1).astype(np.float32),
                             float(fps))
