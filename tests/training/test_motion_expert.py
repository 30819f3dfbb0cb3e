"""Custom emotions on the default (portrait) path: a motion expert pack trained from an AU recipe, loaded as a slider.

The recipe (smug: the person's left lip corner pulled up and dimpled, AU12L + AU14L) is not one of the six
emotions (all symmetric). A few seconds of training give a pack; on the astronaut the new slider moves the 68
landmarks as the recipe's exact geometry does, and the six's output is bit-identical with the new slider at 0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.errors import CheckpointError
from engine.moee import GateControl
from engine.portrait.animator import PortraitAnimator
from engine.portrait.motion import MotionModel, read_motion_expert_metadata
from engine.portrait.performance import LifeConfig
from training.motion_expert import ExpertTrainingConfig, Recipe, recipe_displacement, train_motion_expert

SMUG = {"aus": {"12L": 1.0, "14L": 0.8}}
#: Tiny training (the defaults train for about a minute): enough for the direction of one recipe.
TINY = ExpertTrainingConfig(steps=120, samples=900, identities=30, seed=0)
MIX = {"happiness": 0.4, "anger": 0.3, "surprise": 0.2}


@pytest.fixture(scope="module")
def smug_pack(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("smug")
    (root / "data").mkdir()
    (root / "data" / "recipe.json").write_text(json.dumps(SMUG))
    log = root / "smug.log.jsonl"
    pack = train_motion_expert(root / "data", "smug", root / "out", cfg=TINY, log_path=log, log=lambda _m: None)
    return pack, log


@pytest.fixture(scope="module")
def astronaut():
    from skimage.data import astronaut as load

    return load()


@pytest.fixture(scope="module")
def animators(smug_pack, astronaut):
    """(the bundled animator, the same with the smug pack) and the astronaut prepared once (max_size 512), with
    a short syllable-like tone so the mouth moves."""
    plain, custom = PortraitAnimator.from_pretrained(), PortraitAnimator.from_pretrained()
    assert custom.load_expert_pack(smug_pack[0]) == "smug"
    rate = 16000
    t = np.arange(int(0.6 * rate)) / rate
    speech = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    prepared = plain.prepare(astronaut, (speech, rate), max_size=512, life=LifeConfig(blinks_per_minute=0, head_motion=0, gaze=0))
    return plain, custom, prepared


def _weights(animator: PortraitAnimator, mix: dict[str, float]) -> np.ndarray:
    weights = np.zeros(len(animator.emotions), np.float32)
    for name, value in mix.items():
        weights[animator.emotions.index(name)] = value
    return weights


def test_the_pack_is_a_small_safetensors_file_with_progress(smug_pack):
    pack, log = smug_pack
    meta = read_motion_expert_metadata(pack)
    assert meta["emotion"] == "smug" and meta["source"] == "recipe"
    assert float(meta["recipe_cosine"]) >= 0.9
    assert pack.stat().st_size < 200_000
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[-1]["step"] == TINY.steps and np.isfinite(records[-1]["loss"])


def test_the_new_slider_moves_the_astronaut_as_the_recipe_does(animators):
    from training.synthetic import FaceRenderer, Identity

    _plain, custom, prepared = animators
    assert custom.emotions[-1] == "smug"
    neutral = custom.face_motion(prepared, GateControl(_weights(custom, {})), 0)
    smug = custom.face_motion(prepared, GateControl(_weights(custom, {"smug": 1.0})), 0)
    moved = (smug - neutral).reshape(-1)
    recipe = Recipe.parse(SMUG["aus"], "test")
    truth = np.mean([recipe_displacement(FaceRenderer(Identity.from_seed(s)), recipe)[1] for s in range(8)], axis=0)
    cosine = float(moved @ truth.reshape(-1) / (np.linalg.norm(moved) * np.linalg.norm(truth)))
    assert cosine >= 0.9, cosine
    # one-sided: the person's left corner (iBUG 54, image right) rises, the right one (48) barely moves
    shift = (smug - neutral)
    assert shift[54, 1] < -0.02 and abs(shift[48, 1]) < 0.5 * abs(shift[54, 1])


def test_the_six_are_unchanged_with_the_new_slider_at_zero(animators):
    plain, custom, prepared = animators
    for mix in ({}, MIX, {"fear": 1.0}):
        before = plain.face_motion(prepared, GateControl(_weights(plain, mix)), 3)
        after = custom.face_motion(prepared, GateControl(_weights(custom, mix)), 3)
        assert np.array_equal(before, after)
        assert np.array_equal(plain.control_targets(prepared, GateControl(_weights(plain, mix)), 3),
                              custom.control_targets(prepared, GateControl(_weights(custom, mix)), 3))


def test_the_new_slider_mixes_and_takes_the_brush(animators):
    _plain, custom, prepared = animators
    mixed = custom.face_motion(prepared, GateControl(_weights(custom, {**MIX, "smug": 0.8})), 0)
    assert np.isfinite(mixed).all()
    height, width = prepared.portrait.shape[:2]
    masks = np.zeros((len(custom.emotions), height, width), np.float32)
    masks[-1] = 1.0
    alpha = np.zeros(len(custom.emotions), np.float32)
    alpha[-1] = 1.0
    frame = custom.render_frame(prepared, 0, GateControl(_weights(custom, {}), masks, alpha))
    still = custom.render_frame(prepared, 0, GateControl(_weights(custom, {})))
    assert frame.shape == still.shape and np.abs(frame.astype(int) - still.astype(int)).max() > 10


def test_packs_of_the_other_renderer_or_model_are_refused(smug_pack, tmp_path):
    from engine.diffusion.checkpoint import read_expert_metadata

    pack = smug_pack[0]
    with pytest.raises(CheckpointError, match="motion expert pack"):
        read_expert_metadata(pack)
    import torch
    from safetensors.torch import save_file

    pixel = tmp_path / "pixel.moeexpert.safetensors"
    save_file({"x": torch.zeros(1)}, str(pixel), metadata={"format": "moee-expert", "format_version": "1"})
    motion = MotionModel.load(_bundled())
    with pytest.raises(CheckpointError, match="pixel model"):
        motion.load_expert_pack(pixel)
    motion.moe.token_embedding.data += 1.0  # another base model
    with pytest.raises(CheckpointError, match="another motion model"):
        motion.load_expert_pack(pack)


def _bundled():
    from engine.io.resources import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR


def test_stop_and_resume_give_the_same_pack(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "recipe.json").write_text(json.dumps(SMUG))
    cfg = ExpertTrainingConfig(steps=12, samples=200, identities=8, seed=1, save_every=5)
    whole = train_motion_expert(data, "smug", tmp_path / "whole", cfg=cfg, log=lambda _m: None)
    stop = tmp_path / "STOP"
    stop.write_text("")
    assert train_motion_expert(data, "smug", tmp_path / "parts", cfg=cfg, stop_file=stop, log=lambda _m: None) is None
    state = json.loads((tmp_path / "parts" / "checkpoint" / "trainer_state.json").read_text())
    assert state["stage"] == "expert" and state["step"] == 1
    stop.unlink()
    resumed = train_motion_expert(data, "smug", tmp_path / "parts", cfg=cfg, resume=True, log=lambda _m: None)
    from safetensors.torch import load_file

    a, b = load_file(str(whole)), load_file(str(resumed))
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_cli_train_expert_routes_to_the_motion_expert(tmp_path, capsys):
    """``moee train expert`` with the bundled model (it has a motion model) trains a motion expert pack."""
    from engine.cli import main

    data = tmp_path / "data"
    data.mkdir()
    (data / "recipe.json").write_text(json.dumps(SMUG))
    assert main(["train", "expert", "--data", str(data), "--name", "smug", "--out", str(tmp_path / "out"),
                 "--steps", "3", "--threads", "1"]) == 0
    assert read_motion_expert_metadata(tmp_path / "out" / "smug.moeexpert.safetensors")["emotion"] == "smug"
    assert main(["train", "expert", "--data", str(data), "--name", "smug", "--out", str(tmp_path / "out"),
                 "--lip-weight", "2"]) == 2
    assert "--lip-weight applies to the pixel model's expert only" in capsys.readouterr().err


def test_cli_render_with_the_pack_changes_the_face(smug_pack, tmp_path, astronaut, capsys):
    """``moee render PORTRAIT --expert PACK --emotion smug=1`` changes the face on the default path."""
    from PIL import Image

    from engine.cli import main

    Image.fromarray(astronaut).save(tmp_path / "astro.png")
    frames = {}
    for mix in ("smug=1", "smug=0"):
        out = tmp_path / mix.replace("=", "")
        assert main(["render", str(tmp_path / "astro.png"), "--duration", "0.1", "-o", f"{out}.mp4",
                     "--frames-dir", str(out), "--expert", str(smug_pack[0]), "--emotion", mix,
                     "--blinks", "0", "--head-motion", "0", "--gaze", "0"]) == 0
        assert "loaded custom emotion 'smug'" in capsys.readouterr().out
        frames[mix] = np.asarray(Image.open(sorted(out.glob("*.png"))[0]).convert("RGB"), np.int16)
    assert np.abs(frames["smug=1"] - frames["smug=0"]).max() > 20


# ------------------------------------------------------------------------------- emotion from the voice's tone
def _espeak(speed: int, pitch: int):
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from engine.io.audio import AudioClip
    from training.synthetic.speech import espeak_speech

    text = "I really did not expect to see you here today, after all this time away from home."
    return AudioClip(espeak_speech(text, "en", speed, pitch, 16000).astype(np.float32), 16000, "espeak")


def test_the_voice_sets_the_sliders_over_time():
    from engine.emotions import BASIC_EMOTIONS
    from engine.voice_emotion import voice_emotion_track

    emotions = (*BASIC_EMOTIONS, "smug")
    calm = voice_emotion_track(_espeak(160, 50), 60, 25, emotions)
    agitated = voice_emotion_track(_espeak(230, 85), 60, 25, emotions)
    for track in (calm, agitated):
        assert track.weights.shape == (60, len(emotions))
        assert track.weights.min() >= 0 and track.weights.max() <= 1 and not track.weights[:, -1].any()
    arousal = [BASIC_EMOTIONS.index("anger"), BASIC_EMOTIONS.index("fear")]
    assert calm.weights.mean(0).max() < 0.3  # neutral read speech: a faint mix at most
    assert agitated.weights[:, arousal].max() >= 0.5 > calm.weights[:, arousal].max()
    keys = agitated.keyframes()
    assert keys[0][0] == 0.0 and set(keys[0][1]) == set(emotions)
    assert all(b[0] > a[0] for a, b in zip(keys, keys[1:], strict=False))


def test_cli_emotion_audio_drives_the_portrait_sliders(tmp_path, astronaut, capsys):
    import soundfile
    from PIL import Image

    from engine.cli import main

    clip = _espeak(230, 85)
    soundfile.write(tmp_path / "tone.wav", clip.samples, clip.sample_rate)
    Image.fromarray(astronaut).save(tmp_path / "astro.png")
    assert main(["render", str(tmp_path / "astro.png"), "--duration", "0.1", "-o", str(tmp_path / "v.mp4"),
                 "--emotion-audio", str(tmp_path / "tone.wav")]) == 0
    out = capsys.readouterr()
    assert "the voice's tone: " in out.out and "fear up to" in out.out
    assert "pixel model only" not in out.err


def test_photos_read_by_face_mesh_train_a_pack(tmp_path):
    """Labelled photos (a neutral and an expressive one per person: the synthetic renderer at 320 px) read back by
    Face Mesh train a pack that moves unseen people the way the expression's exact geometry does."""
    import csv

    from PIL import Image

    from engine.io.resources import DEFAULT_MODEL_DIR
    from training.synthetic import FaceRenderer, Identity

    aus = {12: 0.5, 14: 1.0, 23: 0.4}  # a tight, dimpled smile: none of the six
    rows = []
    for person in range(3):
        renderer = FaceRenderer(Identity.from_seed(100 + person), size=320)
        for label, expression in (("neutral", {}), ("dimpled", aus)):
            name = f"p{person}_{label}.png"
            Image.fromarray(renderer.render(expression, 0.0, 0.0)[0]).save(tmp_path / name)
            rows.append({"file": name, "emotion": label, "speaker": f"p{person}"})
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["file", "emotion", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    cfg = ExpertTrainingConfig(steps=100, seed=0)
    pack = train_motion_expert(tmp_path, "dimpled", tmp_path / "out", cfg=cfg, log=lambda _m: None)
    assert read_motion_expert_metadata(pack)["source"] == "footage"
    motion = MotionModel.load(DEFAULT_MODEL_DIR)
    motion.load_expert_pack(pack)
    weights = np.zeros(len(motion.cfg.emotions), np.float32)
    weights[-1] = 1.0
    recipe = Recipe.parse({str(k): v for k, v in aus.items()}, "test")
    for seed in (200, 201):
        rest, truth = recipe_displacement(FaceRenderer(Identity.from_seed(seed)), recipe)
        moved = motion.displacement(rest, [0.0], weights)[0]
        cosine = float((moved * truth).sum() / (np.linalg.norm(moved) * np.linalg.norm(truth)))
        assert cosine > 0.5, cosine  # Face Mesh reads these faces' mouths only roughly (0.4-0.75 per photo)


# ------------------------------------------------------------------ labelled clips read back by Face Mesh
#: A dimpled smile (AU12 + AU14): the dimpler AU14 is in none of the six emotions (happiness is AU6 + AU12).
DIMPLED = {12: 1.0, 14: 0.8}
#: Side (px) of the rendered clips: the issue asks for 256 px or more.
CLIP_SIZE = 384
CLIP_FPS = 25


def _write_clips(folder, speakers: int, size: int = CLIP_SIZE) -> None:
    """One clip per synthetic speaker: a still neutral head (0.32 s), a rise to the expression, a hold; and
    ``labels.csv`` naming them ``dimpled`` (no neutral files: the clips' first frames are the neutral)."""
    import csv

    from engine.io.video import open_writer
    from training.synthetic import FaceRenderer, Identity

    ramp = [0.0] * 8 + [0.25, 0.5, 0.75] + [1.0] * 9
    rows = []
    for person in range(speakers):
        renderer = FaceRenderer(Identity.from_seed(300 + person), size=size)
        name = f"speaker{person}.mp4"
        with open_writer(folder / name, CLIP_FPS, crf=12) as writer:
            for level in ramp:
                writer.write(renderer.render({k: v * level for k, v in DIMPLED.items()}, 0.0, 0.0)[0])
        rows.append({"file": name, "emotion": "dimpled", "speaker": f"s{person}"})
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["file", "emotion", "speaker"])
        writer.writeheader()
        writer.writerows(rows)


def _astronaut_cosine(pack, astronaut, recipe_aus: dict[int, float]) -> float:
    """Cosine of the pack's slider at 1 on the astronaut with the recipe's exact displacement (mean of 8 people)."""
    from training.synthetic import FaceRenderer, Identity

    animator = PortraitAnimator.from_pretrained()
    animator.load_expert_pack(pack)
    prepared = animator.prepare(astronaut, max_size=512, life=LifeConfig(blinks_per_minute=0, head_motion=0, gaze=0))
    neutral = animator.face_motion(prepared, GateControl(_weights(animator, {})), 0)
    moved = animator.face_motion(prepared, GateControl(_weights(animator, {animator.emotions[-1]: 1.0})), 0)
    recipe = Recipe.parse({str(k): v for k, v in recipe_aus.items()}, "test")
    truth = np.mean([recipe_displacement(FaceRenderer(Identity.from_seed(s)), recipe)[1] for s in range(8)], axis=0)
    shift = (moved - neutral).reshape(-1)
    return float(shift @ truth.reshape(-1) / (np.linalg.norm(shift) * np.linalg.norm(truth)))


@pytest.mark.slow
def test_clips_read_by_face_mesh_train_a_pack_that_moves_the_astronaut_as_the_recipe(tmp_path, astronaut, animators):
    """The issue's test: clips of an AU recipe none of the six contain, drawn by the synthetic renderer at 384 px
    and read back by Face Mesh, train a pack; on the astronaut its slider moves the landmarks as the recipe's
    exact geometry does (cosine >= 0.9; measured 0.955, a pack trained from the exact recipe 0.959), and the
    six's output is unchanged."""
    _write_clips(tmp_path, speakers=4)
    pack = train_motion_expert(tmp_path, "dimpled", tmp_path / "out", cfg=ExpertTrainingConfig(steps=200, seed=0),
                               log=lambda _m: None)
    meta = read_motion_expert_metadata(pack)
    assert meta["source"] == "footage" and "AU14" in meta["recipe"], meta
    assert _astronaut_cosine(pack, astronaut, DIMPLED) >= 0.9
    plain, _custom, prepared = animators
    custom = PortraitAnimator.from_pretrained()
    custom.load_expert_pack(pack)
    for mix in ({}, MIX):
        assert np.array_equal(plain.face_motion(prepared, GateControl(_weights(plain, mix)), 3),
                              custom.face_motion(prepared, GateControl(_weights(custom, mix)), 3))


def test_the_action_unit_fit_recovers_an_exact_recipe():
    """Fast: the fit behind the read-back finds, from a recipe's exact displacement (one-sided part included), a
    recipe that moves the face the same way and lifts the right corner (the fit is not unique: AU12 and AU14 overlap)."""
    from training.motion_expert import ActionUnitBasis, readback_weights, recipe_landmarks
    from training.synthetic import FaceRenderer, Identity

    basis = ActionUnitBasis.build(identities=4)
    recipe = Recipe.parse({"14": 0.8, "12L": 0.9}, "test")
    renderer = FaceRenderer(Identity.from_seed(77))
    rest = renderer.landmarks_face_units(renderer.geometry({}, 0.0, 0.0))
    truth = recipe_landmarks(renderer, recipe, 1.0, {}, 0.0) - rest
    found = basis.recipe(basis.fit(truth, readback_weights()))
    other = FaceRenderer(Identity.from_seed(78))
    expected, got = recipe_displacement(other, recipe)[1], recipe_displacement(other, found)[1]
    assert float((expected * got).sum() / (np.linalg.norm(expected) * np.linalg.norm(got))) >= 0.95, found
    assert found.left.get(12, 0.0) > found.right.get(12, 0.0), found


def test_a_read_back_smile_with_a_stirring_brow_and_a_shrunk_head_is_read_without_brow_or_nose_units():
    """Fast: Face Mesh's couplings on a smile (brows and nose wings stirring by about 0.01 face units, the head
    scaled and shifted by the alignment on the rig's rigid points) are not taken for AU1/AU2/AU4/AU9: the frame is
    aligned to its neutral on the points no action unit moves, and a still brow rules out the units that move it."""
    from training.motion_expert import ActionUnitBasis, align_to_neutral, recipe_landmarks
    from training.synthetic import FaceRenderer, Identity

    basis = ActionUnitBasis.build(identities=4)
    renderer = FaceRenderer(Identity.from_seed(77))
    rest = renderer.landmarks_face_units(renderer.geometry({}, 0.0, 0.0))
    smile = recipe_landmarks(renderer, Recipe({12: 1.0}), 1.0, {}, 0.0)
    rng = np.random.default_rng(0)
    stirred = smile.copy()
    stirred[17:36] += rng.normal(0.0, 0.008, (19, 2))
    centre = rest.mean(0)
    read = centre + 0.97 * (stirred - centre) + np.array([0.01, -0.02])  # the head shrunk and shifted
    aligned = align_to_neutral(read[None], rest)[0]
    assert np.abs(aligned[[36, 39, 42, 45]] - rest[[36, 39, 42, 45]]).max() < 0.01
    found = basis.recipe(basis.fit_readback(aligned - rest))
    upper = {1, 2, 4, 9}
    assert not upper & (set(found.both) | set(found.left) | set(found.right)), found.describe()
    assert found.both.get(12, 0.0) >= 0.8, found.describe()
