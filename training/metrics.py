"""Metric primitives of the evaluations: image similarity, landmark distance and stability, correlations,
emotion read-outs. Pure functions of arrays (no model), shared by :mod:`training.evaluate` (``moee eval``),
:mod:`training.recognizer` and :mod:`training.portrait_eval` (``moee eval-portraits``), so that none of them
imports another for a metric.

Two landmark stability measures with different meanings: :func:`temporal_jitter` (mean |second difference|,
px / frame^2: a moving face's unevenness) and :func:`landmark_spread` (standard deviation about the mean, px: a
still face's wandering).
"""

from __future__ import annotations

import cv2
import numpy as np

from engine.emotions import BASIC_EMOTIONS

#: A drop smaller than this between two points of an intensity sweep still counts as monotonic.
MONOTONIC_TOLERANCE = 0.02
#: Inner-lip landmarks (iBUG 68) of the upper and lower lip: their gap is the mouth opening.
INNER_UPPER_LIP, INNER_LOWER_LIP = (61, 62, 63), (67, 66, 65)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 RGB images (``skimage``; 1 for identical images)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=-1, data_range=255))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (inf for identical images)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def akd(pred: np.ndarray, truth: np.ndarray) -> float:
    """Average keypoint distance: mean Euclidean distance of corresponding landmarks (0 if identical)."""
    return float(np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(truth, np.float64), axis=-1).mean())


def is_monotonic(values: np.ndarray | list[float], tolerance: float = MONOTONIC_TOLERANCE) -> bool:
    """True when ``values`` never decrease by more than ``tolerance`` from one point to the next."""
    return bool(np.all(np.diff(np.asarray(values, np.float64)) >= -tolerance))


def spearman(x: np.ndarray | list[float], y: np.ndarray | list[float]) -> float:
    """Spearman rank correlation (Pearson on ranks; NaN when a side is constant)."""
    rx = np.argsort(np.argsort(np.asarray(x))).astype(np.float64)
    ry = np.argsort(np.argsort(np.asarray(y))).astype(np.float64)
    return pearson(rx, ry)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation (NaN when a side is constant)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.std() < 1e-12 or y.std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap of 68-point landmarks ``(..., 68, 2)`` -> ``(...)`` px."""
    up = landmarks[..., list(INNER_UPPER_LIP), 1].mean(-1)
    low = landmarks[..., list(INNER_LOWER_LIP), 1].mean(-1)
    return low - up


def temporal_jitter(landmarks: np.ndarray) -> float:
    """Mean |second temporal difference| of landmarks ``(F, N, 2)`` (px / frame^2): how unevenly they move from
    frame to frame (0 for a still or a uniformly moving face). ``moee eval``'s ``jitter``."""
    if len(landmarks) < 3:
        return 0.0
    return float(np.linalg.norm(np.diff(landmarks, n=2, axis=0), axis=-1).mean())


def top2_match(scores: np.ndarray, mix: dict[str, float], emotions: tuple[str, ...] = BASIC_EMOTIONS) -> bool:
    """Whether the two highest ``scores`` are exactly the two emotions of ``mix``."""
    want = {emotions.index(k) for k, v in mix.items() if v > 0}
    got = set(np.argsort(-np.asarray(scores))[:2].tolist())
    return want == got


def appearance_descriptor(frame: np.ndarray) -> np.ndarray:
    """Identity descriptor: a 6x6 colour layout (unit-normalised) of the frame."""
    small = cv2.resize(frame, (6, 6), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
    small = small - small.mean()
    return small / (np.linalg.norm(small) + 1e-9)


def is_neutral(probabilities: np.ndarray) -> bool:
    """Recogniser output (six emotion probabilities of a 7-way softmax): is neutral the top class?"""
    probabilities = np.asarray(probabilities, np.float64)
    return bool(1.0 - probabilities.sum() > probabilities.max())


def landmark_spread(landmarks: np.ndarray) -> float:
    """Mean standard deviation over time of landmarks ``(F, N, 2)`` about their own mean position (px): how far a
    face that should stand still wanders (0 for identical frames). ``moee eval-portraits``'s
    ``landmark_spread_px_at_512``, measured on frames that should not move at all, unlike
    :func:`temporal_jitter`, which measures the smoothness of a moving face."""
    return float(np.mean(np.std(np.asarray(landmarks), axis=0)))
