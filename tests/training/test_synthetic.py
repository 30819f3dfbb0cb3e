"""Tests of the procedural talking-face renderer and dataset generator (training.synthetic)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from training import synthetic as syn

SEED = 3


def _render(identity: syn.Identity, emotion: dict[str, float], mouth_open: float = 0.0) -> np.ndarray:
    return syn.FaceRenderer(identity, 128).render(syn.emotion_to_aus(emotion), mouth_open)[1]


@pytest.fixture(scope="module")
def person() -> syn.Identity:
    return syn.Identity.random(np.random.default_rng(SEED))


def test_identity_and_render_are_deterministic(person: syn.Identity) -> None:
    again = syn.Identity.random(np.random.default_rng(SEED))
    assert again == person
    assert syn.Identity.from_seed(person.to_dict()["seed"]) == person  # identity.json's seed is enough
    a = syn.synthesize_clip(person, {"happiness": 1.0}, seconds=0.4, seed=1, use_espeak=False)
    b = syn.synthesize_clip(again, {"happiness": 1.0}, seconds=0.4, seed=1, use_espeak=False)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert a.frames.shape == (10, 128, 128, 3) and a.frames.dtype == np.uint8
    assert a.landmarks.shape == (10, 68, 2) and a.aus.shape == (10, len(syn.AU_LIST))


def test_different_identities_differ() -> None:
    rng = np.random.default_rng(0)
    images = [syn.FaceRenderer(syn.Identity.random(rng), 96).render()[0].astype(np.float32) for _ in range(6)]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i] - images[j]).mean() > 8.0


def test_emotion_to_aus_prototypes_and_compounds() -> None:
    assert syn.emotion_to_aus({"happiness": 1.0})[12] == 1.0
    assert all(v == 0 for v in syn.emotion_to_aus({"neutral": 1.0}).values())
    half = syn.emotion_to_aus({"surprise": 0.5})
    assert half[26] == pytest.approx(0.5) and half[12] == 0
    mix = syn.emotion_to_aus({"happiness": 0.6, "surprise": 0.4})
    assert mix[12] == pytest.approx(0.6) and mix[2] == pytest.approx(0.4)
    summed = syn.emotion_to_aus({"fear": 1.0, "surprise": 1.0}, mode="sum")
    assert summed[1] == 1.0  # clipped


def test_emotions_move_expected_landmarks(person: syn.Identity) -> None:
    neutral = _render(person, {})
    happy = _render(person, {"happiness": 1.0})
    corners = [48, 54]
    assert (neutral[corners, 1] - happy[corners, 1]).min() > 1.0  # lip corners go up (smaller y)
    surprise = _render(person, {"surprise": 1.0})
    assert (neutral[17:27, 1] - surprise[17:27, 1]).mean() > 1.5  # brows raised
    gap = lambda p: p[66, 1] - p[62, 1]  # noqa: E731 - inner lip gap
    assert gap(surprise) - gap(neutral) > 3.0  # jaw opens
    assert surprise[8, 1] - neutral[8, 1] > 2.0  # chin drops
    anger = _render(person, {"anger": 1.0})
    inner_brows = [21, 22]
    assert (anger[inner_brows, 1] - neutral[inner_brows, 1]).min() > 1.0  # inner brows lowered
    sad = _render(person, {"sadness": 1.0})
    assert (sad[corners, 1] - neutral[corners, 1]).min() > 1.0  # lip corners down


def test_mouth_follows_audio_envelope(person: syn.Identity) -> None:
    clip = syn.synthesize_clip(person, {}, seconds=2.0, seed=5, use_espeak=False, motion=False)
    env = syn.rms_envelope(clip.audio, clip.sample_rate, clip.fps, len(clip.frames))
    assert np.corrcoef(env, clip.mouth_open)[0, 1] > 0.8
    gap = clip.landmarks[:, 66, 1] - clip.landmarks[:, 62, 1]
    assert np.corrcoef(gap, clip.mouth_open)[0, 1] > 0.8
    silent = syn.mouth_open_from_audio(np.zeros(16000, np.float32), 16000, 25, 25)
    assert not silent.any()


def test_dataset_layout_and_splits(tmp_path) -> None:
    index = syn.generate_dataset(tmp_path, identities=3, emotions=("neutral", "happiness"), intensities=(1.0,),
                                 clip_seconds=0.4, size=64, seed=1, compound=True, use_espeak=False,
                                 progress=False)
    on_disk = json.loads((tmp_path / "index.json").read_text())
    assert on_disk == index
    splits = {c["split"] for c in index["clips"]}
    assert splits <= {"train", "test", "compound_eval"} and "test" in splits
    for c in index["clips"]:
        compound = sum(1 for v in c["emotion"].values() if v > 0) > 1
        assert (c["split"] == "compound_eval") == compound
        assert c["split"] != "train" or not compound
        if c["split"] != "compound_eval":
            assert c["split"] == index["identities"][c["identity"]]
    clip_dir = tmp_path / index["clips"][0]["path"]
    frames = np.load(clip_dir / "frames.npz")["frames"]
    assert frames.shape == (10, 64, 64, 3)
    assert np.load(clip_dir / "landmarks.npy").shape == (10, 68, 2)
    assert np.load(clip_dir / "aus.npy").shape == (10, len(syn.AU_LIST))
    assert np.load(clip_dir / "mouth_box.npy").shape == (10, 4)
    assert (clip_dir / "audio.wav").exists() and json.loads((clip_dir / "meta.json").read_text())["fps"] == 25


def test_render_speed() -> None:
    assert syn.benchmark_fps(size=128, n_frames=100) > 100  # target is >= 300 on one core


def test_cli(tmp_path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    syn.add_synth_arguments(parser)
    args = parser.parse_args([str(tmp_path / "d"), "--identities", "1", "--size", "48", "--seconds", "0.2",
                              "--procedural-voice", "--intensities", "1.0"])
    assert syn.run_synth(args) == 0
    # the flags reach the data set: one person, one clip per emotion at intensity 1 (+ neutral), 48 px, 0.2 s
    index = json.loads((tmp_path / "d" / "index.json").read_text())
    assert len(index["identities"]) == 1
    labels = sorted(max(c["emotion"], key=c["emotion"].get) if any(c["emotion"].values()) else "neutral"
                    for c in index["clips"])
    assert labels == sorted(syn.RENDER_EMOTIONS)
    assert all(v in (0.0, 1.0) for c in index["clips"] for v in c["emotion"].values())
    frame_count = round(0.2 * syn.DEFAULT_FPS)
    loudness = []
    for clip in index["clips"]:
        folder = tmp_path / "d" / clip["path"]
        frames = np.load(folder / "frames.npz")["frames"]
        assert frames.shape == (frame_count, 48, 48, 3) and frames.std() > 10, clip["path"]  # a face, not blank
        landmarks = np.load(folder / "landmarks.npy")
        assert landmarks.shape == (frame_count, 68, 2) and (landmarks > 0).all() and (landmarks < 48).all()
        audio, rate = soundfile.read(folder / "audio.wav")
        assert abs(len(audio) / rate - 0.2) < 0.05
        loudness.append(np.abs(audio).max())
    assert max(loudness) > 0.1  # the procedural voice speaks (a 0.2 s clip may fall in a pause)


def test_au_varied_frames_vary_each_au_on_its_own() -> None:
    people = [syn.Identity.from_seed(11), syn.Identity.from_seed(12)]
    truth = syn.au_varied_frames(people, 400, size=64, seed=3)
    assert truth["frames"].shape == (400, 64, 64, 3) and truth["frames"].dtype == np.uint8
    assert truth["aus"].shape == (400, len(syn.AU_LIST)) and truth["landmarks"].shape == (400, 68, 2)
    aus = truth["aus"]
    assert aus.min() >= 0.0 and aus.max() <= 1.0 and (aus.sum(1) == 0).any()  # some neutral frames
    happiness = [syn.AU_LIST.index(6), syn.AU_LIST.index(12)]  # one prototype's AUs no longer move together
    assert np.corrcoef(aus[:, happiness].T)[0, 1] < 0.9
    assert np.array_equal(syn.au_varied_frames(people, 5, size=64, seed=3)["aus"], aus[:5])  # seeded
    with pytest.raises(ValueError, match="identity"):
        syn.au_varied_frames([], 3)


def test_train_mixes_add_compound_clips_to_train_people_only(tmp_path) -> None:
    kwargs = dict(identities=3, emotions=("neutral", "anger"), intensities=(1.0,), clip_seconds=0.2, size=32,
                  seed=1, use_espeak=False, progress=False)
    plain = syn.generate_dataset(tmp_path / "plain", **kwargs)
    mixed = syn.generate_dataset(tmp_path / "mixed", train_mixes=2, **kwargs)
    mixes = [c for c in mixed["clips"] if c["path"].split("/")[1].startswith("mix_")]
    n_train = sum(split == "train" for split in mixed["identities"].values())
    assert len(mixes) == 2 * n_train and {c["split"] for c in mixes} == {"train"}
    for c in mixes:
        assert len(c["emotion"]) == 2 and abs(sum(c["emotion"].values()) - 1.0) < 1e-6
        assert syn.TRAIN_MIX_WEIGHT[0] <= max(c["emotion"].values()) <= 1 - syn.TRAIN_MIX_WEIGHT[0] + 0.4
    for c in plain["clips"]:  # every other clip is rendered exactly as without the mixes
        a = np.load(tmp_path / "plain" / c["path"] / "frames.npz")["frames"]
        assert np.array_equal(a, np.load(tmp_path / "mixed" / c["path"] / "frames.npz")["frames"])


def test_mixed_emotion_frames_are_labelled_with_the_mix_they_show() -> None:
    from engine.emotions import BASIC_EMOTIONS

    people = [syn.Identity.from_seed(s) for s in (1, 2)]
    truth = syn.mixed_emotion_frames(people, 300, size=64, seed=4)
    emotion, aus = truth["emotion"], truth["aus"]
    assert truth["frames"].shape == (300, 64, 64, 3) and emotion.shape == (300, 6)
    assert emotion.min() >= 0.0 and emotion.sum(1).max() <= 1.0 + 1e-6
    active = (emotion > 0).sum(1)
    # neutral, single and two-emotion frames in about the configured shares
    assert 0.03 < np.mean(active == 0) < 0.2 and 0.15 < np.mean(active == 1) < 0.35 and np.mean(active == 2) > 0.5
    assert active.max() == 2
    # the AUs are the labelled mix's EMFACS union, up to the small wobble
    for row in range(0, 300, 17):
        mix = {e: float(w) for e, w in zip(BASIC_EMOTIONS, emotion[row], strict=True) if w > 0}
        expected = syn.aus_to_vector(syn.emotion_to_aus(mix))
        assert np.allclose(aus[row], expected, atol=syn.MIXED_WOBBLE * expected.max(initial=0) + 1e-6)
    # seeded
    again = syn.mixed_emotion_frames(people, 5, size=64, seed=4)
    assert np.array_equal(again["frames"], truth["frames"][:5]) and np.array_equal(again["emotion"], emotion[:5])
    with pytest.raises(ValueError, match="identity"):
        syn.mixed_emotion_frames([], 3)


def test_parallel_generation_writes_the_same_data_set(tmp_path) -> None:
    kwargs = dict(identities=2, emotions=("neutral", "anger"), intensities=(1.0,), clip_seconds=0.2, size=48,
                  seed=4, use_espeak=False, progress=False, train_mixes=1)
    serial = syn.generate_dataset(tmp_path / "serial", **kwargs)
    parallel = syn.generate_dataset(tmp_path / "parallel", workers=2, **kwargs)
    assert parallel == serial
    assert any(c["path"].split("/")[1].startswith("mix_") for c in serial["clips"])
    for clip in serial["clips"]:
        a, b = tmp_path / "serial" / clip["path"], tmp_path / "parallel" / clip["path"]
        with np.load(a / "frames.npz") as fa, np.load(b / "frames.npz") as fb:
            assert np.array_equal(fa["frames"], fb["frames"])
        assert (a / "audio.wav").read_bytes() == (b / "audio.wav").read_bytes()
