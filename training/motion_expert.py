"""``moee train expert`` for the default (portrait) renderer: one custom emotion as a new slot of the motion MoE.

The paper's recipe (MoEE Sec. 3.4), in motion space: the base motion model is loaded, a slot is added
(:meth:`engine.portrait.motion.MotionModel.add_emotion`) and only that slot trains: its expert, its latent tokens and
its gate column. The six experts, the trunk, the head and the lip model stay frozen, so the six's output is
unchanged (bit-identical with the new slider at 0). The loss is the squared error of the predicted
displacement (face units) on the 68 landmarks, *masked*: on frames where the mouth is speaking the mouth's
landmarks are left out (the lips come from the audio); on closed-mouth frames the mouth counts, so an
expression of the lips (a smirk) is learnt. The slider weight of each example is its intensity (noisy
labels: a recipe is drawn at random strengths), and a share of the examples mix a basic emotion in, so the
new slider mixes with the six.

Data (``--data``), any of:

* an **AU recipe** for users with no footage: ``recipe.json`` in the folder (or the JSON file itself),
  ``{"aus": {"12L": 1.0, "14L": 0.7}}``: action units of the synthetic renderer
  (:data:`training.synthetic.AU_LIST` and AU14) at slider 1, a suffix ``L`` / ``R`` for one side of the face
  (the person's left / right, FACS's convention: image right / left). Ground truth is the renderer's exact
  geometry (:meth:`training.synthetic.FaceRenderer.geometry`) of many synthetic people; no pixel is drawn.
* **labelled clips or photos**: ``labels.csv`` with the columns ``file`` and ``emotion`` (and optionally
  ``speaker``): videos (MEAD, RAVDESS, CREMA-D style) or photos labelled with the new emotion's name and
  ``neutral``. MediaPipe Face Mesh reads every file at full resolution; the 68 points are taken into face
  units by a similarity on the rigid points (as the portrait rig does) and the expression is each frame's
  shape minus its speaker's neutral (the mean of their neutral files, or else the first frames of the clip).

Writes ``OUT/NAME.moeexpert.safetensors`` (:data:`engine.portrait.motion.MOTION_EXPERT_FORMAT`); progress as the
pixel trainer's JSON-lines log (``--log``), Stop through ``--stop-file`` and exact ``--resume`` from
``OUT/checkpoint``, as the studio's trainer panel expects.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from engine.io.atomic import atomic_write_text
from engine.portrait.motion import EXPERT_PACK_SUFFIX, MOTION_CONFIG, MotionModel
from training.errors import DatasetError, TrainingError
from training.recipe import Recipe, read_recipe

#: Checkpoint folder and state file (the names the pixel trainer and the studio's trainer panel use).
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"
CHECKPOINT_WEIGHTS = "motion_expert.safetensors"
#: Softness (face units) of the midline blend of a one-sided action unit.
SIDE_SOFTNESS = 0.06
#: The mouth's landmarks (iBUG 48..67): masked from the loss on speaking frames.
MOUTH_68 = tuple(range(48, 68))
#: Inner-lip gap (face units, points 62-66) above the neutral's at which a real frame counts as speaking.
SPEAKING_GAP = 0.03
#: A clip without a neutral file of its speaker: its first frames, this many seconds, are the neutral.
CLIP_NEUTRAL_SECONDS = 0.3
#: Frames read per clip (evenly spaced): Face Mesh on full-resolution frames is the slow part.
FRAMES_PER_CLIP = 24
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")


@dataclass(frozen=True)
class ExpertTrainingConfig:
    """How the motion expert trains (defaults: about a minute on a busy CPU core)."""

    steps: int = 300
    batch: int = 64  # landmark examples per step
    lr: float = 3e-3
    identities: int = 80  # synthetic people of a recipe
    samples: int = 3000  # recipe examples drawn
    closed_share: float = 0.6  # share of recipe examples with the mouth closed (the mouth in the loss)
    mix_share: float = 0.25  # share with a basic emotion mixed in
    seed: int = 0
    log_every: int = 1
    save_every: int = 100


def _merge(a: dict[int, float], b: dict[int, float], scale: float = 1.0) -> dict[int, float]:
    """The AU union of ``a`` and ``b * scale`` (strongest per AU, as emotion_to_aus merges emotions)."""
    out = dict(a)
    for au, value in b.items():
        out[au] = max(out.get(au, 0.0), value * scale)
    return out


def recipe_landmarks(renderer, recipe: Recipe, intensity: float, base_aus: dict[int, float],
                     opening: float) -> np.ndarray:
    """(68, 2) face-unit landmarks of ``base_aus`` plus ``recipe`` at ``intensity``, one-sided AUs blended
    across the face's midline (the person's left is image right: x > 0)."""
    both = _merge(base_aus, recipe.both, intensity)
    points = renderer.landmarks_face_units(renderer.geometry(both, opening, 0.0))
    if not (recipe.left or recipe.right):
        return points
    rest_x = renderer.landmarks_face_units(renderer.geometry({}, 0.0, 0.0))[:, 0]
    out = points.copy()
    for aus, sign in ((recipe.left, 1.0), (recipe.right, -1.0)):
        if aus:
            sided = renderer.landmarks_face_units(renderer.geometry(_merge(both, aus, intensity), opening, 0.0))
            weight = 1.0 / (1.0 + np.exp(-sign * rest_x / SIDE_SOFTNESS))
            out += weight[:, None] * (sided - points)
    return out


def recipe_displacement(renderer, recipe: Recipe, intensity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(neutral landmarks, the recipe's displacement at ``intensity`` with the mouth closed), both (68, 2)."""
    rest = renderer.landmarks_face_units(renderer.geometry({}, 0.0, 0.0))
    return rest, recipe_landmarks(renderer, recipe, intensity, {}, 0.0) - rest


def recipe_examples(recipe: Recipe, emotions: tuple[str, ...], cfg: ExpertTrainingConfig) -> dict[str, np.ndarray]:
    """Exact examples of the recipe on synthetic people: shapes, openings, weights (E), targets, loss masks."""
    from training.synthetic import FaceRenderer, Identity, emotion_to_aus

    rng = np.random.default_rng(cfg.seed)
    seeds = [int(s) for s in rng.choice(2**31 - 1, cfg.identities, replace=False)]
    renderers = [FaceRenderer(Identity.from_seed(s)) for s in seeds]
    rests = [r.landmarks_face_units(r.geometry({}, 0.0, 0.0)) for r in renderers]
    base, count, new = len(emotions) - 1, cfg.samples, len(emotions) - 1
    out = {"shapes": np.zeros((count, 68, 2), np.float32), "targets": np.zeros((count, 68, 2), np.float32),
           "openings": np.zeros(count, np.float32), "weights": np.zeros((count, len(emotions)), np.float32),
           "masks": np.ones((count, 68), np.float32)}
    for k in range(count):
        person = int(rng.integers(len(renderers)))
        renderer = renderers[person]
        opening = 0.0 if rng.random() < cfg.closed_share else float(rng.uniform(0.1, 1.0))
        intensity = float(rng.uniform(0.05, 1.0))
        mix: dict[str, float] = {}
        if rng.random() < cfg.mix_share:
            mix = {emotions[int(rng.integers(base))]: float(rng.uniform(0.2, 1.0))}
        for name, value in mix.items():
            out["weights"][k, emotions.index(name)] = value
        out["weights"][k, new] = intensity
        moved = recipe_landmarks(renderer, recipe, intensity, emotion_to_aus(mix) if mix else {}, opening)
        out["shapes"][k], out["targets"][k], out["openings"][k] = rests[person], moved - rests[person], opening
        if opening > 0:
            out["masks"][k, list(MOUTH_68)] = 0.0
    return out


# ---------------------------------------------------------------------------------------------- real footage
def _frames_of(path: Path) -> tuple[list[np.ndarray], float]:
    """Evenly spaced frames (RGB, full resolution) of a video or a photo, and the video's fps (0 for a photo)."""
    from engine.io.image import load_image

    if path.suffix.lower() not in VIDEO_SUFFIXES:
        return [load_image(path)], 0.0
    from engine.io.video import probe_video, read_frames

    info = probe_video(path)
    frames = [np.asarray(f) for f in read_frames(path)]
    if len(frames) > FRAMES_PER_CLIP:
        picks = np.linspace(0, len(frames) - 1, FRAMES_PER_CLIP).round().astype(int)
        head = int(math.ceil(CLIP_NEUTRAL_SECONDS * float(info.fps or 25)))
        frames = [frames[i] for i in sorted(set(picks.tolist()) | set(range(min(head, len(frames)))))]
    return frames, float(info.fps or 25)


def face_unit_shapes(frames: list[np.ndarray], mean_shape: np.ndarray) -> np.ndarray:
    """(F, 68, 2) face-unit shapes of the frames' faces (Face Mesh -> iBUG 68 -> similarity on the rigid
    points onto the motion model's mean face, as :func:`engine.portrait.rig.build_rig` does)."""
    from engine.io.face import detect_landmarks
    from engine.portrait.rig import LM68_FROM_MP478, RIGID_68, fit_similarity

    shapes = []
    for frame in frames:
        points = detect_landmarks(frame).points[list(LM68_FROM_MP478)].astype(np.float64)
        to_face = fit_similarity(points[list(RIGID_68)], mean_shape[list(RIGID_68)])
        shapes.append(to_face.apply(points))
    return np.asarray(shapes, np.float64).reshape(-1, 68, 2)


def _inner_gap(shapes: np.ndarray) -> np.ndarray:
    return np.linalg.norm(shapes[..., 66, :] - shapes[..., 62, :], axis=-1)


def footage_examples(folder: Path, name: str, motion: MotionModel, log: Callable[[str], None] = print,
                     ) -> dict[str, np.ndarray]:
    """Examples from ``labels.csv`` (clips or photos labelled ``name`` and ``neutral``) read by Face Mesh."""
    from engine.portrait.animator import clamp_shape
    from training.synthetic.renderer import SPEECH_OPEN_GAIN

    csv_path = folder / "labels.csv"
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = {c.strip().lower(): c for c in (rows[0] if rows else {})}
    if "file" not in columns or "emotion" not in columns:
        raise DatasetError(f"{csv_path} needs the columns file and emotion")
    by_speaker: dict[str, dict[str, list[np.ndarray]]] = {}
    clip_heads: dict[str, list[np.ndarray]] = {}
    key = name.strip().lower()
    for row in rows:
        label = (row[columns["emotion"]] or "").strip().lower()
        if label not in (key, "neutral"):
            continue
        path = folder / (row[columns["file"]] or "").strip()
        speaker = (row.get(columns.get("speaker", ""), "") or "").strip() or "(one speaker)"
        frames, fps = _frames_of(path)
        shapes = face_unit_shapes(frames, motion.mean_shape)
        by_speaker.setdefault(speaker, {}).setdefault(label, []).append(shapes)
        if label == key and fps > 0:
            head = max(1, int(math.ceil(CLIP_NEUTRAL_SECONDS * fps)))
            clip_heads.setdefault(speaker, []).append(shapes[: min(head, len(shapes))])
        log(f"read {path.name}: {len(shapes)} face(s)")
    shapes_out, targets, openings, masks = [], [], [], []
    for speaker, labelled in by_speaker.items():
        expressive = labelled.get(key, [])
        if not expressive:
            continue
        neutrals = labelled.get("neutral") or clip_heads.get(speaker)
        if not neutrals:
            raise DatasetError(f"{csv_path}: speaker {speaker!r} has photos of '{key}' but no neutral one; add a "
                               "neutral photo of the same person (emotion 'neutral')")
        neutral = np.concatenate(neutrals).mean(0)
        model_shape = clamp_shape(neutral, motion.mean_shape, motion.shape_std)
        neutral_gap = float(_inner_gap(neutral))
        for shape in np.concatenate(expressive):
            gap = float(_inner_gap(shape)) - neutral_gap
            speaking = gap > SPEAKING_GAP
            shapes_out.append(model_shape)
            targets.append(shape - neutral)
            openings.append(float(np.clip(gap / SPEECH_OPEN_GAIN, 0.0, 1.0)) if speaking else 0.0)
            mask = np.ones(68, np.float32)
            if speaking:
                mask[list(MOUTH_68)] = 0.0
            masks.append(mask)
    if not shapes_out:
        raise DatasetError(f"{csv_path} holds no clip or photo labelled '{key}'")
    count = len(shapes_out)
    weights = np.zeros((count, len(motion.cfg.emotions)), np.float32)
    weights[:, -1] = 1.0
    return {"shapes": np.asarray(shapes_out, np.float32), "targets": np.asarray(targets, np.float32),
            "openings": np.asarray(openings, np.float32), "weights": weights, "masks": np.asarray(masks, np.float32)}


def check_expert_data(path: str | Path, name: str) -> str:
    """What a data folder teaches the motion expert: ``"recipe"`` or ``"footage"``; :class:`DatasetError` else."""
    from training.datasets import check_custom_emotion_data

    root = Path(path)
    if read_recipe(root) is not None:
        return "recipe"
    check_custom_emotion_data(root, name)
    return "footage"


# ---------------------------------------------------------------------------------------------- training
def slot_parameters(motion: MotionModel, index: int) -> list[torch.nn.Parameter]:
    """Freeze the whole motion model but the custom slot ``index``: its expert, latent tokens and gate column."""
    motion.moe.requires_grad_(False)
    motion.lips.requires_grad_(False)
    expert, latents, gate = motion.moe.slot_modules(index)
    params = [*expert.parameters(), latents, *gate.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared displacement error over the landmarks the mask keeps (the masked mouth of speaking frames)."""
    err = ((pred - target) ** 2).sum(-1) * mask
    return err.sum() / mask.sum().clamp_min(1.0) / 2.0


def lr_at(step: int, cfg: ExpertTrainingConfig) -> float:
    """Cosine decay from ``cfg.lr`` to a tenth of it (a function of the step: a resumed run continues it exactly)."""
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * step / max(1, cfg.steps))))


def _save_checkpoint(out: Path, params: list[torch.nn.Parameter], optimizer: torch.optim.Adam, step: int,
                     cfg: ExpertTrainingConfig, name: str) -> None:
    from safetensors.torch import save as save_bytes

    from engine.io.atomic import atomic_write_bytes

    folder = out / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for i, p in enumerate(params):
        tensors[f"param.{i}"] = p.detach().clone().contiguous()
        state = optimizer.state.get(p, {})
        for k in ("exp_avg", "exp_avg_sq"):
            if k in state:
                tensors[f"{k}.{i}"] = state[k].detach().clone().contiguous()
    atomic_write_bytes(folder / CHECKPOINT_WEIGHTS, save_bytes(tensors))
    adam_steps = [float(optimizer.state.get(p, {}).get("step", torch.tensor(0.0))) for p in params]
    atomic_write_text(folder / STATE_FILE, json.dumps(
        {"stage": "expert", "renderer": "portrait", "emotion": name, "step": step, "steps": cfg.steps,
         "adam_steps": adam_steps, "config": asdict(cfg)}, indent=1))


def _load_checkpoint(out: Path, params: list[torch.nn.Parameter], optimizer: torch.optim.Adam,
                     cfg: ExpertTrainingConfig) -> int:
    from safetensors.torch import load_file

    folder = out / CHECKPOINT_DIR
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        tensors = load_file(str(folder / CHECKPOINT_WEIGHTS))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"--resume: {folder} holds no readable motion-expert checkpoint ({exc})") from exc
    if state.get("renderer") != "portrait" or int(state.get("steps", -1)) != cfg.steps:
        raise TrainingError(f"--resume: {folder} is not a checkpoint of this training (give the same --steps "
                            f"{state.get('steps')} and data)")
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(tensors[f"param.{i}"])
            if f"exp_avg.{i}" in tensors:
                optimizer.state[p] = {"step": torch.tensor(state["adam_steps"][i]),
                                      "exp_avg": tensors[f"exp_avg.{i}"].clone(),
                                      "exp_avg_sq": tensors[f"exp_avg_sq.{i}"].clone()}
    return int(state["step"])


def train_slot(motion: MotionModel, index: int, data: dict[str, np.ndarray], cfg: ExpertTrainingConfig,
               out: Path | None = None, log_path: Path | None = None, stop_file: Path | None = None,
               resume: bool = False, log: Callable[[str], None] = print) -> int:
    """Train the custom slot ``index`` on ``data``; returns the step it stopped at (``cfg.steps`` when done)."""
    params = slot_parameters(motion, index)
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    start = _load_checkpoint(out, params, optimizer, cfg) if resume and out is not None else 0
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in data.items()}
    records: list[str] = []
    if log_path is not None:
        kept = []
        if resume and log_path.is_file():
            kept = [line for line in log_path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= start]
        records = kept
        atomic_write_text(log_path, "".join(line + "\n" for line in records))
    moe = motion.moe
    moe.train()
    began = time.perf_counter()
    step = start
    try:
        for step in range(start, cfg.steps):
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            idx = torch.randint(0, len(tensors["shapes"]), (cfg.batch,), generator=generator)
            pred = moe(tensors["shapes"][idx], tensors["openings"][idx], tensors["weights"][idx])
            loss = masked_loss(pred, tensors["targets"][idx], tensors["masks"][idx])
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done = step + 1
            if log_path is not None and (done % cfg.log_every == 0 or done == cfg.steps):
                rate = (done - start) * cfg.batch / max(time.perf_counter() - began, 1e-6)
                with open(log_path, "a") as fh:
                    fh.write(json.dumps({"step": done, "loss": float(loss.item()), "lr": lr_at(step, cfg),
                                         "samples_per_s": round(rate, 1)}) + "\n")
            if done % 100 == 0 or done == cfg.steps:
                log(f"expert step {done}/{cfg.steps}: loss {loss.item():.2e}")
            if out is not None and done < cfg.steps:
                if stop_file is not None and stop_file.exists():
                    _save_checkpoint(out, params, optimizer, done, cfg, motion.cfg.emotions[index])
                    log(f"stopped at step {done}/{cfg.steps}; continue with --resume")
                    return done
                if done % cfg.save_every == 0:
                    _save_checkpoint(out, params, optimizer, done, cfg, motion.cfg.emotions[index])
        step = cfg.steps
    finally:
        moe.eval()
        motion.moe.requires_grad_(False)
    if out is not None:
        _save_checkpoint(out, params, optimizer, step, cfg, motion.cfg.emotions[index])
    return step


def recipe_agreement(motion: MotionModel, recipe: Recipe, people: int = 8, seed: int = 12345) -> dict[str, float]:
    """Cosine and magnitude ratio of the new slider at 1 vs the recipe's exact displacement, on unseen people."""
    from training.motion_trainer import displacement_agreement
    from training.synthetic import FaceRenderer, Identity

    rng = np.random.default_rng(seed)
    weights = np.zeros(len(motion.cfg.emotions), np.float32)
    weights[-1] = 1.0
    pred, exact = [], []
    for s in rng.choice(2**31 - 1, people, replace=False):
        rest, target = recipe_displacement(FaceRenderer(Identity.from_seed(int(s))), recipe)
        pred.append(motion.displacement(rest, [0.0], weights)[0])
        exact.append(target)
    return displacement_agreement(np.asarray(pred), np.asarray(exact))


def train_motion_expert(data: str | Path, name: str, out: str | Path, base: str | Path | None = None,
                        colour: str | None = None, cfg: ExpertTrainingConfig = ExpertTrainingConfig(),
                        log_path: str | Path | None = None, stop_file: str | Path | None = None,
                        resume: bool = False, log: Callable[[str], None] = print) -> Path | None:
    """Train one custom emotion of the motion model in ``base`` (default: the bundled model) on ``data``.

    Returns the written pack ``OUT/NAME.moeexpert.safetensors``, or None when Stop ended the run early (its
    checkpoint is in ``OUT/checkpoint``; ``resume=True`` continues it).
    """
    from engine.io.resources import DEFAULT_MODEL_DIR

    torch.manual_seed(cfg.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    motion = MotionModel.load(base if base is not None else DEFAULT_MODEL_DIR)
    index = motion.add_emotion(name, colour)
    started = time.perf_counter()
    recipe = read_recipe(data)
    if recipe is not None:
        examples = recipe_examples(recipe, motion.cfg.emotions, cfg)
        source = {"source": "recipe", "recipe": recipe.describe()}
    else:
        check_expert_data(data, name)
        examples = footage_examples(Path(data), name, motion, log)
        source = {"source": "footage", "examples": str(len(examples["shapes"]))}
    log(f"{len(examples['shapes'])} examples of '{name}' ({source['source']}) in {time.perf_counter() - started:.1f} s")
    step = train_slot(motion, index, examples, cfg, out, None if log_path is None else Path(log_path),
                      None if stop_file is None else Path(stop_file), resume, log)
    if step < cfg.steps:
        return None
    extra = {**source, "steps": str(cfg.steps), "seconds": f"{time.perf_counter() - started:.1f}"}
    if recipe is not None:
        agreement = recipe_agreement(motion, recipe)
        extra["recipe_cosine"] = f"{agreement['cosine']:.3f}"
        log(f"'{name}' at 1 vs the recipe on unseen people: cosine {agreement['cosine']:.3f}, "
            f"magnitude ratio {agreement['magnitude_ratio']:.2f}")
    pack = motion.save_expert_pack(name, out / f"{name}{EXPERT_PACK_SUFFIX}", extra)
    log(f"wrote {pack}")
    return pack


# ---------------------------------------------------------------------------------------------- command line
def expert_renderer(args: argparse.Namespace) -> str:
    """Which renderer ``moee train expert`` trains for: ``--renderer``, else the motion model (portrait) when the
    base model folder has one, else the pixel model."""
    from engine.io.resources import DEFAULT_MODEL_DIR

    chosen = getattr(args, "renderer", "auto") or "auto"
    if chosen != "auto":
        return chosen
    base = Path(args.model or args.init or DEFAULT_MODEL_DIR)
    return "portrait" if (base / MOTION_CONFIG).is_file() else "pixel"


#: ``moee train`` options that only the pixel model's trainer reads (refused for the motion expert).
PIXEL_ONLY_OPTIONS = {"frames": 4, "lr": None, "ablation": "none", "mixed_precision": "no", "workers": 0,
                      "gradient_checkpointing": False, "spatial_frames": 1, "lip_weight": 0.0,
                      "expression_weight": 0.0, "no_noisy_sampling": False, "stop_after": None,
                      "time_limit": None}


def run_motion_expert(args: argparse.Namespace) -> int:
    """``moee train expert`` for the portrait renderer (arguments of :func:`training.trainer.add_train_arguments`)."""
    if not args.name:
        raise TrainingError("the expert stage needs --name (the new emotion's name)")
    given = [k for k, default in PIXEL_ONLY_OPTIONS.items() if getattr(args, k, default) != default]
    if given:
        raise TrainingError(f"--{given[0].replace('_', '-')} applies to the pixel model's expert only; leave it out "
                            "or train the pixel model's expert with --renderer pixel")
    steps = args.steps if args.steps is not None else ExpertTrainingConfig.steps
    if steps < 1 or args.batch < 1:
        raise TrainingError("--steps and --batch must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        torch.set_num_threads(1)  # tiny tensors: one thread beats two fighting over a busy machine
    cfg = ExpertTrainingConfig(steps=steps, batch=args.batch * ExpertTrainingConfig.batch // 2, seed=args.seed,
                               log_every=max(1, args.log_every), save_every=max(1, args.save_every))
    pack = train_motion_expert(args.data, args.name, args.out, args.model or args.init, args.colour, cfg,
                               args.log, args.stop_file, args.resume)
    if pack is None:
        print(f"stopped; continue with --resume (checkpoint in {Path(args.out) / CHECKPOINT_DIR})")
    return 0
