"""Any portrait at its own resolution: the motion MoE, the rig, the warp and `moee render --frame portrait`.

Real MediaPipe landmarks on a real photo (scikit-image's astronaut, public domain) and the bundled motion model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from engine.cli import main
from engine.errors import CheckpointError, NoFaceError
from engine.io.face import region_mask
from engine.io.resources import DEFAULT_MODEL_DIR
from engine.io.video import probe_video, read_frames
from engine.moee import GateControl
from engine.portrait.animator import PortraitAnimator, TransferConfig, fit_to_max_size
from engine.portrait.motion import (
    LipModel,
    MotionConfig,
    MotionModel,
    MotionMoE,
    lip_features,
    painted_token_weights,
)
from engine.portrait.performance import STILL_LIFE
from engine.portrait.rig import RING_SCALE, check_face, fit_similarity
from engine.portrait.warp import mesh_warp
from tests.engine_helpers import demo_speech_excerpt

ASSETS = Path(__file__).resolve().parents[3] / "assets" / "demo"
EMOTIONS = ("happiness", "sadness", "anger", "disgust", "fear", "surprise")


def one_hot(name: str, value: float = 1.0) -> np.ndarray:
    weights = np.zeros(len(EMOTIONS), np.float32)
    weights[EMOTIONS.index(name)] = value
    return weights


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage.data import astronaut as load

    return load()


@pytest.fixture(scope="module")
def animator() -> PortraitAnimator:
    return PortraitAnimator.from_pretrained(DEFAULT_MODEL_DIR)


@pytest.fixture(scope="module")
def prepared(animator, astronaut):
    return animator.prepare(astronaut, max_size=512)


def ring_outside(prepared) -> np.ndarray:
    """Pixels farther from the face centre than the still ring (with a margin)."""
    rig = prepared.rig
    h, w = rig.image.shape[:2]
    oval = rig.control[-8 - 36:-8]  # the ring points
    centre = oval.mean(0)
    radius = np.linalg.norm(oval - centre, axis=1).max() * 1.05
    yy, xx = np.mgrid[0:h, 0:w]
    return np.hypot(xx - centre[0], yy - centre[1]) > radius


def test_output_is_at_the_portraits_resolution_and_capped(animator, astronaut):
    assert animator.prepare(astronaut, max_size=1024).portrait.shape == (512, 512, 3)
    small = animator.prepare(astronaut, max_size=400)
    assert small.portrait.shape == (400, 400, 3)
    assert animator.render_frame(small, 0, GateControl(one_hot("anger"))).shape == (400, 400, 3)
    assert fit_to_max_size(np.zeros((300, 1000, 3), np.uint8), 500).shape == (150, 500, 3)


def test_with_a_still_head_every_pixel_outside_the_face_ring_is_the_portraits(animator, astronaut):
    still = animator.prepare(astronaut, max_size=512, life=STILL_LIFE)
    outside = ring_outside(still)
    for name in EMOTIONS:
        frame = animator.render_frame(still, 0, GateControl(one_hot(name)))
        assert np.array_equal(frame[outside], still.portrait[outside]), name


def test_each_slider_moves_the_face_its_own_way(animator, prepared):
    rig = prepared.rig
    neutral = animator.face_motion(prepared, GateControl(np.zeros(6, np.float32)), 0)
    motions = {name: animator.face_motion(prepared, GateControl(one_hot(name)), 0) - neutral for name in EMOTIONS}
    brows = slice(17, 27)
    # y grows downward: surprise raises the brows, anger lowers them; happiness lifts the mouth corners.
    assert motions["surprise"][brows, 1].mean() < -0.03
    assert motions["anger"][brows, 1].mean() > 0.01
    assert motions["happiness"][[48, 54], 1].mean() < -0.03
    assert motions["sadness"][[48, 54], 1].mean() > 0.01
    half = animator.face_motion(prepared, GateControl(one_hot("surprise", 0.5)), 0) - neutral
    assert 0.3 < np.abs(half).sum() / np.abs(motions["surprise"]).sum() < 0.7
    assert rig.face_unit_px > 50


def test_the_sitters_smile_is_neutralised(animator, prepared):
    assert prepared.rig.sitter_smile > 0.3  # the astronaut smiles broadly
    neutral = animator.face_motion(prepared, GateControl(np.zeros(6, np.float32)), 0)
    assert neutral[[48, 54], 1].mean() > 0.02  # the corners come down toward a relaxed mouth
    kept = PortraitAnimator(animator.motion, TransferConfig(neutralise=False))
    plain = kept.prepare(prepared.portrait, mesh=prepared.rig.mesh)
    frame = kept.render_frame(plain, 0, GateControl(np.zeros(6, np.float32)))
    assert np.array_equal(frame, plain.portrait)  # nothing taken out, nothing performed: the portrait itself


def test_a_brush_stroke_shows_inside_the_stroke_even_at_slider_zero(animator, prepared):
    rig = prepared.rig
    h, w = rig.image.shape[:2]
    brows = region_mask(rig.mesh, "brows", h, w, feather=0.0)
    masks = np.zeros((6, h, w), np.float32)
    masks[EMOTIONS.index("surprise")] = brows
    alpha = one_hot("surprise")
    angry = GateControl(one_hot("anger"))
    painted = GateControl(one_hot("anger"), masks, alpha)
    plain = animator.render_frame(prepared, 0, angry).astype(np.float32)
    stroked = animator.render_frame(prepared, 0, painted).astype(np.float32)
    change = np.abs(stroked - plain).mean(axis=2)
    inside = region_mask(rig.mesh, "brows", h, w, feather=0.0) > 0.5
    grown = region_mask(rig.mesh, "brows", h, w, feather=0.04) > 0.01
    assert change[inside].mean() > 2.0
    locality = change[inside].mean() / max(change[~grown].mean(), 1e-6)
    assert locality > 5, locality
    # Mouth region untouched by a brow stroke.
    mouth = region_mask(rig.mesh, "mouth", h, w, feather=0.0) > 0.5
    assert change[mouth].max() == 0


def test_speech_opens_the_mouth_and_draws_an_interior(animator, astronaut):
    samples, rate = soundfile.read(ASSETS / "speech.wav", dtype="float32")
    prepared = animator.prepare(astronaut, (samples[: 2 * rate], rate), max_size=512)
    assert prepared.openings.max() > 0.5 and prepared.openings.min() < 0.2
    from engine.io.audio import envelope_per_frame

    envelope = envelope_per_frame(prepared.audio, prepared.num_frames, prepared.fps)
    assert np.corrcoef(prepared.openings, envelope)[0, 1] > 0.7
    wide = int(np.argmax(prepared.openings))
    rig = prepared.rig
    frame = animator.render_frame(prepared, wide, GateControl(np.zeros(6, np.float32)))
    lips = rig.mesh[[13, 14]].mean(0).astype(int)
    closed = animator.render_frame(prepared, int(np.argmin(prepared.openings)), GateControl(np.zeros(6, np.float32)))
    patch = (slice(lips[1] - 3, lips[1] + 4), slice(lips[0] - 3, lips[0] + 4))
    assert not np.array_equal(frame[patch], closed[patch])


def test_faces_the_transfer_cannot_animate_are_refused(animator, astronaut):
    mesh = animator.prepare(astronaut, max_size=512).rig.mesh
    with pytest.raises(NoFaceError, match="px wide"):
        check_face(mesh * 0.1, astronaut.shape)
    turned = mesh.copy()
    turned[1, 0] = mesh[454, 0] - 2  # the nose tip at the edge of the face: a profile
    with pytest.raises(NoFaceError, match="profile"):
        check_face(turned, astronaut.shape)
    with pytest.raises(NoFaceError, match="no face"):
        animator.prepare(np.full((256, 256, 3), 128, np.uint8))
    two = np.concatenate([astronaut[:, 64:448], astronaut[:, 64:448]], axis=1)
    with pytest.raises(NoFaceError, match="2 faces"):
        animator.prepare(two)


def test_painted_strength_stands_in_for_the_product_of_the_gates():
    g = torch.tensor([[0.0, 1.0]])
    s = torch.full((1, 3, 2), 0.5)
    painted = torch.tensor([[[0.8, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    w = painted_token_weights(g, s, painted, torch.tensor([[1.0, 1.0]]))
    assert torch.allclose(w[0, 0], torch.tensor([0.8, 0.5]))  # painted at 0.8 though the slider is 0
    assert torch.allclose(w[0, 1:], torch.tensor([[0.0, 0.5], [0.0, 0.5]]))  # unpainted tokens keep g * s


def test_a_neutral_silent_frame_has_no_motion_and_models_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MotionModel(MotionMoE(MotionConfig(width=16, emotion_tokens=2, emotion_dim=8, heads=2)),
                        LipModel(MotionConfig(width=16, emotion_tokens=2, emotion_dim=8, heads=2)), {"x": 1})
    shape = np.random.default_rng(0).normal(size=(68, 2))
    assert np.array_equal(model.displacement(shape, [0.0], np.zeros(6)), np.zeros((1, 68, 2)))
    moved = model.displacement(shape, [0.7], one_hot("fear"))
    model.save(tmp_path)
    again = MotionModel.load(tmp_path)
    assert np.allclose(again.displacement(shape, [0.7], one_hot("fear")), moved)
    (tmp_path / "motion.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="safetensors"):
        MotionModel.load(tmp_path)
    with pytest.raises(CheckpointError, match="no motion model"):
        MotionModel.load(tmp_path / "missing")


def test_lip_features_read_loudness_relative_to_the_clip():
    loud = lip_features(np.array([0.0, 0.5, 1.0, 0.5, 0.0]))
    quiet = lip_features(np.array([0.0, 0.05, 0.1, 0.05, 0.0]))
    assert np.allclose(loud, quiet)
    assert loud.shape == (5, 5) and loud[2, 2] > loud[0, 2]


def test_mesh_warp_copies_still_pixels_and_moves_the_rest():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    source = np.array([[0, 0], [63, 0], [0, 63], [63, 63], [32, 32]], np.float64)
    triangles = np.array([[0, 1, 4], [1, 3, 4], [3, 2, 4], [2, 0, 4]])
    same, _ = mesh_warp(image, source, source.copy(), triangles)
    assert np.array_equal(same, image)
    target = source.copy()
    target[4] += [3.0, 0.0]
    moved, stats = mesh_warp(image, source, target, triangles)
    assert stats.moving_triangles == 4 and not np.array_equal(moved, image)
    assert np.array_equal(moved[35, 33], image[35, 30]) or abs(int(moved[35, 33, 0]) - int(image[35, 30, 0])) < 40


def test_similarity_fit_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(20, 2))
    angle = 0.3
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 2.5 * points @ rot.T + [4.0, -1.0]
    fit = fit_similarity(points, moved)
    assert np.allclose(fit.apply(points), moved)
    assert np.allclose(fit.inverse().apply(moved), points)
    assert RING_SCALE > 1


def test_moee_render_writes_the_portrait_at_its_own_size(tmp_path, astronaut):
    from PIL import Image

    portrait = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(portrait)
    speech = demo_speech_excerpt(tmp_path, 1.2)
    out = tmp_path / "out.mp4"
    assert main(["render", str(portrait), str(speech), "-o", str(out), "--emotion", "anger=1"]) == 0
    info = probe_video(out)
    assert (info.width, info.height) == (512, 512)
    assert info.audio_codec == "aac" and abs(info.duration - 1.2) <= 0.04
    small = tmp_path / "small.mp4"
    assert main(["render", str(portrait), str(speech), "-o", str(small), "--max-size", "400"]) == 0
    assert next(iter(read_frames(small))).shape[:2] == (400, 400)


def test_creases_darken_between_the_brows_of_a_frown(animator, prepared):
    # Without the FACS emphasis, whose knitted brows bring their own dark hair into the measured patch.
    shaded = PortraitAnimator(animator.motion, TransferConfig(facs_emphasis=0.0))
    flat = PortraitAnimator(animator.motion, TransferConfig(creases=False, facs_emphasis=0.0))
    plain = flat.prepare(prepared.portrait, mesh=prepared.rig.mesh)
    anger = GateControl(one_hot("anger"))
    with_creases = shaded.render_frame(shaded.prepare(prepared.portrait, mesh=prepared.rig.mesh), 0, anger)
    with_creases = with_creases.astype(np.float32)
    without = flat.render_frame(plain, 0, anger).astype(np.float32)
    rig = prepared.rig
    glabella, unit = (rig.points68[21] + rig.points68[22]) / 2, rig.face_unit_px
    patch = (slice(int(glabella[1] - 0.15 * unit), int(glabella[1] + 0.25 * unit)),
             slice(int(glabella[0] - 0.1 * unit), int(glabella[0] + 0.1 * unit)))
    assert with_creases[patch].mean() < without[patch].mean() - 1.0
    neutral = GateControl(np.zeros(6, np.float32))
    assert np.array_equal(animator.render_frame(prepared, 0, neutral), flat.render_frame(plain, 0, neutral))


def test_closing_the_sitters_parted_lips_hides_her_teeth(animator, prepared):
    rig = prepared.rig
    assert rig.sitter_opening > 0.3  # the astronaut shows her teeth
    frame = animator.render_frame(prepared, 0, GateControl(np.zeros(6, np.float32)))
    teeth = rig.mesh[[13, 14]].mean(0).astype(int)
    patch = (slice(teeth[1] - 1, teeth[1] + 2), slice(teeth[0] - 6, teeth[0] + 7))
    assert frame[patch].astype(float).mean() < prepared.portrait[patch].astype(float).mean() - 20


def test_portrait_bench_and_eval_report_the_targets(tmp_path, astronaut):
    import json

    from PIL import Image

    from engine.portrait.bench import run_portrait_benchmarks

    folder = tmp_path / "portraits"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    bench = run_portrait_benchmarks(folder / "astronaut.png", repeats=2, clip_seconds=0.6)
    assert bench["size"] == [512, 512] and bench["preview_latency_ms"]["median"] > 0 and bench["clip_fps"] > 0
    out = tmp_path / "eval.json"
    assert main(["eval-portraits", str(folder), "--json", str(out), "--max-size", "512"]) == 0
    report = json.loads(out.read_text())
    row = report["portraits"][0]
    assert row["size"] == [512, 512] and row["lipsync_corr"] >= 0.7
    assert row["brush_locality"] >= 5 and row["changed_outside_ring"] == 0
    assert set(row["emotions"]) == set(EMOTIONS)


def test_moee_render_says_why_a_portrait_cannot_be_animated(tmp_path, astronaut, capsys):
    from PIL import Image

    speech = demo_speech_excerpt(tmp_path, 0.6)
    cases = {
        "blank.png": (np.full((256, 256, 3), 120, np.uint8), "no face"),
        "two.png": (np.concatenate([astronaut[:, 64:448], astronaut[:, 64:448]], axis=1), "2 faces"),
        "tiny_face.png": (np.pad(astronaut[::2, ::2], ((100, 100), (100, 100), (0, 0)), constant_values=200),
                          "px wide"),
    }
    for name, (image, message) in cases.items():
        Image.fromarray(image).save(tmp_path / name)
        out = tmp_path / f"{name}.mp4"
        assert main(["render", str(tmp_path / name), str(speech), "-o", str(out)]) == 2, name
        assert message in capsys.readouterr().err, name
        assert not out.exists()


def test_the_readmes_demo_portrait_can_be_animated(animator):
    """`make demo` renders the Makefile's demo portrait on the default (portrait) path: its face must qualify."""
    import re

    makefile = (Path(__file__).resolve().parents[3] / "Makefile").read_text()
    portrait = re.search(r"moee render (\S+) ", makefile).group(1)
    prepared = animator.prepare(Path(__file__).resolve().parents[3] / portrait)
    assert prepared.rig.face_unit_px * 2 >= 64
