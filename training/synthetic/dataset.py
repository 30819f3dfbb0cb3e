"""Synthetic data sets on disk (:func:`generate_dataset`, ``moee synth``).

Layout written by :func:`generate_dataset`::

    out_dir/index.json                      # {"version", "clips": [{path, identity, emotion, split, ...}]}
    out_dir/<identity_id>/identity.json     # the Identity parameters
    out_dir/<identity_id>/<clip_name>/
        frames.npz      # "frames": (F, H, W, 3) uint8 RGB (compressed)
        audio.wav       # 16 kHz mono PCM16
        meta.json       # identity, emotion weights, fps, split, n_frames, voice, text
        landmarks.npy   # (F, 68, 2) float32 pixel coordinates
        aus.npy         # (F, len(AU_LIST)) float32 intensities 0..1
        mouth_open.npy  # (F,) float32 speech-driven opening 0..1 (before AU26)
        mouth_box.npy   # (F, 4) float32 x0, y0, x1, y1 pixels

Splits: identities are split train/test by seed (held-out identities); compound clips are only
ever written to the ``compound_eval`` split, never to ``train``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.emotions import COMPOUND_PRESETS
from training.synthetic.clips import DEFAULT_FPS, SyntheticClip, synthesize_clip
from training.synthetic.identities import (
    AU_LIST,
    EMOTION_PROTOTYPES,
    NEUTRAL,
    RENDER_EMOTIONS,
    Identity,
    emotion_label,
)
from training.synthetic.renderer import DEFAULT_SIZE
from training.synthetic.speech import espeak_available

#: Fraction of identities held out as the ``test`` split.
TEST_FRACTION = 0.2
SPLIT_TRAIN, SPLIT_TEST, SPLIT_COMPOUND = "train", "test", "compound_eval"
INDEX_VERSION = 1

def identity_id(seed: int, index: int) -> str:
    """Folder name of identity ``index`` of a dataset generated with ``seed``."""
    return f"s{seed}_id{index:04d}"


#: Weight range of the first emotion of a :func:`random_training_mix` (the second gets the rest).
TRAIN_MIX_WEIGHT = (0.3, 0.7)


def random_training_mix(rng: np.random.Generator) -> dict[str, float]:
    """A random two-emotion mix ``{a: w, b: 1 - w}``, ``w`` uniform in :data:`TRAIN_MIX_WEIGHT`."""
    first, second = rng.choice(len(EMOTION_PROTOTYPES), size=2, replace=False)
    names = list(EMOTION_PROTOTYPES)
    w = float(np.round(rng.uniform(*TRAIN_MIX_WEIGHT), 2))
    return {names[first]: w, names[second]: round(1.0 - w, 2)}


def split_identities(n: int, seed: int, test_fraction: float = TEST_FRACTION) -> list[str]:
    """Split labels (``train``/``test``) of ``n`` identities; at least one test identity when n >= 2."""
    n_test = 0 if n < 2 else max(1, int(round(n * test_fraction)))
    order = np.random.default_rng([seed, 7919]).permutation(n)
    labels = [SPLIT_TRAIN] * n
    for i in order[:n_test]:
        labels[int(i)] = SPLIT_TEST
    return labels


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def write_clip(clip: SyntheticClip, folder: Path, meta: Mapping[str, Any]) -> None:
    """Write one clip in the synthetic layout (frames.npz, audio.wav, meta.json, *.npy)."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "frames.npz", frames=clip.frames)
    sf.write(str(folder / "audio.wav"), clip.audio, clip.sample_rate, subtype="PCM_16")
    np.save(folder / "landmarks.npy", clip.landmarks)
    np.save(folder / "aus.npy", clip.aus)
    np.save(folder / "mouth_open.npy", clip.mouth_open)
    np.save(folder / "mouth_box.npy", clip.mouth_box)
    _write_json(folder / "meta.json", dict(meta))


@dataclass(frozen=True)
class _ClipTask:
    """One clip of :func:`generate_dataset`: everything a worker process needs to render and write it."""

    out: Path
    identity: str
    person: Identity
    name: str
    mix: dict[str, float]
    split: str
    clip_seconds: float
    fps: int
    size: int
    seed: int
    use_espeak: bool


def _render_and_write(task: _ClipTask) -> dict[str, Any]:
    """Render one clip, write it under ``task.out`` and return its index entry."""
    clip = synthesize_clip(task.person, task.mix, task.clip_seconds, task.fps, task.size, seed=task.seed,
                           use_espeak=task.use_espeak)
    rel = f"{task.identity}/{task.name}"
    meta = {"identity": task.identity, "emotion": clip.emotion, "fps": task.fps, "split": task.split,
            "n_frames": int(clip.frames.shape[0]), "size": task.size, "sample_rate": clip.sample_rate,
            "compound": task.split == SPLIT_COMPOUND, "speech": clip.speech, "au_list": list(AU_LIST),
            "landmark_format": "ibug68"}
    write_clip(clip, task.out / rel, meta)
    return {"path": rel, **{k: meta[k] for k in ("identity", "emotion", "split", "n_frames", "fps")}}


#: One planned clip of :func:`generate_dataset`: identity number, clip name, emotion mix, split.
_Job = tuple[int, str, dict[str, float], str]


def _clip_jobs(identities: int, splits: Sequence[str], emotions: Sequence[str], intensities: Sequence[float],
               clips_per_emotion: int, compound: bool, train_mixes: int, seed: int) -> list[_Job]:
    """Every clip of :func:`generate_dataset`, in rendering order (the order fixes each clip's seed).

    Per identity: its neutral and (emotion, intensity) clips, then its compound clips; after every
    identity's, the random training mixes of the train identities.
    """
    jobs: list[_Job] = []
    for i in range(identities):
        for e in emotions:
            levels = (1.0,) if e == NEUTRAL else tuple(intensities)
            for level in levels:
                for k in range(clips_per_emotion):
                    mix = {} if e == NEUTRAL else {e: float(level)}
                    name = f"{e}_{level:.2f}_{k}" if e != NEUTRAL else f"{NEUTRAL}_0.00_{k}"
                    jobs.append((i, name, mix, splits[i]))
        if compound:
            for preset, mix in COMPOUND_PRESETS.items():
                jobs.append((i, "compound_" + preset.replace(" ", "-") + "_1.00_0", dict(mix), SPLIT_COMPOUND))
    mix_rng = np.random.default_rng([seed, 104_729])
    for i in range(identities):
        for k in range(train_mixes if splits[i] == SPLIT_TRAIN else 0):
            mix = random_training_mix(mix_rng)
            jobs.append((i, f"mix_{emotion_label(mix)}_{max(mix.values()):.2f}_{k}", mix, SPLIT_TRAIN))
    return jobs


def _run_tasks(tasks: Sequence[_ClipTask], workers: int, progress: bool) -> list[dict[str, Any]]:
    """Render and write every task (in ``workers`` processes when > 1); their index entries, in order."""
    results: Iterable[dict[str, Any]]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(_render_and_write, tasks, chunksize=4)
    else:
        pool, results = None, map(_render_and_write, tasks)
    try:
        from tqdm import tqdm

        results = tqdm(results, total=len(tasks), desc="synth", unit="clip", disable=not progress)
    except ImportError:  # pragma: no cover
        pass
    try:
        return list(results)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def generate_dataset(out_dir: str | os.PathLike[str], identities: int = 10,
                     emotions: Sequence[str] = RENDER_EMOTIONS, intensities: Sequence[float] = (0.5, 1.0),
                     clip_seconds: float = 2.0, fps: int = DEFAULT_FPS, size: int = DEFAULT_SIZE, seed: int = 0,
                     compound: bool = False, clips_per_emotion: int = 1, use_espeak: bool | None = None,
                     progress: bool = True, train_mixes: int = 0, workers: int = 1) -> dict[str, Any]:
    """Render a synthetic dataset into ``out_dir`` (see the module docstring) and return the index.

    Per identity: one neutral clip (x ``clips_per_emotion``) and one clip per (emotion, intensity);
    with ``compound=True`` also one clip per :data:`engine.emotions.COMPOUND_PRESETS` entry, in the
    ``compound_eval`` split only. ``train_mixes``: per *train* identity, that many clips of a random
    two-emotion mix (:func:`random_training_mix`), so a model sees the gates of compound mixes in
    training; they are rendered after every other clip, so the rest of the set is unchanged.
    ``workers`` > 1 renders clips in that many processes; every clip has its own seed, so the data set
    is the same whatever the number of workers.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    id_rng = np.random.default_rng(seed)
    people = [Identity.random(id_rng) for _ in range(identities)]
    splits = split_identities(identities, seed)
    jobs = _clip_jobs(identities, splits, emotions, intensities, clips_per_emotion, compound, train_mixes, seed)
    voice = espeak_available() if use_espeak is None else use_espeak
    for i, person in enumerate(people):
        folder = out / identity_id(seed, i)
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / "identity.json", person.to_dict())
    tasks = [_ClipTask(out, identity_id(seed, i), people[i], name, mix, split, clip_seconds, fps, size,
                       seed * 100_003 + n, voice) for n, (i, name, mix, split) in enumerate(jobs)]
    entries = _run_tasks(tasks, workers, progress)
    index = {"version": INDEX_VERSION, "generator": "moee-synthetic", "seed": seed, "size": size, "fps": fps,
             "au_list": list(AU_LIST), "identities": {identity_id(seed, i): splits[i] for i in range(identities)},
             "clips": entries}
    _write_json(out / "index.json", index)
    return index


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``moee synth OUT``."""
    parser.add_argument("out", help="output folder of the synthetic dataset")
    parser.add_argument("--identities", type=int, default=10, help="number of identities (default 10)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="frame size in pixels (default 128)")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length in seconds (default 2)")
    parser.add_argument("--fps", type=int, default=DEFAULT_FPS, help="frames per second (default 25)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--compound", action="store_true", help="also render compound-emotion eval clips")
    parser.add_argument("--train-mixes", type=int, default=0,
                        help="random two-emotion mix clips per train identity (training data for compound gates)")
    parser.add_argument("--intensities", default="0.5,1.0", help="comma-separated intensities (default 0.5,1.0)")
    parser.add_argument("--procedural-voice", action="store_true", help="do not use espeak-ng for speech")
    parser.add_argument("--workers", type=int, default=1,
                        help="render clips in this many processes (same data set whatever the number)")


def run_synth(args: argparse.Namespace) -> int:
    """Run ``moee synth`` with parsed arguments; returns the exit code."""
    from engine.errors import MoEEError

    try:
        levels = tuple(float(v) for v in str(args.intensities).split(",") if v.strip())
    except ValueError as exc:
        raise MoEEError(f"--intensities must be numbers like 0.5,1.0, not {args.intensities!r}") from exc
    if args.identities < 1 or args.size < 32 or args.seconds <= 0 or getattr(args, "workers", 1) < 1:
        raise MoEEError("need --identities >= 1, --size >= 32, --seconds > 0 and --workers >= 1")
    index = generate_dataset(args.out, identities=args.identities, intensities=levels, clip_seconds=args.seconds,
                             fps=args.fps, size=args.size, seed=args.seed, compound=args.compound,
                             train_mixes=getattr(args, "train_mixes", 0), workers=getattr(args, "workers", 1),
                             use_espeak=False if getattr(args, "procedural_voice", False) else None)
    print(f"wrote {len(index['clips'])} clips of {args.identities} identities to {args.out}")
    return 0

