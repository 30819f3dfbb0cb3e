"""The drawn mouth interior (engine/portrait/mouth.py): tones from the portrait, drawn only inside the opened lips.

The palette is measured with real MediaPipe on a real photo (scikit-image's astronaut, public domain) and on
its black-and-white copy; the drawing is checked on synthetic lip contours at two scales.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.io.face import detect_landmarks
from engine.portrait.mouth import (
    MouthPalette,
    PortraitTones,
    derive_palette,
    draw_mouth_interior,
    luminance,
    mouth_palette,
)

WHITE = MouthPalette(cavity_back=(255.0,) * 3, cavity_front=(255.0,) * 3, tongue=(255.0,) * 3, teeth=(255.0,) * 3)


def hue_spread(colour) -> float:
    return float(np.ptp(np.asarray(colour)))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage.data import astronaut as load

    return load()


@pytest.fixture(scope="module")
def grey_astronaut(astronaut) -> np.ndarray:
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    return np.repeat(grey[..., None], 3, axis=2)


def open_mouth(scale: float = 1.0, gap: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """Inner lip contours (11 points, corner to corner) of a mouth 120 px wide at scale 1, centred at (128, 128)."""
    t = np.linspace(-1.0, 1.0, 11)
    x = 128 + 60 * t
    upper = np.stack([x, 128 - 0.35 * gap * (1 - t**2)], axis=1)
    lower = np.stack([x, 128 + 0.65 * gap * (1 - t**2)], axis=1)
    return upper * scale, lower * scale


def lip_polygon_mask(upper: np.ndarray, lower: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels the contour polygon touches (any coverage), as bool."""
    mask = np.zeros(shape, np.uint8)
    points = np.round(np.concatenate([upper, lower[::-1]]) * 16).astype(np.int32)
    cv2.fillPoly(mask, [points], 255, cv2.LINE_AA, 4)
    return cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0


def test_palette_of_a_colour_portrait_is_warm_and_of_a_grey_one_grey(astronaut, grey_astronaut):
    colour = mouth_palette(astronaut, detect_landmarks(astronaut).points, grey=False)
    for tone in (colour.cavity_back, colour.cavity_front, colour.tongue):
        r, g, b = tone
        assert r > g + 5 and r > b + 5, tone  # red-brown, not purple or grey
    r, g, b = colour.teeth
    assert r >= g >= b and r - b < 0.25 * r  # an off-white, warm
    assert not colour.is_grey
    points = detect_landmarks(grey_astronaut).points
    grey = mouth_palette(grey_astronaut, points, grey=True)
    assert grey.is_grey
    # Even unflagged, a colourless portrait gives a near-grey mouth: the hue comes from the portrait.
    unflagged = mouth_palette(grey_astronaut, points, grey=False)
    assert max(hue_spread(unflagged.cavity_front), hue_spread(unflagged.tongue)) < 4


def test_palette_follows_the_lips_and_the_light():
    skin = np.array([200.0, 160.0, 140.0])
    red = derive_palette(PortraitTones(lip=np.array([190.0, 60.0, 70.0]), skin=skin, sclera=200.0,
                                       own_teeth=None, side_light=0.0, grey=False))
    pale = derive_palette(PortraitTones(lip=np.array([170.0, 150.0, 145.0]), skin=skin, sclera=200.0,
                                        own_teeth=None, side_light=0.0, grey=False))
    assert hue_spread(red.cavity_front) > hue_spread(pale.cavity_front) > 0
    dark = derive_palette(PortraitTones(lip=np.array([95.0, 30.0, 35.0]), skin=skin / 2, sclera=100.0,
                                        own_teeth=None, side_light=0.3, grey=False))
    for name in ("cavity_back", "cavity_front", "tongue", "teeth"):
        assert luminance(getattr(dark, name)) < 0.6 * luminance(getattr(red, name)), name
    assert dark.side_light == pytest.approx(0.3)
    for palette in (red, pale, dark):  # teeth > tongue > the cavity's front > its back
        levels = [float(luminance(t)) for t in (palette.teeth, palette.tongue, palette.cavity_front,
                                                palette.cavity_back)]
        assert levels == sorted(levels, reverse=True) and levels[0] > 3 * levels[2]


def test_interior_is_drawn_only_inside_the_opened_lips_with_a_soft_edge():
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal([200, 160, 140], 6, (256, 256, 3)), 0, 255).astype(np.uint8)
    upper, lower = open_mouth()
    drawn = image.copy()
    draw_mouth_interior(drawn, upper, lower, 1.0, MouthPalette())
    changed = np.any(drawn != image, axis=2)
    assert changed.sum() > 1000
    polygon = np.concatenate([upper, lower[::-1]])
    x0, y0 = np.floor(polygon.min(0)).astype(int)
    x1, y1 = np.ceil(polygon.max(0)).astype(int)
    outside_box = np.ones_like(changed)
    outside_box[y0:y1 + 1, x0:x1 + 1] = False
    assert not changed[outside_box].any()
    assert not changed[~lip_polygon_mask(upper, lower, changed.shape)].any()
    # The alpha (drawn in white on black) rises smoothly from the lips inward: no hard aliased step.
    alpha = np.zeros((256, 256, 3), np.uint8)
    draw_mouth_interior(alpha, upper, lower, 1.0, WHITE)
    alpha = alpha[..., 0].astype(float) / 255
    assert alpha.max() > 0.99
    drawn = (alpha > 0).astype(np.uint8)
    edge = (drawn > 0) & (cv2.erode(drawn, np.ones((3, 3), np.uint8)) == 0)  # drawn pixels next to undrawn ones
    assert (alpha[edge] < 0.9).mean() > 0.95  # the outermost drawn pixels are never opaque
    assert np.abs(np.diff(alpha, axis=0)).max() < 0.7 and np.abs(np.diff(alpha, axis=1)).max() < 0.7


def test_teeth_are_brighter_than_the_cavity_and_shaded_under_the_lip():
    image = np.full((256, 256, 3), (200, 160, 140), np.uint8)
    upper, lower = open_mouth(gap=50.0)
    draw_mouth_interior(image, upper, lower, 1.0, MouthPalette())
    lum = luminance(image.astype(np.float32))
    x = 128
    top, bottom = int(np.ceil(upper[5, 1])), int(np.floor(lower[5, 1]))
    column = lum[top:bottom, x]
    teeth = column[: len(column) // 4]
    middle = column[len(column) // 2 - 2: len(column) // 2 + 3]
    assert teeth.max() > middle.mean() + 80
    assert teeth[1] < teeth.max() - 15  # shaded right under the upper lip
    assert np.ptp(image[top:bottom, x].astype(int), axis=1).max() > 20  # in colour, not grey


def test_the_drawing_is_the_same_at_256_and_2048_pixels():
    small, large = np.zeros((256, 256, 3), np.uint8), np.zeros((2048, 2048, 3), np.uint8)
    draw_mouth_interior(small, *open_mouth(1.0), 1.0, MouthPalette())
    draw_mouth_interior(large, *open_mouth(8.0), 1.0, MouthPalette())
    shrunk = cv2.resize(large, (256, 256), interpolation=cv2.INTER_AREA).astype(float)
    inside = lip_polygon_mask(*open_mouth(1.0), (256, 256))
    assert np.abs(shrunk - small.astype(float))[inside].mean() < 6


def test_strength_reveals_the_interior_from_the_middle_and_nothing_is_drawn_when_closed():
    image = np.full((256, 256, 3), 180, np.uint8)
    upper, lower = open_mouth()
    half = image.copy()
    draw_mouth_interior(half, upper, lower, 0.5, MouthPalette())
    full = image.copy()
    draw_mouth_interior(full, upper, lower, 1.0, MouthPalette())
    middle = (slice(132, 136), slice(125, 132))  # midway between the lips (128 - 14 .. 128 + 26)
    by_the_lip = (slice(116, 118), slice(125, 132))  # just under the upper lip (the teeth)
    assert np.abs(half[middle].astype(int) - full[middle]).max() <= 2  # the middle is drawn first ...
    assert np.array_equal(half[by_the_lip], image[by_the_lip])  # ... the portrait stays by the lips
    assert np.abs(full[by_the_lip].astype(int) - image[by_the_lip]).max() > 10
    untouched = image.copy()
    draw_mouth_interior(untouched, upper, lower, 0.0, MouthPalette())
    draw_mouth_interior(untouched, upper, upper.copy(), 1.0, MouthPalette())
    assert np.array_equal(untouched, image)
