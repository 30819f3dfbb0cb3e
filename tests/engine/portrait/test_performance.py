"""A performance that lives: blinks, head motion and gaze, planned (engine/portrait/performance.py) and rendered on the
astronaut (engine/portrait/eyes.py, engine/portrait/head_pose.py through engine/portrait/animator.py), read back with MediaPipe."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.cli import main
from engine.errors import EmotionSpecError
from engine.io.face import detect_landmarks
from engine.moee import GateControl
from engine.portrait.eyes import EYE_CONTOURS
from engine.portrait.performance import (
    STILL_LIFE,
    LifeConfig,
    blink_closure,
    blink_profile,
    gaze_track,
    head_track,
    plan_blinks,
    speech_events,
)
from engine.portrait.rig import RIGID_68

EMOTIONS = ("happiness", "sadness", "anger", "disgust", "fear", "surprise")
FPS = 25


def weights(**values: float) -> GateControl:
    return GateControl(np.array([values.get(name, 0.0) for name in EMOTIONS], np.float32))


def speech_envelope(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllable-like loudness bursts with pauses (0..1 per frame)."""
    rng = np.random.default_rng(seed)
    env = np.zeros(int(seconds * FPS))
    t = 5
    while t < len(env) - 8:
        length = int(rng.integers(3, 7))
        env[t: t + length] = rng.uniform(0.4, 1.0)
        t += length + int(rng.integers(2, 12))
    return env


# ------------------------------------------------------------------ plans (pure)
@pytest.mark.parametrize("rate", [15.0, 20.0, 30.0])
def test_blinks_come_at_the_asked_rate_with_natural_durations(rate: float) -> None:
    counts = []
    for seed in range(20):
        blinks = plan_blinks(60 * FPS, FPS, LifeConfig(blinks_per_minute=rate, seed=seed))
        counts.append(len(blinks))
        for blink in blinks:
            assert 0.10 * FPS <= blink.frames <= 0.20 * FPS  # 100-200 ms
        gaps = np.diff([b.peak for b in blinks]) / FPS
        assert (gaps >= 0.6 - 1 / FPS).all()
        assert np.std(gaps) > 0.1  # jittered, not a metronome
    assert abs(np.mean(counts) - rate) < 0.2 * rate


def test_every_clip_of_three_seconds_blinks_and_the_peak_closes_the_eye() -> None:
    for seed in range(50):
        cfg = LifeConfig(seed=seed)
        blinks = plan_blinks(3 * FPS, FPS, cfg)
        assert blinks, seed
        assert blinks[0].peak <= 2.5 * FPS
        closure = max(blink_closure(blinks, f, lambda _f: 0.0, cfg) for f in range(3 * FPS))
        assert closure == pytest.approx(1.0)


def test_blink_profile_closes_fast_and_opens_slower() -> None:
    frames = 4.0
    closing = blink_profile(-1.0, frames, 0.4)
    opening = blink_profile(1.0, frames, 0.4)
    assert blink_profile(0.0, frames, 0.4) == 1.0 and opening > closing > 0
    assert blink_profile(-2.0, frames, 0.4) == 0.0 and blink_profile(3.0, frames, 0.4) == 0.0
    held = blink_profile(np.array([-1.0, 0.0, 1.0, 2.0, 3.0]), frames, 0.4, hold=1.0)
    assert held[1] == held[2] == 1.0 and 0 < held[3] < 1 and held[4] == 0.0  # closed a frame, open within 4


def test_fear_and_surprise_blink_less() -> None:
    cfg = LifeConfig(blinks_per_minute=30, seed=3)
    blinks = plan_blinks(60 * FPS, FPS, cfg)
    calm = sum(blink_closure(blinks, b.peak, lambda _f: 0.0, cfg) > 0.5 for b in blinks)
    afraid = sum(blink_closure(blinks, b.peak, lambda _f: 1.0, cfg) > 0.5 for b in blinks)
    assert calm == len(blinks) and afraid < 0.5 * calm


def test_blinks_off_means_no_blink() -> None:
    assert plan_blinks(60 * FPS, FPS, LifeConfig(blinks_per_minute=0)) == ()


def test_head_nods_on_stressed_syllables_and_is_still_at_zero() -> None:
    env = speech_envelope(6.0)
    cfg = LifeConfig(seed=1)
    stresses, ends = speech_events(env, FPS, cfg)
    assert len(stresses) >= 3 and ends
    pose = head_track(len(env), FPS, env, cfg)
    idle = head_track(len(env), FPS, np.zeros(len(env)), cfg)
    nod = pose[:, 2] - idle[:, 2]  # pitch beyond the idle sway
    assert max(nod[f: f + 12].max() for f, _s in stresses) > 0.01
    assert np.ptp(pose[:, 0]) > 0.5  # the head tilts (degrees)
    assert not np.any(head_track(len(env), FPS, env, dataclasses.replace(cfg, head_motion=0.0)))


def test_plans_are_seeded() -> None:
    env = speech_envelope(4.0)
    a, b, c = (head_track(len(env), FPS, env, LifeConfig(seed=s)) for s in (7, 7, 8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(gaze_track(100, FPS, LifeConfig(seed=7))[0], gaze_track(100, FPS, LifeConfig(seed=7))[0])


def test_gaze_fixates_then_jumps() -> None:
    gaze, _side = gaze_track(20 * FPS, FPS, LifeConfig(seed=2))
    steps = np.linalg.norm(np.diff(gaze, axis=0), axis=1)
    assert (steps < 1e-9).mean() > 0.8  # mostly still: fixations
    assert (steps > 0.05).sum() >= 5  # with saccades between them
    assert np.abs(gaze).max() <= 1.0 and np.array_equal(gaze[0], [0.0, 0.0])


def test_out_of_range_settings_are_refused(animator, astronaut) -> None:
    with pytest.raises(EmotionSpecError, match="blinks per minute"):
        animator.prepare(astronaut, max_size=256, life=LifeConfig(blinks_per_minute=500))
    with pytest.raises(EmotionSpecError, match="head motion"):
        animator.prepare(astronaut, max_size=256, life=LifeConfig(head_motion=float("nan")))


# ------------------------------------------------------------------ rendered on a real photo
@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage.data import astronaut as load

    return load()


def _opening_mask(prepared) -> np.ndarray:
    """Pixels inside both eyes' openings in the portrait."""
    import cv2

    mesh = prepared.rig.mesh
    mask = np.zeros(prepared.portrait.shape[:2], np.uint8)
    for eye in EYE_CONTOURS.values():
        a, b = eye["corners"]
        polygon = [a, *eye["upper"], b, *eye["lower"][::-1]]
        cv2.fillPoly(mask, [np.round(mesh[polygon]).astype(np.int32)], 1)
    return mask.astype(bool)


def test_a_blink_covers_the_eye_with_the_lid(animator, astronaut) -> None:
    life = dataclasses.replace(STILL_LIFE, blinks_per_minute=20.0, seed=4)
    prepared = animator.prepare(astronaut, num_frames=4 * FPS, max_size=512, life=life)
    peak = prepared.life_tracks().blinks[0].peak
    closed = animator.render_frame(prepared, peak, weights())
    eye = _opening_mask(prepared)
    # the frame without the blink (the astronaut's own smile is neutralised, so it is not the portrait itself)
    portrait = animator.render_frame(animator.prepare(astronaut, max_size=512, life=STILL_LIFE), 0, weights())
    portrait = portrait.astype(np.float32)
    # The eye's opening shows lid skin: its colour moves toward the skin above the eye and the dark iris goes.
    grey_open = portrait[eye].mean(1)
    grey_closed = closed[eye].astype(np.float32).mean(1)
    assert (grey_closed < 60).sum() < 0.5 * (grey_open < 60).sum()
    assert np.abs(closed.astype(np.float32) - portrait)[~_grown(eye, 25)].max() == 0  # only the eyes moved
    half = animator.render_frame(prepared, peak + 2, weights())  # opening again: the iris is not squashed
    assert 0 < np.abs(half.astype(np.float32) - portrait)[eye].mean() < np.abs(closed.astype(np.float32) - portrait)[eye].mean()


def _grown(mask: np.ndarray, pixels: int) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)) > 0


def _rigid_points(frames: list[np.ndarray]) -> np.ndarray:
    from engine.portrait.rig import LM68_FROM_MP478

    rigid = [LM68_FROM_MP478[i] for i in RIGID_68]
    return np.stack([detect_landmarks(f).points[rigid] for f in frames])


def test_still_head_and_no_blinks_keep_the_rigid_landmarks_still(animator, astronaut, tmp_path) -> None:
    import soundfile

    rate = 16000
    t = np.arange(int(3.0 * rate)) / rate
    speech = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    soundfile.write(tmp_path / "speech.wav", speech, rate)
    still = animator.prepare(astronaut, tmp_path / "speech.wav", max_size=512,
                             life=LifeConfig(blinks_per_minute=0, head_motion=0, gaze=0))
    frames = [animator.render_frame(still, i, weights()) for i in range(0, still.num_frames, 5)]
    jitter = np.std(_rigid_points(frames), axis=0).mean()
    assert jitter < 0.5
    alive = animator.prepare(astronaut, tmp_path / "speech.wav", max_size=512, life=LifeConfig(seed=1))
    moving = [animator.render_frame(alive, i, weights()) for i in range(0, alive.num_frames, 5)]
    assert np.std(_rigid_points(moving), axis=0).mean() > 2 * jitter + 0.3  # the head moves


def test_the_same_seed_renders_the_same_frames(animator, astronaut) -> None:
    frames = []
    for seed in (5, 5, 6):
        prepared = animator.prepare(astronaut, num_frames=60, max_size=512, life=LifeConfig(seed=seed))
        frames.append(animator.render_frame(prepared, 45, weights(sadness=0.5)))
    assert np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[0], frames[2])


def test_emotion_posture_moves_the_head_and_far_pixels_stay(animator, astronaut) -> None:
    life = dataclasses.replace(STILL_LIFE, head_motion=1.0)
    prepared = animator.prepare(astronaut, max_size=512, life=life)
    still = animator.prepare(astronaut, max_size=512, life=STILL_LIFE)
    sad = animator.render_frame(prepared, 0, weights(sadness=1))
    sad_still = animator.render_frame(still, 0, weights(sadness=1))
    moved = np.abs(sad.astype(int) - sad_still.astype(int)).max(2)
    warp = prepared.head_warp()
    x0, y0, x1, y1 = warp.box
    reach = np.zeros(moved.shape, bool)
    reach[y0:y1, x0:x1] = warp.weight > 0
    assert np.count_nonzero(moved > 8) > 500  # sadness lowers the head
    assert np.count_nonzero(moved[~reach]) == 0  # beyond the head's reach every pixel is the portrait's
    # the head went down: the face's landmarks are lower
    assert detect_landmarks(sad).points[:, 1].mean() > detect_landmarks(sad_still).points[:, 1].mean() + 1


def test_render_flags_turn_life_off(tmp_path) -> None:
    from PIL import Image
    from skimage.data import astronaut as load

    from engine.io.video import read_frames

    Image.fromarray(load()).save(tmp_path / "a.png")
    import soundfile

    soundfile.write(tmp_path / "s.wav", np.zeros(16000, np.float32) + 1e-3 * np.sin(np.arange(16000)), 16000)
    code = main(["render", str(tmp_path / "a.png"), str(tmp_path / "s.wav"), "-o", str(tmp_path / "still.mp4"),
                 "--blinks", "0", "--head-motion", "0", "--gaze", "0", "--max-size", "512"])
    assert code == 0
    frames = list(read_frames(tmp_path / "still.mp4"))
    spread = np.abs(np.asarray(frames[-1], np.float32) - np.asarray(frames[0], np.float32)).mean()
    assert spread < 1.0  # silent, still, no blink: the clip does not change
    assert main(["render", str(tmp_path / "a.png"), str(tmp_path / "s.wav"), "-o", str(tmp_path / "x.mp4"),
                 "--blinks", "-1"]) == 2
    assert main(["render", str(tmp_path / "a.png"), str(tmp_path / "s.wav"), "-o", str(tmp_path / "x.mp4"),
                 "--frame", "crop", "--head-motion", "0"]) == 2  # the pixel model has no head motion: refused
    assert not (tmp_path / "x.mp4").exists()
