"""The emotion vocabulary: the six basic emotions of MoEE, their colours, and parsing of user mixes.

A *mix* is one weight in 0..1 per emotion; in the studio the six sliders are exactly the global
gate ``g`` of every Emotion MoE layer (``X' = X + sum_i g_i * E_i(X * s_i)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from engine.errors import EmotionSpecError

#: The six expert slots of the paper, in expert order.
BASIC_EMOTIONS: tuple[str, ...] = ("happiness", "sadness", "anger", "disgust", "fear", "surprise")

#: Display colour of each basic emotion (hex RGB), used by the studio and the contact sheets.
EMOTION_COLOURS: dict[str, str] = {
    "happiness": "#f5c518",
    "sadness": "#3b7dd8",
    "anger": "#d83b3b",
    "disgust": "#5aa832",
    "fear": "#8e44ad",
    "surprise": "#f08c2e",
}

#: Common alternative spellings accepted on the command line and in label files.
EMOTION_ALIASES: dict[str, str] = {
    "happy": "happiness",
    "joy": "happiness",
    "sad": "sadness",
    "angry": "anger",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "surprised": "surprise",
}

#: Compound-emotion presets (Du et al. 2014 categories) as weights over the basic emotions.
COMPOUND_PRESETS: dict[str, dict[str, float]] = {
    "happily surprised": {"happiness": 0.5, "surprise": 0.5},
    "happily disgusted": {"happiness": 0.5, "disgust": 0.5},
    "sadly fearful": {"sadness": 0.5, "fear": 0.5},
    "sadly angry": {"sadness": 0.5, "anger": 0.5},
    "sadly surprised": {"sadness": 0.5, "surprise": 0.5},
    "sadly disgusted": {"sadness": 0.5, "disgust": 0.5},
    "fearfully angry": {"fear": 0.5, "anger": 0.5},
    "fearfully surprised": {"fear": 0.5, "surprise": 0.5},
    "angrily surprised": {"anger": 0.5, "surprise": 0.5},
    "angrily disgusted": {"anger": 0.5, "disgust": 0.5},
    "disgustedly surprised": {"disgust": 0.5, "surprise": 0.5},
    "appalled": {"anger": 0.4, "disgust": 0.6},
    "hatred": {"anger": 0.6, "disgust": 0.4},
    "awed": {"fear": 0.4, "surprise": 0.6},
}


def canonical_emotion(name: str, known: Sequence[str] = BASIC_EMOTIONS) -> str:
    """Return the canonical name of ``name`` among ``known`` (aliases and case accepted)."""
    key = name.strip().lower()
    key = EMOTION_ALIASES.get(key, key)
    if key not in known:
        raise EmotionSpecError(
            f"unknown emotion {name!r}; known emotions are: {', '.join(known)}"
        )
    return key


def validate_weight(name: str, value: float) -> float:
    """Check one gate weight: a finite number in 0..1. Returns it as float."""
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise EmotionSpecError(f"weight of {name!r} is not a number: {value!r}") from exc
    if not math.isfinite(value):
        raise EmotionSpecError(f"weight of {name!r} is {value}; it must be a finite number in 0..1")
    if not 0.0 <= value <= 1.0:
        raise EmotionSpecError(f"weight of {name!r} is {value}; it must lie in 0..1")
    return value


def mix_to_vector(mix: Mapping[str, float], emotions: Sequence[str] = BASIC_EMOTIONS) -> list[float]:
    """Turn ``{"happiness": 0.6, "surprise": 0.4}`` into one weight per emotion slot (missing = 0)."""
    vector = [0.0] * len(emotions)
    for name, value in mix.items():
        key = canonical_emotion(name, emotions)
        vector[list(emotions).index(key)] = validate_weight(key, value)
    return vector


def parse_mix(spec: str, emotions: Sequence[str] = BASIC_EMOTIONS) -> dict[str, float]:
    """Parse a command-line mix ``"happiness=0.6,surprise=0.4"`` (a bare name means weight 1).

    A preset name such as ``"happily surprised"`` is accepted too.
    """
    spec = spec.strip()
    if not spec:
        raise EmotionSpecError("empty emotion mix; use e.g. 'happiness=0.6,surprise=0.4'")
    if spec.lower() in COMPOUND_PRESETS:
        return dict(COMPOUND_PRESETS[spec.lower()])
    mix: dict[str, float] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" in part:
            name, _, raw = part.partition("=")
        else:
            name, raw = part, "1"
        key = canonical_emotion(name, emotions)
        if key in mix:
            raise EmotionSpecError(f"emotion {key!r} is given twice in {spec!r}")
        mix[key] = validate_weight(key, raw)
    return mix


def normalise(vector: Sequence[float]) -> list[float]:
    """Scale weights to sum 1 (the palette's *normalise* toggle); all-zero stays all-zero (neutral)."""
    total = float(sum(vector))
    if total <= 0.0:
        return [0.0] * len(vector)
    return [float(v) / total for v in vector]
