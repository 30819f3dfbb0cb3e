"""``moee train-motion``: train the motion MoE and the lip model on the synthetic renderer's exact landmarks.

Ground truth comes straight from :meth:`training.synthetic.FaceRenderer.geometry`: for a person, an
emotion at some intensity and a mouth opening, the 68 landmarks in face units are exact, so no frame is
drawn and no landmark is detected. As in the paper's stage 2, each expert learns from single-emotion
examples (plus neutral ones); compound mixes are only used to evaluate.

The lip model learns the synthetic speech model's mouth opening (:func:`training.synthetic.mouth_open_from_audio`)
from the loudness window :func:`engine.portrait.motion.lip_features` reads, on generated speech.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.emotions import BASIC_EMOTIONS
from engine.io.audio import AudioClip, envelope_per_frame
from engine.portrait.motion import LipModel, MotionConfig, MotionModel, MotionMoE, lip_features
from training.synthetic import (
    DEFAULT_FPS,
    SAMPLE_RATE,
    FaceRenderer,
    Identity,
    emotion_to_aus,
    make_speech,
    mouth_open_from_audio,
)


@dataclass(frozen=True)
class MotionTrainingConfig:
    """How much synthetic ground truth to draw and how long to train (defaults: the shipped model, about 15 minutes on one busy core)."""

    identities: int = 400
    held_out: int = 40
    samples: int = 20_000
    neutral_share: float = 0.12
    closed_share: float = 0.4  # share of samples with the mouth closed
    steps: int = 2500
    batch: int = 128
    lr: float = 2e-3
    lip_clips: int = 40
    lip_seconds: float = 4.0
    lip_steps: int = 1500
    seed: int = 0


def neutral_and_target(renderer: FaceRenderer, mix: dict[str, float], opening: float) -> tuple[np.ndarray, np.ndarray]:
    """(neutral closed-mouth landmarks, displacement of ``mix`` at ``opening``), both ``(68, 2)`` face units."""
    rest = renderer.landmarks_face_units(renderer.geometry({}, 0.0, 0.0))
    moved = renderer.landmarks_face_units(renderer.geometry(emotion_to_aus(mix), opening, 0.0))
    return rest, moved - rest


def draw_samples(identity_seeds: list[int], count: int, cfg: MotionTrainingConfig, rng: np.random.Generator,
                 emotions: tuple[str, ...] = BASIC_EMOTIONS, compound: bool = False) -> dict[str, np.ndarray]:
    """``count`` examples: neutral shapes, openings, slider weights and exact displacements."""
    renderers = {seed: FaceRenderer(Identity.from_seed(seed)) for seed in identity_seeds}
    shapes = np.zeros((count, 68, 2), np.float32)
    targets = np.zeros((count, 68, 2), np.float32)
    openings = np.zeros(count, np.float32)
    weights = np.zeros((count, len(emotions)), np.float32)
    for k in range(count):
        renderer = renderers[identity_seeds[int(rng.integers(len(identity_seeds)))]]
        opening = 0.0 if rng.random() < cfg.closed_share else float(rng.uniform(0, 1))
        mix: dict[str, float] = {}
        if compound:
            pair = rng.choice(len(emotions), 2, replace=False)
            mix = {emotions[int(i)]: float(rng.uniform(0.3, 1.0)) for i in pair}
        elif rng.random() >= cfg.neutral_share:
            mix = {emotions[int(rng.integers(len(emotions)))]: float(rng.uniform(0.05, 1.0))}
        for name, value in mix.items():
            weights[k, emotions.index(name)] = value
        shapes[k], targets[k] = neutral_and_target(renderer, mix, opening)
        openings[k] = opening
    return {"shapes": shapes, "targets": targets, "openings": openings, "weights": weights}


def displacement_agreement(predicted: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """Cosine and magnitude ratio of predicted vs exact displacements (flattened per sample), and the RMS error."""
    p = predicted.reshape(len(predicted), -1)
    e = exact.reshape(len(exact), -1)
    norm_p, norm_e = np.linalg.norm(p, axis=1), np.linalg.norm(e, axis=1)
    moving = norm_e > 1e-3
    cosine = (p * e).sum(1)[moving] / np.maximum(norm_p[moving] * norm_e[moving], 1e-9)
    return {"cosine": float(np.mean(cosine)) if moving.any() else 1.0,
            "magnitude_ratio": float(np.median(norm_p[moving] / norm_e[moving])) if moving.any() else 1.0,
            "rms_error": float(np.sqrt(np.mean((predicted - exact) ** 2)))}


def train_moe(model: MotionMoE, data: dict[str, np.ndarray], cfg: MotionTrainingConfig,
              log=print) -> None:
    """Fit the motion MoE to the exact displacements (mean squared error in face units)."""
    tensors = {k: torch.from_numpy(v) for k, v in data.items()}
    shapes = tensors["shapes"]
    model.shape_mean.copy_(shapes.mean(0))
    model.shape_std.copy_(shapes.std(0).clamp_min(1e-3))
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for step in range(cfg.steps):
        idx = torch.randint(0, len(shapes), (cfg.batch,), generator=gen)
        pred = model(shapes[idx], tensors["openings"][idx], tensors["weights"][idx])
        loss = F.mse_loss(pred, tensors["targets"][idx])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        if step % 500 == 0 or step == cfg.steps - 1:
            log(f"motion step {step + 1}/{cfg.steps}: loss {loss.item():.2e}")
    model.eval()


def lip_examples(cfg: MotionTrainingConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(features, target openings) from generated speech clips."""
    feats, targets = [], []
    n_frames = int(round(cfg.lip_seconds * DEFAULT_FPS))
    for _ in range(cfg.lip_clips):
        audio, _info = make_speech(rng, cfg.lip_seconds, SAMPLE_RATE)
        gain = float(10 ** rng.uniform(-1.0, 0.0))  # quiet and loud recordings
        audio = audio * gain
        env = envelope_per_frame(AudioClip(audio, SAMPLE_RATE, "synthetic"), n_frames, DEFAULT_FPS)
        feats.append(lip_features(env))
        targets.append(mouth_open_from_audio(audio, SAMPLE_RATE, DEFAULT_FPS, n_frames))
    return np.concatenate(feats), np.concatenate(targets)


def train_lips(model: LipModel, feats: np.ndarray, targets: np.ndarray, cfg: MotionTrainingConfig,
               log=print) -> None:
    """Fit the lip model to the synthetic mouth opening."""
    x, y = torch.from_numpy(feats), torch.from_numpy(targets)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    model.train()
    for step in range(cfg.lip_steps):
        idx = torch.randint(0, len(x), (min(512, len(x)),), generator=gen)
        loss = F.mse_loss(model(x[idx]), y[idx])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if step % 500 == 0 or step == cfg.lip_steps - 1:
            log(f"lip step {step + 1}/{cfg.lip_steps}: loss {loss.item():.2e}")
    model.eval()


def evaluate_motion(motion: MotionModel, seeds: list[int], cfg: MotionTrainingConfig) -> dict[str, dict[str, float]]:
    """Agreement with the exact displacements on held-out people: per emotion at full strength, and compound."""
    rng = np.random.default_rng(cfg.seed + 7)
    report: dict[str, dict[str, float]] = {}
    for name in motion.cfg.emotions:
        renderers = [FaceRenderer(Identity.from_seed(s)) for s in seeds]
        rows = [neutral_and_target(r, {name: 1.0}, 0.0) for r in renderers]
        shapes = np.stack([r[0] for r in rows])
        exact = np.stack([r[1] for r in rows])
        weights = np.zeros((len(rows), len(motion.cfg.emotions)), np.float32)
        weights[:, motion.cfg.emotions.index(name)] = 1.0
        pred = np.concatenate([motion.displacement(shapes[i], [0.0], weights[i]) for i in range(len(rows))])
        report[name] = displacement_agreement(pred, exact)
    mixed = draw_samples(seeds, 200, cfg, rng, motion.cfg.emotions, compound=True)
    pred = np.concatenate([motion.displacement(mixed["shapes"][i], mixed["openings"][i:i + 1], mixed["weights"][i])
                           for i in range(len(mixed["shapes"]))])
    report["compound"] = displacement_agreement(pred, mixed["targets"])
    return report


def train_motion(out: str | Path, cfg: MotionTrainingConfig = MotionTrainingConfig(), log=print) -> MotionModel:
    """Train both networks, evaluate on held-out people, save into ``out`` and return the model."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    seeds = [int(s) for s in rng.choice(2**31 - 1, cfg.identities + cfg.held_out, replace=False)]
    train_seeds, test_seeds = seeds[: cfg.identities], seeds[cfg.identities:]
    started = time.perf_counter()
    data = draw_samples(train_seeds, cfg.samples, cfg, rng)
    log(f"drew {cfg.samples} exact examples of {cfg.identities} people in {time.perf_counter() - started:.1f} s")
    motion_cfg = MotionConfig()
    moe = MotionMoE(motion_cfg)
    train_moe(moe, data, cfg, log)
    lips = LipModel(motion_cfg)
    feats, targets = lip_examples(cfg, rng)
    train_lips(lips, feats, targets, cfg, log)
    model = MotionModel(moe, lips)
    report = evaluate_motion(model, test_seeds, cfg)
    with torch.no_grad():
        pred = lips(torch.from_numpy(feats)).numpy()
    report["lips"] = {"correlation": float(np.corrcoef(pred, targets)[0, 1]),
                      "rms_error": float(np.sqrt(np.mean((pred - targets) ** 2)))}
    model.notes = {"trained": True, "command": "moee train-motion", "training": cfg.__dict__,
                   "held_out_people": cfg.held_out, "held_out": report,
                   "seconds": round(time.perf_counter() - started, 1)}
    model.save(out)
    log(f"wrote {out}: held-out agreement " + ", ".join(
        f"{k} cos {v.get('cosine', v.get('correlation', 0)):.3f}" for k, v in report.items()))
    return model


def add_train_motion_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="model folder to write motion.safetensors + motion.json into")
    parser.add_argument("--steps", type=int, default=MotionTrainingConfig.steps)
    parser.add_argument("--samples", type=int, default=MotionTrainingConfig.samples)
    parser.add_argument("--identities", type=int, default=MotionTrainingConfig.identities)
    parser.add_argument("--lip-clips", type=int, default=MotionTrainingConfig.lip_clips)
    parser.add_argument("--lip-steps", type=int, default=MotionTrainingConfig.lip_steps)
    parser.add_argument("--seed", type=int, default=0)


def run_train_motion(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)  # small tensors: one thread is faster than two fighting over a busy machine
    for flag in ("steps", "samples", "identities", "lip_clips", "lip_steps"):
        if getattr(args, flag) < 1:
            from engine.errors import MoEEError

            raise MoEEError(f"--{flag.replace('_', '-')} must be at least 1")
    cfg = MotionTrainingConfig(steps=args.steps, samples=args.samples, identities=args.identities,
                               lip_clips=args.lip_clips, lip_steps=args.lip_steps, seed=args.seed,
                               held_out=max(4, args.identities // 10))
    train_motion(args.out, cfg)
    return 0
