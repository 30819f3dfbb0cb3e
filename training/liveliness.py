"""Is a clip alive? Blink rate, head-motion range and gaze range, read from MediaPipe face-mesh sequences.

Pure functions of landmark sequences (``(T, 478, 2)`` pixel points, or ``(T, 478, 3)`` with MediaPipe's
relative depth for the head's rotation), so they measure *what a viewer sees on the output frames* whatever
the renderer does, and can be tested on synthetic sequences. A frame where no face was found is ``NaN``
throughout and is left out. ``moee eval-portraits`` reads them on its speech clip (training/portrait_eval.py).

* **Blinks**: the eye aspect ratio (EAR; Soukupova and Cech 2016: the two lid-to-lid heights over twice the
  corner-to-corner width, both eyes averaged) per frame; a frame is *closed* below
  :data:`CLOSED_FRACTION` of the clip's open-eye EAR (its :data:`OPEN_PERCENTILE` th percentile), and every
  run of closed frames is one blink.
* **Head motion**: the head's rigid points (:data:`RIGID_POINTS`: forehead, nose bridge and tip, eye
  corners, cheekbones; no brow, lid, lip or jaw point), their clip-median 3-D shape posed onto each frame's
  2-D points (weak perspective) give yaw, pitch and roll in degrees; their centroid's path gives the
  translation in pixels.
* **Gaze**: each iris centre (points 468 and 473) placed along its eye's corner-to-corner axis and across
  it, in eye widths, both eyes averaged (closed frames left out); converted to approximate degrees with an
  eyeball radius of :data:`EYE_WIDTH_OVER_RADIUS` eye widths.

Ranges are robust: the spread between the :data:`RANGE_PERCENTILES` of a quantity over the clip, so that one
frame of MediaPipe noise is not read as motion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: MediaPipe's eye points for the EAR: outer corner, two upper lid, inner corner, two lower lid
#: (p1, p2, p3, p4, p5, p6 of Soukupova and Cech), the sitter's right eye then left eye.
RIGHT_EYE_EAR = (33, 160, 158, 133, 153, 144)
LEFT_EYE_EAR = (263, 387, 385, 362, 380, 373)
#: Iris centres of the refined mesh (478 points): the sitter's right eye, left eye.
RIGHT_IRIS, LEFT_IRIS = 468, 473
#: Points that move with the skull only (no brow, lid, lip or jaw point).
RIGID_POINTS = (10, 151, 9, 168, 6, 197, 195, 4, 1, 33, 133, 362, 263, 234, 454)
#: A frame is closed below this fraction of the clip's open-eye EAR.
CLOSED_FRACTION = 0.55
#: The clip's open-eye EAR: this percentile of its EAR (eyes are open most of the time).
OPEN_PERCENTILE = 90
#: Percentiles whose spread is a quantity's range over the clip.
RANGE_PERCENTILES = (5.0, 95.0)
#: Eye width (palpebral fissure, ~28 mm) over the eyeball's radius (~12 mm): an iris offset of one eye
#: width from centre would be asin(2.3) (not reachable); small offsets convert as asin(offset * 2.3).
EYE_WIDTH_OVER_RADIUS = 2.3
#: Fewer valid frames than this give no measure (None).
MIN_FRAMES = 3


def _valid(sequence: np.ndarray) -> np.ndarray:
    """Frames whose every coordinate is finite (a face was found)."""
    flat = sequence.reshape(sequence.shape[0], -1)
    return np.all(np.isfinite(flat), axis=1)


def _robust_range(values: np.ndarray) -> float:
    lo, hi = np.percentile(values, RANGE_PERCENTILES)
    return float(hi - lo)


def eye_aspect_ratio(points: np.ndarray) -> np.ndarray:
    """``(T,)`` EAR of both eyes averaged, from ``(T, >=468, 2+)`` mesh points (NaN where a frame is NaN)."""
    pts = np.asarray(points, np.float64)[..., :2]

    def ear(idx: tuple[int, ...]) -> np.ndarray:
        p = pts[:, idx]
        heights = np.linalg.norm(p[:, 1] - p[:, 5], axis=-1) + np.linalg.norm(p[:, 2] - p[:, 4], axis=-1)
        width = np.linalg.norm(p[:, 0] - p[:, 3], axis=-1)
        return heights / np.maximum(2.0 * width, 1e-9)

    return (ear(RIGHT_EYE_EAR) + ear(LEFT_EYE_EAR)) / 2.0


@dataclass(frozen=True)
class Blinks:
    count: int
    per_minute: float
    mean_duration_ms: float | None


def closed_frames(ear: np.ndarray) -> np.ndarray:
    """Which frames have closed eyes (False where the EAR is NaN)."""
    ear = np.asarray(ear, np.float64)
    finite = np.isfinite(ear)
    if finite.sum() < MIN_FRAMES:
        return np.zeros(ear.shape, bool)
    open_level = np.percentile(ear[finite], OPEN_PERCENTILE)
    return finite & (ear < CLOSED_FRACTION * open_level)


def blinks(points: np.ndarray, fps: float) -> Blinks | None:
    """Blinks of a ``(T, 478, 2)`` mesh sequence at ``fps``: count, per minute, mean length (ms).

    ``None`` with fewer than :data:`MIN_FRAMES` frames with a face.
    """
    ear = eye_aspect_ratio(points)
    if np.isfinite(ear).sum() < MIN_FRAMES:
        return None
    closed = closed_frames(ear)
    starts = np.flatnonzero(closed & ~np.concatenate([[False], closed[:-1]]))
    lengths = []
    for start in starts:
        end = start
        while end < len(closed) and closed[end]:
            end += 1
        lengths.append(end - start)
    minutes = len(ear) / fps / 60.0
    duration = float(np.mean(lengths)) * 1000.0 / fps if lengths else None
    return Blinks(count=len(starts), per_minute=len(starts) / minutes, mean_duration_ms=duration)


def _rotation_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """Yaw (about y), pitch (about x), roll (about z) in degrees of ``R = Rz(roll) Ry(yaw) Rx(pitch)``."""
    yaw = np.degrees(np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(rotation[2, 1], rotation[2, 2]))
    roll = np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0]))
    return float(yaw), float(pitch), float(roll)


def weak_perspective_rotation(model: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The rotation (3 x 3) of a weak-perspective camera that best projects the centred 3-D ``model`` points
    onto the centred 2-D ``image`` points (``image ~ s * (model @ R.T)[:, :2]``): the least-squares 2 x 3
    map, its rows made orthonormal (the POS step of DeMenthon and Davis), the third row their cross product."""
    rows, *_ = np.linalg.lstsq(model, image, rcond=None)  # (3, 2): image ~ model @ rows
    r1 = rows[:, 0] / max(np.linalg.norm(rows[:, 0]), 1e-12)
    r2 = rows[:, 1] - (rows[:, 1] @ r1) * r1
    r2 /= max(np.linalg.norm(r2), 1e-12)
    return np.stack([r1, r2, np.cross(r1, r2)])


def _roll_2d(source: np.ndarray, target: np.ndarray) -> float:
    """The in-plane rotation (radians) that best maps centred 2-D ``source`` points onto ``target``."""
    cross = (source[:, 0] * target[:, 1] - source[:, 1] * target[:, 0]).sum()
    dot = (source * target).sum()
    return float(np.arctan2(cross, dot))


@dataclass(frozen=True)
class HeadMotion:
    yaw_range_deg: float
    pitch_range_deg: float
    roll_range_deg: float
    translation_range_px: float


def head_motion(points: np.ndarray, px_scale: float = 1.0) -> HeadMotion | None:
    """The head's rotation and translation ranges over a ``(T, 478, 3)`` mesh sequence (x, y pixels and
    MediaPipe's depth in the same units); translation in pixels times ``px_scale`` (e.g. 512 / long side).

    The head's shape is the clip's median rigid points in 3-D (MediaPipe's depth of one frame is noisy, so no
    frame's own depth is used); each frame's rotation is the weak-perspective pose of that shape seen as the
    frame's 2-D points (:func:`weak_perspective_rotation`), relative to the median shape. With
    ``(T, 478, 2)`` points only the roll is read (yaw and pitch 0). ``None`` with fewer than
    :data:`MIN_FRAMES` frames with a face.
    """
    pts = np.asarray(points, np.float64)[:, RIGID_POINTS]
    pts = pts[_valid(pts)]
    if len(pts) < MIN_FRAMES:
        return None
    centroids = pts[:, :, :2].mean(axis=1)
    centred = pts - pts.mean(axis=1, keepdims=True)
    shape = np.median(centred, axis=0)
    if pts.shape[-1] == 2:
        angles = np.array([[0.0, 0.0, np.degrees(_roll_2d(shape, frame))] for frame in centred])
    else:
        # The median shape seen as its own x, y is the identity pose: every frame's pose is relative to it.
        angles = np.array([_rotation_angles(weak_perspective_rotation(shape, frame[:, :2])) for frame in centred])
    path = centroids * px_scale
    translation = float(np.hypot(_robust_range(path[:, 0]), _robust_range(path[:, 1])))
    return HeadMotion(*(_robust_range(angles[:, k]) for k in range(3)), translation_range_px=translation)


@dataclass(frozen=True)
class Gaze:
    horizontal_range: float  # eye widths
    vertical_range: float  # eye widths
    horizontal_range_deg: float
    vertical_range_deg: float


def iris_offsets(points: np.ndarray) -> np.ndarray:
    """``(T, 2)``: each frame's iris centres along (image left to right) and across (downward) their eye's
    corner-to-corner axis, from the axis midpoint, in eye widths, both eyes averaged."""
    pts = np.asarray(points, np.float64)[..., :2]
    offsets = []
    for iris, (a, b) in ((RIGHT_IRIS, (RIGHT_EYE_EAR[0], RIGHT_EYE_EAR[3])),
                         (LEFT_IRIS, (LEFT_EYE_EAR[3], LEFT_EYE_EAR[0]))):
        left, right = pts[:, a], pts[:, b]
        if np.nanmean(left[:, 0]) > np.nanmean(right[:, 0]):  # image left to right whichever eye
            left, right = right, left
        axis = right - left
        width = np.linalg.norm(axis, axis=-1)
        along = axis / np.maximum(width, 1e-9)[:, None]
        across = np.stack([-along[:, 1], along[:, 0]], axis=-1)  # along rotated +90 degrees: downward
        rel = pts[:, iris] - (left + right) / 2
        offsets.append(np.stack([(rel * along).sum(-1), (rel * across).sum(-1)], axis=-1) / width[:, None])
    return (offsets[0] + offsets[1]) / 2


def gaze(points: np.ndarray) -> Gaze | None:
    """The gaze's ranges over a ``(T, 478, 2+)`` mesh sequence (closed-eye frames left out).

    ``None`` with fewer than :data:`MIN_FRAMES` open-eye frames with a face, or without iris points.
    """
    pts = np.asarray(points, np.float64)
    if pts.shape[1] <= LEFT_IRIS:
        return None
    keep = _valid(pts[..., :2]) & ~closed_frames(eye_aspect_ratio(pts))
    if keep.sum() < MIN_FRAMES:
        return None
    offsets = iris_offsets(pts[keep])
    degrees = np.degrees(np.arcsin(np.clip(offsets * EYE_WIDTH_OVER_RADIUS, -1.0, 1.0)))
    return Gaze(_robust_range(offsets[:, 0]), _robust_range(offsets[:, 1]),
                _robust_range(degrees[:, 0]), _robust_range(degrees[:, 1]))


def liveliness(points: np.ndarray | None, fps: float, px_scale: float = 1.0) -> dict:
    """Blinks, head motion and gaze of a mesh sequence as one JSON-ready dict (``None`` where not measured)."""

    def rounded(value):
        if value is None:
            return None
        return {k: (None if v is None else round(float(v), 3) if isinstance(v, float) else v)
                for k, v in asdict(value).items()}

    if points is None:
        return {"blinks": None, "head_motion": None, "gaze": None}
    return {"blinks": rounded(blinks(points[..., :2], fps)), "head_motion": rounded(head_motion(points, px_scale)),
            "gaze": rounded(gaze(points))}
