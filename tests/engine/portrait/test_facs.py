"""Emotions anyone can name: the FACS emphasis (engine/portrait/facs.py), the lids of each emotion (engine/portrait/eyes.py via
TransferConfig.lid_shape) and the neutralised sitter, on the astronaut with real MediaPipe landmarks."""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.io.face import detect_landmarks
from engine.moee import GateControl
from engine.portrait.animator import PortraitAnimator, TransferConfig
from engine.portrait.facs import (
    EMOTION_AUS,
    JAW_AUS,
    au_motion,
    closed_recipe,
    emotion_emphasis,
    emphasis,
    jaw_closing,
    speaking,
    speaking_recipe,
)
from engine.portrait.performance import STILL_LIFE
from engine.portrait.rig import MESH_ROWS

EMOTIONS = ("happiness", "sadness", "anger", "disgust", "fear", "surprise")
INNER_BROWS, OUTER_BROWS, CORNERS = (21, 22), (17, 26), (48, 54)


def one_hot(name: str, value: float = 1.0) -> GateControl:
    weights = np.zeros(len(EMOTIONS), np.float32)
    weights[EMOTIONS.index(name)] = value
    return GateControl(weights)


# ------------------------------------------------------------------ the action units (pure)
def test_action_units_move_the_landmarks_as_facs_describes() -> None:
    up = lambda motion, idx: -motion[list(idx), 1].mean()  # noqa: E731 - y grows downward
    assert up(au_motion(1), INNER_BROWS) > 0.05 and up(au_motion(1), OUTER_BROWS) == 0  # inner brow raiser
    assert up(au_motion(2), OUTER_BROWS) > 0.05  # outer brow raiser
    lowerer = au_motion(4)
    assert up(lowerer, INNER_BROWS) < 0 and lowerer[21, 0] > 0 > lowerer[22, 0]  # down and together
    assert up(au_motion(12), CORNERS) > 0 and au_motion(12)[48, 0] < 0 < au_motion(12)[54, 0]  # up and out
    assert up(au_motion(15), CORNERS) < 0  # corners down
    assert au_motion(20)[48, 0] < 0 < au_motion(20)[54, 0]  # stretched sideways
    assert au_motion(26)[57, 1] > 0.1  # the jaw drops
    assert au_motion(16)[57, 1] > 0.05 and not au_motion(16)[48:55].any()  # the lower lip down, not the upper


def test_each_emotion_is_its_emfacs_mix_and_a_custom_emotion_has_none() -> None:
    table = emotion_emphasis((*EMOTIONS, "smug"))
    assert set(EMOTION_AUS) == set(EMOTIONS)
    fear = sum(intensity * au_motion(au) for au, intensity in EMOTION_AUS["fear"].items())
    assert np.allclose(table[EMOTIONS.index("fear")], fear)
    assert not table[-1].any()
    assert not emphasis(table, np.zeros(7)).any()


def test_a_painted_stroke_emphasises_only_its_tokens() -> None:
    table = emotion_emphasis(EMOTIONS)
    tokens = np.zeros((68, 6))
    tokens[17:27, EMOTIONS.index("surprise")] = 1.0  # surprise painted on the brows only
    motion = emphasis(table, tokens)
    assert np.abs(motion[17:27]).max() > 0.05
    assert not motion[48:68].any()  # the mouth does not open


def test_speaking_is_one_through_a_line_and_eases_to_zero_in_a_pause() -> None:
    fps = 25
    openings = np.zeros(100)
    openings[20:50:3] = 0.6  # a line: the mouth opens and closes on each syllable
    talk = speaking(openings, fps)
    assert talk[25:45].min() > 0.95  # the whole line counts, closed syllables too
    assert talk[:5].max() == 0.0 and talk[80:].max() == 0.0  # silence before and long after
    assert 0.0 < talk[62] < 1.0  # easing out of the line
    assert not speaking(np.zeros(30), fps).any()


def test_while_speaking_only_surprise_drops_the_jaw_and_anger_tightens_its_lips() -> None:
    silent, talking = emotion_emphasis(EMOTIONS), emotion_emphasis(EMOTIONS, speaking_recipe)
    assert silent[EMOTIONS.index("fear"), 57, 1] > 0.1  # in silence fear's jaw drops ...
    others = [e for e, name in enumerate(EMOTIONS) if name != "surprise"]
    assert talking[others, 8, 1].max() <= 0 and talking[EMOTIONS.index("surprise"), 8, 1] > 0
    assert speaking_recipe("surprise") == EMOTION_AUS["surprise"]  # a surprised line: the jaw stays dropped
    assert speaking_recipe("happiness") == {au: v for au, v in EMOTION_AUS["happiness"].items() if au not in JAW_AUS}
    # a sad line is spoken with its corners pulled down harder than in silence (the talking mouth read neutral)
    assert speaking_recipe("sadness")[15] > EMOTION_AUS["sadness"][15]
    assert talking[EMOTIONS.index("sadness"), 48, 1] > silent[EMOTIONS.index("sadness"), 48, 1] > 0
    anger = EMOTIONS.index("anger")

    def mouth_width(table: np.ndarray) -> float:
        return float(table[anger, 54, 0] - table[anger, 48, 0])

    assert mouth_width(silent) > 0 > mouth_width(talking)  # the shout stretches the lips, the spoken line tightens them


# ------------------------------------------------------------------ on a real portrait
def _eye_opening(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[159] - points[145]) + np.linalg.norm(points[386] - points[374]))


def test_emphasis_strengthens_the_brows(animator, still) -> None:
    plain = PortraitAnimator(animator.motion, dataclasses.replace(animator.cfg, facs_emphasis=0.0))
    rest = still.rig.control
    for name, point, direction in (("surprise", 105, -1), ("sadness", 107, -1), ("anger", 107, 1)):
        row = MESH_ROWS[point]  # a brow point of MediaPipe's mesh: y of the target minus y at rest
        emphasised = animator.control_targets(still, one_hot(name), 0)[row, 1] - rest[row, 1]
        bare = plain.control_targets(still, one_hot(name), 0)[row, 1] - rest[row, 1]
        assert direction * emphasised > direction * bare + 1, name


def test_lids_glare_in_anger_and_widen_in_surprise(animator, still) -> None:
    neutral = _eye_opening(detect_landmarks(animator.render_frame(still, 0, one_hot("anger", 0.0))).points)
    anger = _eye_opening(detect_landmarks(animator.render_frame(still, 0, one_hot("anger"))).points)
    surprise = _eye_opening(detect_landmarks(animator.render_frame(still, 0, one_hot("surprise"))).points)
    assert anger < 0.85 * neutral < surprise * 0.85


def test_widened_eyes_show_white_above_the_iris(animator) -> None:
    from skimage.data import astronaut

    cfg = dataclasses.replace(TransferConfig(), lid_shape={"surprise": (-0.4, 0.0)})
    wide = PortraitAnimator(animator.motion, cfg)
    prepared = wide.prepare(astronaut(), max_size=512, life=STILL_LIFE)
    frame = wide.render_frame(prepared, 0, one_hot("surprise"))
    iris = prepared.rig.mesh[468]
    radius = float(np.linalg.norm(prepared.rig.mesh[469] - iris))
    above = frame[int(iris[1] - 2.2 * radius): int(iris[1] - 1.2 * radius), int(iris[0] - 2): int(iris[0] + 3)]
    sclera = frame[int(iris[1]) - 1: int(iris[1]) + 2, int(iris[0] + 2.5 * radius): int(iris[0] + 3.5 * radius)]
    assert above.mean() > 0.8 * sclera.mean()  # white (the sclera's tone) where the lid used to be


def test_a_smiling_sitter_is_neutralised_and_her_smile_returns_with_happiness(animator, still) -> None:
    portrait = detect_landmarks(still.portrait).points
    neutral = detect_landmarks(animator.render_frame(still, 0, one_hot("happiness", 0.0))).points
    happy = animator.render_frame(still, 0, one_hot("happiness"))

    def corner_lift(points: np.ndarray) -> float:
        return float((points[13, 1] + points[14, 1]) / 2 - (points[61, 1] + points[291, 1]) / 2)

    assert corner_lift(neutral) < corner_lift(portrait) - 2  # the smile is taken out
    upper, lower = portrait[13], portrait[14]
    teeth = happy[int(upper[1]): int(lower[1]) + 1, int(upper[0]) - 3: int(upper[0]) + 4]
    assert teeth.mean() > 150  # with happiness her own teeth show again (not the closed lips of the neutral)


def test_sadness_closes_angers_shout_in_a_mix_and_surprise_stays_open(animator, still) -> None:
    """Sadly angry is a clenched frown: sadness closes anger's shouting jaw in a mix (a sad frown under an open
    shout read as fear or surprise); happily and sadly surprised keep their open mouths."""
    closing = jaw_closing(EMOTIONS)
    assert closing[EMOTIONS.index("sadness"), EMOTIONS.index("anger")] == 1.0 and closing.sum() == 1.0
    assert not JAW_AUS & closed_recipe("anger").keys()
    chin = MESH_ROWS[152]  # MediaPipe's chin tip (y grows downward)

    def chin_drop(levels: dict[str, float]) -> float:
        weights = np.zeros(len(EMOTIONS), np.float32)
        for name, level in levels.items():
            weights[EMOTIONS.index(name)] = level
        return float(animator.control_targets(still, GateControl(weights), 0)[chin, 1] - still.rig.control[chin, 1])

    assert chin_drop({"anger": 1.0}) > 2 * chin_drop({"anger": 1.0, "sadness": 1.0})
    for other in ("happiness", "sadness"):
        assert chin_drop({other: 1.0, "surprise": 1.0}) > 0.8 * chin_drop({"surprise": 1.0}) > 0, other


def test_a_smile_with_closed_lips_is_taken_out_without_parting_them(animator) -> None:
    """A sitter smiling with closed lips keeps them closed when her smile is taken out and when she frowns
    (the dense lip contours followed the corners down and parted by 3-5 px at 384 px, drawn as an open
    mouth); an emotion that drops the jaw still opens the mouth."""
    from engine.portrait.rig import inner_lip_contours
    from training.synthetic.identities import Identity
    from training.synthetic.renderer import FaceRenderer

    smiling = FaceRenderer(Identity.from_seed(0), 384).render(aus={12: 1.0, 6: 1.0}, mouth_open=0.0)[0]
    prepared = animator.prepare(smiling, life=STILL_LIFE)
    assert prepared.rig.sitter_smile > 0.5

    def gap(points: np.ndarray) -> float:
        upper, lower = inner_lip_contours(prepared.rig, points)
        return float(np.max(lower[:, 1] - upper[:, 1]))

    own = max(gap(prepared.rig.control), 0.0)
    assert gap(animator.control_targets(prepared, one_hot("happiness", 0.0), 0)) <= own + 0.5  # neutral
    assert gap(animator.control_targets(prepared, one_hot("sadness"), 0)) <= own + 0.5
    assert gap(animator.control_targets(prepared, one_hot("surprise"), 0)) > 10.0


def test_closed_lips_pushed_together_pout_instead_of_squeezing_the_upper_lip(animator) -> None:
    """Sadness's chin raiser pushes the lower lip up against the upper one: on a sitter smiling with closed lips
    the upper lip must keep most of its thickness at its middle (it pouts up), not be squeezed to a line (0.38 of
    its own thickness before; hallo_1's upper lip went from 9.5 px to 0.2 px at 512 px)."""
    from engine.portrait.animator import INNER_UPPER_ROWS, OUTER_CONTOURS
    from training.synthetic.identities import Identity
    from training.synthetic.renderer import FaceRenderer

    smiling = FaceRenderer(Identity.from_seed(0), 384).render(aus={12: 1.0, 6: 1.0}, mouth_open=0.0)[0]
    prepared = animator.prepare(smiling, life=STILL_LIFE)
    middle = len(INNER_UPPER_ROWS) // 2

    def upper_lip_thickness(points: np.ndarray) -> float:
        return float(points[INNER_UPPER_ROWS[middle], 1] - points[OUTER_CONTOURS[0][middle], 1])

    own = upper_lip_thickness(prepared.rig.control)
    sad = upper_lip_thickness(animator.control_targets(prepared, one_hot("sadness"), 0))
    assert sad > 0.6 * own, f"the upper lip is {sad:.1f} px thick, {own:.1f} px in the portrait"


def test_a_frightened_line_is_spoken_and_the_scream_shows_in_silence(animator) -> None:
    """Speech owns the jaw while the person speaks: fear's dropped jaw gives way by speaking_recipe_share during the
    line (so the lips follow the words) and shows whole in a silent clip."""
    from skimage.data import astronaut

    from engine.io.resources import demo_audio

    talking = animator.prepare(astronaut(), demo_audio(), max_size=512, life=STILL_LIFE)
    silent = animator.prepare(astronaut(), None, max_size=512, life=STILL_LIFE, num_frames=talking.num_frames)
    frame = int(np.argmax(talking.speaking))  # in the line
    assert talking.speaking[frame] == 1.0 and not silent.speaking.any()
    no_yield = PortraitAnimator(animator.motion, dataclasses.replace(animator.cfg, speaking_recipe_share=0.0))
    chin = MESH_ROWS[152]  # MediaPipe's chin tip (y grows downward)
    yielded = animator.control_targets(talking, one_hot("fear"), frame)[chin, 1]
    screamed = no_yield.control_targets(talking, one_hot("fear"), frame)[chin, 1]
    assert yielded < screamed - 2  # the jaw drop gives way to the speech (pixels)
    assert np.allclose(animator.control_targets(silent, one_hot("fear"), frame),
                       no_yield.control_targets(silent, one_hot("fear"), frame))  # silence: the whole scream
