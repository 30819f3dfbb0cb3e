"""Expression creases (engine/portrait/shading.py): read off the face's motion, drawn as darkening only where the
crease is; through the renderer, anger's frown lines darken the skin between the brows and nothing else, on the
astronaut with real MediaPipe landmarks."""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.moee import GateControl
from engine.portrait.animator import PortraitAnimator
from engine.portrait.facs import emotion_emphasis
from engine.portrait.shading import crease_intensities, draw_creases

EMOTIONS = ("happiness", "sadness", "anger", "disgust", "fear", "surprise")
ANGER = EMOTIONS.index("anger")
#: A pixel counts as darkened when its brightest channel fell by more than this (uint8 levels).
DARKENED = 2
#: iBUG 68 indices: the inner ends of the brows (at rest), the inner corners of the eyes, the nose tip.
INNER_BROWS, INNER_EYE_CORNERS, NOSE_TIP = (21, 22), (39, 42), 30


def test_creases_follow_the_motion() -> None:
    table = emotion_emphasis(EMOTIONS)
    anger = crease_intensities(table[ANGER])
    assert anger["frown"] > 0.5  # brows down and together
    assert anger["forehead"] == 0.0  # lowered brows draw no forehead lines
    happiness = crease_intensities(table[EMOTIONS.index("happiness")])
    assert happiness["fold"] > 0.5 and happiness["frown"] == happiness["bridge"] == 0.0  # a smile: folds only
    assert crease_intensities(table[EMOTIONS.index("surprise")])["forehead"] > 0.5  # brows up: forehead lines
    assert crease_intensities(table[EMOTIONS.index("disgust")])["bridge"] > 0.5  # nose wrinkler
    assert all(value == 0.0 for value in crease_intensities(np.zeros((68, 2))).values())


def test_no_crease_leaves_the_image_alone() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    points = rng.uniform(10, 54, (68, 2))
    before = image.copy()
    draw_creases(image, points, 20.0, {"frown": 0.0, "forehead": 0.0, "fold": 0.0, "bridge": 0.0})
    assert np.array_equal(image, before)


def test_anger_darkens_the_frown_between_the_brows_and_leaves_the_forehead(animator, still) -> None:
    gates = GateControl(np.eye(len(EMOTIONS), dtype=np.float32)[ANGER])
    plain = PortraitAnimator(animator.motion, dataclasses.replace(animator.cfg, creases=False))
    with_creases = animator.render_frame(still, 0, gates).astype(np.int16)
    without = plain.render_frame(still, 0, gates).astype(np.int16)
    change = (with_creases - without).max(axis=2), (with_creases - without).min(axis=2)
    assert change[0].max() <= 1, "a crease brightened the face"  # shading only darkens (rounding aside)
    darkened = -change[1] > DARKENED

    rig = still.rig
    points, unit = rig.points68, rig.face_unit_px
    left, right = points[INNER_EYE_CORNERS[0], 0], points[INNER_EYE_CORNERS[1], 0]
    brows = points[list(INNER_BROWS)].mean(axis=0)
    ys, xs = np.nonzero(darkened)
    glabella = (xs > left) & (xs < right) & (ys > brows[1] - 0.2 * unit) & (ys < points[NOSE_TIP][1])
    assert np.count_nonzero(glabella) > 50, "anger drew no frown lines between the brows"
    assert ys.min() > brows[1] - 0.3 * unit, "a crease on the forehead under anger (its brows come down)"
    assert ys.max() < points[NOSE_TIP][1] + 0.6 * unit, "a crease below the mouth's top under anger"
