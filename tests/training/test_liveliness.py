"""training/liveliness.py on synthetic mesh sequences: the astronaut's real MediaPipe mesh (478 points with
depth), moved by known amounts: lids closed for a few frames, the head turned, the irises shifted."""

from __future__ import annotations

import numpy as np
import pytest

from training import liveliness as lv

FPS = 25
FRAMES = 150  # 6 s


@pytest.fixture(scope="module")
def mesh() -> np.ndarray:
    from skimage.data import astronaut

    from engine.io.face import detect_landmarks

    found = detect_landmarks(astronaut())
    return np.column_stack([found.points, found.z]).astype(np.float64)


def still(mesh: np.ndarray, frames: int = FRAMES, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """``frames`` copies of the mesh with MediaPipe-like jitter (px)."""
    rng = np.random.default_rng(seed)
    return mesh[None].repeat(frames, axis=0) + rng.normal(0.0, noise, (frames, *mesh.shape))


def close_lids(sequence: np.ndarray, frames: range) -> None:
    """Bring the upper lids onto the lower lids (a closed eye) in ``frames``."""
    for eye in (lv.RIGHT_EYE_EAR, lv.LEFT_EYE_EAR):
        for upper, lower in ((eye[1], eye[5]), (eye[2], eye[4])):
            sequence[frames, upper, :2] = sequence[frames, lower, :2] - 0.3


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return rz @ ry @ rx


def test_blinks_are_counted_with_their_length(mesh):
    sequence = still(mesh)
    for start in (20, 70, 120):  # three blinks of 4 frames (160 ms) in 6 s: 30 per minute
        close_lids(sequence, range(start, start + 4))
    found = lv.blinks(sequence, FPS)
    assert found.count == 3 and found.per_minute == pytest.approx(30.0)
    assert found.mean_duration_ms == pytest.approx(160.0)


def test_open_eyes_and_missing_faces_count_no_blink(mesh):
    sequence = still(mesh)
    sequence[40:45] = np.nan  # MediaPipe found no face there
    found = lv.blinks(sequence, FPS)
    assert found.count == 0 and found.per_minute == 0.0 and found.mean_duration_ms is None
    assert lv.blinks(np.full((FRAMES, 478, 2), np.nan), FPS) is None


def test_head_turns_are_read_in_degrees_and_a_still_head_as_still(mesh):
    calm = lv.head_motion(still(mesh))
    assert max(calm.yaw_range_deg, calm.pitch_range_deg, calm.roll_range_deg) < 1.0
    assert calm.translation_range_px < 0.5
    centre = mesh.mean(axis=0)
    t = np.linspace(0, 2 * np.pi, FRAMES)
    for axis in range(3):
        sequence = still(mesh, seed=axis + 1)
        for i, phase in enumerate(np.sin(t)):
            angles = [0.0, 0.0, 0.0]
            angles[axis] = 6.0 * phase  # +-6 degrees
            sequence[i] = (sequence[i] - centre) @ rotation(*angles).T + centre
        moved = lv.head_motion(sequence)
        measured = (moved.yaw_range_deg, moved.pitch_range_deg, moved.roll_range_deg)
        expected = 12.0 * np.sin(np.radians(90 * 0.9))  # the 5th-95th percentile spread of a sine
        assert measured[axis] == pytest.approx(expected, rel=0.15), (axis, measured)
        assert all(m < 1.0 for k, m in enumerate(measured) if k != axis), (axis, measured)


def test_head_translation_is_scaled_to_the_report_size(mesh):
    sequence = still(mesh, noise=0.0)
    sequence[:, :, 0] += np.linspace(0, 20, FRAMES)[:, None]  # a 20 px slide
    moved = lv.head_motion(sequence, px_scale=0.5)
    assert moved.translation_range_px == pytest.approx(0.5 * 20 * 0.9, rel=0.05)
    flat = lv.head_motion(sequence[..., :2])  # no depth: roll only
    assert flat.yaw_range_deg == 0.0 and flat.roll_range_deg < 0.1


def test_gaze_range_follows_the_irises_and_ignores_closed_eyes(mesh):
    calm = lv.gaze(still(mesh))
    assert calm.horizontal_range_deg < 2.0 and calm.vertical_range_deg < 2.0
    sequence = still(mesh)
    width = np.linalg.norm(mesh[33, :2] - mesh[133, :2])
    shift = np.where(np.arange(FRAMES) % 50 < 25, -0.05, 0.05) * width  # saccades of 0.1 eye width
    for iris in range(468, 478):
        sequence[:, iris, 0] += shift
    close_lids(sequence, range(10, 14))
    sequence[10:14, 468:478, 1] += 30  # garbage irises under closed lids are left out
    looked = lv.gaze(sequence)
    assert looked.horizontal_range == pytest.approx(0.1, abs=0.01)
    assert looked.horizontal_range_deg == pytest.approx(2 * np.degrees(np.arcsin(0.05 * lv.EYE_WIDTH_OVER_RADIUS)),
                                                        rel=0.1)
    assert looked.vertical_range_deg < 2.0
    assert lv.gaze(sequence[:, :468]) is None  # no iris points


def test_liveliness_is_json_ready_and_null_where_unmeasured(mesh):
    report = lv.liveliness(still(mesh, frames=30), FPS, px_scale=1.0)
    assert set(report) == {"blinks", "head_motion", "gaze"} and report["blinks"]["count"] == 0
    assert lv.liveliness(None, FPS) == {"blinks": None, "head_motion": None, "gaze": None}
