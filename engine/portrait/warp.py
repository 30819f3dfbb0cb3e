"""Image warps for carrying motion onto a full-resolution portrait: a piecewise-affine mesh warp, closed lips.

Pure numpy + OpenCV, no model. :func:`mesh_warp` moves the pixels of a triangulated control mesh from
their source to their target positions (each target triangle samples its source triangle through the
affine map between them, so the warp is exact and continuous); pixels outside every moving triangle are
copied unchanged. :func:`draw_closed_lips` covers the seam where the warp closed parted lips (the interior
of a mouth opened wider than the portrait's own is drawn by :mod:`engine.portrait.mouth`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Sub-pixel bits used when rasterising polygons with OpenCV.
RASTER_SHIFT = 4
#: Control points that move less than this (pixels) count as still.
STILL_PX = 1e-3


def affine_maps(source: np.ndarray, target: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Affine maps ``A_t`` (T, 2, 3) with ``A_t [x_target, y_target, 1] = x_source`` for each triangle.

    Returns ``(maps, valid)``; ``valid`` is False for triangles whose target is degenerate (zero area).
    """
    dst = target[triangles]  # (T, 3, 2)
    src = source[triangles]
    ones = np.ones((*dst.shape[:2], 1))
    dst_h = np.concatenate([dst, ones], axis=2)  # (T, 3, 3)
    det = np.linalg.det(dst_h)
    valid = np.abs(det) > 1e-6
    maps = np.zeros((len(triangles), 2, 3))
    maps[:, 0, 0] = maps[:, 1, 1] = 1.0
    if valid.any():
        solved = np.linalg.solve(dst_h[valid], src[valid])  # (V, 3, 2): dst_h @ M = src
        maps[valid] = np.transpose(solved, (0, 2, 1))
    return maps, valid


#: Barycentric weight below which a rasterised pixel counts as outside its triangle.
BARYCENTRIC_TOLERANCE = 1e-3
#: How far (source pixels) a pixel just outside its triangle may sample beyond the triangle's nearest point.
EXTRAPOLATION_PX = 1.5
#: How far (target pixels) outside its triangle the rasteriser puts a pixel's centre at most (its 8-connected
#: edges touch only pixels the edge passes through).
MAX_OVERSPILL_PX = 1.0
#: Target triangles smaller than this share of their source area (or flipped) are relaxed.
MIN_AREA_RATIO = 0.25
#: Rounds of relaxation at most (a wide-smiling sitter's mouth, neutralised and then frowning, needs ~50 to
#: unfold: with 12 its lip corners tore into jagged steps).
RELAX_ITERATIONS = 60


def map_gain(maps: np.ndarray) -> np.ndarray:
    """(T,) the largest stretch of each affine map's linear part (its 2 x 2 matrix's largest singular value)."""
    a, b, c, d = maps[:, 0, 0], maps[:, 0, 1], maps[:, 1, 0], maps[:, 1, 1]
    squares = a * a + b * b + c * c + d * d
    det = a * d - b * c
    return np.sqrt((squares + np.sqrt(np.maximum(squares * squares - 4 * det * det, 0.0))) / 2)


def barycentric_weights(corners: np.ndarray, tri_ids: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(P, 3) barycentric weights of points ``(xs, ys)`` in triangles ``corners[tri_ids]`` (corners: (T, 3, 2));
    all >= 0 inside the triangle. Degenerate triangles give non-finite weights (callers skip them)."""
    a, b, c = (corners[tri_ids, k] for k in range(3))
    v0, v1 = b - a, c - a
    v2 = np.stack([xs, ys], axis=1) - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
        w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    return np.stack([1.0 - w1 - w2, w1, w2], axis=1)


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area of each triangle (T,)."""
    a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def relax_foldovers(source: np.ndarray, target: np.ndarray, triangles: np.ndarray,
                    movable: np.ndarray | None = None, iterations: int = RELAX_ITERATIONS,
                    may_close: np.ndarray | None = None) -> np.ndarray:
    """Target positions without fold-overs: flipped or crushed triangles pull their vertices' motion together.

    A triangle whose target area falls below :data:`MIN_AREA_RATIO` of its source area (or changes sign)
    moves each of its vertices halfway to the triangle's mean displacement, for a few rounds. ``movable``
    (N,) marks the points that may be adjusted (still ring and border stay put); ``may_close`` (T,) marks
    triangles allowed to shrink to nothing (those spanning the gap between the lips, which closes).
    """
    src_area = signed_areas(source, triangles)
    motion = target - source
    # Triangles none of whose corners may move cannot be relaxed: leaving them out lets the loop stop early.
    relaxable = np.ones(len(triangles), bool) if movable is None else movable[triangles].any(axis=1)
    if may_close is not None:
        relaxable &= ~may_close
    for _ in range(iterations):
        ratio = signed_areas(source + motion, triangles) / np.where(np.abs(src_area) > 1e-9, src_area, 1e-9)
        bad = (ratio < MIN_AREA_RATIO) & relaxable
        if not bad.any():
            break
        tris = triangles[bad]
        corners = tris.ravel()
        towards_mean = (motion[tris].mean(axis=1, keepdims=True) - motion[tris]).reshape(-1, 2)  # (3B, 2)
        count = np.bincount(corners, minlength=len(motion))
        pull = np.stack([np.bincount(corners, towards_mean[:, axis], len(motion)) for axis in (0, 1)], axis=1)
        step = 0.5 * pull / np.maximum(count, 1)[:, None]
        if movable is not None:
            step[~movable] = 0
        motion = motion + step
    return source + motion


@dataclass
class WarpStats:
    """What one warp did (for benchmarks and tests)."""

    moving_triangles: int
    region: tuple[int, int, int, int]  # x0, y0, x1, y1 of the pixels that were resampled


def mesh_warp(image: np.ndarray, source: np.ndarray, target: np.ndarray, triangles: np.ndarray,
              out: np.ndarray | None = None) -> tuple[np.ndarray, WarpStats]:
    """Warp ``image`` so that control points at ``source`` (N, 2) appear at ``target`` (N, 2).

    Only triangles with a moving vertex are resampled (bilinear); every other pixel is copied, so the
    portrait outside the moving region is bit-identical. ``triangles`` (T, 3) index the control points
    (a triangulation of ``source``).
    """
    result = image.copy() if out is None else out
    moving_points = np.linalg.norm(target - source, axis=1) > STILL_PX
    moving = moving_points[triangles].any(axis=1)
    if not moving.any():
        return result, WarpStats(0, (0, 0, 0, 0))
    tris = triangles[moving]
    corners = np.concatenate([source[tris].reshape(-1, 2), target[tris].reshape(-1, 2)])
    h, w = image.shape[:2]
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 2, [w, h])
    if x1 <= x0 or y1 <= y0:
        return result, WarpStats(0, (0, 0, 0, 0))
    maps, valid = affine_maps(source, target, tris)
    ids = np.zeros((y1 - y0, x1 - x0), np.int32)
    offset = np.array([x0, y0], np.float64)
    scale = 1 << RASTER_SHIFT
    polys = np.round((target[tris] - offset) * scale).astype(np.int32)  # (T, 3, 2), all at once
    for t in np.flatnonzero(valid).tolist():
        cv2.fillConvexPoly(ids, polys[t], t + 1, cv2.LINE_8, RASTER_SHIFT)
    if not ids.any():
        return result, WarpStats(0, (0, 0, 0, 0))
    # Each pixel's map over the whole box at once: row 0 of the table is the identity (pixels of no moving
    # triangle sample themselves exactly, so they stay bit-identical).
    table = np.vstack([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], maps.reshape(-1, 6)]).astype(np.float32)
    per_pixel = table[ids]  # (H, W, 6)
    grid_x = np.arange(x0, x1, dtype=np.float32)[None, :]
    grid_y = np.arange(y0, y1, dtype=np.float32)[:, None]
    map_x = per_pixel[..., 0] * grid_x + per_pixel[..., 1] * grid_y + per_pixel[..., 2]
    map_y = per_pixel[..., 3] * grid_x + per_pixel[..., 4] * grid_y + per_pixel[..., 5]
    # A pixel the rasteriser gives a thin triangle can lie just outside it, where the triangle's map
    # extrapolates far (a dotted line of the chair on the background beside a shouting mouth): such a pixel
    # samples the nearest point of its triangle instead (barycentric weights clipped to the triangle). A pixel
    # whose extrapolation lands within EXTRAPOLATION_PX of that point keeps it (still parts stay bit-identical).
    # Only a triangle whose map magnifies (target -> source) more than EXTRAPOLATION_PX per pixel of overspill
    # can send such a pixel that far: only their pixels are checked (about 1.5 ms a frame at 512 px).
    magnifying = np.concatenate([[False], map_gain(maps) > EXTRAPOLATION_PX / MAX_OVERSPILL_PX])
    ys, xs = np.nonzero(magnifying[ids])
    tri_ids = ids[ys, xs] - 1
    weights = barycentric_weights(target[tris], tri_ids, xs + float(x0), ys + float(y0))
    spilled = (weights < -BARYCENTRIC_TOLERANCE).any(axis=1)
    if spilled.any():
        inside = np.clip(weights[spilled], 0.0, None)
        inside /= inside.sum(axis=1, keepdims=True)
        nearest = np.einsum("pk,pkc->pc", inside, source[tris][tri_ids[spilled]])
        rows, cols = ys[spilled], xs[spilled]
        extrapolated = np.stack([map_x[rows, cols], map_y[rows, cols]], axis=1)
        far = np.linalg.norm(extrapolated - nearest, axis=1) > EXTRAPOLATION_PX
        map_x[rows[far], cols[far]] = nearest[far, 0]
        map_y[rows[far], cols[far]] = nearest[far, 1]
    result[y0:y1, x0:x1] = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return result, WarpStats(int(moving.sum()), (int(x0), int(y0), int(x1), int(y1)))


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * (1 << RASTER_SHIFT)).astype(np.int32)], 255, cv2.LINE_AA,
                 RASTER_SHIFT)
    return mask.astype(np.float32) / 255.0


def draw_closed_lips(image: np.ndarray, upper: np.ndarray, lower: np.ndarray, lip_colour: np.ndarray,
                     strength: float, band: float) -> None:
    """Cover the seam where the warp closed lips that were parted in the portrait, in place.

    Closing a parted mouth squeezes the sitter's teeth into a thin line; this paints the band around the
    closed seam (``band`` pixels each side of the inner-lip contours) in the lips' own colour, with a soft
    darker line where the lips meet. ``strength`` (0..1): how far the mouth was closed.
    """
    if strength <= 0 or band <= 0:
        return
    seam = (upper + lower) / 2
    h, w = image.shape[:2]
    pad = int(np.ceil(band * 3)) + 2
    x0, y0 = np.maximum(np.floor(np.concatenate([upper, lower]).min(0)).astype(int) - pad, 0)
    x1, y1 = np.minimum(np.ceil(np.concatenate([upper, lower]).max(0)).astype(int) + pad, [w, h])
    if x1 <= x0 or y1 <= y0:
        return
    origin = np.array([x0, y0], np.float64)
    region = (y1 - y0, x1 - x0)
    gap = _polygon_mask(region, np.concatenate([upper, lower[::-1]]) - origin)
    line = np.zeros(region, np.float32)
    pts = np.round((seam - origin) * (1 << RASTER_SHIFT)).astype(np.int32)
    cv2.polylines(line, [pts], False, 1.0, max(1, int(round(band * 2))), cv2.LINE_AA, RASTER_SHIFT)
    cover = np.clip(cv2.GaussianBlur(np.maximum(gap, line), (0, 0), max(0.5, band * 0.5)) * 1.5, 0, 1)
    thin = np.zeros(region, np.float32)
    cv2.polylines(thin, [pts], False, 1.0, 1, cv2.LINE_AA, RASTER_SHIFT)
    shade = 1.0 - 0.45 * cv2.GaussianBlur(thin, (0, 0), max(0.5, band * 0.35)) / max(float(thin.max()), 1e-6) * 0.8
    patch = image[y0:y1, x0:x1].astype(np.float32)
    colour = np.asarray(lip_colour, np.float32)[None, None, :] * shade[..., None]
    alpha = (cover * float(np.clip(strength, 0, 1)))[..., None]
    image[y0:y1, x0:x1] = np.clip(patch * (1 - alpha) + colour * alpha + 0.5, 0, 255).astype(np.uint8)
