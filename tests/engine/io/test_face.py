"""Tests of engine.io.face: MediaPipe landmarks, masks, crop/align, synthetic landmark support."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("mediapipe")
skdata = pytest.importorskip("skimage.data")

from engine.errors import NoFaceError  # noqa: E402
from engine.io import face  # noqa: E402
from training import synthetic as syn  # noqa: E402

# Face of skimage's astronaut (512x512), measured: the mesh spans about x 179-271, y 71-177.
ASTRONAUT_FACE_BOX = (160, 55, 290, 195)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


@pytest.fixture(scope="module")
def astro_landmarks(astronaut: np.ndarray) -> face.FaceLandmarks:
    return face.detect_landmarks(astronaut)


def test_landmarks_on_real_photo(astro_landmarks: face.FaceLandmarks) -> None:
    pts = astro_landmarks.points
    assert pts.shape == (478, 2) and astro_landmarks.z.shape == (478,)
    x0, y0, x1, y1 = ASTRONAUT_FACE_BOX
    inside = (pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)
    assert inside.mean() > 0.98
    bx0, by0, bx1, by1 = astro_landmarks.box
    assert x0 < bx0 < bx1 < x1 and y0 < by0 < by1 < y1


def test_mouth_region_covers_mouth_not_eyes(astronaut: np.ndarray, astro_landmarks: face.FaceLandmarks) -> None:
    pts = astro_landmarks.points
    mask = face.region_mask(pts, "mouth", 512, 512)
    mouth_centre = pts[[13, 14]].mean(axis=0).round().astype(int)
    assert mask[mouth_centre[1], mouth_centre[0]] > 0.9
    for eye in face.eye_centres(pts):
        x, y = eye.round().astype(int)
        assert mask[y, x] < 0.01
    eyes = face.region_mask(pts, "eyes", 512, 512)
    assert eyes[mouth_centre[1], mouth_centre[0]] < 0.01
    # any resolution: the same region at 128x128
    small = face.region_mask(pts, "mouth", 128, 128, image_size=(512, 512))
    assert small[mouth_centre[1] // 4, mouth_centre[0] // 4] > 0.9
    mm = face.mouth_mask(pts, 512, 512)
    hard = face.region_mask(pts, "mouth", 512, 512, feather=0.0)
    assert mm.sum() > hard.sum() * 1.2 and mm[mouth_centre[1], mouth_centre[0]] == pytest.approx(1.0)
    for name in face.REGIONS:
        m = face.region_mask(pts, name, 256, 256, image_size=(512, 512))
        assert m.dtype == np.float32 and m.sum() > 0 and m.max() <= 1.0


def test_no_face_raises() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(NoFaceError):
        face.detect_landmarks(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    with pytest.raises(NoFaceError):
        face.detect_landmarks(np.full((256, 256, 3), 128, np.uint8))
    assert face.landmarks_or_none(np.full((128, 128, 3), 30, np.uint8)) is None


def test_two_faces_raise(astronaut: np.ndarray) -> None:
    crop = astronaut[20:240, 130:320]
    double = np.concatenate([crop, crop], axis=1)
    double = np.ascontiguousarray(double)
    with pytest.raises(NoFaceError, match=r"found 2 faces in the portrait; pick one with --face N"):
        face.detect_landmarks(double)
    left, right = face.detect_landmarks(double, face=1), face.detect_landmarks(double, face=2)
    assert left.box[2] < crop.shape[1] + 5 < right.box[0] + 10 and right.box[0] > crop.shape[1] - 5
    with pytest.raises(NoFaceError, match="--face 3 asks for face 3 from the left, but 2 faces were found"):
        face.detect_landmarks(double, face=3)


def test_crop_face_aligns(astronaut: np.ndarray, astro_landmarks: face.FaceLandmarks) -> None:
    crop, tf = face.crop_face(astronaut, astro_landmarks, 256)
    assert crop.shape == (256, 256, 3)
    left, right = face.eye_centres(tf.landmarks)
    assert abs(left[1] - right[1]) < 1.0  # eyes level
    assert tf.landmarks.min() > 0 and tf.landmarks.max() < 256
    again = face.detect_landmarks(crop)
    assert np.abs(again.points - tf.landmarks).mean() < 6.0


def test_synthetic_landmark_set_and_detection() -> None:
    rng = np.random.default_rng(11)
    person = syn.Identity.random(rng)
    image, gt = syn.FaceRenderer(person, 128).render(syn.emotion_to_aus({"surprise": 1.0}))
    polys = face.regions_for(gt)
    assert set(polys) == set(face.REGIONS)
    mouth = face.mouth_mask(gt, 128, 128)
    c = gt[48:60].mean(axis=0).round().astype(int)
    assert mouth[c[1], c[0]] == pytest.approx(1.0)
    eye = gt[36:42].mean(axis=0).round().astype(int)
    assert mouth[eye[1], eye[0]] == 0
    detected = face.landmarks_or_none(image)
    if detected is not None:  # MediaPipe usually finds the drawn faces: the mouth lands near the truth
        mp_mouth = detected.points[list(face.MP_LIPS_OUTER)].mean(axis=0)
        assert np.linalg.norm(mp_mouth - gt[48:60].mean(axis=0)) < 12.0


def test_person_matte(astronaut: np.ndarray) -> None:
    matte = face.person_matte(astronaut)
    assert matte.shape == (512, 512) and matte.dtype == np.float32
    assert matte[120, 220] > 0.5  # the face


def test_background_weight_keeps_the_background_not_the_person(astronaut: np.ndarray) -> None:
    weight = face.portrait_background_weight(astronaut)
    matte = face.person_matte(astronaut)
    assert weight.shape == (512, 512) and weight.min() >= 0.0 and weight.max() <= 1.0
    assert weight[120, 220] < 1e-6  # the face is generated
    assert weight[matte > 0.5].max() < 0.25  # so is the whole person (a soft edge at its outline) ...
    grown = int(round(face.BACKGROUND_MATTE_GROW * 512))
    inner = cv2.erode((matte > 0.5).astype(np.uint8), np.ones((2 * grown + 1, 2 * grown + 1), np.uint8)) > 0
    assert weight[inner].max() < 0.01
    near = (matte <= 0.5) & np.roll(matte > 0.5, grown // 2, axis=1)  # just outside the outline
    assert weight[near].mean() < 0.5  # ... with room for the head to move
    assert np.median(weight[matte < 0.05]) > 0.95  # the background is the portrait's
    frames = np.zeros((2, 512, 512, 3), np.uint8)
    kept = face.keep_background(frames, astronaut, weight)
    assert np.array_equal(kept[:, 120, 220], frames[:, 120, 220])
    far = np.argwhere(weight > 0.999)[0]
    assert np.abs(kept[1, far[0], far[1]].astype(int) - astronaut[far[0], far[1]]).max() <= 1


def test_no_person_keeps_nothing() -> None:
    grey = np.full((64, 64, 3), 128, np.uint8)
    assert face.portrait_background_weight(grey) is None
    frames = np.zeros((1, 64, 64, 3), np.uint8)
    assert face.keep_background(frames, grey, None) is frames
