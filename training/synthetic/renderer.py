"""The face renderer: one :class:`Identity` with an expression, a mouth opening, a blink and a head pose -> a frame.

:class:`FaceRenderer` draws a portrait (background, shoulders, hair, ears, face, eyes, brows, nose,
lips, optional glasses and beard) with antialiased OpenCV polygons. Everything is computed in *face
units* (1 = half the face width, origin between the eyes at nose height, y down) and mapped to
pixels by the frame's head :class:`Pose` (roll, translation, scale), so the 68 ground-truth landmarks
(iBUG 68-point order) are exact by construction. The mouth opens with the speech-driven
``mouth_open`` and with AU26 (jaw drop); AU16 lowers the lower lip.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from training.synthetic.identities import (
    AU_LIST,
    EMOTION_PROTOTYPES,
    RENDER_EMOTIONS,
    Identity,
    emotion_to_aus,
)

DEFAULT_SIZE = 128

#: Number of ground-truth landmarks (iBUG 68-point order).
N_LANDMARKS = 68

# landmark index ranges (iBUG 68)
JAW = slice(0, 17)
BROW_L, BROW_R = slice(17, 22), slice(22, 27)
NOSE_BRIDGE, NOSE_BOTTOM = slice(27, 31), slice(31, 36)
EYE_L, EYE_R = slice(36, 42), slice(42, 48)
LIPS_OUTER, LIPS_INNER = slice(48, 60), slice(60, 68)

# mouth opening in face units
SPEECH_OPEN_GAIN = 0.22  # face units of lip separation at mouth_open = 1
#: Action units the geometry draws beyond :data:`AU_LIST` (not in the data sets' AU columns): AU14, the
#: dimpler (lip corners tightened and drawn in, a little up; lips thinned), for custom-emotion recipes.
GEOMETRY_ONLY_AUS: tuple[int, ...] = (14,)
AU26_OPEN_GAIN = 0.20  # face units of lip separation added by AU26 at intensity 1

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_SUB = 1 << _SHIFT
_AA = cv2.LINE_AA

_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 28, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 28, endpoint=False))], axis=1)
_U = np.linspace(-1.0, 1.0, 13)  # parameter across eyes and lips

#: Colours that are the same for everybody (RGB).
_EYE_WHITE = (245, 243, 238)
_LASH = (35, 25, 25)
_PUPIL = (15, 12, 12)
_MOUTH_INSIDE = (70, 22, 28)
_UPPER_TEETH = (238, 236, 228)
_LOWER_TEETH = (225, 222, 214)
_BLUSH = (225, 95, 95)
_WHITE = (255, 255, 255)


@dataclass
class Pose:
    """Head pose of one frame: roll in degrees, shift in fractions of the image, scale factor."""

    roll: float = 0.0
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0


def _ellipse(cx: float, cy: float, rx: float, ry: float, a0: float = 0.0, a1: float = 2 * np.pi,
             n: int = 28) -> np.ndarray:
    """``n`` points of an ellipse (or of its arc from angle ``a0`` to ``a1``) in face units."""
    if a0 == 0.0 and a1 == 2 * np.pi and n == 28:
        return _CIRCLE * (rx, ry) + (cx, cy)
    a = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _mix(c1: Sequence[float], c2: Sequence[float], t: float) -> tuple[int, int, int]:
    """The colour ``t`` of the way from ``c1`` to ``c2``."""
    return (int(c1[0] + (c2[0] - c1[0]) * t), int(c1[1] + (c2[1] - c1[1]) * t), int(c1[2] + (c2[2] - c1[2]) * t))


def _shade(c: Sequence[float], f: float) -> tuple[int, int, int]:
    """``c`` darkened (``f`` < 1) or lightened by the factor ``f``."""
    return (min(255, int(c[0] * f)), min(255, int(c[1] * f)), min(255, int(c[2] * f)))


class _Canvas:
    """The frame being drawn and its face-units -> pixels map (the head pose's similarity transform)."""

    def __init__(self, img: np.ndarray, m: np.ndarray, c: np.ndarray) -> None:
        self.img = img
        self.m = m
        self.c = c
        self.scale = float(np.hypot(*m[0]))  # pixels per face unit

    def px(self, p: np.ndarray) -> np.ndarray:
        """Face-unit points ``(..., 2)`` -> pixel coordinates."""
        return np.asarray(p, dtype=np.float64) @ self.m.T + self.c

    def fill(self, pts: np.ndarray, colour: Sequence[int]) -> None:
        """Fill the polygon ``pts`` (face units), antialiased."""
        q = np.round(self.px(pts) * _SUB).astype(np.int32)
        cv2.fillPoly(self.img, [q], colour, _AA, _SHIFT)

    def line(self, pts: np.ndarray, colour: Sequence[int], width: float, closed: bool = False) -> None:
        """Draw the polyline ``pts`` (face units), ``width`` face units wide (at least 1 px), antialiased."""
        q = np.round(self.px(pts) * _SUB).astype(np.int32)
        cv2.polylines(self.img, [q], closed, colour, max(1, int(round(width * self.scale))), _AA, _SHIFT)


class FaceRenderer:
    """Draws one identity at a fixed size. ``render(aus, mouth_open, blink, pose)`` -> (image, landmarks)."""

    def __init__(self, identity: Identity, size: int = DEFAULT_SIZE) -> None:
        self.identity = identity
        self.size = int(size)
        self._background = self._make_background()
        r = np.random.default_rng(int(identity.extra.get("curl_seed", 0)))
        self._curls = r.uniform(0, 1, (40, 2))

    def _make_background(self) -> np.ndarray:
        """The identity's background: one colour, or a vertical gradient between its two colours."""
        s = self.size
        c1, c2 = (np.array(c, dtype=np.float32) for c in self.identity.background)
        if self.identity.gradient:
            t = np.linspace(0.0, 1.0, s, dtype=np.float32)[:, None, None]
            col = c1 * (1 - t) + c2 * t
            return np.broadcast_to(col, (s, s, 3)).astype(np.uint8).copy()
        return np.broadcast_to(c1.astype(np.uint8), (s, s, 3)).copy()

    # -- geometry -------------------------------------------------------------------------------
    def _transform(self, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
        """The face-units -> pixels map of ``pose``: ``p @ m.T + c``."""
        idn = self.identity
        a = idn.face_scale * self.size * pose.scale
        th = math.radians(pose.roll)
        m = a * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        c = np.array([0.5 + pose.dx, 0.53 + pose.dy]) * self.size
        return m, c

    def geometry(self, aus: Mapping[int, float], mouth_open: float, blink: float) -> dict[str, Any]:
        """All shapes in face units for the given expression (used by :meth:`render`).

        Keys: ``mouth`` (lip curves, see :meth:`_mouth_geometry`), ``jaw`` (17 points), ``skull``,
        ``brows`` (left, right: 5 points each), ``eyes`` (left, right: lid curves) and ``au`` (the
        intensity of every AU of :data:`AU_LIST`).
        """
        au = {k: float(aus.get(k, 0.0)) for k in (*AU_LIST, *GEOMETRY_ONLY_AUS)}
        mouth = self._mouth_geometry(au, mouth_open)
        return {
            "mouth": mouth,
            "jaw": self._jaw_geometry(jaw_drop=0.7 * mouth["opening"]),
            "skull": _ellipse(0, -0.3, 1.0, self.identity.head_height - 0.3 + 0.3, np.pi, 2 * np.pi, 24),
            "brows": self._brow_geometry(au),
            "eyes": self._eye_geometry(au, blink),
            "au": au,
        }

    def _mouth_geometry(self, au: Mapping[int, float], mouth_open: float) -> dict[str, Any]:
        """Lip curves over :data:`_U` (13 points from the left corner to the right one).

        ``x_out``/``x_in``: x of the outer and inner lip edges (the lips are slightly wider outside
        than inside); ``out_up``/``in_up``/``in_lo``/``out_lo``: y of the upper lip's outer and inner
        edges and of the lower lip's inner and outer edges; ``opening``: lip separation in face units.
        """
        idn = self.identity
        opening = SPEECH_OPEN_GAIN * float(np.clip(mouth_open, 0, 1)) + AU26_OPEN_GAIN * au[26]
        my = idn.mouth_y
        corner_dy = -0.13 * au[12] + 0.12 * au[15] + 0.025 * au[20] - 0.02 * au[9] - 0.02 * au[14]
        mw = idn.mouth_w * (1 + 0.22 * au[12] + 0.3 * au[20] - 0.18 * au[23] - 0.05 * au[9] - 0.12 * au[14])
        up_c = my - 0.3 * opening - 0.05 * au[9]
        lo_c = my + 0.7 * opening
        u = _U
        f = 1 - u * u
        fb = np.sqrt(np.clip(f, 0, 1))
        corner_y = my + corner_dy
        in_up = corner_y + (up_c - corner_y) * fb
        in_lo = corner_y + (lo_c - corner_y) * fb + 0.09 * au[16] * f
        t_up = idn.lip_upper * (1 - 0.55 * au[23] - 0.3 * au[20] - 0.35 * au[12] - 0.15 * au[14])
        t_lo = idn.lip_lower * (1 - 0.5 * au[23] - 0.2 * au[20] - 0.25 * au[12] - 0.1 * au[14]) + 0.015 * au[16]
        cupid = 1 - 0.3 * np.exp(-((u / 0.16) ** 2)) + 0.12 * np.exp(-(((np.abs(u) - 0.3) / 0.15) ** 2))
        out_up = in_up - t_up * fb ** 0.6 * cupid
        out_lo = in_lo + t_lo * fb ** 0.6
        x_out = u * mw
        x_in = u * mw * 0.92
        return dict(x_out=x_out, x_in=x_in, in_up=in_up, in_lo=in_lo, out_up=out_up, out_lo=out_lo,
                    opening=opening, au16=au[16], au12=au[12])

    def _jaw_geometry(self, jaw_drop: float) -> np.ndarray:
        """The 17 jaw points (a superellipse), the part below the mouth lowered by ``jaw_drop``."""
        idn = self.identity
        n = idn.jaw_power
        th = np.linspace(np.pi, 0, 17)
        c, s = np.cos(th), np.sin(th)
        jx = np.sign(c) * np.abs(c) ** (2 / n) * (1 - idn.jaw_taper * s ** 3)
        jy_top = -0.3
        jy = jy_top + (idn.chin - jy_top) * np.abs(s) ** (2 / n)
        below = np.clip((jy - (idn.mouth_y - 0.05)) / max(1e-3, idn.chin - idn.mouth_y + 0.05), 0, 1)
        jy = jy + jaw_drop * below
        return np.stack([jx, jy], axis=1)

    def _brow_geometry(self, au: Mapping[int, float]) -> list[np.ndarray]:
        """Both brows, 5 points each: the left from outer to inner, the right from inner to outer."""
        idn = self.identity
        brows = []
        for side in (-1, 1):
            t = np.linspace(0, 1, 5)  # 0 inner .. 1 outer
            inner_x, outer_x = side * 0.13, side * (0.13 + idn.brow_len + 0.1)
            x = inner_x + (outer_x - inner_x) * t
            y = idn.brow_y - idn.brow_arch * np.sin(np.pi * (0.15 + 0.7 * t)) + 0.03 * t
            d_in = -0.17 * au[1] + 0.13 * au[4] + 0.06 * au[9]
            d_out = -0.17 * au[2] + 0.05 * au[4] + 0.03 * au[9] + 0.02 * au[1]
            y = y + d_in * (1 - t) ** 1.3 + d_out * (1 - (1 - t) ** 1.3)
            x = x - side * 0.06 * au[4] * (1 - t)
            pts = np.stack([x, y], axis=1)
            brows.append(pts[::-1] if side < 0 else pts)
        return brows

    def _eye_geometry(self, au: Mapping[int, float], blink: float) -> list[dict[str, Any]]:
        """Both eyes: centre ``cx``/``cy``, lid curves ``x``/``up``/``lo`` over :data:`_U`, and ``open`` (lid gap)."""
        idn = self.identity
        u = _U
        eyes = []
        hu = idn.eye_h * (1 + 0.9 * au[5] - 0.35 * au[7] - 0.3 * au[6] - 0.15 * au[4] - 0.15 * au[9])
        hl = idn.eye_h * 0.75 * (1 - 0.55 * au[7] - 0.5 * au[6] + 0.15 * au[5])
        hu = max(hu, 0.0)
        b = float(np.clip(blink, 0, 1))
        hu_eff = hu * (1 - b) - hl * 0.6 * b
        for side in (-1, 1):
            cx, cy = side * idn.eye_sep, -0.3
            ex = cx + u * idn.eye_w
            tilt = -idn.eye_tilt * (u * side)
            up = cy + tilt - hu_eff * (1 - u * u) ** 0.8
            lo = cy + tilt + hl * (1 - u * u) ** 0.9
            eyes.append(dict(cx=cx, cy=cy + 0.1 * (hl - hu_eff) * 0.3, x=ex, up=up, lo=lo, open=hu_eff + hl))
        return eyes

    def landmarks_face_units(self, g: Mapping[str, Any]) -> np.ndarray:
        """The 68 landmarks (iBUG order) in face units from :meth:`geometry`."""
        idn = self.identity
        pts = np.zeros((N_LANDMARKS, 2))
        pts[JAW] = g["jaw"]
        pts[BROW_L] = g["brows"][0]
        pts[BROW_R] = g["brows"][1]
        nose_top, tip = -0.3, 0.02 + idn.nose_len * 0.5
        pts[NOSE_BRIDGE] = np.stack([np.zeros(4), np.linspace(nose_top, tip, 4)], axis=1)
        au9 = g["au"][9]
        ny = tip + 0.08 - 0.04 * au9
        nw = idn.nose_w * (1 + 0.15 * au9)
        pts[NOSE_BOTTOM] = np.stack([np.linspace(-nw, nw, 5), ny + np.array([0, 0.02, 0.03, 0.02, 0])], axis=1)
        # left eye: 36 outer corner, 37 38 upper lid, 39 inner corner, 40 41 lower lid;
        # right eye: 42 inner corner, 43 44 upper lid, 45 outer corner, 46 47 lower lid
        for eye, span in zip(g["eyes"], (EYE_L, EYE_R), strict=True):
            x, up, lo = eye["x"], eye["up"], eye["lo"]
            pts[span] = [(x[0], (up[0] + lo[0]) / 2), (x[4], up[4]), (x[8], up[8]),
                         (x[12], (up[12] + lo[12]) / 2), (x[8], lo[8]), (x[4], lo[4])]
        m = g["mouth"]
        xo, xi = m["x_out"], m["x_in"]
        # outer: 48 left corner, 49..53 upper, 54 right corner, 55..59 lower (right to left)
        up_idx = [0, 3, 5, 6, 7, 9, 12]
        lo_idx = [9, 7, 6, 5, 3]
        corner_l = (xo[0], (m["out_up"][0] + m["out_lo"][0]) / 2)
        corner_r = (xo[12], (m["out_up"][12] + m["out_lo"][12]) / 2)
        outer = [corner_l] + [(xo[i], m["out_up"][i]) for i in up_idx[1:-1]] + [corner_r]
        outer += [(xo[i], m["out_lo"][i]) for i in lo_idx]
        pts[LIPS_OUTER] = outer
        inner = [(xi[1], (m["in_up"][1] + m["in_lo"][1]) / 2)] + [(xi[i], m["in_up"][i]) for i in (4, 6, 8)]
        inner += [(xi[11], (m["in_up"][11] + m["in_lo"][11]) / 2)] + [(xi[i], m["in_lo"][i]) for i in (8, 6, 4)]
        pts[LIPS_INNER] = inner
        return pts

    # -- drawing --------------------------------------------------------------------------------
    def render(self, aus: Mapping[int, float] | None = None, mouth_open: float = 0.0, blink: float = 0.0,
               pose: Pose | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw one frame. Returns ``(image (S,S,3) uint8 RGB, landmarks (68,2) float32 pixels)``.

        Steps, back to front (each paints over the previous ones):

        1. shapes and landmarks in face units (:meth:`geometry`), the canvas of ``pose``;
        2. shoulders, hair behind the head, neck and ears (:meth:`_draw_body`);
        3. face, jaw line and cheeks (:meth:`_draw_face`);
        4. beard and moustache (:meth:`_draw_beard`);
        5. nasolabial folds (:meth:`_draw_folds`);
        6. nose and its AU9 wrinkles (:meth:`_draw_nose`);
        7. forehead and glabella lines (:meth:`_draw_forehead_lines`);
        8. hair in front of the head (:meth:`_draw_front_hair`);
        9. eyes (:meth:`_draw_eyes`);
        10. brows (:meth:`_draw_brows`);
        11. mouth (:meth:`_draw_mouth`);
        12. glasses (:meth:`_draw_glasses`).
        """
        # 1. geometry, landmarks and the canvas
        g = self.geometry(aus or {}, mouth_open, blink)
        lm = self.landmarks_face_units(g)
        m, c = self._transform(pose or Pose())
        canvas = _Canvas(self._background.copy(), m, c)
        au = g["au"]
        # 2-12. drawing, back to front
        self._draw_body(canvas)
        self._draw_face(canvas, g["jaw"], au)
        self._draw_beard(canvas, g["jaw"], g["mouth"])
        self._draw_folds(canvas, g["mouth"], au)
        self._draw_nose(canvas, lm, au)
        self._draw_forehead_lines(canvas, au)
        self._draw_front_hair(canvas)
        self._draw_eyes(canvas, g["eyes"], au)
        self._draw_brows(canvas, g["brows"])
        self._draw_mouth(canvas, g["mouth"])
        self._draw_glasses(canvas)
        return canvas.img, canvas.px(lm).astype(np.float32)

    def _draw_body(self, canvas: _Canvas) -> None:
        """Step 2: shoulders, long hair behind the head, neck and ears."""
        idn = self.identity
        skin, hh = idn.skin, idn.head_height
        canvas.fill(_ellipse(0, 2.45, 2.3, 1.15), idn.shirt)
        if idn.hair_style in ("long", "bob"):
            bottom = 1.55 if idn.hair_style == "long" else 0.75
            width = 1.32 if idn.hair_style == "long" else 1.22
            back = np.concatenate([_ellipse(0, -0.25, width, hh + 0.05, np.pi, 2 * np.pi, 16),
                                   [[width, bottom], [-width, bottom]]])
            canvas.fill(back, _shade(idn.hair_colour, 0.85))
        canvas.fill(np.array([[-0.42, 0.3], [0.42, 0.3], [0.5, 1.6], [-0.5, 1.6]]), _shade(skin, 0.82))
        for side in (-1, 1):
            canvas.fill(_ellipse(side * 1.01, -0.15, 0.13, 0.23), _shade(skin, 0.9))
            canvas.line(_ellipse(0.0, -0.15, 0.06, 0.13, -np.pi / 2, np.pi / 2, 8) * [side, 1] + [side * 1.02, 0],
                        _shade(skin, 0.72), 0.025)

    def _draw_face(self, canvas: _Canvas, jaw: np.ndarray, au: Mapping[int, float]) -> None:
        """Step 3: the face (jaw + skull), the jaw line, and the cheeks' blush, which rises with AU6."""
        idn = self.identity
        skin = idn.skin
        face = np.concatenate([jaw, _ellipse(0, -0.3, 1.0, idn.head_height, 0, -np.pi, 20)[1:-1]])
        canvas.fill(face, skin)
        canvas.line(jaw[2:15], _shade(skin, 0.86), 0.03)
        cheek_y = 0.1 - 0.08 * au[6] - 0.05 * au[12]
        blush = min(0.35, idn.blush + 0.18 * au[6])
        if blush > 0.02:
            for side in (-1, 1):
                canvas.fill(_ellipse(side * 0.6, cheek_y, 0.2, 0.12), _mix(skin, _BLUSH, blush))

    def _draw_beard(self, canvas: _Canvas, jaw: np.ndarray, mo: Mapping[str, Any]) -> None:
        """Step 4: the beard (full, stubble or goatee; a goatee follows the open mouth) and the moustache."""
        idn = self.identity
        hair = idn.hair_colour
        if idn.beard in ("full", "stubble", "goatee"):
            beard_col = hair if idn.beard != "stubble" else _mix(idn.skin, hair, 0.45)
            if idn.beard == "goatee":
                poly = np.array([[-0.3, idn.mouth_y + 0.1], [0.3, idn.mouth_y + 0.1],
                                 [0.22, jaw[8, 1] + 0.03], [-0.22, jaw[8, 1] + 0.03]])
                poly[:2, 1] += mo["opening"] * 0.7
            else:
                poly = np.concatenate([jaw[2:15] + [0, 0.02], [[0.8, 0.2], [0.4, 0.28], [-0.4, 0.28], [-0.8, 0.2]]])
            canvas.fill(poly, beard_col)
        if idn.beard in ("full", "moustache", "goatee"):
            top = idn.mouth_y - idn.lip_upper - 0.14
            must = np.array([[-0.42, mo["out_up"][0] + 0.05], [-0.2, top], [0.2, top],
                             [0.42, mo["out_up"][12] + 0.05], [0, mo["out_up"][6] - 0.01]])
            canvas.fill(must, hair)

    def _draw_folds(self, canvas: _Canvas, mo: Mapping[str, Any], au: Mapping[int, float]) -> None:
        """Step 5: the nasolabial folds, from the nose wings to the mouth corners (stronger with AU12/AU6/AU9/AU20)."""
        idn = self.identity
        skin = idn.skin
        fold = min(1.0, 0.25 + 0.9 * max(au[12], au[9], 0.6 * au[6], 0.5 * au[20]))
        for side, k in ((-1, 0), (1, 12)):
            corner = np.array([mo["x_out"][k], mo["out_up"][k]])
            start = np.array([side * (idn.nose_w + 0.1), 0.02 + idn.nose_len * 0.5 + 0.02 - 0.04 * au[9]])
            mid = (start + corner) / 2 + [side * 0.12, 0]
            end = corner + [side * 0.07, 0.08]
            canvas.line(np.array([start, mid, end]), _mix(skin, _shade(skin, 0.6), fold), 0.03)

    def _draw_nose(self, canvas: _Canvas, lm: np.ndarray, au: Mapping[int, float]) -> None:
        """Step 6: the nose's side, its bottom edge and nostrils (on the landmarks ``lm``), and AU9's wrinkles."""
        idn = self.identity
        skin = idn.skin
        tip = lm[30]
        nb = lm[NOSE_BOTTOM]
        canvas.line(np.array([[0.1, -0.2], [0.12, tip[1] - 0.05], [nb[3, 0] + 0.02, nb[3, 1] - 0.05]]),
                    _shade(skin, 0.8), 0.03)
        canvas.line(np.array([nb[0] + [0.0, -0.06], nb[0], nb[1], nb[2], nb[3], nb[4], nb[4] + [0.0, -0.06]]),
                    _shade(skin, 0.68), 0.035)
        for side in (-1, 1):
            canvas.fill(_ellipse(side * idn.nose_w * 0.5, nb[2, 1] - 0.03, 0.05, 0.025), _shade(skin, 0.45))
        if au[9] > 0.1:
            wr = _mix(skin, _shade(skin, 0.55), au[9])
            for k in range(3):
                y = -0.2 + 0.06 * k
                canvas.line(np.array([[-0.11, y + 0.015], [0, y], [0.11, y + 0.015]]), wr, 0.025)

    def _draw_forehead_lines(self, canvas: _Canvas, au: Mapping[int, float]) -> None:
        """Step 7: forehead wrinkles (AU1/AU2) and glabella lines between the brows (AU4)."""
        idn = self.identity
        skin = idn.skin
        raise_ = max(au[1], au[2])
        if raise_ > 0.15:
            wr = _mix(skin, _shade(skin, 0.62), raise_)
            for k in range(2):
                y = idn.brow_y - 0.27 - 0.1 * k
                canvas.line(np.array([[-0.45, y + 0.03], [0, y], [0.45, y + 0.03]]), wr, 0.025)
        if au[4] > 0.15:
            wr = _mix(skin, _shade(skin, 0.55), au[4])
            for side in (-1, 1):
                canvas.line(np.array([[side * 0.06, idn.brow_y - 0.05], [side * 0.08, idn.brow_y + 0.1]]), wr, 0.028)

    def _draw_front_hair(self, canvas: _Canvas) -> None:
        """Step 8: the hair in front of the head (cap and hairline, fringe, bun, curls, strands; a bald head's sides)."""
        idn = self.identity
        style = idn.hair_style
        col = idn.hair_colour
        hl = idn.hairline
        hh = idn.head_height
        part = idn.extra.get("part", 0.0)
        if style == "bald":
            for side in (-1, 1):
                canvas.fill(np.array([[side * 1.02, -0.55], [side * 0.9, -0.75], [side * 0.96, -0.2],
                                      [side * 1.04, -0.2]]), _shade(col, 0.9))
            return
        top = _ellipse(0, -0.3, 1.06, hh + 0.08, np.pi, 2 * np.pi, 22)
        ux = np.linspace(1.0, -1.0, 11)
        if style == "fringe":
            fy = np.full_like(ux, idn.brow_y - 0.2) + 0.04 * np.abs(np.sin(ux * 9))
        else:
            fy = hl + 0.18 * ux ** 4 - 0.12 * np.exp(-((ux - part) / 0.25) ** 2)
        side_y = -0.25 if style != "buzz" else -0.45
        front = np.concatenate([[[-1.06, side_y]], top, [[1.06, side_y], [0.98, hl + 0.25]],
                                np.stack([ux * 0.93, fy], 1), [[-0.98, hl + 0.25]]])
        c = _mix(col, idn.skin, 0.35) if style == "buzz" else col
        if style == "buzz":
            front = np.concatenate([top[:1] * [1, 1], top, [[1.04, -0.45]], np.stack([ux * 0.95, fy + 0.05], 1)])
        canvas.fill(front, c)
        if style == "bun":
            canvas.fill(_ellipse(0, -0.3 - hh - 0.12, 0.36, 0.28), c)
        if style == "curly":
            for u, v in self._curls:
                ang = np.pi + np.pi * u
                rr = 1.0 + 0.12 * v
                canvas.fill(_ellipse(rr * math.cos(ang), -0.3 + (hh + 0.05) * rr * math.sin(ang), 0.17, 0.17), c)
        if style not in ("buzz",):  # a few strands for texture
            strand = _shade(c, 0.75)
            for k in range(-2, 3):
                x = part + 0.22 * k
                if abs(x) < 0.8:
                    canvas.line(np.array([[x * 0.6, -0.3 - hh * 0.9], [x, hl + 0.05]]), strand, 0.02)

    def _draw_eyes(self, canvas: _Canvas, eyes: Sequence[Mapping[str, Any]], au: Mapping[int, float]) -> None:
        """Step 9: each eye: socket shadow (AU6/AU7), white and iris when open, lids, lashes, crow's feet (AU6)."""
        skin = self.identity.skin
        for k, eye in enumerate(eyes):
            side = -1 if k == 0 else 1
            x, up, lo = eye["x"], eye["up"], eye["lo"]
            outline = np.concatenate([np.stack([x, up], 1), np.stack([x[::-1], lo[::-1]], 1)])
            # socket shadow and lower-lid bulge (AU6/AU7)
            canvas.line(np.stack([x[2:11], lo[2:11] + 0.05 + 0.02 * au[6]], 1),
                        _mix(skin, _shade(skin, 0.7), 0.25 + 0.6 * max(au[6], au[7])), 0.025)
            if eye["open"] > 0.015:
                canvas.fill(outline, _EYE_WHITE)
                self._draw_iris(canvas, eye)
            canvas.line(np.stack([x, up], 1), _LASH, 0.05)  # upper lid + lashes
            canvas.line(np.stack([x[1:12], lo[1:12]], 1), _shade(skin, 0.55), 0.02)
            canvas.line(np.array([[x[0], up[0]], [x[0] + side * 0.06, up[0] - 0.03]]), _LASH, 0.04)  # lash flick
            if au[6] > 0.3:  # crow's feet
                wr = _mix(skin, _shade(skin, 0.6), au[6])
                ox = x[0] if k == 0 else x[12]
                for dy in (-0.05, 0.03, 0.1):
                    canvas.line(np.array([[ox + side * 0.06, eye["cy"] + dy * 0.6],
                                          [ox + side * 0.15, eye["cy"] + dy * 1.4]]), wr, 0.022)

    def _draw_iris(self, canvas: _Canvas, eye: Mapping[str, Any]) -> None:
        """Iris, pupil and highlight of ``eye``, clipped to the eye opening in a small region of interest."""
        idn = self.identity
        img = canvas.img
        x, up, lo = eye["x"], eye["up"], eye["lo"]
        outline = canvas.px(np.concatenate([np.stack([x, up], 1), np.stack([x[::-1], lo[::-1]], 1)]))
        x0, y0 = np.floor(outline.min(0)).astype(int) - 1
        x1, y1 = np.ceil(outline.max(0)).astype(int) + 2
        h, w = img.shape[:2]
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            return
        roi = img[y0:y1, x0:x1]
        drawn = roi.copy()
        off = np.array([x0, y0], dtype=np.float64)
        centre = canvas.px(np.array([[eye["cx"], -0.3]]))[0] - off
        r = idn.iris_r * canvas.scale
        q = lambda p: np.round(p * _SUB).astype(np.int32)  # noqa: E731
        cv2.circle(drawn, tuple(q(centre)), int(round(r * _SUB)), idn.iris_colour, -1, _AA, _SHIFT)
        cv2.circle(drawn, tuple(q(centre)), int(round(r * _SUB)), _shade(idn.iris_colour, 0.6), 1, _AA, _SHIFT)
        cv2.circle(drawn, tuple(q(centre)), int(round(r * 0.45 * _SUB)), _PUPIL, -1, _AA, _SHIFT)
        cv2.circle(drawn, tuple(q(centre - r * 0.35)), max(1, int(round(r * 0.22 * _SUB))), _WHITE,
                   -1, _AA, _SHIFT)
        mask = np.zeros(roi.shape[:2], dtype=np.uint8)
        cv2.fillPoly(mask, [q(outline - off)], 255, _AA, _SHIFT)
        a = (mask.astype(np.float32) / 255.0)[..., None]
        roi[:] = (drawn * a + roi * (1 - a)).astype(np.uint8)

    def _draw_brows(self, canvas: _Canvas, brows: Sequence[np.ndarray]) -> None:
        """Step 10: both brows as filled polygons that taper from the inner end to the outer one."""
        idn = self.identity
        for k, pts in enumerate(brows):
            inner_first = pts if k == 1 else pts[::-1]
            w = idn.brow_thick * np.linspace(1.0, 0.55, 5)
            poly = np.concatenate([inner_first - np.stack([np.zeros(5), w / 2], 1),
                                   (inner_first + np.stack([np.zeros(5), w / 2], 1))[::-1]])
            canvas.fill(poly, idn.brow_colour)

    def _draw_mouth(self, canvas: _Canvas, mo: Mapping[str, Any]) -> None:
        """Step 11: lips; when open, the inside, the upper teeth and (wide open or AU16) the lower teeth; seam, highlight."""
        lip = self.identity.lip_colour
        xo, xi = mo["x_out"], mo["x_in"]
        outer = np.concatenate([np.stack([xo, mo["out_up"]], 1), np.stack([xo[::-1], mo["out_lo"][::-1]], 1)])
        canvas.fill(outer, lip)
        gap = mo["in_lo"] - mo["in_up"]
        if mo["opening"] + 0.09 * mo["au16"] > 0.012:
            inner = np.concatenate([np.stack([xi, mo["in_up"]], 1), np.stack([xi[::-1], mo["in_lo"][::-1]], 1)])
            canvas.fill(inner, _MOUTH_INSIDE)
            teeth_h = 0.075
            t_bot = np.minimum(mo["in_up"] + teeth_h, mo["in_lo"])
            teeth = np.concatenate([np.stack([xi[1:-1] * 0.95, mo["in_up"][1:-1] + 0.003], 1),
                                    np.stack([xi[-2:0:-1] * 0.95, t_bot[-2:0:-1]], 1)])
            canvas.fill(teeth, _UPPER_TEETH)
            if mo["au16"] > 0.2 or mo["opening"] > 0.14:
                low_top = np.maximum(mo["in_lo"] - 0.045, t_bot)
                lower = np.concatenate([np.stack([xi[2:-2] * 0.9, low_top[2:-2]], 1),
                                        np.stack([xi[-3:1:-1] * 0.9, mo["in_lo"][-3:1:-1]], 1)])
                if np.any(gap > 0.08):
                    canvas.fill(lower, _LOWER_TEETH)
        seam = np.stack([xi, (mo["in_up"] + np.minimum(mo["in_lo"], mo["in_up"] + 0.004)) / 2], 1)
        canvas.line(seam, _shade(lip, 0.5), 0.025)
        # highlight on the lower lip
        hl = np.stack([xo[4:9] * 0.8, mo["out_lo"][4:9] - 0.6 * (mo["out_lo"][4:9] - mo["in_lo"][4:9])], 1)
        canvas.line(hl, _mix(lip, _WHITE, 0.25), 0.02)

    def _draw_glasses(self, canvas: _Canvas) -> None:
        """Step 12: the glasses (round or square rims, temples and bridge), if the identity wears any."""
        idn = self.identity
        if not idn.glasses:
            return
        col = idn.glasses_colour
        for side in (-1, 1):
            cx = side * idn.eye_sep
            if idn.glasses == "round":
                shape = _ellipse(cx, -0.29, idn.eye_w + 0.1, 0.2)
            else:
                w, h = idn.eye_w + 0.11, 0.17
                shape = np.array([[cx - w, -0.29 - h], [cx + w, -0.29 - h], [cx + w * 0.9, -0.29 + h],
                                  [cx - w * 0.9, -0.29 + h]])
            canvas.line(shape, col, 0.04, closed=True)
            canvas.line(np.array([[side * (idn.eye_sep + idn.eye_w + 0.1), -0.32], [side * 0.98, -0.3]]), col, 0.035)
        canvas.line(np.array([[-idn.eye_sep + idn.eye_w + 0.08, -0.33], [0, -0.37],
                              [idn.eye_sep - idn.eye_w - 0.08, -0.33]]), col, 0.035)


def benchmark_fps(size: int = DEFAULT_SIZE, n_frames: int = 300, seed: int = 0) -> float:
    """Frames per second of :meth:`FaceRenderer.render` on this machine (one thread, varied expressions)."""
    rng = np.random.default_rng(seed)
    renderers = [FaceRenderer(Identity.random(rng), size) for _ in range(4)]
    emotions = list(EMOTION_PROTOTYPES)
    cv2.setNumThreads(1)
    renderers[0].render()  # warm-up
    start = time.perf_counter()
    for i in range(n_frames):
        aus = emotion_to_aus({emotions[i % len(emotions)]: 1.0})
        renderers[i % 4].render(aus, (i % 7) / 6.0, 0.0, Pose(roll=(i % 5) - 2.0))
    return n_frames / (time.perf_counter() - start)


def contact_sheet(identities: Sequence[Identity] | int = 8, emotions: Sequence[str] = RENDER_EMOTIONS,
                  size: int = DEFAULT_SIZE, seed: int = 0, mouth_open: float = 0.15) -> np.ndarray:
    """Grid image: one row per identity, one column per emotion (default neutral + six basic)."""
    if isinstance(identities, int):
        rng = np.random.default_rng(seed)
        identities = [Identity.random(rng) for _ in range(identities)]
    rows = []
    for idn in identities:
        r = FaceRenderer(idn, size)
        row = [r.render(emotion_to_aus({e: 1.0}), mouth_open)[0] for e in emotions]
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)
