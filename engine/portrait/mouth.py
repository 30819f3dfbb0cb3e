"""The drawn mouth interior, in the portrait's own tones.

When the speech or an emotion opens the lips wider than the portrait's own mouth, the pixels between them
have to come from somewhere. :func:`draw_mouth_interior` paints them: a dark cavity (deeper toward the
back and the corners), a hint of the tongue low in the mouth and the upper teeth hanging from the upper
lip (the lower ones too once the mouth is wide open).

Every tone comes from the portrait, once per portrait (:func:`mouth_palette`): the cavity and the tongue
are the lips' own hue, darkened; the teeth are an off-white at the brightness of the face's skin and
sclera, tinted by the skin's white balance (a warm painting gets warm teeth), or the sitter's own teeth
where the portrait shows them; a black-and-white portrait gets grey. The lighting enters through those
samples (a dark painting gets a dark mouth) and through :attr:`MouthPalette.side_light`, which shades
the interior toward the face's darker cheek.

Pure numpy + OpenCV, no model; lengths are shares of the mouth width, so the drawing looks the same at
256 and at 2048 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.io.face import (
    MP_LEFT_CHEEK,
    MP_LEFT_EYE,
    MP_LIPS_INNER,
    MP_LIPS_OUTER,
    MP_RIGHT_CHEEK,
    MP_RIGHT_EYE,
)

#: Rec. 601 luma weights (RGB).
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
#: Sub-pixel bits used when rasterising the mouth polygon.
RASTER_SHIFT = 4


@dataclass(frozen=True)
class PaletteRecipe:
    """How a palette is derived from the portrait's tones (luminances relative to the skin's)."""

    cavity_back: float = 0.11  # the back of the mouth, in the dark
    cavity_front: float = 0.32  # just inside the lips
    tongue: float = 0.5
    cavity_saturation: float = 1.3  # the lips' hue, a little deeper in the cavity
    tongue_saturation: float = 1.1
    #: The hue of the inside of a mouth under neutral light (RGB over luminance) and the skin colour taken as
    #: neutral light's; the portrait's cast is its skin's departure from it. The cavity and the tongue take
    #: this much of their hue from the mouth's hue under the portrait's cast (the rest from the lips).
    mouth_hue: tuple[float, float, float] = (1.6, 0.76, 0.72)
    neutral_skin: tuple[float, float, float] = (200.0, 160.0, 140.0)
    mouth_hue_share: float = 0.5
    #: Lit upper teeth: the brighter of the skin and the sclera, times this.
    teeth_over_light: float = 1.02
    teeth_max: float = 238.0
    teeth_min_share_of_skin: float = 0.75
    #: Off-white of teeth under neutral light (luminance 1), and how much of the skin's cast tints it.
    teeth_ivory: tuple[float, float, float] = (1.05, 1.0, 0.9)
    teeth_skin_cast: float = 0.12
    #: Weight of the sitter's own teeth (where the portrait shows them) against the estimate.
    own_teeth_weight: float = 0.7
    #: Sclera brightness: this percentile of the luminance inside the eye contours.
    sclera_percentile: float = 88.0
    #: Cheek difference (-1..1) beyond which the side lighting stops growing.
    side_light_max: float = 0.5


@dataclass(frozen=True)
class MouthPalette:
    """The tones of a drawn mouth interior (RGB 0..255), derived from one portrait (:func:`mouth_palette`)."""

    cavity_back: tuple[float, float, float] = (22.0, 9.0, 8.0)
    cavity_front: tuple[float, float, float] = (58.0, 26.0, 23.0)
    tongue: tuple[float, float, float] = (118.0, 58.0, 56.0)
    teeth: tuple[float, float, float] = (214.0, 202.0, 180.0)
    #: -1..1: the face is lit from the image's left (-) or right (+); the interior is shaded accordingly.
    side_light: float = 0.0

    @property
    def is_grey(self) -> bool:
        """Every tone is a grey (a black-and-white portrait)."""
        tones = np.array([self.cavity_back, self.cavity_front, self.tongue, self.teeth])
        return bool(np.all(np.ptp(tones, axis=1) < 1e-3))


@dataclass(frozen=True)
class PortraitTones:
    """What the palette is derived from, measured on the portrait (:func:`portrait_tones`)."""

    lip: np.ndarray  # (3,) median colour of the lips
    skin: np.ndarray  # (3,) median colour of the cheeks
    sclera: float  # luminance of the whites of the eyes
    own_teeth: np.ndarray | None  # (3,) the sitter's own teeth, where the portrait shows them
    side_light: float  # (image-right cheek - image-left cheek) / their sum
    grey: bool


def luminance(colour: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of RGB colour(s) (..., 3)."""
    return np.asarray(colour, np.float32) @ LUMA


def _chroma(colour: np.ndarray, saturation: float = 1.0) -> np.ndarray:
    """A colour's per-channel ratio to its luminance (grey = 1, 1, 1), its departure from grey scaled."""
    colour = np.asarray(colour, np.float32)
    ratio = colour / max(float(luminance(colour)), 1.0)
    return np.maximum(1.0 + saturation * (ratio - 1.0), 0.05)


def _tone(chroma: np.ndarray, level: float) -> tuple[float, float, float]:
    rgb = np.clip(chroma * level, 0.0, 255.0)
    return float(rgb[0]), float(rgb[1]), float(rgb[2])


def derive_palette(tones: PortraitTones, recipe: PaletteRecipe = PaletteRecipe()) -> MouthPalette:
    """The interior's tones from the portrait's: cavity and tongue in the lips' hue at the skin's light level,
    teeth an off-white at the skin/sclera brightness tinted by the skin's cast (or the sitter's own teeth)."""
    light = float(luminance(tones.skin))
    lip, skin = np.asarray(tones.lip, np.float32), np.asarray(tones.skin, np.float32)
    if tones.grey:
        lip = np.full(3, luminance(lip), np.float32)
        skin = np.full(3, light, np.float32)
    cast = _chroma(skin) / _chroma(np.asarray(recipe.neutral_skin, np.float32))
    mouth = np.asarray(recipe.mouth_hue, np.float32) * cast
    mouth = mouth / float(luminance(mouth))
    # A faded or sepia portrait takes less of the mouth's hue: as much as its skin has colour.
    colourful = float(np.ptp(_chroma(skin)) / np.ptp(_chroma(np.asarray(recipe.neutral_skin, np.float32))))
    share = recipe.mouth_hue_share * float(np.clip(colourful, 0.0, 1.0))

    def hue(saturation: float) -> np.ndarray:
        mixed = (1 - share) * _chroma(lip) + share * mouth
        return _chroma(mixed * 100.0, saturation)

    deep = hue(recipe.cavity_saturation)
    teeth_level = float(np.clip(max(light, tones.sclera) * recipe.teeth_over_light,
                                recipe.teeth_min_share_of_skin * light, recipe.teeth_max))
    ivory = np.asarray(recipe.teeth_ivory, np.float32)
    ivory = ivory / float(luminance(ivory))
    teeth_chroma = (1 - recipe.teeth_skin_cast) * ivory + recipe.teeth_skin_cast * _chroma(skin)
    teeth = teeth_chroma * teeth_level
    if tones.own_teeth is not None:
        teeth = (1 - recipe.own_teeth_weight) * teeth + recipe.own_teeth_weight * np.asarray(tones.own_teeth, np.float32)
    if tones.grey:
        teeth = np.full(3, luminance(teeth), np.float32)
        deep = np.ones(3, np.float32)
    return MouthPalette(cavity_back=_tone(deep, recipe.cavity_back * light),
                        cavity_front=_tone(deep, recipe.cavity_front * light),
                        tongue=_tone(hue(recipe.tongue_saturation) if not tones.grey else deep,
                                     recipe.tongue * light),
                        teeth=_tone(teeth, 1.0),
                        side_light=float(np.clip(tones.side_light, -recipe.side_light_max, recipe.side_light_max)))


def _hull_pixels(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The pixels (P, 3) inside the convex hull of some points."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return image[mask > 0]


def _polygon_pixels(image: np.ndarray, polygon: np.ndarray, minus: np.ndarray | None = None) -> np.ndarray:
    """The pixels (P, 3) inside a polygon (less those inside ``minus``)."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    if minus is not None:
        cv2.fillPoly(mask, [np.round(minus).astype(np.int32)], 0)
    return image[mask > 0]


#: The sitter's own teeth: at least this many pixels between the lips, and the bright ones must be this much
#: brighter than the lips and this little saturated (max - min over luminance) to count as teeth.
OWN_TEETH_MIN_PIXELS = 24
OWN_TEETH_OVER_LIP = 1.12
OWN_TEETH_MAX_SATURATION = 0.45
OWN_TEETH_PERCENTILE = 70.0


def _own_teeth(image: np.ndarray, mesh: np.ndarray, lip: np.ndarray) -> np.ndarray | None:
    """The colour of the sitter's teeth where the portrait's mouth is open and shows them, else None."""
    pixels = _polygon_pixels(image, mesh[list(MP_LIPS_INNER)]).astype(np.float32)
    if len(pixels) < OWN_TEETH_MIN_PIXELS:
        return None
    lum = luminance(pixels)
    bright = pixels[lum >= np.percentile(lum, OWN_TEETH_PERCENTILE)]
    teeth = np.median(bright, axis=0)
    level = float(luminance(teeth))
    if level < OWN_TEETH_OVER_LIP * float(luminance(lip)) or np.ptp(teeth) > OWN_TEETH_MAX_SATURATION * level:
        return None
    return teeth


def portrait_tones(image: np.ndarray, mesh: np.ndarray, grey: bool, lip: np.ndarray | None = None,
                   recipe: PaletteRecipe = PaletteRecipe()) -> PortraitTones:
    """Measure the lips, the cheeks, the whites of the eyes and any visible teeth of a portrait.

    ``mesh``: its MediaPipe points (478 or 468, pixels); ``lip``: the lips' colour if already measured.
    """
    if lip is None:
        pixels = _polygon_pixels(image, mesh[list(MP_LIPS_OUTER)], mesh[list(MP_LIPS_INNER)])
        lip = np.median(pixels, axis=0) if len(pixels) else np.array([150, 80, 80], np.float32)
    lip = np.asarray(lip, np.float32)
    cheeks = [_hull_pixels(image, mesh[list(side)]).astype(np.float32) for side in (MP_RIGHT_CHEEK, MP_LEFT_CHEEK)]
    skin = np.median(np.concatenate(cheeks), axis=0)
    left, right = (float(np.median(luminance(c))) for c in cheeks)  # the sitter's right cheek is the image's left
    eyes = np.concatenate([_hull_pixels(image, mesh[list(side)]) for side in (MP_RIGHT_EYE, MP_LEFT_EYE)])
    sclera = float(np.percentile(luminance(eyes), recipe.sclera_percentile)) if len(eyes) else float(luminance(skin))
    return PortraitTones(lip=lip, skin=skin, sclera=sclera, own_teeth=_own_teeth(image, mesh, lip),
                         side_light=(right - left) / max(right + left, 1.0), grey=grey)


def mouth_palette(image: np.ndarray, mesh: np.ndarray, grey: bool, lip: np.ndarray | None = None) -> MouthPalette:
    """The mouth interior's palette of a portrait (see :func:`portrait_tones` and :func:`derive_palette`)."""
    return derive_palette(portrait_tones(image, mesh, grey, lip))


# ---------------------------------------------------------------------------------------------- drawing
@dataclass(frozen=True)
class MouthShape:
    """Proportions of the drawn interior (lengths as shares of the mouth width, positions along the mouth
    in half-widths from its middle, light as factors of the palette's tones)."""

    upper_teeth_share: float = 0.45  # upper teeth fill at most this share of the local gap ...
    upper_teeth_height: float = 0.12  # ... and are at most this tall in the middle,
    upper_teeth_taper: float = 0.45  # ... and this much shorter at the end of the span (the arch recedes)
    lower_teeth_share: float = 0.16
    lower_teeth_height: float = 0.035
    lower_teeth_span: float = 0.55  # share of the half-width the lower teeth show over
    lower_tooth_edges: tuple[float, ...] = (0.09, 0.26, 0.42)
    lower_teeth_from_gap: float = 0.28  # lower teeth show once the gap exceeds this share of the width
    lower_teeth_light: float = 0.7  # in the upper teeth's shadow
    teeth_span: float = 0.78  # share of the half-width the visible teeth cover
    #: Gaps between teeth (central incisors, laterals, canines): small notches at the biting edge.
    tooth_edges: tuple[float, ...] = (0.0, 0.25, 0.45, 0.62)
    tooth_notch: float = 0.1  # share of the tooth length a notch takes off
    tooth_notch_width: float = 0.016
    tooth_line: float = 0.06  # darkening along a gap between two teeth
    lip_shadow: float = 0.5  # teeth light right under the upper lip ...
    lip_shadow_depth: float = 0.55  # ... rising to full over this share of the teeth's length
    corner_shade: float = 0.35  # teeth light at the ends of the span
    back_depth: float = 1.0  # share of the half-gap over which the cavity darkens toward the back
    corner_depth: float = 0.45  # share of the half-width near the corners that darkens (buccal corridor)
    tongue_height: float = 0.38  # share of the gap the tongue's hump rises above the lower lip
    tongue_half_width: float = 0.62  # in half-widths
    tongue_from_gap: float = 0.1  # the tongue shows once the gap exceeds this share of the width
    tongue_back_light: float = 0.55  # the top of the tongue's hump (going back into the mouth) against its front
    tongue_top_soft: float = 0.35  # share of the hump's height over which its top fades into the cavity
    corner_fade: float = 0.15  # the drawing fades over this share of the half-width at the mouth corners ...
    corner_alpha: float = 0.35  # ... to this opacity (the lips' own corner shows through)
    reveal_soft: float = 0.35  # share of the half-gap over which a partly revealed drawing fades out
    side_shade: float = 0.5  # brightness change across the mouth per unit of the palette's side light
    edge: float = 0.01  # softness of the drawn shapes' edges
    feather: float = 0.015  # inward feather along the inner lip contour
    min_edge_px: float = 0.8


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _profile(contour: np.ndarray, mid: np.ndarray, axis: np.ndarray, down: np.ndarray,
             half: float) -> tuple[np.ndarray, np.ndarray]:
    """A lip contour as (position along the mouth in half-widths, depth below the corners' line in px), sorted."""
    along = (contour - mid) @ axis / half
    depth = (contour - mid) @ down
    order = np.argsort(along)
    return along[order], depth[order]


def _mouth_coordinates(upper: np.ndarray, lower: np.ndarray, width: float,
                       box: tuple[int, int, int, int]) -> tuple[np.ndarray, ...]:
    """Per pixel of ``box``: (position along the mouth in half-widths, depth below the corners' line,
    depth of the upper lip there, depth of the lower lip there), depths in px."""
    x0, y0, x1, y1 = box
    half = width / 2
    axis = (upper[-1] - upper[0]) / width
    down = np.array([-axis[1], axis[0]])
    mid = (upper[0] + upper[-1]) / 2
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    rel_x, rel_y = xx - mid[0], yy - mid[1]
    along = (rel_x * axis[0] + rel_y * axis[1]) / half
    depth = rel_x * down[0] + rel_y * down[1]
    top = np.interp(along, *_profile(upper, mid, axis, down, half))
    bottom = np.interp(along, *_profile(lower, mid, axis, down, half))
    return along, depth, top, bottom


def _tooth_gaps(along: np.ndarray, width: float, positions: tuple[float, ...], shape: MouthShape) -> np.ndarray:
    """0..1 near the gaps between teeth at ``positions`` (half-widths from the middle, mirrored)."""
    half = width / 2
    gaps = np.zeros_like(along)
    for position in positions:
        for sign in ((1.0,) if position == 0 else (1.0, -1.0)):
            gaps = np.maximum(gaps, np.exp(-0.5 * ((along - sign * position) * half
                                                  / (shape.tooth_notch_width * width)) ** 2))
    return gaps


def _arch(along: np.ndarray, top: np.ndarray, span: float) -> np.ndarray:
    """The upper lip's line smoothed to a parabola (least squares over the teeth's span): where the teeth's
    biting edge hangs from, so a wavy or notched lip contour does not make wavy teeth."""
    inside = np.abs(along) <= span
    if int(inside.sum()) < 3:
        return top
    coeffs = np.polyfit(along[inside].ravel(), top[inside].ravel(), 2)
    return np.polyval(coeffs, along)


def _upper_teeth(along: np.ndarray, depth: np.ndarray, top: np.ndarray, bottom: np.ndarray, width: float,
                 edge: float, shape: MouthShape) -> tuple[np.ndarray, np.ndarray]:
    """(coverage 0..1, light) of the upper teeth: from under the upper lip down to a smooth biting edge."""
    span = np.abs(along) / shape.teeth_span
    arch = _arch(along, top, shape.teeth_span)
    below = depth - top
    length = np.minimum(shape.upper_teeth_share * np.maximum(bottom - arch, 0.0), shape.upper_teeth_height * width)
    length = length * (1.0 - shape.upper_teeth_taper * np.clip(span, 0, 1) ** 2)
    gaps = _tooth_gaps(along, width, shape.tooth_edges, shape)
    length = length * (1.0 - shape.tooth_notch * gaps)
    cover = _smoothstep((arch + length - depth) / edge + 0.5) * _smoothstep((below + edge) / edge)
    cover = cover * _smoothstep((1.0 - span) * 6.0)
    share = below / np.maximum(length, 1e-3)
    light = shape.lip_shadow + (1 - shape.lip_shadow) * _smoothstep(share / shape.lip_shadow_depth)
    light = light * (1.0 - (1.0 - shape.corner_shade) * np.clip(span, 0, 1) ** 2)
    light = light * (1.0 - shape.tooth_line * gaps)
    return cover, light


def _lower_teeth(along: np.ndarray, above: np.ndarray, gap: np.ndarray, width: float, edge: float,
                 shape: MouthShape) -> tuple[np.ndarray, np.ndarray]:
    """(coverage 0..1, light) of the lower teeth, shown once the mouth is wide open; ``above``: px over the lower lip."""
    span = np.abs(along) / shape.lower_teeth_span
    length = np.minimum(shape.lower_teeth_share * gap, shape.lower_teeth_height * width) * (1.0 - 0.5 * np.clip(span, 0, 1) ** 2)
    gaps = _tooth_gaps(along, width, shape.lower_tooth_edges, shape)
    length = length * (1.0 - 2 * shape.tooth_notch * gaps)
    cover = _smoothstep((length - above) / edge + 0.5) * _smoothstep((1.0 - span) * 4.0)
    cover = cover * _smoothstep((float(np.max(gap)) / width - shape.lower_teeth_from_gap) * 25.0)
    light = shape.lower_teeth_light * (0.75 + 0.25 * _smoothstep(above / np.maximum(length, 1e-3)))
    light = light * (1.0 - (1.0 - shape.corner_shade) * np.clip(span, 0, 1) ** 2) * (1.0 - shape.tooth_line * gaps)
    return cover, light


def _tongue(along: np.ndarray, depth: np.ndarray, bottom: np.ndarray, gap: np.ndarray, width: float,
            edge: float, shape: MouthShape) -> tuple[np.ndarray, np.ndarray]:
    """(coverage 0..1, light) of the tongue: a dome rising from the lower lip's lowest point."""
    middle = np.abs(along) < 0.25
    floor = float(np.max(bottom[middle])) if middle.any() else float(np.max(bottom))
    rise = shape.tongue_height * float(np.max(gap))
    across = np.clip(along / shape.tongue_half_width, -1, 1)
    height = rise * np.sqrt(np.maximum(1.0 - across**2, 0.0))
    above = floor - depth
    soft = max(shape.tongue_top_soft * rise, edge)
    cover = _smoothstep((height - above) / soft) * _smoothstep((float(np.max(gap)) / width - shape.tongue_from_gap) * 20.0)
    light = 1.0 - (1.0 - shape.tongue_back_light) * _smoothstep(above / max(rise, 1e-3))
    light = light * (1.0 - 0.3 * across**2)
    return cover, light


def interior_colours(along: np.ndarray, depth: np.ndarray, top: np.ndarray, bottom: np.ndarray, width: float,
                     palette: MouthPalette, shape: MouthShape = MouthShape()) -> np.ndarray:
    """The interior's colour (H, W, 3) float at mouth coordinates (see :func:`_mouth_coordinates`)."""
    gap = np.maximum(bottom - top, 1e-3)
    below, above = depth - top, bottom - depth
    edge = max(shape.min_edge_px, shape.edge * width)
    # Cavity: lighter just inside the lips, deep at the back and toward the corners.
    inward = np.minimum(below, above) / np.maximum(0.5 * gap, 1e-3)
    back = np.maximum(_smoothstep(inward / shape.back_depth),
                      _smoothstep((np.abs(along) - (1 - shape.corner_depth)) / shape.corner_depth))
    front_c, back_c = np.asarray(palette.cavity_front, np.float32), np.asarray(palette.cavity_back, np.float32)
    colour = front_c + (back_c - front_c) * back[..., None].astype(np.float32)
    layers = (
        (_tongue(along, depth, bottom, gap, width, edge, shape), palette.tongue),
        (_lower_teeth(along, above, gap, width, edge, shape), palette.teeth),
        (_upper_teeth(along, depth, top, bottom, width, edge, shape), palette.teeth),
    )
    for (cover, light), tone in layers:  # shade toward the warm shadow of the cavity, never toward grey
        layer = front_c + (np.asarray(tone, np.float32) - front_c) * light[..., None].astype(np.float32)
        colour += (layer - colour) * cover[..., None].astype(np.float32)
    side = 1.0 + shape.side_shade * palette.side_light * np.clip(along, -1, 1)
    return colour * side[..., None].astype(np.float32)


def _mouth_box(polygon: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """The pixel box ``(x0, y0, x1, y1)`` around the mouth polygon inside the image (None when empty)."""
    h, w = shape[:2]
    x0, y0 = np.maximum(np.floor(polygon.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(polygon.max(axis=0)).astype(int) + 1, [w, h])
    if x1 <= x0 or y1 <= y0:
        return None
    return int(x0), int(y0), int(x1), int(y1)


#: The feathered coverage counts as full from this blurred coverage on (the contour itself is at 0.5).
FEATHER_FULL = 0.9


def _inside(polygon: np.ndarray, box: tuple[int, int, int, int], feather_px: float) -> np.ndarray:
    """Coverage (H, W) of the polygon in ``box``, anti-aliased and feathered inward only (0 outside it)."""
    x0, y0, x1, y1 = box
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    points = np.round((polygon - np.array([x0, y0], np.float64)) * (1 << RASTER_SHIFT)).astype(np.int32)
    cv2.fillPoly(mask, [points], 255, cv2.LINE_AA, RASTER_SHIFT)
    cover = mask.astype(np.float32) / 255.0
    soft = cv2.GaussianBlur(cover, (0, 0), feather_px, borderType=cv2.BORDER_CONSTANT)
    return cover * np.clip(soft / FEATHER_FULL, 0.0, 1.0)


def _reveal(depth: np.ndarray, top: np.ndarray, bottom: np.ndarray, strength: float, soft: float) -> np.ndarray:
    """0..1: how much of the drawing shows at ``strength``, from the middle line of the gap (first) to the lips."""
    half = np.maximum(0.5 * (bottom - top), 1e-3)
    inward = np.clip(np.minimum(depth - top, bottom - depth) / half, 0.0, 1.0)  # 0 at the lips, 1 midway
    return _smoothstep((inward + strength * (1.0 + soft) - 1.0) / soft)


#: Lips parted by less than this area (px²) are closed: nothing is drawn.
MIN_AREA_PX = 1.0


def draw_mouth_interior(image: np.ndarray, upper: np.ndarray, lower: np.ndarray, strength: float,
                        palette: MouthPalette = MouthPalette(), shape: MouthShape = MouthShape()) -> None:
    """Paint a mouth interior between the inner lip contours, in place, in the palette's tones.

    ``upper`` / ``lower``: the inner lip contours (K, 2) in pixels, from one mouth corner to the other.
    ``strength`` (0..1) reveals the drawing from the middle of the gap outward (1: all of it, where the
    portrait has no interior of its own to show): a mouth that opens past the sitter's own parted lips
    darkens first between them, while her own teeth stay by the lips, and a barely parted one shows a dark
    slit, never a half-transparent grey veil over the whole opening.
    Only pixels inside the contour change; the edge along the lips is anti-aliased and feathered inward.
    """
    if strength <= 0:
        return
    polygon = np.concatenate([upper, lower[::-1]]).astype(np.float64)
    width = float(np.linalg.norm(upper[-1] - upper[0]))
    area = 0.5 * abs(float(np.dot(polygon[:, 0], np.roll(polygon[:, 1], 1))
                           - np.dot(polygon[:, 1], np.roll(polygon[:, 0], 1))))
    if width < 2 or area < MIN_AREA_PX:
        return
    box = _mouth_box(polygon, image.shape)
    if box is None:
        return
    x0, y0, x1, y1 = box
    gap = float(np.max(lower[:, 1] - upper[:, 1]))
    feather = max(shape.min_edge_px, min(shape.feather * width, 0.2 * max(gap, 0.0)))
    alpha = _inside(polygon, box, feather)
    if alpha.max() <= 0:
        return
    along, depth, top, bottom = _mouth_coordinates(upper, lower, width, box)
    alpha = alpha * _reveal(depth, top, bottom, float(np.clip(strength, 0, 1)), shape.reveal_soft)
    alpha = alpha * (shape.corner_alpha + (1 - shape.corner_alpha) * _smoothstep((1.0 - np.abs(along)) / shape.corner_fade))
    colour = interior_colours(along, depth, top, bottom, width, palette, shape)
    patch = image[y0:y1, x0:x1]
    blended = patch.astype(np.float32) + (colour - patch) * alpha[..., None]
    drawn = alpha > 0
    patch[drawn] = np.clip(blended[drawn] + 0.5, 0, 255).astype(np.uint8)
