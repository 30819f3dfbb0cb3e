"""Eyes on a full-resolution portrait: eyelids that close over the eye, and an iris that looks around.

Two parts, both on MediaPipe's refined Face Mesh (478 points, iris included):

* :func:`lid_displacements` moves the eyelids' mesh points for a blink (or a drooped / widened lid):
  the upper lid's margin travels down to meet the lower lid, which rises a little; the rings of lid skin
  above follow part of the way, so the warp stretches the lid's own skin over the eye. The triangles
  inside the eye's opening may close to nothing (:func:`eye_opening_triangles`).
* :class:`EyeLayer` redraws what shows through the opening after the warp: the portrait's own eyeball,
  never squashed by the lids' motion, with the iris moved by the gaze. The iris is lifted out of the
  portrait (a disk from MediaPipe's iris points, clipped to the opening), the sclera behind it is
  inpainted from its surroundings, and the iris is pasted back at its new place. Only the opening at the
  frame's lid positions shows the eyeball, so a half-closed lid covers the top of the iris.

Nothing here knows about emotions or time: :mod:`engine.portrait.performance` decides closure and gaze.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: MediaPipe contours of each eye: corners, upper lid margin (corner to corner, without the corners),
#: lower lid margin (idem), and two rings of lid skin above the upper margin and one below the lower.
EYE_CONTOURS: dict[str, dict[str, tuple[int, ...]]] = {
    "image_left": {
        "corners": (33, 133),
        "upper": (246, 161, 160, 159, 158, 157, 173),
        "lower": (7, 163, 144, 145, 153, 154, 155),
        "upper_ring1": (247, 30, 29, 27, 28, 56, 190),
        "upper_ring2": (113, 225, 224, 223, 222, 221, 189),
        "lower_ring1": (25, 110, 24, 23, 22, 26, 112),
    },
    "image_right": {
        "corners": (263, 362),
        "upper": (466, 388, 387, 386, 385, 384, 398),
        "lower": (249, 390, 373, 374, 380, 381, 382),
        "upper_ring1": (467, 260, 259, 257, 258, 286, 414),
        "upper_ring2": (342, 445, 444, 443, 442, 441, 413),
        "lower_ring1": (255, 339, 254, 253, 252, 256, 341),
    },
}
#: MediaPipe's two irises: centre then four points on the rim.
IRIS_POINTS = ((468, 469, 470, 471, 472), (473, 474, 475, 476, 477))
#: Share of each ring's motion relative to the lid margin it follows.
RING_FOLLOW = {"upper_ring1": 0.5, "upper_ring2": 0.2, "lower_ring1": 0.35}
#: Share of the opening the lower lid rises in a full blink (the lids meet there).
LOWER_LID_RISE = 0.15
#: Inward erosion of the eye's opening (share of the iris radius) before the eyeball shows: keeps the lash
#: line's own pixels out of the eyeball layer.
OPENING_EROSION = 0.15
#: Share of the brightest pixels of the opening (iris left out) whose median is the sclera's colour, and how
#: much darker the completed sclera gets one iris radius beyond the portrait's opening (the lid's shadow).
SCLERA_SHARE = 0.2
SCLERA_LID_SHADE = 0.25
#: Feather (share of the iris radius) of where the eyeball layer meets the warped rim of the opening.
EDGE_FEATHER = 0.12
#: Gaze shifts smaller than this (pixels) leave the eye exactly as the warp drew it.
STILL_GAZE_PX = 0.05


@dataclass(frozen=True)
class EyeIndices:
    """Rows of one eye's points in a control-point array (see :func:`eye_indices`)."""

    corners: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    rings: dict[str, np.ndarray]


def eye_indices(mesh_rows: dict[int, int]) -> list[EyeIndices]:
    """Each eye's contour rows in the control points, from a MediaPipe index -> row map."""
    eyes = []
    for contours in EYE_CONTOURS.values():
        rows = {name: np.array([mesh_rows[i] for i in idx]) for name, idx in contours.items()}
        eyes.append(EyeIndices(rows.pop("corners"), rows.pop("upper"), rows.pop("lower"), rows))
    return eyes


def _local_frame(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin, along, down) of an eye: the axis from one corner to the other, and its normal pointing down."""
    a, b = corners
    if a[0] > b[0]:
        a, b = b, a
    along = (b - a) / max(float(np.linalg.norm(b - a)), 1e-6)
    down = np.array([-along[1], along[0]])
    if down[1] < 0:
        down = -down
    return a, along, down


def lid_displacements(points: np.ndarray, eye: EyeIndices, closure: float, squint: float = 0.0) -> np.ndarray:
    """Displacement (N, 2) of every control point for one eye's lids at ``closure`` and ``squint``.

    ``points`` (N, 2): the control points' current target positions (pixels). ``squint`` (0..1) first raises
    the lower lid by that share of the opening (AU6 / AU7: a smile's cheeks, anger's tightened lids).
    ``closure`` 1 then closes what is left (the upper margin meets the lower one, which rises by
    :data:`LOWER_LID_RISE` of it); between 0 and 1 the upper lid lowers that share; negative values raise
    it (AU5: a widened eye). The rings of lid skin follow by :data:`RING_FOLLOW`; the corners stay.
    """
    moved = np.zeros_like(points)
    squint = float(np.clip(squint, 0.0, 0.9))
    if closure == 0 and squint == 0:
        return moved
    origin, along, down = _local_frame(points[eye.corners])
    local = lambda rows: np.stack([(points[rows] - origin) @ along, (points[rows] - origin) @ down], 1)  # noqa: E731
    upper, lower = local(eye.upper), local(eye.lower)
    order = np.argsort(lower[:, 0])
    lower_at_upper = np.interp(upper[:, 0], lower[order, 0], lower[order, 1])
    order_u = np.argsort(upper[:, 0])
    upper_at_lower = np.interp(lower[:, 0], upper[order_u, 0], upper[order_u, 1])
    opening_u = np.maximum(lower_at_upper - upper[:, 1], 0.0)
    opening_l = np.maximum(lower[:, 1] - upper_at_lower, 0.0)
    left = 1.0 - squint  # the opening left after the squint
    if closure > 0:
        upper_step = closure * (1 - LOWER_LID_RISE) * left * opening_u
        lower_step = -(squint + closure * LOWER_LID_RISE * left) * opening_l
    else:
        upper_step = closure * opening_u
        lower_step = -squint * opening_l
    moved[eye.upper] = upper_step[:, None] * down
    moved[eye.lower] = lower_step[:, None] * down
    for name, rows in eye.rings.items():
        ring = local(rows)
        source = (upper if name.startswith("upper") else lower)
        step = upper_step if name.startswith("upper") else lower_step
        order_s = np.argsort(source[:, 0])
        follow = np.interp(ring[:, 0], source[order_s, 0], step[order_s], left=0.0, right=0.0)
        moved[rows] = RING_FOLLOW[name] * follow[:, None] * down
    return moved


def eye_opening_triangles(triangles: np.ndarray, eyes: list[EyeIndices]) -> np.ndarray:
    """(T,) bool: triangles whose three corners all lie on one eye's lid margins (they close in a blink)."""
    result = np.zeros(len(triangles), bool)
    for eye in eyes:
        rim = np.zeros(int(triangles.max()) + 1, bool)
        rim[np.concatenate([eye.corners, eye.upper, eye.lower])] = True
        result |= rim[triangles].all(axis=1)
    return result


def opening_polygon(points: np.ndarray, eye: EyeIndices) -> np.ndarray:
    """(K, 2) the eye's opening: one corner, the upper margin, the other corner, the lower margin back."""
    a, b = points[eye.corners[0]], points[eye.corners[1]]
    upper, lower = points[eye.upper], points[eye.lower]
    if np.linalg.norm(upper[0] - a) > np.linalg.norm(upper[-1] - a):
        upper = upper[::-1]
    if np.linalg.norm(lower[0] - a) > np.linalg.norm(lower[-1] - a):
        lower = lower[::-1]
    return np.concatenate([[a], upper, [b], lower[::-1]])


def smooth_closed(polygon: np.ndarray, rounds: int = 2) -> np.ndarray:
    """A closed polygon rounded by Chaikin's corner cutting (each round: every edge's 1/4 and 3/4 points)."""
    points = np.asarray(polygon, np.float64)
    for _ in range(rounds):
        nxt = np.roll(points, -1, axis=0)
        points = np.stack([0.75 * points + 0.25 * nxt, 0.25 * points + 0.75 * nxt], 1).reshape(-1, 2)
    return points


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray, origin: np.ndarray, shift: int = 4) -> np.ndarray:
    """Anti-aliased float mask (0..1) of a (rounded) polygon in a patch whose top-left is ``origin``."""
    polygon = smooth_closed(polygon)
    mask = np.zeros(shape, np.uint8)
    pts = np.round((polygon - origin) * (1 << shift)).astype(np.int32)
    cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=shift)
    return mask.astype(np.float32) / 255.0


@dataclass
class EyeLayer:
    """One eye's eyeball as the portrait shows it, ready to be redrawn with a moved iris (module docstring).

    Beyond the portrait's own opening (under its lids) the eyeball is completed from the portrait: the
    sclera's colour, and the iris's colour inside its full disk, so a widened eye (fear, surprise) shows
    white above the iris as a real one does.
    """

    eye: EyeIndices
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the patch in the portrait
    background: np.ndarray  # (h, w, 3) float32: the eyeball without its iris (sclera inpainted and completed)
    iris: np.ndarray  # (h, w, 3) float32: the iris, completed over its whole disk
    iris_alpha: np.ndarray  # (h, w) float32: the iris's full disk
    shown: np.ndarray  # (h, w) float32: where the layer may replace the warp (all but the rim of the opening)
    iris_radius: float  # pixels (0: no iris found; the gaze does not move this eye)

    @classmethod
    def build(cls, image: np.ndarray, mesh: np.ndarray, control: np.ndarray, eye: EyeIndices) -> EyeLayer:
        """The layer of one eye from the portrait, its MediaPipe mesh (478, 2) and the control points."""
        polygon = opening_polygon(control, eye)
        centre = polygon.mean(0)
        iris_centre, radius = _iris_of(mesh, centre)
        span = max(float(np.ptp(polygon[:, 0])), 4.0)
        margin = max(radius * 2.0, 0.35 * span)
        h, w = image.shape[:2]
        x0, y0 = (np.floor(polygon.min(0) - margin)).astype(int)
        x1, y1 = (np.ceil(polygon.max(0) + margin)).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        patch = image[y0:y1, x0:x1].astype(np.float32)
        origin = np.array([x0, y0], np.float64)
        opening = _polygon_mask(patch.shape[:2], polygon, origin)
        erosion = max(1, int(round(OPENING_EROSION * max(radius, 4.0))))
        inner = cv2.erode(opening, np.ones((2 * erosion + 1, 2 * erosion + 1), np.uint8))
        disk = np.zeros(patch.shape[:2], np.float32)
        if radius > 0:
            cv2.circle(disk, tuple(int(v) for v in np.round((iris_centre - origin) * 16)), int(round(radius * 16)),
                       1.0, -1, lineType=cv2.LINE_AA, shift=4)
        seen_iris = (disk > 0.5) & (inner > 0.5)
        sclera_px = (inner > 0.5) & (disk < 0.01)
        sclera = _bright_median(patch[sclera_px if sclera_px.any() else (inner > 0.5) if (inner > 0.5).any()
                                      else np.ones(patch.shape[:2], bool)])
        iris_colour = np.median(patch[seen_iris], axis=0) if seen_iris.any() else sclera * 0.5
        # The eyeball without its iris: the portrait's own pixels inside the opening, the iris inpainted away.
        hole = (cv2.dilate(disk, np.ones((5, 5), np.uint8)) > 0.01) & (inner > 0.01)
        inside = patch
        if hole.any():
            inside = cv2.inpaint(np.clip(patch, 0, 255).astype(np.uint8), hole.astype(np.uint8),
                                 max(2.0, radius * 0.3), cv2.INPAINT_TELEA).astype(np.float32)
        # Beyond the portrait's opening the sclera continues its own colours (inpainted from the sclera's
        # pixels, not from the lashes or the iris), darkening farther out (the shadow of a raised lid).
        known = opening > 0.5
        sclera_seen = (inner > 0.5) & ~hole
        far = cv2.distanceTransform((~known).astype(np.uint8), cv2.DIST_L2, 3)
        reach = max(radius, 2.0)
        shade = 1.0 - SCLERA_LID_SHADE * np.clip(far / reach, 0.0, 1.0)
        background = inside
        if sclera_seen.any():
            seed = np.where(sclera_seen[..., None], inside, sclera[None, None, :]).astype(np.float32)
            unknown = ~sclera_seen & (cv2.distanceTransform((~sclera_seen).astype(np.uint8), cv2.DIST_L2, 3)
                                      <= 2 * reach)
            grown = cv2.inpaint(np.clip(seed, 0, 255).astype(np.uint8), unknown.astype(np.uint8),
                                max(2.0, 0.5 * reach), cv2.INPAINT_TELEA).astype(np.float32)
            background = np.where(known[..., None], inside, grown * shade[..., None])
        iris_full = np.where(known[..., None], patch, iris_colour[None, None, :]).astype(np.float32)
        rim = np.clip(opening - inner, 0.0, 1.0)
        return cls(eye, (x0, y0, x1, y1), background, iris_full, disk, 1.0 - rim, radius)

    def draw(self, frame: np.ndarray, targets: np.ndarray, source: np.ndarray, gaze: np.ndarray) -> None:
        """Redraw this eye in ``frame`` (in place): the eyeball, moved with the eye's corners and its iris by
        ``gaze`` (iris radii, x right / y down), shows through the opening at the ``targets`` lid positions."""
        x0, y0, x1, y1 = self.box
        if x1 <= x0 or y1 <= y0:
            return
        rows = np.concatenate([self.eye.upper, self.eye.lower])
        shift = (targets[self.eye.corners] - source[self.eye.corners]).mean(0)
        iris_shift = np.asarray(gaze, np.float64) * self.iris_radius
        lids_still = np.abs(targets[rows] - source[rows]).max() < 1e-3
        if lids_still and np.abs(shift).max() < 1e-3 and np.abs(iris_shift).max() < STILL_GAZE_PX:
            return
        size = (x1 - x0, y1 - y0)
        iris_move = _translation(iris_shift)
        alpha = cv2.warpAffine(self.iris_alpha, iris_move, size, flags=cv2.INTER_LINEAR)[..., None]
        iris = cv2.warpAffine(self.iris, iris_move, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        eyeball = self.background * (1 - alpha) + iris * alpha
        move = _translation(shift)
        eyeball = cv2.warpAffine(eyeball, move, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        allowed = cv2.warpAffine(self.shown, move, size, flags=cv2.INTER_LINEAR, borderValue=1.0)
        opening = _polygon_mask((y1 - y0, x1 - x0), opening_polygon(targets, self.eye), np.array([x0, y0], np.float64))
        allowed = cv2.GaussianBlur(allowed, (0, 0), max(0.5, EDGE_FEATHER * self.iris_radius))
        weight = (opening * allowed)[..., None]
        region = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = np.clip(np.rint(region + weight * (eyeball - region)), 0, 255).astype(np.uint8)


def _bright_median(pixels: np.ndarray) -> np.ndarray:
    """Median colour of the brightest :data:`SCLERA_SHARE` of some pixels (the sclera, not lashes or shadow)."""
    luma = pixels.mean(1)
    return np.median(pixels[luma >= np.quantile(luma, 1.0 - SCLERA_SHARE)], axis=0)


def _translation(offset: np.ndarray) -> np.ndarray:
    return np.array([[1.0, 0.0, float(offset[0])], [0.0, 1.0, float(offset[1])]], np.float64)


def _iris_of(mesh: np.ndarray, eye_centre: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre, radius) of the iris nearest an eye's centre; radius 0 when the mesh has no iris points."""
    if len(mesh) < 478:
        return eye_centre, 0.0
    best = min(IRIS_POINTS, key=lambda idx: float(np.linalg.norm(mesh[idx[0]] - eye_centre)))
    centre = mesh[best[0]].astype(np.float64)
    radius = float(np.mean(np.linalg.norm(mesh[list(best[1:])] - centre, axis=1)))
    return centre, radius if np.isfinite(radius) and radius >= 1.0 else 0.0
