"""FACS emphasis: the action units of each emotion as landmark motion, added to the motion model's.

The motion MoE learns the synthetic people's expressions; on a real face the same motion reads weakly
(an outside recogniser named fear in none of eleven portraits). What a person reads is spelled out by
FACS / EMFACS (Ekman & Friesen): fear is AU1+2+4+5+7+20+26 (brows up *and* drawn together, upper lids
raised, lips stretched sideways), anger AU4+5+7+23 (brows down and together, lids tightened, lips
pressed), and so on. This module writes each action unit as a small displacement of the 68 iBUG
landmarks in face units (half the face width; y grows downward) and each emotion as its EMFACS mix:

    emphasis(token) = sum_e w_e(token) * sum_AU intensity[e][AU] * AU_MOTION[AU](token)

``w_e(token)`` is the emotion's weight at that token: the slider (the global gate) or, under a brush
stroke, the painted strength, so a stroke on the brows emphasises the brows only. The lids' AUs (5, 6, 7)
are drawn by :mod:`engine.portrait.eyes` (``TransferConfig.lid_shape``), not here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Each action unit as (landmark indices, (dx, dy) per landmark) at intensity 1, face units.
_AU_PARTS: dict[int, list[tuple[tuple[int, ...], tuple[float, float]]]] = {
    1: [((21, 22), (0.0, -0.07)), ((20, 23), (0.0, -0.05)), ((19, 24), (0.0, -0.025))],  # inner brow raiser
    2: [((17, 26), (0.0, -0.06)), ((18, 25), (0.0, -0.06)), ((19, 24), (0.0, -0.04)), ((20, 23), (0.0, -0.02))],
    4: [((21,), (0.03, 0.05)), ((22,), (-0.03, 0.05)), ((20,), (0.02, 0.045)), ((23,), (-0.02, 0.045)),
        ((19, 24), (0.0, 0.035)), ((17, 18, 25, 26), (0.0, 0.02))],  # brow lowerer: down and together
    9: [((31, 35), (0.0, -0.02)), ((32, 33, 34), (0.0, -0.015)), ((50, 51, 52), (0.0, -0.015)),
        ((21, 22), (0.0, 0.02))],  # nose wrinkler
    10: [((50, 52), (0.0, -0.045)), ((49, 51, 53), (0.0, -0.04)), ((61, 62, 63), (0.0, -0.04)),
         ((48, 54), (0.0, -0.01))],  # upper lip raiser
    12: [((48, 60), (-0.05, -0.06)), ((54, 64), (0.05, -0.06)), ((49,), (-0.02, -0.03)), ((53,), (0.02, -0.03)),
         ((59,), (-0.02, -0.03)), ((55,), (0.02, -0.03))],  # lip corner puller
    15: [((48, 54, 60, 64), (0.0, 0.05)), ((59, 55), (0.0, 0.02))],  # lip corner depressor
    16: [((56, 57, 58, 65, 66, 67), (0.0, 0.07)), ((55, 59), (0.0, 0.05))],  # lower lip depressor
    17: [((55, 56, 57, 58, 59, 65, 66, 67), (0.0, -0.03)), ((7, 8, 9), (0.0, -0.02))],  # chin raiser
    20: [((48, 60), (-0.06, 0.01)), ((54, 64), (0.06, 0.01)), ((49, 59), (-0.03, 0.0)), ((53, 55), (0.03, 0.0))],
    23: [((48, 60), (0.03, 0.0)), ((54, 64), (-0.03, 0.0)), ((49, 50, 51, 52, 53), (0.0, 0.015)),
         ((55, 56, 57, 58, 59), (0.0, -0.015))],  # lip tightener
    26: [((55, 56, 57, 58, 59, 65, 66, 67), (0.0, 0.12)), ((8,), (0.0, 0.1)), ((7, 9), (0.0, 0.09)),
         ((6, 10), (0.0, 0.07)), ((5, 11), (0.0, 0.05)), ((48, 54, 60, 64), (0.0, 0.04))],  # jaw drop
}
#: EMFACS prototypes without the lids' AUs (5, 6, 7: engine.portrait.eyes): AU -> intensity at slider 1.
EMOTION_AUS: dict[str, dict[int, float]] = {
    "happiness": {12: 1.0},
    # Sadness: the inner brows raised (AU1, the clearest sign of grief) over a slight knit, the corners down
    # and the chin pushing the lower lip up. The corners pull down harder (AU15 1.4) since each lip moves as one
    # band: a smiling sitter's upper lip no longer sags into a pout with the lower one (silent sadness 3/7 -> 5/7).
    "sadness": {1: 1.5, 4: 0.5, 15: 1.4, 17: 0.5},
    # Anger at full strength shouts (EMFACS 4+5+7+10+16+25/26): brows down and together with the outer ends
    # up, the nose wrinkled, the upper lip raised and the lower lip pulled down off the teeth. The pressed
    # lips of the quieter prototype (4+5+7+23) read neutral or happy on most real faces.
    "anger": {2: 0.6, 4: 1.8, 9: 0.8, 10: 1.2, 16: 1.3, 20: 0.5, 26: 0.8},
    "disgust": {9: 1.0, 10: 1.0, 15: 0.5, 4: 0.3},
    # Fear as a face shows it at full strength: brows up *and* knit, the inner corners highest (a strong AU1
    # over AU4, with AU2), the mouth dropped open with the lips stretched and pulled down (AU20, AU15, AU26)
    # over a tense chin (AU17). The earlier closed, sideways-stretched mouth read as a grin (appearance
    # reader: fear 0/7, read happy or neutral); brows knit flat (AU1 1.0 under AU4 1.6) read as surprise or
    # anger (3/7 with the performance on; inner corners raised: 5/7).
    "fear": {1: 3.0, 2: 1.2, 4: 1.6, 15: 1.6, 17: 0.3, 20: 0.4, 26: 1.4},
    "surprise": {1: 1.0, 2: 1.0, 26: 0.8},
}


#: The action units that part the lips and drop the jaw: speech owns them while the person speaks (:func:`speaking`).
JAW_AUS: frozenset[int] = frozenset({16, 26})
#: An emotion's action units while the person speaks, where they differ from its recipe without the jaw's AUs
#: (:func:`speaking_recipe`). Anger's shout, its jaw given to the speech, left a wide mouth baring the upper
#: teeth that read as a grin (appearance reader, 5 frames of a line on 7 portraits: anger 8/35, read happy or
#: sad): a furious line is spoken with the corners pulled hard down (AU15 2.0) through tightened lips (AU23):
#: 17/35 at 512 and 1024 px (AU15 at 1.0: 14/35, 11/35; AU23 at 2.0 read 19/35 but hid the speech: lip sync on
#: the astronaut 0.54).
#: Surprise keeps its dropped jaw and the speech opens and closes the mouth further: given to the speech, the
#: jaw dropped in every pause, against the words (lip sync on the astronaut 0.27; kept: 0.74), and the spoken
#: surprise read as a grin (24/35 frames; kept: 35/35).
#: A frightened line pulls the corners down harder instead of stretching them (AU15 2.0, no AU20): stretched
#: lips around a talking mouth read as a grin or as sadness (fear 9/35 -> 13/35 frames at 1024 px, 11 -> 15 at 512;
#: with each lip moving as one band, AU15 2.6: 11/35 -> 13/35).
#: A sad line, too, is spoken with the corners pulled down harder (AU15 1.6; the recipe's 1.0 under the talking
#: mouth read neutral, or happy where a smiling sitter's own teeth show: sadness 14/35 -> 20/35 frames at 1024 px).
SPEAKING_AUS: dict[str, dict[int, float]] = {
    "anger": {2: 0.6, 4: 1.8, 9: 0.8, 10: 1.2, 15: 2.0, 23: 1.0},
    "fear": {1: 3.0, 2: 1.2, 4: 1.6, 15: 2.6, 17: 0.3},
    "sadness": {**EMOTION_AUS["sadness"], 15: 1.6},
    "surprise": EMOTION_AUS["surprise"],
}
#: In a mix, who closes whose dropped jaw (closer -> {closed: share at the closer's slider 1}). Sadly angry is a
#: clenched frown (Du, Tao and Martinez 2014: AU4+7+15); a sad frown under anger's open shout read as fear or
#: surprise (both parts in the appearance reader's top two: 2/7). Sadly surprised (AU1+4+25+26) and sadly
#: fearful (AU1+4+20+25) keep their parted lips, so sadness closes only anger's shout.
CLOSES_JAW: dict[str, dict[str, float]] = {"sadness": {"anger": 1.0}}
#: Mouth opening (0..1, the speech's) that counts as speaking, and the window (seconds) it counts over.
SPEAKING_OPENING = 0.25
SPEAKING_WINDOW_SECONDS = 0.4


def au_motion(au: int) -> np.ndarray:
    """(68, 2) face-unit displacement of one action unit at intensity 1."""
    motion = np.zeros((68, 2))
    for indices, (dx, dy) in _AU_PARTS[au]:
        motion[list(indices)] += (dx, dy)
    return motion


def speaking_recipe(name: str) -> dict[int, float]:
    """The emotion's action units while the person speaks: :data:`SPEAKING_AUS` where given, else its
    :func:`closed_recipe` (the speech opens the mouth)."""
    return SPEAKING_AUS[name] if name in SPEAKING_AUS else closed_recipe(name)


def silent_recipe(name: str) -> dict[int, float]:
    """The emotion's action units in silence (:data:`EMOTION_AUS`; none for an emotion FACS does not list)."""
    return EMOTION_AUS.get(name, {})


def closed_recipe(name: str) -> dict[int, float]:
    """The emotion's action units with its jaw closed: its recipe without the jaw's action units
    (:data:`JAW_AUS`), as by another emotion in a mix (:func:`jaw_closing`)."""
    return {au: value for au, value in silent_recipe(name).items() if au not in JAW_AUS}


def jaw_closing(emotions: tuple[str, ...] | list[str]) -> np.ndarray:
    """(E, E): how far emotion ``f`` at slider 1 closes emotion ``e``'s dropped jaw, at ``[f, e]``
    (:data:`CLOSES_JAW`; the closed emotion turns into its :func:`closed_recipe`)."""
    closing = np.zeros((len(emotions), len(emotions)))
    for f, closer in enumerate(emotions):
        for e, closed in enumerate(emotions):
            closing[f, e] = CLOSES_JAW.get(closer, {}).get(closed, 0.0)
    return closing


def emotion_emphasis(emotions: tuple[str, ...] | list[str],
                     recipe: Callable[[str], dict[int, float]] = silent_recipe) -> np.ndarray:
    """(E, 68, 2): each emotion's EMFACS motion at slider 1 (zeros for an emotion FACS does not list, such as
    a custom expert) by ``recipe``: :func:`silent_recipe`, :func:`speaking_recipe` or :func:`closed_recipe`."""
    table = np.zeros((len(emotions), 68, 2))
    for e, name in enumerate(emotions):
        for au, intensity in recipe(name).items():
            table[e] += intensity * au_motion(au)
    return table


def speaking(openings: np.ndarray, fps: float) -> np.ndarray:
    """(T,) 0..1 how much the person is speaking at each frame: 1 while the speech has opened the mouth by
    :data:`SPEAKING_OPENING` within :data:`SPEAKING_WINDOW_SECONDS`, easing to 0 over that window in a pause.

    An emotion's recipe turns into its speaking recipe (:func:`speaking_recipe`: its jaw drop given to the speech)
    by this share (``TransferConfig.speaking_recipe_share``):
    the lips come from the audio (the paper's experts are trained with the mouth masked), so a frightened or
    furious line is still spoken, and the full scream shows in the pauses and in silent clips.
    """
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    openings = np.asarray(openings, np.float64)
    if openings.size == 0:
        return openings
    window = max(1, round(SPEAKING_WINDOW_SECONDS * fps))
    recent = maximum_filter1d(openings, size=2 * window + 1, mode="nearest")
    return uniform_filter1d(np.clip(recent / SPEAKING_OPENING, 0.0, 1.0), size=window, mode="nearest")


def emphasis(table: np.ndarray, token_weights: np.ndarray) -> np.ndarray:
    """(68, 2) the emphasis of a frame: ``sum_e token_weights[:, e] * table[e]`` (token_weights: (68, E) or (E,))."""
    weights = np.asarray(token_weights, np.float64)
    if weights.ndim == 1:
        weights = np.broadcast_to(weights, (68, len(weights)))
    return np.einsum("te,etc->tc", weights, table)
