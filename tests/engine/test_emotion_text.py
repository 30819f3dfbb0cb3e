"""Describe the emotion: intensity words, negation, compounds, neutral words and unknown text."""

from __future__ import annotations

import pytest

from engine.emotion_text import PLAIN, emotion_weights_from_text, read_emotion_text
from engine.errors import EmotionSpecError

LOW = (0.15, 0.5)  # "a little", "slightly", "annoyed": visible but weak
MID = (0.4, 0.75)  # "somewhat", "glad"
STRONG = (0.7, 0.9)  # a plain emotion word ("angry")
FULL = (0.95, 1.0)  # "very", "extremely", "furious"
ZERO = (0.0, 0.0)

# text -> expected {emotion: (low, high)}; emotions not named must be absent (zero). {} = neutral.
TABLE: list[tuple[str, dict[str, tuple[float, float]]]] = [
    ("happy", {"happiness": STRONG}),
    ("sad", {"sadness": STRONG}),
    ("a little sad", {"sadness": LOW}),
    ("slightly happy", {"happiness": LOW}),
    ("a bit scared", {"fear": LOW}),
    ("somewhat surprised", {"surprise": MID}),
    ("very angry", {"anger": FULL}),
    ("extremely disgusted", {"disgust": FULL}),
    ("really really happy", {"happiness": FULL}),
    ("furious", {"anger": FULL}),
    ("annoyed", {"anger": LOW}),
    ("a little annoyed", {"anger": (0.1, 0.2)}),
    ("terrified", {"fear": FULL}),
    ("nervous", {"fear": LOW}),
    ("astonished", {"surprise": FULL}),
    ("heartbroken", {"sadness": FULL}),
    ("not angry at all", {}),
    ("not sad", {}),
    ("I'm not scared", {}),
    ("isn't disgusted", {}),
    ("not happy", {"sadness": LOW}),  # not happy leans sad (see engine.emotion_text.NEGATED)
    ("surprised but not afraid", {"surprise": STRONG}),
    ("happy but a bit scared", {"happiness": STRONG, "fear": LOW}),
    ("bittersweet", {"happiness": MID, "sadness": MID}),
    ("bitter-sweet", {"happiness": MID, "sadness": MID}),
    ("angry and disgusted", {"anger": STRONG, "disgust": STRONG}),
    ("sadly surprised", {"sadness": STRONG, "surprise": STRONG}),
    ("happily surprised", {"happiness": STRONG, "surprise": STRONG}),
    ("very happy, slightly surprised", {"happiness": FULL, "surprise": LOW}),
    ("surprised with a hint of fear", {"surprise": STRONG, "fear": (0.2, 0.3)}),
    ("calm", {}),
    ("neutral", {}),
    ("Relaxed.", {}),
    ("no emotion", {}),
    ("FURIOUS!!!", {"anger": FULL}),
    ("she looks a little sad and very surprised", {"sadness": LOW, "surprise": FULL}),
    ("upset", {"sadness": MID, "anger": (0.3, 0.5)}),
    ("grossed out", {"disgust": STRONG}),
]


@pytest.mark.parametrize(("text", "expected"), TABLE, ids=[t for t, _ in TABLE])
def test_description_table(text: str, expected: dict[str, tuple[float, float]]) -> None:
    reading = read_emotion_text(text)
    assert reading.understood and reading.source == "lexicon", reading
    assert set(reading.mix) == set(expected), reading.mix
    for emotion, (low, high) in expected.items():
        assert low <= reading.mix[emotion] <= high, (emotion, reading.mix)
    assert reading.recognised and reading.message.startswith("Read as:")


def test_table_is_big_enough() -> None:
    assert len(TABLE) >= 30


def test_intensity_orders_the_weights() -> None:
    def anger(text: str) -> float:
        return read_emotion_text(text).mix["anger"]

    assert anger("a little angry") < anger("somewhat angry") < anger("angry") < anger("very angry")
    assert anger("annoyed") < anger("angry") < anger("furious")
    assert read_emotion_text("angry").mix["anger"] == pytest.approx(PLAIN)


def test_neutral_words_are_recognised_not_unknown() -> None:
    reading = read_emotion_text("calm")
    assert reading.mix == {} and reading.recognised == ("calm",) and reading.unknown == ()
    assert "neutral" in reading.message


def test_unknown_words_beside_known_ones_are_reported() -> None:
    reading = read_emotion_text("smug and happy")
    assert dict(reading.mix) == {"happiness": pytest.approx(PLAIN)}
    assert reading.unknown == ("smug",) and "smug" in reading.message


@pytest.mark.parametrize("text", ["asdfgh", "smug", "lorem ipsum", "confused"])
def test_unknown_text_is_not_read_as_neutral(text: str) -> None:
    reading = read_emotion_text(text)
    assert reading.mix is None and not reading.understood
    assert text.split()[0] in reading.message and "happy" in reading.message  # says what it knows
    with pytest.raises(EmotionSpecError, match="Not an emotion"):
        emotion_weights_from_text(text)


@pytest.mark.parametrize(("text", "emotion"), [("on the verge of tears", "sadness"), ("bummed out", "sadness"),
                                               ("tears streaming down her cheeks", "sadness")])
def test_clear_phrases_outside_the_lexicon_use_the_sentence_model(text: str, emotion: str) -> None:
    reading = read_emotion_text(text)
    assert reading.source == "embedding" and dict(reading.mix) == {emotion: pytest.approx(PLAIN)}


def test_empty_text_is_an_error() -> None:
    with pytest.raises(EmotionSpecError):
        read_emotion_text("   ")


def test_weights_dict_for_the_engine() -> None:
    assert emotion_weights_from_text("a little sad") == {"sadness": pytest.approx(0.32)}
    assert emotion_weights_from_text("calm") == {}
