"""A small expression / AU / landmark recogniser used to *measure* generated frames.

Trained on the synthetic renderer's exact ground truth (frames -> six emotion intensities, the
FACS AU intensities of :data:`training.synthetic.AU_LIST`, and the 68 landmarks), on the train
identities only, so evaluation on held-out identities is fair.
Frames are blurred and noised at random during training so that the recogniser also reads the
softer frames a diffusion model decodes.

Input: the central ``CROP`` of the frame (where the synthetic renderer puts the face), resized to
64 x 64, so brows and mouth corners span several pixels. Heads: ``emotion`` (softmax over neutral +
the six emotions, trained with cross-entropy against :func:`emotion_distribution`, so with
half-intensity clips in ``--extra-data`` a weaker expression reads as a lower probability and a
50/50 mix as a top-2; the six emotion probabilities are reported), ``aus`` (13,
sigmoid), ``landmarks`` (68 x 2, in 0..1 of the crop). Colour jitter, blur and noise augmentation
make it read the softer, colour-shifted frames a small VAE decodes; ``--autoencoder MODEL`` also
trains it on frames round-tripped through that model's VAE. ``--au-frames N`` adds N frames of the
train identities whose AUs vary independently (:func:`training.synthetic.au_varied_frames`; AU and
landmark losses only), so the AU head reads each AU's intensity rather than the prototype it belongs
to; :func:`emotion_from_aus` then reads a mix of emotions from the AUs (the FACS route to compound
expressions). ``--mix-frames N`` adds N exactly labelled stills of the train identities with random
one- or two-emotion mixes at random weights (:func:`training.synthetic.mixed_emotion_frames`), so the
emotion head reads what a mix looks like and how strong each part is (the compound recogniser,
``assets/models/recognizer_compound``, is trained so). About 0.3 M parameters,
shipped as ``assets/models/recognizer/recognizer.safetensors`` + ``recognizer.json``.

``python -m training.recognizer --data DIR --out DIR [--steps N] [--seed S]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from engine.diffusion.model import MoEEModel
from engine.emotions import BASIC_EMOTIONS
from engine.io.atomic import atomic_path

INPUT_SIZE = 64
N_LANDMARKS = 68
N_AUS = 13
CHANNELS = (24, 48, 64, 96)
HIDDEN = 192
WEIGHTS_FILE = "recognizer.safetensors"
CONFIG_FILE = "recognizer.json"
LANDMARK_LOSS_WEIGHT = 20.0
MAX_BLUR_SIGMA = 1.5
NOISE_STD = 0.03
#: The face crop, as fractions of the image side (start, end), before resizing to INPUT_SIZE.
CROP = (0.16, 0.84)
COLOUR_GAIN = 0.25
COLOUR_OFFSET = 0.2
#: Frames per VAE call when round-tripping the training set.
AUTOENCODER_CHUNK = 256


class Recognizer(nn.Module):
    """Frames ``(N, 3, 64, 64)`` in -1..1 -> emotion (N, 6), AUs (N, 13), landmarks (N, 68, 2) in 0..1."""

    def __init__(self, n_emotions: int = len(BASIC_EMOTIONS), n_aus: int = N_AUS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for ch in CHANNELS:
            layers += [nn.Conv2d(in_ch, ch, 3, stride=2, padding=1), nn.GroupNorm(8, ch), nn.SiLU(),
                       nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU()]
            in_ch = ch
        self.features = nn.Sequential(*layers)
        side = INPUT_SIZE // 2 ** len(CHANNELS)
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * side * side, HIDDEN), nn.SiLU())
        self.emotion = nn.Linear(HIDDEN, n_emotions + 1)  # neutral + the emotions
        self.aus = nn.Linear(HIDDEN, n_aus)
        self.landmarks = nn.Linear(HIDDEN, N_LANDMARKS * 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(self.features(x))
        logits = self.emotion(h)
        return {"logits": logits, "emotion": torch.softmax(logits, dim=-1)[:, 1:], "aus": torch.sigmoid(self.aus(h)),
                "landmarks": self.landmarks(h).reshape(-1, N_LANDMARKS, 2) + 0.5}


def crop_box(size: int) -> tuple[int, int]:
    """Pixel start and length of the face crop of a ``size`` x ``size`` frame."""
    start, end = round(CROP[0] * size), round(CROP[1] * size)
    return start, end - start


def to_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> face crop ``(N, 3, 64, 64)`` float in -1..1 (area resize)."""
    frames = np.asarray(frames)
    start, length = crop_box(frames.shape[1])
    frames = frames[:, start:start + length, start:start + length]
    frames = np.stack([cv2.resize(f, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA) for f in frames])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.no_grad()
def predict(model: Recognizer, frames: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """Predictions for uint8 frames ``(N, H, W, 3)``; landmarks in pixels of the input frames."""
    model.eval()
    size = np.asarray(frames).shape[1]
    outs: dict[str, list[np.ndarray]] = {"emotion": [], "aus": [], "landmarks": []}
    for i in range(0, len(frames), batch):
        pred = model(to_input(frames[i:i + batch]))
        for k in outs:
            outs[k].append(pred[k].numpy())
    result = {k: np.concatenate(v) for k, v in outs.items()}
    start, length = crop_box(size)
    result["landmarks"] = result["landmarks"] * length + start
    return result


def save_recognizer(model: Recognizer, folder: str | Path, info: dict[str, Any]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "moee-recognizer", "format_version": "1"})
    with atomic_path(folder / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps({"format": "moee-recognizer", "format_version": 1, "input_size": INPUT_SIZE,
                                   "emotions": list(BASIC_EMOTIONS), **info}, indent=1))
    return folder


def load_recognizer(folder: str | Path) -> Recognizer:
    folder = Path(folder)
    model = Recognizer()
    state = load_file(str(folder / WEIGHTS_FILE))
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def load_frames_with_truth(data: str | Path, split: str, size: int = 128,
                           max_clips: int | None = None) -> dict[str, np.ndarray]:
    """All frames of one split of a synthetic data set with emotion, AU and landmark ground truth."""
    from training.datasets import open_dataset

    clips = [c for c in open_dataset(data) if c.split == split]
    if max_clips:
        clips = clips[:max_clips]
    frames, emotions, aus, lms = [], [], [], []
    for clip in clips:
        f = clip.load_frames()
        lm = clip.load_landmarks()
        au_path = Path(clip.source) / "aus.npy"
        if lm is None or not au_path.exists():
            continue
        scale = size / f.shape[1]
        frames.append(np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in f]))
        emotions.append(np.repeat(clip.emotion_vector[None], len(f), axis=0))
        aus.append(np.load(au_path).astype(np.float32))
        lms.append(lm * scale)
    if not frames:
        raise ValueError(f"no clips with ground truth in split {split!r} of {data}")
    return {"frames": np.concatenate(frames), "emotion": np.concatenate(emotions), "aus": np.concatenate(aus),
            "landmarks": np.concatenate(lms)}


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    sigma = float(rng.uniform(0.0, MAX_BLUR_SIGMA))
    if sigma > 0.3:
        radius = 3
        coords = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(coords**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.reshape(1, 1, 1, -1).repeat(3, 1, 1, 1),
                     groups=3)
        x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.reshape(1, 1, -1, 1).repeat(3, 1, 1, 1),
                     groups=3)
    noise = torch.from_numpy(rng.normal(0.0, NOISE_STD, x.shape).astype(np.float32))
    gain = torch.from_numpy(rng.uniform(1 - COLOUR_GAIN, 1 + COLOUR_GAIN, (x.shape[0], 3, 1, 1)).astype(np.float32))
    offset = torch.from_numpy(rng.uniform(-COLOUR_OFFSET, COLOUR_OFFSET, (x.shape[0], 3, 1, 1)).astype(np.float32))
    return x * gain + offset + noise


@torch.no_grad()
def reconstruct(model: MoEEModel, frames: np.ndarray) -> np.ndarray:
    """VAE round trip of uint8 frames: the ceiling on what any generation through this VAE can reach."""
    from engine.diffusion.pipeline import image_to_tensor, tensor_to_images

    x = torch.cat([image_to_tensor(f) for f in frames])
    return tensor_to_images(model.decode_latents(model.encode_images(x)))


def autoencoder_round_trip(model: MoEEModel, frames: np.ndarray, chunk: int = AUTOENCODER_CHUNK) -> np.ndarray:
    """uint8 frames through ``model``'s VAE and back (in chunks, to bound memory)."""
    with torch.no_grad():
        return np.concatenate([reconstruct(model, frames[i:i + chunk]) for i in range(0, len(frames), chunk)])


def emotion_distribution(weights: np.ndarray) -> np.ndarray:
    """Soft target of the 7-way emotion head: ``(neutral = 1 - sum(w), w_1..w_6)``, normalised.

    A full-intensity emotion is one-hot (the previous class target); a half-intensity one is half
    neutral, so the reported emotion probability reads the intensity. ``weights``: ``(N, 6)`` in 0..1.
    """
    weights = np.clip(np.asarray(weights, np.float32), 0.0, 1.0)
    neutral = np.clip(1.0 - weights.sum(axis=1, keepdims=True), 0.0, None)
    distribution = np.concatenate([neutral, weights], axis=1)
    return distribution / distribution.sum(axis=1, keepdims=True)


def nonnegative_least_squares(basis: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``argmin_{w >= 0} ||basis @ w - target||^2`` for a few columns (exact: every active set is tried).

    ``basis``: ``(M, K)`` with small ``K`` (here the six emotions); ``target``: ``(M,)``.
    """
    basis = np.asarray(basis, np.float64)
    target = np.asarray(target, np.float64)
    k = basis.shape[1]
    best, best_error = np.zeros(k), float(target @ target)
    for active in range(1, 2**k):
        columns = [j for j in range(k) if active >> j & 1]
        solution, *_ = np.linalg.lstsq(basis[:, columns], target, rcond=None)
        if (solution < 0).any():
            continue
        error = float(np.sum((basis[:, columns] @ solution - target) ** 2))
        if error < best_error - 1e-12:
            best, best_error = np.zeros(k), error
            best[columns] = solution
    return best


def prototype_matrix(emotions: Sequence[str] = BASIC_EMOTIONS) -> np.ndarray:
    """``(13, E)``: column ``e`` = the EMFACS AU prototype of emotion ``e`` at weight 1."""
    from training.synthetic import EMOTION_PROTOTYPES, aus_to_vector

    return np.stack([aus_to_vector(EMOTION_PROTOTYPES[e]) for e in emotions], axis=1)


def emotion_from_aus(aus: np.ndarray, emotions: Sequence[str] = BASIC_EMOTIONS) -> np.ndarray:
    """Emotion weights read from AU intensities: ``w = argmin_{w >= 0} ||P w - a||``, P = prototypes.

    ``aus``: ``(13,)`` or ``(N, 13)`` -> ``(E,)`` or ``(N, E)``. A 50/50 mix of two emotions, rendered as
    the AU union, reads as roughly 0.5 / 0.5 of those two, so its top two are the mixed emotions.
    """
    aus = np.asarray(aus, np.float64)
    basis = prototype_matrix(emotions)
    flat = aus.reshape(-1, aus.shape[-1])
    weights = np.stack([nonnegative_least_squares(basis, a) for a in flat])
    return weights.reshape(*aus.shape[:-1], len(emotions)).astype(np.float32)


def identities_of_split(data: str | Path, split: str) -> list[Any]:
    """The synthetic :class:`~training.synthetic.Identity` of every person in ``split`` (identity.json)."""
    from training.datasets import open_dataset
    from training.synthetic import Identity

    folders = sorted({Path(c.source).parent for c in open_dataset(data) if c.split == split})
    seeds = [json.loads((f / "identity.json").read_text())["seed"] for f in folders if (f / "identity.json").is_file()]
    if not seeds:
        raise ValueError(f"no identity.json in split {split!r} of {data}: --au-frames needs a synthetic data set")
    return [Identity.from_seed(int(seed)) for seed in seeds]


def synthetic_frame_size(data: str | Path) -> int:
    """The frame size a synthetic data set was rendered at (its index.json), default 128."""
    from training.synthetic import DEFAULT_SIZE

    index = Path(data) / "index.json"
    return int(json.loads(index.read_text()).get("size", DEFAULT_SIZE)) if index.is_file() else DEFAULT_SIZE


def _stills_at_size(truth: dict[str, np.ndarray], source_size: int, size: int) -> dict[str, np.ndarray]:
    """Rendered stills resized from ``source_size`` to ``size`` px (frames by area, landmarks scaled)."""
    if size != source_size:
        truth["frames"] = np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_AREA) for x in truth["frames"]])
        truth["landmarks"] = truth["landmarks"] * (size / source_size)
    return truth


def au_varied_truth(data: str | Path, split: str, count: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """:func:`training.synthetic.au_varied_frames` of ``split``'s people at ``size`` px (emotion unknown: NaN)."""
    from training.synthetic import au_varied_frames

    source_size = synthetic_frame_size(data)
    truth = _stills_at_size(au_varied_frames(identities_of_split(data, split), count, source_size, seed),
                            source_size, size)
    truth["emotion"] = np.full((count, len(BASIC_EMOTIONS)), np.nan, np.float32)
    return truth


def mixed_emotion_truth(data: str | Path, split: str, count: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """:func:`training.synthetic.mixed_emotion_frames` of ``split``'s people at ``size`` px (exact labels).

    Rendered at the data set's size and resized, as the evaluation renders its ground truth.
    """
    from training.synthetic import mixed_emotion_frames

    source_size = synthetic_frame_size(data)
    return _stills_at_size(mixed_emotion_frames(identities_of_split(data, split), count, source_size, seed),
                           source_size, size)


def _subset(total: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``min(count, total)`` distinct items out of ``total``."""
    return np.sort(rng.choice(total, size=min(count, total), replace=False))


def _training_truth(data: str | Path, extra_data: Sequence[str | Path], frame_size: int, au_frames: int,
                    mix_frames: int, seed: int) -> dict[str, np.ndarray]:
    """Step 1: the ``train`` splits of ``data`` and ``extra_data``, plus AU-varied and labelled mix stills."""
    parts = [load_frames_with_truth(d, "train", size=frame_size) for d in (data, *extra_data)]
    if au_frames:
        parts.append(au_varied_truth(data, "train", au_frames, frame_size, seed))
    if mix_frames:
        parts.append(mixed_emotion_truth(data, "train", mix_frames, frame_size, seed))
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def _round_trip_pool(vae_model: MoEEModel, autoencoder: str | Path, frames: np.ndarray, frame_size: int,
                     count: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 2 (``autoencoder``): ``count`` random training frames through the VAE: (inputs, their indices)."""
    if frame_size != vae_model.cfg.image_size:
        raise ValueError(f"frames are {frame_size} px but {autoencoder} works at {vae_model.cfg.image_size} px; "
                         f"pass --frame-size {vae_model.cfg.image_size}")
    decoded_index = _subset(len(frames), count, rng)
    x_decoded = to_input(autoencoder_round_trip(vae_model, frames[decoded_index]))
    return x_decoded, torch.from_numpy(decoded_index)


def _training_targets(train: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Step 3: the loss targets (emotion distribution, AUs, landmarks in the crop, which rows are labelled)."""
    targets = {k: torch.from_numpy(train[k]) for k in ("emotion", "aus")}
    start, length = crop_box(train["frames"].shape[1])
    targets["landmarks"] = torch.from_numpy((train["landmarks"] - start) / length)
    labelled = ~np.isnan(train["emotion"]).any(axis=1)
    targets["labelled"] = torch.from_numpy(labelled.astype(np.float32))
    targets["distribution"] = torch.from_numpy(emotion_distribution(np.nan_to_num(train["emotion"])))
    return targets


def _recognizer_loss(pred: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                     idx: torch.Tensor) -> torch.Tensor:
    """Emotion cross-entropy (labelled rows only) + AU binary cross-entropy + weighted landmark MSE."""
    labelled_weight = targets["labelled"][idx]
    emotion_loss = F.cross_entropy(pred["logits"], targets["distribution"][idx], reduction="none")
    return ((emotion_loss * labelled_weight).sum() / labelled_weight.sum().clamp(min=1.0)
            + F.binary_cross_entropy(pred["aus"], targets["aus"][idx].clamp(0, 1))
            + LANDMARK_LOSS_WEIGHT * F.mse_loss(pred["landmarks"], targets["landmarks"][idx].float()))


def _fit(model: Recognizer, x_all: torch.Tensor, targets: dict[str, torch.Tensor], steps: int, batch: int,
         lr: float, rng: np.random.Generator, round_trips: tuple[torch.Tensor, torch.Tensor] | None,
         autoencoder_fraction: float) -> None:
    """Step 4: AdamW with a cosine learning rate; ``round_trips`` (inputs, indices) replace a share of each batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        idx = torch.from_numpy(rng.integers(0, len(x_all), batch))
        if round_trips is None:
            x = x_all[idx]
        else:
            # a share of the batch is drawn from the round-tripped frames instead (labels follow)
            x_decoded, decoded_index = round_trips
            decoded = torch.from_numpy(rng.random(batch) < autoencoder_fraction)
            pick = torch.from_numpy(rng.integers(0, len(x_decoded), batch))
            idx = torch.where(decoded, decoded_index[pick], idx)
            x = torch.where(decoded[:, None, None, None], x_decoded[pick], x_all[idx])
        loss = _recognizer_loss(model(_augment(x, rng)), targets, idx)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"recogniser step {step} loss {loss.item():.4f}", flush=True)


# Over 60 lines only by its docstring (each option explained); the body runs the named steps above.
def train_recognizer(data: str | Path, out: str | Path, steps: int = 1500, batch: int = 48, lr: float = 2e-3,
                     seed: int = 0, frame_size: int = 128, autoencoder: str | Path | None = None,
                     autoencoder_fraction: float = 0.5, autoencoder_frames: int = 6000,
                     extra_data: Sequence[str | Path] = (), au_frames: int = 0,
                     mix_frames: int = 0) -> dict[str, Any]:
    """Train on the ``train`` split, report held-out (``test`` split) accuracy, save to ``out``.

    ``extra_data``: more synthetic sets whose ``train`` splits are added (e.g. the same identities at
    half intensity, so the emotion output reads intensities: see :func:`emotion_distribution`).
    ``frame_size``: frames are first resized to this (the image size of the model it will measure).
    ``autoencoder``: a model folder; ``autoencoder_frames`` training frames (a random subset: the VAE
    is slow on a CPU) are round-tripped through its VAE, as the generator's frames always are, and
    ``autoencoder_fraction`` of every batch is drawn from them with the same exact labels, so the
    recogniser reads fine detail such as the lip gap in decoded frames too. Held-out metrics are
    then also reported on round trips of (up to as many) held-out frames.
    ``au_frames``: that many AU-varied frames of the train identities join the training set (no
    emotion label: they train the AU and landmark heads only); held-out AU error and the compound
    top-2 read by :func:`emotion_from_aus` are then reported on AU-varied / compound frames of the
    held-out identities.
    ``mix_frames``: that many stills of the train identities with random one- or two-emotion mixes
    at random weights (:func:`training.synthetic.mixed_emotion_frames`), exactly labelled, so the
    emotion head learns what a mix of two emotions looks like; the held-out compound top-2 of the
    emotion head is then reported (as with ``au_frames``).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = _training_truth(data, extra_data, frame_size, au_frames, mix_frames, seed)
    x_all = to_input(train["frames"])
    round_trips = vae_model = None
    if autoencoder:
        from engine.diffusion.checkpoint import load_model

        vae_model = load_model(autoencoder)
        round_trips = _round_trip_pool(vae_model, autoencoder, train["frames"], frame_size, autoencoder_frames, rng)
    targets = _training_targets(train)
    model = Recognizer()
    start = time.perf_counter()
    _fit(model, x_all, targets, steps, batch, lr, rng, round_trips, autoencoder_fraction)
    # step 5: held-out readings, saved with the recogniser and returned
    heldout = load_frames_with_truth(data, "test", size=frame_size)
    metrics = evaluate_recognizer(model, heldout)
    info: dict[str, Any] = {"metrics_heldout_ground_truth": metrics, "seed": seed, "frame_size": frame_size}
    if autoencoder:
        keep = _subset(len(heldout["frames"]), autoencoder_frames, np.random.default_rng(seed))
        decoded_truth = {k: v[keep] for k, v in heldout.items()}
        decoded_truth["frames"] = autoencoder_round_trip(vae_model, decoded_truth["frames"])
        info["metrics_heldout_autoencoder_round_trip"] = evaluate_recognizer(model, decoded_truth)
        info["autoencoder"] = {"model": str(autoencoder), "fraction": autoencoder_fraction}
    if au_frames:
        info["metrics_heldout_au_varied"] = evaluate_au_reading(model, data, frame_size, seed)
        info["au_frames"] = au_frames
    if au_frames or mix_frames:
        info["metrics_heldout_compound"] = evaluate_compound_reading(model, data, frame_size)
        info["mix_frames"] = mix_frames
    metrics["train_seconds"] = round(time.perf_counter() - start, 1)
    metrics["steps"] = steps
    save_recognizer(model, out, info)
    if autoencoder:
        metrics["autoencoder_round_trip"] = info["metrics_heldout_autoencoder_round_trip"]
    if au_frames:
        metrics["au_varied"] = info["metrics_heldout_au_varied"]
    if au_frames or mix_frames:
        metrics["compound"] = info["metrics_heldout_compound"]
    return metrics


def evaluate_recognizer(model: Recognizer, truth: dict[str, np.ndarray]) -> dict[str, float]:
    """Held-out accuracy of the recogniser itself on rendered ground truth (an upper bound for eval)."""
    pred = predict(model, truth["frames"])
    emotional = np.nan_to_num(truth["emotion"]).max(axis=1) > 0
    acc = float(np.mean(pred["emotion"][emotional].argmax(1) == truth["emotion"][emotional].argmax(1)))
    neutral_prob = 1.0 - pred["emotion"].sum(1)
    is_neutral = neutral_prob > pred["emotion"].max(1)
    neutral_ok = float(np.mean(is_neutral[~emotional])) if (~emotional).any() else float("nan")
    akd = float(np.linalg.norm(pred["landmarks"] - truth["landmarks"], axis=-1).mean())
    au_mae = float(np.abs(pred["aus"] - truth["aus"]).mean())
    return {"emotion_accuracy": round(acc, 4), "neutral_accuracy": round(neutral_ok, 4),
            "landmark_error_px": round(akd, 3), "au_mae": round(au_mae, 4)}


#: Held-out frames for the AU-reading metrics of :func:`evaluate_au_reading`.
AU_EVAL_FRAMES = 600


def evaluate_au_reading(model: Recognizer, data: str | Path, frame_size: int, seed: int) -> dict[str, float]:
    """Held-out AU reading: AU error and mean per-AU correlation on AU-varied frames."""
    truth = au_varied_truth(data, "test", AU_EVAL_FRAMES, frame_size, seed + 1)
    aus = predict(model, truth["frames"])["aus"]
    return {"au_mae": round(float(np.abs(aus - truth["aus"]).mean()), 4),
            "au_correlation": round(float(np.mean([np.corrcoef(aus[:, j], truth["aus"][:, j])[0, 1]
                                                   for j in range(aus.shape[1])])), 4)}


def evaluate_compound_reading(model: Recognizer, data: str | Path, frame_size: int) -> dict[str, float]:
    """Held-out compound top-2, read by the emotion head and by :func:`emotion_from_aus`.

    The compound frames are the held-out people rendered with each two-emotion
    :data:`engine.emotions.COMPOUND_PRESETS` mix (one still frame each, mouth closed).
    """
    from engine.emotions import COMPOUND_PRESETS
    from training.metrics import top2_match
    from training.synthetic import FaceRenderer, emotion_to_aus

    hits: dict[str, list[bool]] = {"classifier": [], "aus": []}
    mixes = [m for m in COMPOUND_PRESETS.values() if len(m) == 2]
    for person in identities_of_split(data, "test"):
        renderer = FaceRenderer(person, synthetic_frame_size(data))
        frames = [renderer.render(emotion_to_aus(m))[0] for m in mixes]
        frames = np.stack([cv2.resize(f, (frame_size, frame_size), interpolation=cv2.INTER_AREA) for f in frames])
        pred = predict(model, frames)
        readings = {"classifier": pred["emotion"], "aus": emotion_from_aus(pred["aus"])}
        for way, read in readings.items():
            hits[way] += [top2_match(weights, mix) for weights, mix in zip(read, mixes, strict=True)]
    return {f"compound_top2_from_{way}": round(float(np.mean(h)), 4) for way, h in hits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.recognizer", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--frame-size", type=int, default=128,
                        help="resize frames to this first: the image size of the model it will measure")
    parser.add_argument("--autoencoder", default=None,
                        help="model folder: also train on frames round-tripped through its VAE (as generated frames are)")
    parser.add_argument("--autoencoder-fraction", type=float, default=0.5,
                        help="share of training frames shown as VAE round trips (with --autoencoder)")
    parser.add_argument("--extra-data", action="append", default=[],
                        help="another synthetic set whose train split is added (e.g. half-intensity clips)")
    parser.add_argument("--autoencoder-frames", type=int, default=6000,
                        help="how many training frames are round-tripped (with --autoencoder)")
    parser.add_argument("--au-frames", type=int, default=0,
                        help="add this many frames of the train people with independently varied AUs (AU reading)")
    parser.add_argument("--mix-frames", type=int, default=0,
                        help="add this many exactly labelled stills of the train people with random "
                             "one- or two-emotion mixes (compound reading)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    metrics = train_recognizer(args.data, args.out, args.steps, args.batch, seed=args.seed,
                               frame_size=args.frame_size, autoencoder=args.autoencoder,
                               autoencoder_fraction=args.autoencoder_fraction,
                               autoencoder_frames=args.autoencoder_frames, extra_data=args.extra_data,
                               au_frames=args.au_frames, mix_frames=args.mix_frames)
    json.dump(metrics, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
