"""Head motion on a full-resolution portrait: turns and nods as parallax of the features, sway as a smooth warp.

A pose (:data:`engine.portrait.performance.POSE_CHANNELS`) reaches the portrait in two parts:

* **turn and nod** (:func:`parallax`): the features shift in face units by ``(yaw, pitch) * depth``
  (:data:`LANDMARK_DEPTH`: the nose tip most, the face's outline not at all), so the face turns inside its
  outline, as a head does in a small rotation seen from the front;
* **tilt, lean and sway** (:class:`HeadWarp`): a similarity about a pivot in the neck (roll, scale,
  translation; a nod also lowers the head a little) weighted by a smooth field that is 1 over the head
  (face, hair, ears), fades across the neck and the background nearby and is 0 far away. The field is
  smooth, so nothing tears; pixels where it is 0 stay the portrait's own, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.io.face import MP_FACE_OVAL

#: Relative depth of each iBUG 68 landmark toward the camera (nose tip 1, the face's outline at the ears 0).
LANDMARK_DEPTH = np.array(
    [0.0, 0.03, 0.08, 0.14, 0.2, 0.26, 0.31, 0.34, 0.35, 0.34, 0.31, 0.26, 0.2, 0.14, 0.08, 0.03, 0.0]  # jaw
    + [0.28, 0.33, 0.36, 0.38, 0.4, 0.4, 0.38, 0.36, 0.33, 0.28]  # brows
    + [0.45, 0.6, 0.75, 1.0, 0.62, 0.7, 0.78, 0.7, 0.62]  # nose
    + [0.25, 0.3, 0.32, 0.33, 0.32, 0.3] * 2  # eyes
    + [0.5] + [0.58] * 5 + [0.5] + [0.58] * 5  # outer lips
    + [0.52] + [0.56] * 3 + [0.52] + [0.56] * 3)  # inner lips
#: Head region, in face units (half the face width) about the face outline's centre: the ellipse where the
#: weight is 1 (centre offset, half axes), and how far beyond it (as a multiple of the ellipse) it fades to 0.
HEAD_CENTRE_OFFSET = (0.0, -0.35)
HEAD_HALF_AXES = (1.35, 1.75)
HEAD_FADE_END = 1.8
#: The pivot of tilts: below the chin, in face units from the face outline's centre.
PIVOT_OFFSET = (0.0, 1.6)
#: Width (face units) over which the motion fades to nothing at the image's edges.
EDGE_FADE = 0.3
#: How far a nod lowers the whole head (face units per face unit of nose travel).
NOD_DROP = 0.4
#: Poses whose largest pixel motion is below this leave the frame untouched.
STILL_PX = 0.02


def parallax(pose: np.ndarray) -> np.ndarray:
    """(68, 2) face-unit shift of the landmarks for a pose's yaw and pitch: ``(yaw, pitch) * depth``."""
    return np.outer(LANDMARK_DEPTH, [pose[1], pose[2]])


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass
class HeadWarp:
    """The smooth head-motion warp of one portrait (module docstring): weight field and pivot, built once."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 where the weight is above 0
    weight: np.ndarray  # (h, w) float32
    grid_x: np.ndarray  # (h, w) float32 pixel x of the box
    grid_y: np.ndarray
    pivot: np.ndarray  # (2,) pixels
    unit: float  # pixels per face unit
    rotation: np.ndarray  # (2, 2) face units -> pixels rotation (the face's own roll in the portrait)

    @classmethod
    def build(cls, image_shape: tuple[int, ...], mesh: np.ndarray, unit: float, rotation: np.ndarray) -> HeadWarp:
        """The warp of a portrait of ``image_shape`` with its MediaPipe mesh, face unit (px) and face rotation."""
        h, w = image_shape[:2]
        oval = mesh[list(MP_FACE_OVAL)].astype(np.float64)
        centre = oval.mean(0)
        axes_x, axes_y = rotation[:, 0], rotation[:, 1]
        head = centre + unit * (HEAD_CENTRE_OFFSET[0] * axes_x + HEAD_CENTRE_OFFSET[1] * axes_y)
        half = np.array(HEAD_HALF_AXES) * unit
        reach = float(np.max(half) * HEAD_FADE_END)
        x0, y0 = max(int(head[0] - reach), 0), max(int(head[1] - reach), 0)
        x1, y1 = min(int(np.ceil(head[0] + reach)) + 1, w), min(int(np.ceil(head[1] + reach)) + 1, h)
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        rel = np.stack([gx - head[0], gy - head[1]], -1)
        local_x = rel @ axes_x / half[0]
        local_y = rel @ axes_y / half[1]
        radius = np.sqrt(local_x**2 + local_y**2)
        weight = 1.0 - _smoothstep((radius - 1.0) / (HEAD_FADE_END - 1.0))
        # Still at the image's edges: nothing there to pull in from outside the picture.
        edge = np.minimum(np.minimum(gx, (w - 1) - gx), np.minimum(gy, (h - 1) - gy))
        weight *= _smoothstep(edge / (EDGE_FADE * unit))
        pivot = centre + unit * (PIVOT_OFFSET[0] * axes_x + PIVOT_OFFSET[1] * axes_y)
        return cls((x0, y0, x1, y1), weight.astype(np.float32), gx, gy, pivot, float(unit), rotation)

    def similarity(self, pose: np.ndarray) -> np.ndarray:
        """(2, 3) pixel map of the pose's tilt, scale and translation about the pivot."""
        roll, _yaw, pitch, growth, tx, ty = (float(v) for v in pose)
        angle = np.deg2rad(roll)
        scale = 1.0 + growth
        rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shift = self.unit * (self.rotation @ np.array([tx, ty + NOD_DROP * pitch]))
        offset = self.pivot + shift - rot @ self.pivot
        return np.concatenate([rot, offset[:, None]], axis=1)

    def apply(self, frame: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """``frame`` with the head moved by ``pose`` (a new array; the input is not changed)."""
        x0, y0, x1, y1 = self.box
        if x1 <= x0 or y1 <= y0:
            return frame
        (a, b, c), (d, e, f) = (tuple(float(v) for v in row) for row in self.similarity(pose))
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64)
        reach = np.abs(corners @ np.array([[a - 1, d], [b, e - 1]]) + (c, f)).max()
        if reach < STILL_PX:
            return frame
        # Output pixel q samples q - w(q) (S(q) - q) (float32 throughout; where w is 0 the map is the identity,
        # so bilinear sampling returns those pixels exactly).
        map_x = self.grid_x - self.weight * ((a - 1) * self.grid_x + b * self.grid_y + c) - x0
        map_y = self.grid_y - self.weight * (d * self.grid_x + (e - 1) * self.grid_y + f) - y0
        region = frame[y0:y1, x0:x1]
        moved = cv2.remap(region, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        result = frame.copy()
        result[y0:y1, x0:x1] = moved
        return result
