"""Face landmarks, crop/alignment, region masks, the training mouth mask and a person matte.

Landmarks come from MediaPipe Face Mesh (478 points with the refined irises); ``mediapipe`` is
imported lazily, and one FaceMesh instance is kept per thread. The region masks work on either
landmark set: the 478-point MediaPipe mesh or the 68-point (iBUG order) ground truth of the
synthetic renderer (:mod:`training.synthetic`); :func:`regions_for` dispatches on the count.

MediaPipe on the synthetic faces: checked with mediapipe 0.10.14 on 20 random identities at
128x128 and 256x256 (neutral, frontal): Face Mesh found a face in 40/40 images. The drawn faces
are cartoon-like, so the mesh is a usable detection and a rough fit; training on synthetic data
should still prefer the exact ground-truth landmarks stored with each clip. Where MediaPipe finds
nothing, :func:`landmarks_or_none` returns ``None`` and callers fall back to the ground truth.

Checked on ``skimage.data.astronaut()`` (512x512): the mesh spans about x 179-271, y 71-177.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from engine.errors import InputImageError, MissingDependencyError, NoFaceError
from engine.io.quiet import ignore_protobuf_warning, quiet_native_logs

#: Number of points of a MediaPipe Face Mesh with refined irises, and of the synthetic set.
MEDIAPIPE_POINTS = 478
MEDIAPIPE_POINTS_NO_IRIS = 468
SYNTHETIC_POINTS = 68

REGIONS: tuple[str, ...] = ("brows", "eyes", "nose", "mouth", "cheeks", "jaw", "forehead")

MIN_DETECTION_CONFIDENCE = 0.5
#: Most faces one detection reports (a portrait with more is said to have "at least" this many).
MAX_FACES = 6
DEFAULT_CROP_MARGIN = 0.45  # extra side length around the landmark box, as a fraction of it
DEFAULT_FEATHER = 0.02  # Gaussian feather of region masks, as a fraction of min(height, width)
DEFAULT_MOUTH_DILATE = 0.2  # growth of the mouth mask, as a fraction of the mouth width
FOREHEAD_HEIGHT = 0.45  # forehead height above the brows, as a fraction of the brow-to-chin distance

# MediaPipe Face Mesh index groups (canonical mesh topology)
MP_LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
MP_LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
MP_RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
MP_LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
MP_RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
MP_LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
MP_NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275, 45, 220, 115,
           48, 64, 49, 129, 279, 358)
MP_RIGHT_CHEEK = (116, 117, 118, 119, 100, 142, 203, 206, 216, 192, 213, 147, 123)
MP_LEFT_CHEEK = (345, 346, 347, 348, 329, 371, 423, 426, 436, 416, 433, 376, 352)
MP_JAW = (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 57, 287, 18)
MP_FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
                152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
MP_CHIN = 152

# 68-point (iBUG) groups of the synthetic renderer
S68_JAW = tuple(range(0, 17))
S68_RIGHT_BROW, S68_LEFT_BROW = tuple(range(17, 22)), tuple(range(22, 27))
S68_NOSE = tuple(range(27, 36))
S68_RIGHT_EYE, S68_LEFT_EYE = tuple(range(36, 42)), tuple(range(42, 48))
S68_MOUTH = tuple(range(48, 68))
S68_RIGHT_CHEEK = (1, 2, 3, 4, 48, 31, 40, 41, 36)
S68_LEFT_CHEEK = (15, 14, 13, 12, 54, 35, 47, 46, 45)
S68_JAW_REGION = (*range(3, 14), 54, 55, 56, 57, 58, 59, 48)
S68_CHIN = 8


@dataclass
class FaceLandmarks:
    """Landmarks of one face: ``points`` (N, 2) pixel x, y; ``z`` (N,) relative depth; ``box`` x0, y0, x1, y1."""

    points: np.ndarray
    z: np.ndarray
    box: tuple[float, float, float, float]

    @property
    def count(self) -> int:
        return int(self.points.shape[0])


# ----------------------------------------------------------------------------------------------
# Detection
# ----------------------------------------------------------------------------------------------

_local = threading.local()


def _mediapipe(feature: str):
    """Import MediaPipe, or say which feature needs it and how to do without it."""
    try:
        import mediapipe as mp
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs MediaPipe, which is not installed: pip install mediapipe==0.10.14 "
            "(or render with --crop none --keep-background no, which do without it)") from exc
    ignore_protobuf_warning()  # MediaPipe's outputs trigger it, every run (engine/io/quiet.py)
    return mp


def _run_graph(name: str, create: Callable[[], Any], image: np.ndarray) -> Any:
    """``process(image)`` on this thread's MediaPipe graph ``name``, made by ``create()`` on first use.

    A new graph opens its TensorFlow Lite models on MediaPipe's own threads, from its construction until
    its first result, and their C++ code logs to stderr meanwhile: construction and first run are quieted
    together (:func:`engine.io.quiet.quiet_native_logs`; quieting the first run alone was measured to miss
    lines now and then).
    """
    graph = getattr(_local, name, None)
    if graph is not None:
        return graph.process(image)
    with quiet_native_logs():
        graph = create()
        setattr(_local, name, graph)
        return graph.process(image)


def _face_mesh() -> Any:
    mp = _mediapipe("finding the face (--crop auto or face)")
    return mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=MAX_FACES,
                                           min_detection_confidence=MIN_DETECTION_CONFIDENCE)


def _selfie_segmentation() -> Any:
    mp = _mediapipe("keeping the portrait's background (--keep-background yes)")
    return mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise InputImageError(f"expected an RGB image array of shape HxWx3, got shape {shape}")
    if image.shape[0] < 16 or image.shape[1] < 16:
        raise InputImageError(f"image is too small ({image.shape[1]}x{image.shape[0]}); use at least 64x64")
    if image.dtype != np.uint8:
        raise InputImageError(f"expected a uint8 RGB image, got dtype {image.dtype}")
    return np.ascontiguousarray(image)


def detect_landmarks(image: np.ndarray, face: int | None = None) -> FaceLandmarks:
    """MediaPipe Face Mesh landmarks (478 points) of one face in an RGB uint8 image.

    ``face``: which face of several, numbered 1, 2, ... from left to right (by the middle of each face);
    None asks for the single face. Raises :class:`NoFaceError` when there is no face, when there are
    several and ``face`` is None (the message says how many and how to pick one), or when ``face`` is
    past the last one.
    """
    image = _check_image(image)
    result = _run_graph("face_mesh", _face_mesh, image)
    faces = result.multi_face_landmarks or []
    if not faces:
        raise NoFaceError("no face found in the portrait; use a clear, frontal photo of one face")
    h, w = image.shape[:2]
    found = [np.array([(p.x * w, p.y * h, p.z * w) for p in f.landmark], dtype=np.float32) for f in faces]
    found.sort(key=lambda arr: float(arr[:, 0].mean()))
    count = f"at least {len(found)}" if len(found) >= MAX_FACES else str(len(found))
    if face is None and len(found) > 1:
        raise NoFaceError(f"found {count} faces in the portrait; pick one with --face N (1 = the leftmost, "
                          f"{len(found)} = the rightmost), or crop the portrait to one face")
    index = 1 if face is None else int(face)
    if not 1 <= index <= len(found):
        raise NoFaceError(f"--face {index} asks for face {index} from the left, but {count} "
                          f"face{'s were' if len(found) > 1 else ' was'} found; choose 1 to {len(found)}")
    arr = found[index - 1]
    pts = arr[:, :2].copy()
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return FaceLandmarks(points=pts, z=arr[:, 2].copy(), box=(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])))


def landmarks_or_none(image: np.ndarray) -> FaceLandmarks | None:
    """Like :func:`detect_landmarks` but ``None`` when no single face is found (callers fall back)."""
    try:
        return detect_landmarks(image)
    except NoFaceError:
        return None


def _points(landmarks: FaceLandmarks | np.ndarray) -> np.ndarray:
    pts = landmarks.points if isinstance(landmarks, FaceLandmarks) else np.asarray(landmarks)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"landmarks must be (N, 2), got {pts.shape}")
    return pts[:, :2].astype(np.float64)


# ----------------------------------------------------------------------------------------------
# Groups
# ----------------------------------------------------------------------------------------------


def _groups(n: int) -> dict[str, list[tuple[int, ...]]]:
    if n in (MEDIAPIPE_POINTS, MEDIAPIPE_POINTS_NO_IRIS):
        return {
            "brows": [MP_RIGHT_BROW, MP_LEFT_BROW],
            "eyes": [MP_RIGHT_EYE, MP_LEFT_EYE],
            "nose": [MP_NOSE],
            "mouth": [MP_LIPS_OUTER],
            "cheeks": [MP_RIGHT_CHEEK, MP_LEFT_CHEEK],
            "jaw": [MP_JAW],
        }
    if n == SYNTHETIC_POINTS:
        return {
            "brows": [S68_RIGHT_BROW, S68_LEFT_BROW],
            "eyes": [S68_RIGHT_EYE, S68_LEFT_EYE],
            "nose": [S68_NOSE],
            "mouth": [S68_MOUTH],
            "cheeks": [S68_RIGHT_CHEEK, S68_LEFT_CHEEK],
            "jaw": [S68_JAW_REGION],
        }
    raise ValueError(f"unsupported landmark set of {n} points; expected {MEDIAPIPE_POINTS} (MediaPipe) "
                     f"or {SYNTHETIC_POINTS} (synthetic)")


def eye_centres(landmarks: FaceLandmarks | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the eye on the image left and the eye on the image right."""
    pts = _points(landmarks)
    g = _groups(len(pts))["eyes"]
    a, b = pts[list(g[0])].mean(axis=0), pts[list(g[1])].mean(axis=0)
    return (a, b) if a[0] <= b[0] else (b, a)


def regions_for(points: FaceLandmarks | np.ndarray) -> dict[str, list[np.ndarray]]:
    """Polygons (convex hulls, pixel coords) of every region in :data:`REGIONS` for either landmark set."""
    pts = _points(points)
    groups = _groups(len(pts))
    out: dict[str, list[np.ndarray]] = {}
    for name, idx_lists in groups.items():
        out[name] = [cv2.convexHull(pts[list(idx)].astype(np.float32)).reshape(-1, 2) for idx in idx_lists]
    # forehead: the brows' upper edge pushed up along the chin->brow direction
    brow_idx = [i for g in groups["brows"] for i in g]
    brows = pts[brow_idx]
    chin = pts[MP_CHIN if len(pts) != SYNTHETIC_POINTS else S68_CHIN]
    centre = brows.mean(axis=0)
    up = centre - chin
    top = brows + up * FOREHEAD_HEIGHT
    out["forehead"] = [cv2.convexHull(np.concatenate([brows, top]).astype(np.float32)).reshape(-1, 2)]
    return out


# ----------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------


def _scaled(points: FaceLandmarks | np.ndarray, height: int, width: int,
            image_size: tuple[int, int] | None) -> np.ndarray:
    pts = _points(points)
    if image_size is not None:
        ih, iw = image_size
        pts = pts * np.array([width / iw, height / ih])
    return pts


def _fill(mask: np.ndarray, polygons: Sequence[np.ndarray]) -> None:
    sub = 16
    for poly in polygons:
        q = np.round(np.asarray(poly, dtype=np.float64) * sub).astype(np.int32)
        cv2.fillPoly(mask, [q], 1.0, cv2.LINE_AA, 4)


def _feather(mask: np.ndarray, feather: float) -> np.ndarray:
    """Soften the edge outwards: the filled region stays 1, the blur only adds a falloff outside."""
    sigma = feather * min(mask.shape)
    if sigma > 0.3:
        k = 2 * int(round(sigma)) + 1
        grown = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        soft = cv2.GaussianBlur(grown, (0, 0), sigmaX=sigma, sigmaY=sigma)
        mask = np.maximum(mask, soft)
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


def region_mask(points: FaceLandmarks | np.ndarray, region: str | Sequence[str], height: int, width: int,
                feather: float = DEFAULT_FEATHER, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Float32 HxW mask in 0..1 of one region (or a union of regions) of :data:`REGIONS`.

    ``points`` are in pixels of an image of ``image_size`` (height, width); when given they are
    scaled to ``height`` x ``width``, so the mask can be made at any resolution. ``feather`` is the
    Gaussian blur sigma as a fraction of ``min(height, width)``.
    """
    names = [region] if isinstance(region, str) else list(region)
    for name in names:
        if name not in REGIONS:
            from engine.errors import EmotionSpecError

            raise EmotionSpecError(f"unknown face region {name!r}; known regions: {', '.join(REGIONS)}")
    pts = _scaled(points, height, width, image_size)
    polys = regions_for(pts)
    mask = np.zeros((height, width), dtype=np.float32)
    for name in names:
        _fill(mask, polys[name])
    return _feather(mask, feather)


def mouth_mask(points: FaceLandmarks | np.ndarray, height: int, width: int, dilate: float = DEFAULT_MOUTH_DILATE,
               image_size: tuple[int, int] | None = None, feather: float = 0.0) -> np.ndarray:
    """Mouth mask for training (the paper masks the mouth): the lip hull grown by ``dilate`` x mouth width."""
    pts = _scaled(points, height, width, image_size)
    hull = regions_for(pts)["mouth"][0].astype(np.float64)
    centre = hull.mean(axis=0)
    mouth_w = float(np.ptp(hull[:, 0])) or 1.0
    direction = hull - centre
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    grown = hull + direction / np.maximum(norm, 1e-6) * dilate * mouth_w
    mask = np.zeros((height, width), dtype=np.float32)
    _fill(mask, [grown])
    return _feather(mask, feather)


# ----------------------------------------------------------------------------------------------
# Crop / align
# ----------------------------------------------------------------------------------------------


@dataclass
class CropTransform:
    """Similarity transform from the source image to a square aligned crop."""

    matrix: np.ndarray  # (2, 3) source pixels -> crop pixels
    size: int
    angle_deg: float
    landmarks: np.ndarray  # landmarks in crop pixels

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) source pixel coordinates into the crop."""
        pts = np.asarray(points, dtype=np.float64)
        return (pts @ self.matrix[:, :2].T + self.matrix[:, 2]).astype(np.float32)

    def inverse(self) -> np.ndarray:
        """(2, 3) matrix mapping crop pixels back to the source image."""
        return cv2.invertAffineTransform(self.matrix)


def crop_face(image: np.ndarray, landmarks: FaceLandmarks | np.ndarray, size: int,
              margin: float = DEFAULT_CROP_MARGIN) -> tuple[np.ndarray, CropTransform]:
    """Square crop of ``size`` pixels around the face, rotated so the eyes are level.

    The side is the landmark box (in the rotated frame) times ``1 + margin``; areas outside the
    image are filled by replicating the border. Returns ``(crop, transform)``; the transformed
    landmarks are ``transform.landmarks``.
    """
    pts = _points(landmarks)
    left, right = eye_centres(pts)
    angle = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
    theta = np.radians(angle)
    rot = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])  # undo the roll
    rpts = pts @ rot.T
    lo, hi = rpts.min(axis=0), rpts.max(axis=0)
    centre_r = (lo + hi) / 2
    side = float(max(hi - lo)) * (1 + margin)
    side = max(side, 1.0)
    scale = size / side
    m = np.zeros((2, 3))
    m[:, :2] = rot * scale
    m[:, 2] = size / 2 - centre_r * scale
    crop = cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), flags=cv2.INTER_AREA if scale < 1 else
                          cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    transform = CropTransform(matrix=m, size=size, angle_deg=angle, landmarks=np.zeros((0, 2), np.float32))
    transform.landmarks = transform.apply(pts)
    return crop, transform


#: Width of the seam where a generated face crop fades into the portrait (fraction of the crop's side).
PASTE_FEATHER = 0.06


def paste_mask(size: int, feather: float = PASTE_FEATHER) -> np.ndarray:
    """Float32 ``size x size`` weight of a generated crop: 1 inside the crop's inscribed disc, falling
    (smoothstep) to exactly 0 at its rim over ``feather`` x ``size`` pixels; 0 in the corners."""
    if not 0 < feather < 0.5:
        raise InputImageError(f"paste feather must be between 0 and 0.5 of the crop, got {feather}")
    centre = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    distance = np.hypot(xx - centre, yy - centre)
    t = np.clip((size / 2 - distance) / (feather * size), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def paste_back(portrait: np.ndarray, frame: np.ndarray, transform: CropTransform | np.ndarray,
               feather: float = PASTE_FEATHER) -> np.ndarray:
    """A generated crop put back into the portrait it was cut from, at the portrait's resolution.

    ``transform``: the crop's :class:`CropTransform` or its ``(2, 3)`` matrix (portrait pixels -> crop pixels,
    whatever the crop's size: ``frame`` may be smaller, e.g. the model's 64 px). The frame is warped back by
    the inverse transform and blended through :func:`paste_mask` (a soft disc, ``feather`` x the crop side
    wide), so pixels outside the disc are the portrait's own, bit for bit. Returns RGB uint8 of the
    portrait's shape.
    """
    matrix = np.asarray(transform.matrix if isinstance(transform, CropTransform) else transform, np.float64)
    crop_side = transform.size if isinstance(transform, CropTransform) else frame.shape[0]
    height, width = portrait.shape[:2]
    scaled = matrix * (frame.shape[0] / crop_side)  # portrait -> frame pixels
    inverse = cv2.invertAffineTransform(scaled)
    warped = cv2.warpAffine(np.ascontiguousarray(frame), inverse, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    weight = cv2.warpAffine(paste_mask(frame.shape[0], feather), inverse, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)[..., None]
    blended = portrait.astype(np.float32) * (1 - weight) + warped.astype(np.float32) * weight
    out = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return np.where(weight > 0, out, portrait)


# ----------------------------------------------------------------------------------------------
# Person matte
# ----------------------------------------------------------------------------------------------


def person_matte(image: np.ndarray) -> np.ndarray:
    """Float32 HxW matte in 0..1 of the person (MediaPipe selfie segmentation)."""
    image = _check_image(image)
    result = _run_graph("selfie", _selfie_segmentation, image)
    mask = result.segmentation_mask
    if mask is None:
        return np.zeros(image.shape[:2], dtype=np.float32)
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


#: The generated region around the person matte: grown by this fraction of the image side (room for
#: the head's motion) and feathered over this fraction (no seam).
BACKGROUND_MATTE_GROW = 0.03
BACKGROUND_MATTE_FEATHER = 0.023
#: Below this peak matte value no person was found: nothing is kept from the portrait.
MATTE_PERSON_THRESHOLD = 0.5


def portrait_background_weight(portrait: np.ndarray, grow: float = BACKGROUND_MATTE_GROW,
                               feather: float = BACKGROUND_MATTE_FEATHER) -> np.ndarray | None:
    """Per-pixel weight ``k`` in 0..1 of the portrait's static background, for ``k * portrait + (1 - k) * frame``.

    ``k = 1 - blur(dilate(matte > 0.5))``: 0 on the person (grown by ``grow`` x the side, so the
    head may move) and 1 on the background. None when no person is found (nothing to keep).
    """
    matte = person_matte(portrait)
    if float(matte.max()) < MATTE_PERSON_THRESHOLD:
        return None
    person = (matte > MATTE_PERSON_THRESHOLD).astype(np.uint8)
    radius = int(round(grow * min(person.shape)))
    if radius > 0:
        person = cv2.dilate(person, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    sigma = feather * min(person.shape)
    soft = cv2.GaussianBlur(person.astype(np.float32), (0, 0), sigmaX=sigma) if sigma > 0.3 else person.astype(np.float32)
    return np.clip(1.0 - soft, 0.0, 1.0).astype(np.float32)


def keep_background(frames: np.ndarray, portrait: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """uint8 frames ``(..., H, W, 3)`` with the portrait's background where ``weight`` (see
    :func:`portrait_background_weight`) says so: ``k * portrait + (1 - k) * frame``."""
    if weight is None:
        return frames
    k = weight[..., None]
    mixed = k * portrait.astype(np.float32) + (1.0 - k) * frames.astype(np.float32)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)
