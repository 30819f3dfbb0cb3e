"""``moee calibrate``: fit a model's slider calibration on the training people (see engine.calibration).

For every emotion ``e`` and slider value ``w`` of :data:`engine.calibration.CALIBRATION_KNOTS`, on each
of ``--identities`` *training* people (the held-out ones stay unseen, for ``moee eval``):

* ``G_e(w)``: the model renders the person's portrait with gate ``w`` on emotion ``e`` (calibration
  off, the model's other sampling settings, the person's neutral audio) and the recogniser reads the
  probability of ``e``;
* ``T_e(w)``: the synthetic renderer draws the same person with weight ``w`` of ``e`` (its exact
  ground truth) and the same recogniser reads it.

The curve ``c_e(w) = G_e^{-1}(T_e(w))`` (:func:`engine.calibration.fit_response_curve`, on the means
over people) then gives the gate that makes the model show what the ground truth shows. The default
recogniser is the bundled compound one (``assets/models/recognizer_compound``): trained on mixes and
AU-varied faces, its probabilities follow partial intensities, where the single-emotion recogniser's
saturate. The model is sampled with its sampling defaults and the same override flags as ``moee
eval`` (``--guidance`` ...): a calibration holds for the sampling it was measured with. The result,
with the measured responses, is written as JSON (``--out``) and, with ``--write-model``, into the
model folder's sampling defaults (with those sampling settings).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.atomic import atomic_write_text
from engine.calibration import CALIBRATION_KNOTS, fit_response_curve
from engine.checkpoint import load_model, update_sampling_defaults
from engine.emotions import BASIC_EMOTIONS
from engine.errors import MoEEError
from engine.model import MoEEModel
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
MODELS_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"


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


@torch.no_grad()
def measure_responses(model: MoEEModel, clips: list[EvalClip], recognizer: Any, steps: int = 8,
                      seed: int = EVAL_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Mean intensities ``(G, T)``, each ``(E, K)``: the model's at each gate, the ground truth's at each weight.

    ``clips``: neutral clips of synthetic people (their identity seeds re-render the ground truth).
    The model is sampled with its calibration off (the raw response to the gate).
    """
    from training.recognizer import predict

    emotions = list(BASIC_EMOTIONS)
    knots = CALIBRATION_KNOTS
    labels = sweep_labels(len(emotions), knots)
    mixes = [{emotions[int(np.argmax(row))]: float(row.max())} if row.max() > 0 else {} for row in labels]
    saved = model.cfg.sampling.calibration
    model.cfg.sampling.calibration = None
    generated = np.zeros((len(clips), len(emotions), len(knots)))
    target = np.zeros_like(generated)
    try:
        for n, clip in enumerate(clips):
            if clip.identity_seed is None:
                raise MoEEError(f"{clip.identity} has no identity seed: calibration needs synthetic data "
                                "(moee synth) whose people the renderer can draw again")
            frames = generate(model, clip.frames[0], clip.windows[:SHORT_FRAMES], labels, steps, seed)
            truth = np.stack(render_truth(clip, mixes, SHORT_FRAMES, model.cfg.image_size))
            for out, rendered in ((generated, frames), (target, truth)):
                # every row's frames read in one batch: probabilities (rows, frames, E), mean over frames
                read = predict(recognizer, rendered.reshape(-1, *rendered.shape[2:]))["emotion"]
                read = read.reshape(*rendered.shape[:2], -1).mean(1).reshape(len(emotions), len(knots), -1)
                out[n] = read[np.arange(len(emotions)), :, np.arange(len(emotions))]
    finally:
        model.cfg.sampling.calibration = saved
    return generated.mean(0), target.mean(0)


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
    parser.add_argument("--threads", type=int, default=None)
    add_sampling_arguments(parser)  # measured (and stored with --write-model) with these settings


def run_calibrate(args: argparse.Namespace) -> int:
    """Run ``moee calibrate``; returns the exit code."""
    from training.recognizer import load_recognizer

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        model = load_model(args.model)
        model.cfg.sampling = sampling_with_overrides(model.cfg.sampling, args)
        recognizer = load_recognizer(Path(args.recognizer or MODELS_DIR / COMPOUND_RECOGNIZER_DIR))
        clips = neutral_clips(load_eval_clips(args.data, model, SHORT_FRAMES, "train"), args.identities)
        if not clips:
            raise MoEEError(f"{args.data} has no neutral clips in its train split to calibrate on")
        generated, target = measure_responses(model, clips, recognizer, args.steps, args.seed)
        curves = fit_calibration(generated, target)
        result = {"knots": list(CALIBRATION_KNOTS), "emotions": list(BASIC_EMOTIONS), "curves": curves,
                  "generated_response": np.round(generated, 4).tolist(),
                  "target_response": np.round(target, 4).tolist(), "identities": [c.identity for c in clips],
                  "model": str(args.model), "seconds": round(time.perf_counter() - start, 1)}
        if args.out:
            atomic_write_text(args.out, json.dumps(result, indent=1))
        if args.write_model:
            note = {"command": " ".join(["moee calibrate", *sys.argv[1:]]), "data": str(args.data),
                    "recognizer": str(args.recognizer or f"assets/models/{COMPOUND_RECOGNIZER_DIR}"),
                    **{k: result[k] for k in ("identities", "generated_response", "target_response")}}
            sampling = {**asdict(model.cfg.sampling), "calibration": curves}
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
