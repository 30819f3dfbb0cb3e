"""``moee calibrate``: fit a model's slider calibration on the training people (see engine.diffusion.calibration).

For every emotion ``e`` and slider value ``w`` of :data:`engine.diffusion.calibration.CALIBRATION_KNOTS`, on each
of ``--identities`` *training* people (the held-out ones stay unseen, for ``moee eval``):

* ``G_e(w)``: the model renders the person's portrait with gate ``w`` on emotion ``e`` (calibration
  off, the model's other sampling settings, the person's neutral audio) and the recogniser reads the
  probability of ``e``;
* ``T_e(w)``: the synthetic renderer draws the same person with weight ``w`` of ``e`` (its exact
  ground truth) and the same recogniser reads it.

The curve ``c_e(w) = G_e^{-1}(T_e(w))`` (:func:`engine.diffusion.calibration.fit_response_curve`, on the means
over people) then gives the gate that makes the model show what the ground truth shows. The default
recogniser is the bundled compound one (``assets/models/recognizer_compound``): trained on mixes and
AU-varied faces, its probabilities follow partial intensities, where the single-emotion recogniser's
saturate. The model is sampled with its sampling defaults and the same override flags as ``moee
eval`` (``--guidance`` ...): a calibration holds for the sampling it was measured with. The result,
with the measured responses, is written as JSON (``--out``) and, with ``--write-model``, into the
model folder's sampling defaults (with those sampling settings).

``--mixes`` also fits the *mix curves* (:func:`engine.diffusion.calibration.calibrate_weights`): single-emotion
curves do not make a 50/50 mix show both emotions, because two experts at once interact. On
``--mix-identities`` training people, the model renders every two-emotion pair ``(a, b)`` with the
gates ``(g_a, g_b)`` on a grid (:data:`MIX_GATE_GRID`, calibration off) and the recogniser reads each
render (:func:`measure_mix_responses`); :func:`fit_mix_knots` then picks, per emotion, the gate a
50/50 mix gives it, so that the two mixed emotions read as the top two as often as possible over
all pairs and people (ties: by the margin to the third). The mix curve of ``e`` is its single curve
with that middle knot (kept non-decreasing).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.cli import recorded_command
from engine.diffusion.calibration import CALIBRATION_KNOTS, calibration_note, fit_response_curve
from engine.diffusion.checkpoint import load_model, update_sampling_defaults
from engine.diffusion.model import MoEEModel
from engine.emotions import BASIC_EMOTIONS
from engine.errors import MoEEError
from engine.io.atomic import atomic_write_text
from engine.io.resources import models_dir
from training.evaluate import (
    COMPOUND_RECOGNIZER_DIR,
    EVAL_SEED,
    SHORT_FRAMES,
    EvalClip,
    add_sampling_arguments,
    generate,
    load_eval_clips,
    render_truth,
    sampling_with_overrides,
)

#: Training people measured by default (about 3 s each on 2 CPU cores for the demo model).
DEFAULT_IDENTITIES = 12
#: Gate values tried for each emotion of a two-emotion mix (``--mixes``).
MIX_GATE_GRID: tuple[float, ...] = (0.2, 0.35, 0.5, 0.65, 0.8, 1.0)
#: Training people measured for the mix curves by default (about 4 min each for the demo model on
#: 2 CPU cores: 15 pairs x 36 gate pairs x 2 frames).
DEFAULT_MIX_IDENTITIES = 8
#: Largest number of candidate knot settings :func:`fit_mix_knots` tries exhaustively.
MAX_MIX_CANDIDATES = 2_000_000
#: The bundled recognisers (the repository's assets/models or the installed package data).
MODELS_DIR = models_dir()


def neutral_clips(clips: list[EvalClip], identities: int) -> list[EvalClip]:
    """One neutral clip per person (sorted by identity), for the first ``identities`` people."""
    by_identity: dict[str, EvalClip] = {}
    for clip in clips:
        if not clip.emotion:
            by_identity.setdefault(clip.identity, clip)
    return [by_identity[k] for k in sorted(by_identity)[:identities]]


def sweep_labels(num_emotions: int, knots: tuple[float, ...] = CALIBRATION_KNOTS) -> np.ndarray:
    """Slider rows ``(E * K, E)``: emotion ``e`` at each knot value, every other slider at 0."""
    labels = np.zeros((num_emotions * len(knots), num_emotions), np.float32)
    for e in range(num_emotions):
        labels[e * len(knots):(e + 1) * len(knots), e] = knots
    return labels


@contextlib.contextmanager
def calibration_off(model: MoEEModel) -> Iterator[None]:
    """Sample ``model`` with its slider calibration and mix curves off (the gates as given), then restore them."""
    sampling = model.cfg.sampling
    saved = sampling.calibration, sampling.mix_calibration
    sampling.calibration = sampling.mix_calibration = None
    try:
        yield
    finally:
        sampling.calibration, sampling.mix_calibration = saved


def emotion_per_row(recognizer: Any, frames: np.ndarray) -> np.ndarray:
    """The recogniser's emotion probabilities ``(B, E)`` of frames ``(B, F, H, W, 3)``, mean over each row's frames.

    All frames are read in one batch.
    """
    from training.recognizer import predict

    read = predict(recognizer, frames.reshape(-1, *frames.shape[2:]))["emotion"]
    return read.reshape(*frames.shape[:2], -1).mean(1)


@torch.no_grad()
def measure_responses(model: MoEEModel, clips: list[EvalClip], recognizer: Any, steps: int = 8,
                      seed: int = EVAL_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Mean intensities ``(G, T)``, each ``(E, K)``: the model's at each gate, the ground truth's at each weight.

    ``clips``: neutral clips of synthetic people (their identity seeds re-render the ground truth).
    The model is sampled with its calibration off (the raw response to the gate).
    """
    emotions = list(BASIC_EMOTIONS)
    knots = CALIBRATION_KNOTS
    labels = sweep_labels(len(emotions), knots)
    mixes = [{emotions[int(np.argmax(row))]: float(row.max())} if row.max() > 0 else {} for row in labels]
    generated = np.zeros((len(clips), len(emotions), len(knots)))
    target = np.zeros_like(generated)
    with calibration_off(model):
        for n, clip in enumerate(clips):
            if clip.identity_seed is None:
                raise MoEEError(f"{clip.identity} has no identity seed: calibration needs synthetic data "
                                "(moee synth) whose people the renderer can draw again")
            frames = generate(model, clip.frames[0], clip.windows[:SHORT_FRAMES], labels, steps, seed)
            truth = np.stack(render_truth(clip, mixes, SHORT_FRAMES, model.cfg.image_size))
            for out, rendered in ((generated, frames), (target, truth)):
                read = emotion_per_row(recognizer, rendered).reshape(len(emotions), len(knots), -1)
                out[n] = read[np.arange(len(emotions)), :, np.arange(len(emotions))]
    return generated.mean(0), target.mean(0)


def parse_gate_grid(text: str) -> tuple[float, ...]:
    """``"0.2,0.5,1"`` -> ``(0.2, 0.5, 1.0)``: distinct gate values in 0..1, sorted."""
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError as exc:
        raise MoEEError(f"--mix-grid must be comma-separated numbers, not {text!r}") from exc
    if not values or values[0] < 0.0 or values[-1] > 1.0:
        raise MoEEError(f"--mix-grid needs gate values within 0..1, got {text!r}")
    return tuple(values)


def emotion_pairs(num_emotions: int) -> list[tuple[int, int]]:
    """Every unordered pair of distinct emotions, in order."""
    return list(itertools.combinations(range(num_emotions), 2))


def mix_grid_labels(num_emotions: int, grid: tuple[float, ...] = MIX_GATE_GRID) -> np.ndarray:
    """Gate rows ``(pairs * G * G, E)``: each pair ``(a, b)`` at every ``(grid[i], grid[j])``, others 0."""
    rows = []
    for a, b in emotion_pairs(num_emotions):
        for ga, gb in itertools.product(grid, grid):
            row = np.zeros(num_emotions, np.float32)
            row[a], row[b] = ga, gb
            rows.append(row)
    return np.stack(rows)


@torch.no_grad()
def measure_mix_responses(model: MoEEModel, clips: list[EvalClip], recognizer: Any,
                          grid: tuple[float, ...] = MIX_GATE_GRID, steps: int = 8,
                          seed: int = EVAL_SEED) -> np.ndarray:
    """What the recogniser reads ``(people, pairs, G, G, E)`` from the model at each pair's grid gates.

    The model is sampled with its calibration off: the gates are given as they are.
    """
    emotions = len(BASIC_EMOTIONS)
    labels = mix_grid_labels(emotions, grid)
    readings = np.zeros((len(clips), len(emotion_pairs(emotions)), len(grid), len(grid), emotions), np.float32)
    start = time.perf_counter()
    with calibration_off(model):
        for n, clip in enumerate(clips):
            frames = generate(model, clip.frames[0], clip.windows[:SHORT_FRAMES], labels, steps, seed)
            readings[n] = emotion_per_row(recognizer, frames).reshape(readings.shape[1:])
            print(f"mix calibration: {n + 1}/{len(clips)} people ({clip.identity}), "
                  f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return readings


def mix_scores(readings: np.ndarray, pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per pair and grid cell, over people: the top-2 hit rate and the mean margin ``(pairs, G, G)``.

    Hit: the pair's two emotions are the two highest readings. Margin: the weaker of the two minus
    the strongest other emotion.
    """
    hits = np.zeros(readings.shape[1:4])
    margins = np.zeros_like(hits)
    for k, (a, b) in enumerate(pairs):
        read = readings[:, k]
        others = np.delete(read, [a, b], axis=-1).max(-1)
        margin = np.minimum(read[..., a], read[..., b]) - others
        hits[k], margins[k] = (margin > 0).mean(0), margin.mean(0)
    return hits, margins


def mix_hits_by_pair(hits: np.ndarray, knots: list[float], grid: tuple[float, ...] = MIX_GATE_GRID) -> list[float]:
    """Top-2 hit rate of each pair's 50/50 mix when emotion ``e`` gets the gate ``knots[e]`` (on ``grid``).

    ``hits``: :func:`mix_scores`'s hit rates of the pairs of ``len(knots)`` emotions.
    """
    index = [grid.index(v) for v in knots]
    return [float(hits[k, index[a], index[b]]) for k, (a, b) in enumerate(emotion_pairs(len(knots)))]


def fit_mix_knots(readings: np.ndarray, grid: tuple[float, ...] = MIX_GATE_GRID) -> tuple[list[float], float]:
    """Each emotion's 50/50 gate, from ``grid``, that maximises the mean top-2 hit rate over all pairs.

    ``readings``: :func:`measure_mix_responses`. A 50/50 mix of ``(a, b)`` then gets the gates
    ``(v_a, v_b)``; every combination of ``v`` is tried (ties: the larger mean margin, then the
    earlier, i.e. weaker, gates). Returns ``(v, its hit rate)``.
    """
    emotions = readings.shape[-1]
    pairs = emotion_pairs(emotions)
    if len(grid) ** emotions > MAX_MIX_CANDIDATES:
        raise MoEEError(f"{len(grid)} gates for {emotions} emotions are too many combinations to try")
    hits, margins = mix_scores(readings, pairs)
    candidates = np.array(list(itertools.product(range(len(grid)), repeat=emotions)))
    total_hits = np.zeros(len(candidates))
    total_margin = np.zeros(len(candidates))
    for k, (a, b) in enumerate(pairs):
        total_hits += hits[k, candidates[:, a], candidates[:, b]]
        total_margin += margins[k, candidates[:, a], candidates[:, b]]
    # lexicographic: most hits (rounded against float noise), then the largest margin, then the first
    best = np.lexsort((-total_margin, -np.round(total_hits, 9)))[0]
    return [float(grid[i]) for i in candidates[best]], float(total_hits[best] / len(pairs))


def mix_curves_from_knots(curves: list[list[float]], knots: list[float]) -> list[list[float]]:
    """The single-emotion curves with their middle knot (slider 0.5) set to ``knots[e]``, non-decreasing."""
    middle = CALIBRATION_KNOTS.index(0.5)
    out = []
    for curve, value in zip(curves, knots, strict=True):
        mixed = [min(v, value) for v in curve[:middle]] + [value] + [max(v, value) for v in curve[middle + 1:]]
        out.append([float(v) for v in mixed])
    return out


def fit_mixes(readings: np.ndarray, curves: list[list[float]], grid: tuple[float, ...]) -> dict[str, Any]:
    """The mix curves fitted on ``readings`` (:func:`measure_mix_responses`) and how they read.

    Returns ``mix_curves``, ``mix_gate_grid``, ``mix_knots``, the training people's top-2 hit rate
    with those knots (``mix_top2_train``, and per pair) and with every 50/50 gate at 0.5
    (``mix_top2_train_uncalibrated``, when 0.5 is on the grid).
    """
    knots, rate = fit_mix_knots(readings, grid)
    pairs = emotion_pairs(readings.shape[-1])
    hits, _ = mix_scores(readings, pairs)
    names = [f"{BASIC_EMOTIONS[a]}+{BASIC_EMOTIONS[b]}" for a, b in pairs]
    even = [0.5] * readings.shape[-1]
    return {"mix_curves": mix_curves_from_knots(curves, knots), "mix_gate_grid": list(grid), "mix_knots": knots,
            "mix_top2_train": round(rate, 4),
            "mix_top2_train_by_pair": {name: round(h, 3) for name, h in
                                       zip(names, mix_hits_by_pair(hits, knots, grid), strict=True)},
            "mix_top2_train_uncalibrated": round(float(np.mean(mix_hits_by_pair(hits, even, grid))), 4)
            if 0.5 in grid else None}


def fit_calibration(generated: np.ndarray, target: np.ndarray) -> list[list[float]]:
    """One curve per emotion (rows of ``generated`` / ``target``), see :func:`fit_response_curve`."""
    return [fit_response_curve(g, t) for g, t in zip(generated, target, strict=True)]


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``moee calibrate``."""
    parser.add_argument("--model", required=True, help="model folder to calibrate")
    parser.add_argument("--data", required=True, help="synthetic data set (moee synth): its train split is used")
    parser.add_argument("--recognizer", default=None,
                        help=f"recogniser that reads the intensities (default assets/models/{COMPOUND_RECOGNIZER_DIR})")
    parser.add_argument("--identities", type=int, default=DEFAULT_IDENTITIES, help="training people to measure")
    parser.add_argument("--steps", type=int, default=8, help="DDIM steps")
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--out", default=None, help="write the curves and measured responses here (JSON)")
    parser.add_argument("--write-model", action="store_true",
                        help="store the curves in the model folder's sampling defaults (config.json)")
    parser.add_argument("--mixes", action="store_true",
                        help="also fit the mix curves on two-emotion mixes (slow: minutes per person)")
    parser.add_argument("--mix-identities", type=int, default=DEFAULT_MIX_IDENTITIES,
                        help="training people measured for the mix curves")
    parser.add_argument("--mix-grid", default=",".join(f"{v:g}" for v in MIX_GATE_GRID),
                        help="gate values tried per emotion in a mix, comma-separated (each in 0..1)")
    parser.add_argument("--threads", type=int, default=None)
    add_sampling_arguments(parser)  # measured (and stored with --write-model) with these settings


def run_calibrate(args: argparse.Namespace) -> int:
    """Run ``moee calibrate``; returns the exit code."""
    from training.recognizer import load_recognizer

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        grid = parse_gate_grid(args.mix_grid) if args.mixes else ()  # a bad grid fails before any work
        model = load_model(args.model)
        model.cfg.sampling = sampling_with_overrides(model.cfg.sampling, args)
        recognizer = load_recognizer(Path(args.recognizer or MODELS_DIR / COMPOUND_RECOGNIZER_DIR))
        train_clips = load_eval_clips(args.data, model, SHORT_FRAMES, "train")
        clips = neutral_clips(train_clips, args.identities)
        if not clips:
            raise MoEEError(f"{args.data} has no neutral clips in its train split to calibrate on")
        generated, target = measure_responses(model, clips, recognizer, args.steps, args.seed)
        curves = fit_calibration(generated, target)
        result = {"knots": list(CALIBRATION_KNOTS), "emotions": list(BASIC_EMOTIONS), "curves": curves,
                  "generated_response": np.round(generated, 4).tolist(),
                  "target_response": np.round(target, 4).tolist(), "identities": [c.identity for c in clips]}
        mix_curves = None
        if args.mixes:
            mix_clips = neutral_clips(train_clips, args.mix_identities)
            readings = measure_mix_responses(model, mix_clips, recognizer, grid, args.steps, args.seed)
            mix = fit_mixes(readings, curves, grid)
            mix_curves = mix["mix_curves"]
            # the raw readings (people, pairs, G, G, E) too, so the fit can be studied without re-measuring
            result.update(mix, mix_identities=[c.identity for c in mix_clips],
                          mix_readings=np.round(readings, 4).tolist())
        result.update(model=str(args.model), seconds=round(time.perf_counter() - start, 1),
                      command=recorded_command("calibrate"), data=str(args.data),
                      recognizer=str(args.recognizer or f"assets/models/{COMPOUND_RECOGNIZER_DIR}"))
        if args.out:
            atomic_write_text(args.out, json.dumps(result, indent=1))
        if args.write_model:
            note = calibration_note(result)
            sampling = {**asdict(model.cfg.sampling), "calibration": curves, "mix_calibration": mix_curves}
            update_sampling_defaults(args.model, notes={"calibration": note}, **sampling)
    except MoEEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__.splitlines()[0])
    add_calibrate_arguments(parser)
    return run_calibrate(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
