"""Tests of training.datasets: layout readers, preprocessing report, noisy emotion sampling."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from training import datasets as ds
from training import synthetic as syn

FPS = 25
SECONDS = 0.4


@pytest.fixture(scope="module")
def clip() -> syn.SyntheticClip:
    person = syn.Identity.random(np.random.default_rng(21))
    return syn.synthesize_clip(person, {"happiness": 1.0}, seconds=SECONDS, size=128, seed=2, use_espeak=False)


def _write_video(path: Path, frames: np.ndarray, audio: np.ndarray | None, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        a = None
        if audio is not None:
            a = out.add_stream("aac", rate=16000)
            a.layout = "mono"
        for f in frames:
            for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            _encode_audio(out, a, audio)


def _write_audio(path: Path, audio: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".wav":
        sf.write(str(path), audio, 16000)
        return
    with av.open(str(path), "w", format="mp4") as out:
        a = out.add_stream("aac", rate=16000)
        a.layout = "mono"
        _encode_audio(out, a, audio)


def _encode_audio(out: av.container.OutputContainer, stream: av.AudioStream, audio: np.ndarray) -> None:
    """Encode a mono 16 kHz track into ``stream`` and flush it."""
    frame = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = 16000
    for packet in [*stream.encode(frame), *stream.encode()]:
        out.mux(packet)


def _by_name(dataset: ds.ClipDataset) -> dict[str, ds.Clip]:
    return {Path(c.source).name: c for c in dataset}


def test_labels_csv_layout(tmp_path: Path, clip: syn.SyntheticClip) -> None:
    _write_video(tmp_path / "a.mp4", clip.frames, clip.audio)
    _write_video(tmp_path / "b.mp4", clip.frames, clip.audio)
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "emotion", "identity"])
        w.writerow(["a.mp4", "happy", "alice"])
        w.writerow(["b.mp4", "neutral", "bob"])
    data = ds.open_dataset(tmp_path)
    assert data.layout == ds.LABELS_CSV and data.identities == ["alice", "bob"]
    clips = _by_name(data)
    assert clips["a.mp4"].emotion["happiness"] == 1.0 and clips["b.mp4"].emotion_name == "neutral"
    assert clips["a.mp4"].load_frames().shape == (10, 128, 128, 3)
    assert clips["a.mp4"].load_audio().sample_rate == 16000
    # one column per emotion
    (tmp_path / "labels.csv").write_text("file,happiness,surprise\na.mp4,0.6,0.4\n")
    mix = ds.open_dataset(tmp_path)[0]
    assert mix.emotion["happiness"] == pytest.approx(0.6) and mix.emotion["surprise"] == pytest.approx(0.4)
    assert mix.identity == "a"


def test_mead_layout(tmp_path: Path, clip: syn.SyntheticClip) -> None:
    for emo, level in (("happy", 3), ("contempt", 2), ("neutral", 1)):
        _write_video(tmp_path / "M003" / "video" / "front" / emo / f"level_{level}" / "001.mp4", clip.frames[:3], None)
        _write_audio(tmp_path / "M003" / "audio" / emo / f"level_{level}" / "001.m4a", clip.audio)
    data = ds.open_dataset(tmp_path)
    assert data.layout == ds.MEAD and data.identities == ["mead_M003"]
    labels = {c.label: c for c in data}
    assert labels["happy/level_3"].emotion["happiness"] == 1.0
    assert labels["contempt/level_2"].emotion["disgust"] == pytest.approx(2 / 3 * 0.5)
    assert labels["neutral/level_1"].emotion_name == "neutral"
    assert labels["happy/level_3"].load_audio().duration == pytest.approx(SECONDS, abs=0.2)  # AAC priming/padding


def test_ravdess_layout(tmp_path: Path, clip: syn.SyntheticClip) -> None:
    _write_video(tmp_path / "Actor_01" / "01-01-03-02-01-01-01.mp4", clip.frames[:3], clip.audio)
    _write_video(tmp_path / "Actor_01" / "02-01-02-01-01-01-01.mp4", clip.frames[:3], None)
    _write_audio(tmp_path / "Actor_01" / "03-01-02-01-01-01-01.wav", clip.audio)
    _write_video(tmp_path / "Actor_02" / "02-01-04-01-01-01-02.mp4", clip.frames[:3], None)  # no audio anywhere
    data = ds.open_dataset(tmp_path)
    assert data.layout == ds.RAVDESS and data.identities == ["ravdess_actor_01", "ravdess_actor_02"]
    c = _by_name(data)
    assert c["01-01-03-02-01-01-01.mp4"].emotion["happiness"] == 1.0
    calm = c["02-01-02-01-01-01-01.mp4"]
    assert calm.emotion_name == "neutral" and calm.audio_path.endswith("03-01-02-01-01-01-01.wav")
    sad = c["02-01-04-01-01-01-02.mp4"]
    assert sad.emotion["sadness"] == pytest.approx(0.6) and sad.audio_path is None


def test_cremad_layout_and_preprocess_report(tmp_path: Path, clip: syn.SyntheticClip) -> None:
    root = tmp_path / "crema"
    _write_video(root / "VideoFlash" / "1001_DFA_ANG_HI.flv", clip.frames, None, fmt="flv")
    _write_audio(root / "AudioWAV" / "1001_DFA_ANG_HI.wav", clip.audio)
    _write_video(root / "VideoFlash" / "1002_IEO_SAD_LO.flv", clip.frames[:3], None, fmt="flv")  # no wav
    noface = np.full((5, 96, 96, 3), 120, np.uint8)
    _write_video(root / "VideoFlash" / "1003_TIE_NEU_XX.flv", noface, None, fmt="flv")
    _write_audio(root / "AudioWAV" / "1003_TIE_NEU_XX.wav", clip.audio)
    (root / "VideoFlash" / "1004_DFA_HAP_MD.flv").write_bytes(b"not a video")
    _write_audio(root / "AudioWAV" / "1004_DFA_HAP_MD.wav", clip.audio)
    data = ds.open_dataset(root)
    assert data.layout == ds.CREMA_D and len(data) == 4
    c = _by_name(data)
    assert c["1001_DFA_ANG_HI.flv"].emotion["anger"] == 1.0 and c["1001_DFA_ANG_HI.flv"].identity == "cremad_1001"
    assert c["1002_IEO_SAD_LO.flv"].emotion["sadness"] == pytest.approx(0.4)
    report = ds.preprocess(data, tmp_path / "cache", size=64)
    reasons = {Path(src).name: why for src, why in report.skipped}
    assert len(report.written) == 1
    assert reasons["1002_IEO_SAD_LO.flv"].startswith("no audio")
    assert reasons["1003_TIE_NEU_XX.flv"].startswith("no face")
    assert reasons["1004_DFA_HAP_MD.flv"].startswith("unreadable")
    cached = ds.open_dataset(tmp_path / "cache")
    assert cached.layout == ds.SYNTHETIC and cached[0].emotion["anger"] == 1.0
    assert cached[0].load_frames().shape == (10, 64, 64, 3)
    assert cached[0].load_landmarks().shape == (10, 478, 2)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    syn.generate_dataset(root, identities=3, emotions=("neutral", "happiness", "anger"), intensities=(1.0,),
                         clip_seconds=SECONDS, size=64, seed=4, compound=True, use_espeak=False, progress=False)
    return root


def test_synthetic_layout(synth_root: Path) -> None:
    data = ds.open_dataset(synth_root)
    assert data.layout == ds.SYNTHETIC and len(data.identities) == 3
    assert all(c.split == "compound_eval" for c in data if sum(v > 0 for v in c.emotion.values()) > 1)
    assert not any(sum(v > 0 for v in c.emotion.values()) > 1 for c in data.split("train"))
    c = data.split("train")[0]
    assert c.load_landmarks().shape == (10, 68, 2) and c.fps == 25


def test_the_reference_is_a_neutral_portrait_of_the_same_identity(synth_root: Path) -> None:
    """An emotional reference would let the network copy the expression instead of learning it."""
    data = ds.open_dataset(synth_root)
    sampler = ds.ClipSampler(data, num_frames=2, seed=3, samples_per_epoch=40)
    neutral_frames = {c.identity: c.load_frames() for c in data.split("train") if not any(c.emotion.values())}
    emotional = 0
    for i in range(12):
        item = sampler[i]
        emotional += bool(item["true_emotion"].max() > 0)
        ref = ((item["reference"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        assert any(np.array_equal(ref, f) for f in neutral_frames[item["identity"]])
    assert emotional > 0  # the targets do show emotions


def test_expression_regions_mask_the_brows_and_eyes_not_the_mouth(synth_root: Path) -> None:
    """The stage-2 expression weight needs the brow/eye regions of each target frame."""
    from engine.io.face import region_mask

    data = ds.open_dataset(synth_root)
    plain = ds.ClipSampler(data, num_frames=2, seed=3)
    sampler = ds.ClipSampler(data, num_frames=2, seed=3, expression_regions=("brows", "eyes"))
    assert "region_mask" not in plain[0]
    item = sampler[0]
    regions = item["region_mask"].numpy()
    assert regions.shape == (2, 1, 64, 64) and 0.02 < regions.mean() < 0.3
    assert float((regions * item["mouth_mask"].numpy()).max()) < 0.05  # the brows and eyes are not the mouth
    clip = next(c for c in data.split("train") if c.source == item["source"])
    landmarks = clip.load_landmarks() * (64 / clip.load_frames().shape[1])
    expected = region_mask(landmarks[item["start"]], ("brows", "eyes"), 64, 64)
    np.testing.assert_allclose(regions[0, 0], expected)
    assert torch.equal(item["frames"], plain[0]["frames"])  # the same sample otherwise


def test_noisy_sampling_rate_and_items(synth_root: Path) -> None:
    data = ds.open_dataset(synth_root)
    sampler = ds.ClipSampler(data, num_frames=4, p_noisy=0.3, seed=1, samples_per_epoch=2000)
    noisy = [sampler.condition(i) for i in range(2000)]
    rate = np.mean([n for _, n, _ in noisy])
    assert abs(rate - 0.3) < 0.04
    again = ds.ClipSampler(data, num_frames=4, p_noisy=0.3, seed=1, samples_per_epoch=2000)
    assert [again.condition(i)[1] for i in range(50)] == [n for _, n, _ in noisy[:50]]
    for i in range(3):
        item = sampler[i]
        assert item["frames"].shape == (4, 3, 64, 64) and item["reference"].shape == (3, 64, 64)
        assert item["audio"].shape[0] == 4 and item["emotion"].shape == (6,)
        assert item["mouth_mask"].shape == (4, 1, 64, 64) and 0 < float(item["mouth_mask"].mean()) < 0.2
        assert item["noisy"] == sampler.condition(i)[1]
        if item["noisy"]:
            assert not np.array_equal(item["emotion"].numpy(), item["true_emotion"].numpy())
