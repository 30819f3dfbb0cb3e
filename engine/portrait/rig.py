"""The correspondence between a full-resolution portrait and the motion model's 68 face-unit landmarks.

A :class:`PortraitRig` is built once per portrait from its MediaPipe Face Mesh (478 points):

* the 68 iBUG points are read off the mesh (:data:`LM68_FROM_MP478`);
* a similarity transform (Umeyama) maps them onto the synthetic people's mean face, so the portrait's
  neutral shape is known in *face units* (1 = half the face width), the motion model's frame;
* the sitter's own expression (a smile, parted lips) is estimated, so it can be neutralised: sadness
  must read on a portrait that smiles;
* every mesh point gets fixed interpolation weights over the 68 points (inverse-distance over the
  nearest ones on the same side of the mouth, so opening the jaw never drags the upper lip), and a ring
  at :data:`RING_SCALE` x the face outline plus the image border stay still;
* the control points are triangulated once (Delaunay), for :func:`engine.portrait.warp.mesh_warp`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import NoFaceError
from engine.io.face import MP_FACE_OVAL
from engine.portrait.mouth import MouthPalette, mouth_palette

#: MediaPipe Face Mesh index of each iBUG 68 landmark (the widely used correspondence, e.g. LatentSync's).
LM68_FROM_MP478: tuple[int, ...] = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # 0-16 jaw
    71, 63, 105, 66, 107,  # 17-21 brow (image left)
    336, 296, 334, 293, 301,  # 22-26 brow (image right)
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # 27-35 nose
    33, 160, 158, 133, 153, 144,  # 36-41 eye (image left)
    362, 385, 387, 263, 373, 380,  # 42-47 eye (image right)
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # 48-59 outer lips
    78, 82, 13, 312, 308, 317, 14, 87,  # 60-67 inner lips
)
#: iBUG points that fix the similarity to face units (eye corners, nose bridge and base: rigid parts).
RIGID_68 = (36, 39, 42, 45, 27, 28, 29, 30, 31, 33, 35)
#: Lip points of each side (iBUG); the mouth corners belong to both.
UPPER_LIP_68 = (49, 50, 51, 52, 53, 61, 62, 63)
LOWER_LIP_68 = (55, 56, 57, 58, 59, 65, 66, 67)
MOUTH_CORNERS_68 = (48, 54, 60, 64)
#: MediaPipe inner-lip contours from corner (78) to corner (308).
MP_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
MP_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MP_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
MP_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
#: The two rings between each lip's outer and inner contours (MediaPipe's "semi-outer" and "semi-inner" lip
#: rings), corner to corner, column by column with the contours above.
MP_SEMI_OUTER_UPPER = (76, 184, 74, 73, 72, 11, 302, 303, 304, 408, 306)
MP_SEMI_INNER_UPPER = (62, 183, 42, 41, 38, 12, 268, 271, 272, 407, 292)
MP_SEMI_OUTER_LOWER = (76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306)
MP_SEMI_INNER_LOWER = (62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292)
#: The mouth corners of the four rings (they serve both lips).
MP_LIP_CORNERS = (78, 308, 61, 291, 76, 306, 62, 292)
#: MediaPipe's iris points (refined mesh): they are left to follow the eyelids' triangles.
MP_IRIS = tuple(range(468, 478))
#: The still ring around the face, as a multiple of the face outline about its centre.
RING_SCALE = 1.45
#: Width (face units) of the Gaussian kernel that averages the 68 points' motion at each mesh point, and the
#: falloff of motion away from the nearest point (so the forehead and cheeks follow the features only nearby).
ANCHOR_KERNEL = 0.09
MOTION_FALLOFF = 0.35
#: Sitter-expression estimate: lip gap (face units) of a fully open synthetic mouth, and the corner lift of a
#: full smile (the synthetic renderer's SPEECH_OPEN_GAIN and AU12 corner gain).
OPEN_GAP_FACE_UNITS = 0.22
SMILE_LIFT_FACE_UNITS = 0.13
#: Corner lift (face units) that a relaxed real mouth shows without smiling.
RELAXED_CORNER_LIFT = 0.01
#: Face checks.
MIN_FACE_WIDTH_PX = 64
MAX_PROFILE_OFFSET = 0.3  # nose tip off the eyes' midpoint, as a share of the face width


@dataclass(frozen=True)
class Similarity:
    """``y = scale * R @ x + t``; :meth:`inverse` maps back."""

    scale: float
    rotation: np.ndarray  # (2, 2)
    translation: np.ndarray  # (2,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation

    def apply_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Map displacements (no translation)."""
        return self.scale * vectors @ self.rotation.T

    def inverse(self) -> Similarity:
        rot = self.rotation.T
        return Similarity(1.0 / self.scale, rot, -(rot @ self.translation) / self.scale)


def fit_similarity(source: np.ndarray, target: np.ndarray) -> Similarity:
    """Least-squares similarity ``target ≈ s R source + t`` (Umeyama 1991), no reflection."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    xs, xt = source - mu_s, target - mu_t
    cov = xt.T @ xs / len(source)
    u, sig, vt = np.linalg.svd(cov)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    var = (xs**2).sum() / len(source)
    scale = float(np.trace(np.diag(sig) @ d) / var)
    return Similarity(scale, rot, mu_t - scale * rot @ mu_s)


def check_face(points: np.ndarray, image_shape: tuple[int, ...]) -> None:
    """Refuse faces the transfer cannot animate well: too small or turned to profile (NoFaceError)."""
    oval = points[list(MP_FACE_OVAL)]
    width = float(oval[:, 0].max() - oval[:, 0].min())
    if width < MIN_FACE_WIDTH_PX:
        raise NoFaceError(f"the face is {width:.0f} px wide; at least {MIN_FACE_WIDTH_PX} px is needed: use a larger "
                          "or closer portrait")
    eyes_mid = (points[33] + points[263]) / 2
    offset = abs(float(points[1][0] - eyes_mid[0])) / max(width, 1.0)
    cheek_l, cheek_r = abs(points[1][0] - points[234][0]), abs(points[454][0] - points[1][0])
    if offset > MAX_PROFILE_OFFSET or min(cheek_l, cheek_r) < 0.12 * width:
        raise NoFaceError("the face is turned to profile; use a portrait that faces the camera (both eyes and "
                          "both cheeks visible)")


def _side_of_mouth(points: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """+1 below the line through the mouth corners, -1 above (image coordinates)."""
    direction = (right - left) / max(float(np.linalg.norm(right - left)), 1e-6)
    normal = np.array([-direction[1], direction[0]])
    return np.sign((points - left) @ normal + 1e-9)


def anchor_weights(mesh: np.ndarray, anchors: np.ndarray, mesh_side: np.ndarray, anchor_side: np.ndarray,
                   face_unit_px: float) -> np.ndarray:
    """Interpolation weights (M, 68): each mesh point's motion as a kernel average of its anchors' motion.

    Nadaraya-Watson with a Gaussian kernel of :data:`ANCHOR_KERNEL` face units (smooth: no seams where the
    nearest anchor changes), times a falloff with the distance to the nearest anchor. A mesh point that
    is an anchor moves exactly with it. Anchors with side 0 (mouth corners) serve both sides of the mouth;
    others only their own side.
    """
    weights = np.zeros((len(mesh), len(anchors)))
    kernel, falloff = ANCHOR_KERNEL * face_unit_px, MOTION_FALLOFF * face_unit_px
    for m, point in enumerate(mesh):
        allowed = np.nonzero((anchor_side == 0) | (anchor_side == mesh_side[m]))[0]
        dist = np.linalg.norm(anchors[allowed] - point, axis=1)
        nearest = float(dist.min())
        if nearest < 0.5:
            weights[m, allowed[int(np.argmin(dist))]] = 1.0
            continue
        w = np.exp(-0.5 * ((dist - nearest) / kernel) ** 2)
        weights[m, allowed] = w / w.sum() * np.exp(-0.5 * (nearest / falloff) ** 2)
    return weights


@dataclass
class PortraitRig:
    """Everything about one portrait that does not change while the user edits (see module docstring)."""

    image: np.ndarray  # (H, W, 3) uint8, at the output resolution
    mesh: np.ndarray  # (478, 2) MediaPipe points, pixels
    points68: np.ndarray  # (68, 2) pixels
    to_pixels: Similarity  # face units -> pixels
    shape: np.ndarray  # (68, 2) the portrait's landmarks in face units
    sitter_smile: float  # estimated happiness of the sitter's own expression, 0..1
    sitter_opening: float  # estimated mouth opening of the portrait, 0..1
    control: np.ndarray  # (N, 2) control points: the mesh (iris left out), the still ring, the border
    control_weights: np.ndarray  # (N, 68) motion of each control point from the 68 points (0 for still ones)
    triangles: np.ndarray  # (T, 3)
    movable: np.ndarray  # (N,) bool: the mesh points (the ring and the border stay still)
    smoothing: object  # (N, N) sparse row-normalised neighbour average on the same side of the mouth
    across_mouth: np.ndarray  # (T,) bool: triangles spanning the lips' gap (they may close to nothing)
    grey: bool  # a black-and-white portrait (the mouth is drawn in grey)
    brightness: float  # face brightness relative to a mid-tone (scales the drawn mouth)
    lip_colour: np.ndarray  # (3,) median colour of the lips (covers a seam the warp closed)
    mouth_palette: MouthPalette  # tones of the drawn mouth interior, from the portrait's lips, skin and eyes

    @property
    def face_unit_px(self) -> float:
        """Pixels per face unit (half the face width)."""
        return float(self.to_pixels.scale)


_MESH_KEPT = tuple(i for i in range(478) if i not in MP_IRIS)
_MESH_ROWS = {mp: row for row, mp in enumerate(_MESH_KEPT)}
#: Row of each MediaPipe point (iris left out) in :attr:`PortraitRig.control`.
MESH_ROWS: dict[int, int] = _MESH_ROWS


def _spans_mouth(triangles: np.ndarray, mesh_side: np.ndarray, count: int) -> np.ndarray:
    """Triangles with a corner above and a corner below the mouth (the gap between the lips)."""
    side = np.zeros(count)
    side[: len(mesh_side)] = mesh_side
    corners = side[triangles]
    return (corners < 0).any(axis=1) & (corners > 0).any(axis=1)


def neighbour_average(triangles: np.ndarray, side: np.ndarray, count: int):
    """Sparse (N, N) matrix averaging each point's mesh neighbours that lie on its side of the mouth."""
    from scipy.sparse import coo_matrix, diags

    edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    same = (side[edges[:, 0]] == side[edges[:, 1]]) | (side[edges[:, 0]] == 0) | (side[edges[:, 1]] == 0)
    edges = np.unique(edges[same], axis=0)
    adjacency = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count)).tocsr()
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return diags(1.0 / np.maximum(degree, 1)) @ adjacency


def sitter_expression(shape: np.ndarray) -> tuple[float, float]:
    """(smile, opening) of the portrait's own expression, each 0..1, from its face-unit landmarks.

    Opening: the inner-lip gap at the middle over a fully open synthetic mouth's gap. Smile: how far the
    mouth corners sit above the middle of the lips, beyond a relaxed mouth's lift, over a full smile's lift.
    """
    gap = float(shape[66, 1] - shape[62, 1])
    opening = float(np.clip(gap / OPEN_GAP_FACE_UNITS, 0.0, 1.0))
    middle = (shape[62, 1] + shape[66, 1]) / 2
    corners = (shape[48, 1] + shape[54, 1]) / 2
    smile = float(np.clip((middle - corners - RELAXED_CORNER_LIFT) / SMILE_LIFT_FACE_UNITS, 0.0, 1.0))
    return smile, opening


def build_rig(image: np.ndarray, mesh: np.ndarray, mean_shape: np.ndarray) -> PortraitRig:
    """Build the rig of a portrait from its 478-point mesh and the motion model's mean face (face units)."""
    from scipy.spatial import Delaunay

    check_face(mesh, image.shape)
    points68 = mesh[list(LM68_FROM_MP478)].astype(np.float64)
    rigid = list(RIGID_68)
    to_face = fit_similarity(points68[rigid], mean_shape[rigid])
    to_pixels = to_face.inverse()
    shape = to_face.apply(points68)
    smile, opening = sitter_expression(shape)

    kept = mesh[list(_MESH_KEPT)].astype(np.float64)
    left, right = mesh[78].astype(np.float64), mesh[308].astype(np.float64)
    mesh_side = _side_of_mouth(kept, left, right)
    # Every ring of each lip belongs to its lip, whatever side of the corners' line it lies on: a wide smile
    # lifts the corners above the middle of the upper lip, which then moved with the lower lip and the jaw.
    for mp in (*MP_INNER_UPPER, *MP_OUTER_UPPER, *MP_SEMI_OUTER_UPPER, *MP_SEMI_INNER_UPPER):
        mesh_side[_MESH_ROWS[mp]] = -1
    for mp in (*MP_INNER_LOWER, *MP_OUTER_LOWER, *MP_SEMI_OUTER_LOWER, *MP_SEMI_INNER_LOWER):
        mesh_side[_MESH_ROWS[mp]] = 1
    anchor_side = _side_of_mouth(points68, left, right)
    anchor_side[list(UPPER_LIP_68)] = -1
    anchor_side[list(LOWER_LIP_68)] = 1
    anchor_side[list(MOUTH_CORNERS_68)] = 0
    for mp in MP_LIP_CORNERS:
        mesh_side[_MESH_ROWS[mp]] = 0
    weights = anchor_weights(kept, points68, mesh_side, anchor_side, to_pixels.scale)

    oval = mesh[list(MP_FACE_OVAL)].astype(np.float64)
    centre = oval.mean(0)
    ring = centre + RING_SCALE * (oval - centre)
    h, w = image.shape[:2]
    border = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1], [(w - 1) / 2, 0], [(w - 1) / 2, h - 1],
                       [0, (h - 1) / 2], [w - 1, (h - 1) / 2]], np.float64)
    ring = np.clip(ring, 0, [w - 1, h - 1])
    control = np.concatenate([kept, ring, border])
    control_weights = np.concatenate([weights, np.zeros((len(ring) + len(border), 68))])
    triangles = Delaunay(control, qhull_options="QJ").simplices.astype(np.int64)

    face = image[int(max(0, centre[1] - 0.3 * to_pixels.scale)): int(centre[1] + 0.3 * to_pixels.scale),
                 int(max(0, centre[0] - 0.5 * to_pixels.scale)): int(centre[0] + 0.5 * to_pixels.scale)]
    face = face.reshape(-1, 3).astype(np.float32) if face.size else image.reshape(-1, 3).astype(np.float32)
    grey = bool(np.mean(np.abs(face - face.mean(1, keepdims=True))) < 3.0)
    brightness = float(np.clip(face.mean() / 150.0, 0.5, 1.2))
    lip_colour = _lip_colour(image, mesh)
    return PortraitRig(image=image, mesh=mesh.astype(np.float64), points68=points68, to_pixels=to_pixels,
                       shape=shape, sitter_smile=smile, sitter_opening=opening, control=control,
                       control_weights=control_weights, triangles=triangles,
                       movable=np.arange(len(control)) < len(kept),
                       smoothing=neighbour_average(triangles, np.concatenate([mesh_side, np.zeros(len(control) - len(kept))]),
                                                   len(control)),
                       across_mouth=_spans_mouth(triangles, mesh_side, len(control)), grey=grey, brightness=brightness,
                       lip_colour=lip_colour, mouth_palette=mouth_palette(image, mesh, grey, lip_colour))


def _lip_colour(image: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """Median colour of the pixels between the outer and the inner lip contours."""
    import cv2

    outer = np.concatenate([mesh[list(MP_OUTER_UPPER)], mesh[list(MP_OUTER_LOWER)][::-1]])
    inner = np.concatenate([mesh[list(MP_INNER_UPPER)], mesh[list(MP_INNER_LOWER)][::-1]])
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(outer).astype(np.int32)], 1)
    cv2.fillPoly(mask, [np.round(inner).astype(np.int32)], 0)
    pixels = image[mask > 0]
    return np.median(pixels, axis=0).astype(np.float32) if len(pixels) else np.array([150, 80, 80], np.float32)


def inner_lip_contours(rig: PortraitRig, control_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inner lip contours (upper, lower), corner to corner, at the target control positions."""
    upper = control_target[[_MESH_ROWS[i] for i in MP_INNER_UPPER]]
    lower = control_target[[_MESH_ROWS[i] for i in MP_INNER_LOWER]]
    return upper, lower
