"""Synthetic people and their expressions: :class:`Identity` and the FACS action units of the emotions.

An :class:`Identity` holds every appearance parameter of one person, drawn from a seed
(:meth:`Identity.from_seed`; ``identity.json`` records it). An expression is a set of FACS action
units with intensities 0..1 (:data:`AU_LIST`); the six basic emotions use the EMFACS prototypes
(:data:`EMOTION_PROTOTYPES`) and a mix of emotions is their weighted AU union (:func:`emotion_to_aus`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.emotions import BASIC_EMOTIONS

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


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    """One of ``options``, drawn from ``rng`` (one integer draw)."""
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
        # the draws below are in field order: changing that order changes every person
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
