"""MoEE training: stages ``vae``, ``stage1``, ``stage2`` and ``expert`` (CVPR 2025, Sec. 3.4).

``moee train STAGE --data DIR --out DIR`` / ``python -m training.trainer STAGE ...``

* ``vae`` (demo / tiny configs): the small AutoencoderKL on the dataset's frames,
  ``L1 + ||V(x_rec) - V(x)||^2 + 1e-6 * KL`` (see :mod:`training.losses`).
* ``stage1``: ReferenceNet + denoising U-Net (spatial, cross attention), reference context, audio
  encoder, audio attention and temporal attention, on the whole data set. The Emotion MoE is
  present but switched off (``g = 0``: no expert runs), so stage 1 learns the talking head itself.
* ``stage2``: everything frozen except the Emotion MoE modules (``extras[i].moe``) and
  Emotion-to-Latents. The global gate ``g`` is **overridden by the clip's soft label** (as the
  studio's sliders replace ``g``), so slider ``i`` at 1 means "expert i at full strength" and all
  zero means neutral. The model's own ``G_global`` is trained beside it with an auxiliary
  cross-entropy ``GATE_AUX_WEIGHT * CE(label, softmax(G_global(Pool(X))))`` so that it predicts the
  emotion when no slider is given. Masked noisy sampling (``training.datasets.ClipSampler``'s
  noisy labels + the mouth-masked loss of :mod:`training.losses`) is on unless
  ``--no-noisy-sampling``.
* ``expert``: ``model.add_emotion(NAME)``; only the new expert slot of every MoE layer, its rows
  of both gates and its column of the label encoder learn (gradients of the other rows are zeroed
  by hooks, Adam without weight decay leaves them bit-identical). Saved with
  :func:`engine.diffusion.checkpoint.save_expert_pack` to ``OUT/NAME.moeexpert.safetensors``.

Loss (diffusion stages): ``L = L_latent + L_spatial`` with ``L_latent = ||eps - eps_theta||^2`` and
``L_spatial = w(t) (||I_p - I_gt||_1 + ||V(I_p) - V(I_gt)||^2)``, ``w(t) = cos(t pi / 2T)``; to keep
CPU training affordable ``I_p`` is decoded for ``--spatial-frames`` frames per clip (default 1).

Noise: DDPM (``diffusers.DDPMScheduler.add_noise``) with the model's ``SchedulerConfig``. Training
runs through ``accelerate`` (mixed precision, multi-GPU); on a CPU it just works.

Resume is exact: the checkpoint (``OUT/checkpoint/``) holds the model (safetensors), the optimiser
tensors (safetensors), its scalars, the step, and every RNG state (JSON + safetensors; never
pickle). The data position is a pure function of the step (seeded per-epoch permutations), so a run
stopped and resumed ends with the same weights as an unbroken one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from engine.cli import recorded_command
from engine.diffusion.checkpoint import load_model, save_expert_pack, save_model
from engine.diffusion.config import SamplingConfig, get_config
from engine.diffusion.model import MoEEModel
from engine.errors import MoEEError
from engine.moee import BatchGates, EmotionMoE
from training import losses
from training.errors import TrainingError
from training.perceptual import FixedPerceptualNet

STAGES = ("vae", "stage1", "stage2", "expert")
#: The stages that train the Emotion MoE (everything else frozen): noisy labels, mouth mask, expression weight.
EXPERT_STAGES = ("stage2", "expert")
ABLATIONS = ("none", "no-moe", "no-global-gate")
DEFAULT_STEPS = {"vae": 1000, "stage1": 5000, "stage2": 3000, "expert": 300}
DEFAULT_LR = {"vae": 2e-4, "stage1": 2e-4, "stage2": 3e-4, "expert": 5e-4}
WARMUP_FRACTION = 0.05
MAX_WARMUP_STEPS = 100
FINAL_LR_FRACTION = 0.1
GRAD_CLIP_NORM = 1.0
DATA_PREFETCH_BATCHES = 4  # per --workers process
GATE_AUX_WEIGHT = 0.1
DEFAULT_P_NOISY = 0.1
DEFAULT_EXPRESSION_REGIONS = ("brows", "eyes", "forehead")  # where surprise and fear show, outside the mouth
CHECKPOINT_DIR = "checkpoint"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
STATE_FILE = "trainer_state.json"
TRAINER_STATE_VERSION = 1
#: Frames of a clip the VAE stage reconstructs per sample.
VAE_FRAMES = 2
#: Data items whose frames calibrate the latent scale after the VAE stage.
LATENT_SCALE_ITEMS = 16


# ============================================================================ data
def _open_dataset(path: str | Path, custom_name: str | None = None):
    """Open a data folder with :func:`training.datasets.open_dataset`.

    Thin adapter (``training.datasets`` has no custom emotions): for the ``expert`` stage a
    ``labels.csv`` whose ``emotion`` column names the custom emotion is read here; those rows become
    the positives (``extra["custom"] = 1``), other rows keep their basic label.
    """
    from training import datasets

    root = Path(path)
    if custom_name and (root / "labels.csv").exists():
        import csv

        with open(root / "labels.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        key = next((c for c in (rows[0] if rows else {}) if c.strip().lower() == "emotion"), None)
        if key and any(r[key].strip().lower() == custom_name.lower() for r in rows):
            file_key = next(c for c in rows[0] if c.strip().lower() == "file")
            clips = []
            for r in rows:
                custom = r[key].strip().lower() == custom_name.lower()
                emotion = datasets.neutral_weights() if custom else datasets.weights_for(r[key])
                rel = r[file_key].strip()
                clips.append(datasets.Clip(source=str(root / rel), identity=Path(rel).stem, emotion=emotion,
                                           audio_path=str(root / rel), label=r[key], layout=datasets.LABELS_CSV,
                                           extra={"custom": 1.0 if custom else 0.0}))
            return datasets.ClipDataset(clips, datasets.LABELS_CSV, root)
    try:
        return datasets.open_dataset(root)
    except MoEEError:
        raise
    except Exception as exc:
        raise TrainingError(f"cannot read the data set {root}: {exc}") from exc


class StepSampler:
    """Deterministic data order: item ``k`` of the run -> (epoch, permuted clip index).

    Position is a pure function of the global sample counter, so resuming needs only the step.
    """

    def __init__(self, sampler: Any, seed: int) -> None:
        self.sampler = sampler
        self.seed = seed
        self.n = len(sampler.clips)
        self._perm_epoch = -1
        self._perm = np.arange(self.n)

    def item(self, k: int) -> dict[str, Any]:
        epoch, pos = divmod(k, self.n)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, 104729, epoch]).permutation(self.n)
            self._perm_epoch = epoch
            self.sampler.set_epoch(epoch)
        return self.sampler[int(self._perm[pos])]

    def batch(self, step: int, batch_size: int, shard: int = 0, shards: int = 1) -> dict[str, Any]:
        """Step ``step``'s batch for process ``shard`` of ``shards`` (data-parallel training).

        The processes take consecutive slices of one global batch of ``batch_size * shards`` items, so
        ``shards`` processes at ``batch_size`` see exactly the clips one process sees at the global size.
        """
        first = (step * shards + shard) * batch_size
        items = [self.item(first + b) for b in range(batch_size)]
        out: dict[str, Any] = {}
        optional = ("region_mask",) if "region_mask" in items[0] else ()
        for key in ("reference", "frames", "audio", "emotion", "mouth_mask", *optional):
            out[key] = torch.stack([it[key] for it in items])
        out["custom"] = torch.tensor([float(self._custom(it)) for it in items])
        return out

    def _custom(self, item: dict[str, Any]) -> bool:
        """Expert stage: is this clip an example of the custom emotion?

        A ``labels.csv`` naming the custom emotion marks its rows (see :func:`_open_dataset`);
        a folder without such marks is taken to hold only clips of the custom emotion.
        """
        marked = [c for c in self.sampler.clips if "custom" in c.extra]
        if not marked:
            return True
        return any(c.source == item["source"] and c.extra.get("custom", 0.0) > 0 for c in marked)


class StepBatches(torch.utils.data.Dataset):
    """Item ``step`` = this process's batch of that step (``StepSampler.batch``), for a ``DataLoader``."""

    def __init__(self, data: StepSampler, batch_size: int, end: int, shard: int = 0, shards: int = 1) -> None:
        self.data, self.batch_size, self.end, self.shard, self.shards = data, batch_size, end, shard, shards

    def __len__(self) -> int:
        return self.end

    def __getitem__(self, step: int) -> dict[str, Any]:
        return self.data.batch(step, self.batch_size, self.shard, self.shards)


def step_batches(data: StepSampler, batch_size: int, start: int, end: int, workers: int = 0, shard: int = 0,
                 shards: int = 1) -> Iterator[dict[str, Any]]:
    """This process's batches of steps ``start .. end - 1`` in order (``StepSampler.batch``).

    With ``workers`` > 0 they are built ahead in that many processes (a torch ``DataLoader``), so a GPU
    does not wait for the CPU; each batch is a pure function of its step, so the result is the same.
    """
    if workers <= 0:
        for step in range(start, end):
            yield data.batch(step, batch_size, shard, shards)
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(StepBatches(data, batch_size, end, shard, shards), batch_size=None, sampler=range(start, end),
                        num_workers=workers, prefetch_factor=DATA_PREFETCH_BATCHES,
                        pin_memory=torch.cuda.is_available())
    yield from loader


# ============================================================================ parameters per stage
def stage1_modules(model: MoEEModel) -> list[nn.Module]:
    """What stage 1 trains: U-Net, ReferenceNet, reference context, audio encoder, audio + temporal attention."""
    d = model.denoiser
    mods: list[nn.Module] = [d.unet, d.reference_net, d.reference_context, d.audio_encoder]
    for extras in d.extras:
        mods += [extras.audio_attn, extras.temporal]
    return mods


def stage2_modules(model: MoEEModel) -> list[nn.Module]:
    """What stage 2 trains: the Emotion MoE of every block + Emotion-to-Latents."""
    return [extras.moe for extras in model.denoiser.extras] + [model.denoiser.emotion_latents]


def set_trainable(model: MoEEModel, stage: str) -> list[nn.Parameter]:
    """Freeze everything, then unfreeze the parameters ``stage`` trains; returns them (stable order)."""
    model.requires_grad_(False)
    if stage == "vae":
        mods: list[nn.Module] = [model.vae]
    elif stage == "stage1":
        mods = stage1_modules(model)
    elif stage == "stage2":
        mods = stage2_modules(model)
    elif stage == "expert":
        return _expert_parameters(model, model.num_emotions - 1)
    else:
        raise TrainingError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    for m in mods:
        m.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _row_mask_hook(index: int, dim: int):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(grad)
        if dim == 0:
            mask[index] = 1
        else:
            mask[:, index] = 1
        return grad * mask

    return hook


def _expert_parameters(model: MoEEModel, index: int) -> list[nn.Parameter]:
    """The new slot: its expert in every layer, its gate rows, its label column (others' grads masked)."""
    params: list[nn.Parameter] = []
    for layer in model.denoiser.moe_layers:
        layer.experts[index].requires_grad_(True)
        params += list(layer.experts[index].parameters())
        for gate in (layer.gate_local, layer.gate_global):
            for p in (gate.weight, gate.bias):
                p.requires_grad_(True)
                p.register_hook(_row_mask_hook(index, 0))
                params.append(p)
    column = model.denoiser.emotion_latents.label.inp.weight
    column.requires_grad_(True)
    column.register_hook(_row_mask_hook(index, 1))
    params.append(column)
    return params


# ============================================================================ gates
def training_gates(label: torch.Tensor, stage: str, ablation: str, frames: int) -> BatchGates:
    """The gate override used in training (and by the evaluator for the same model).

    * stage 1: ``g = 0`` (no expert runs);
    * stage 2 / expert: ``g = label`` (the slider semantics of the studio);
    * ablation ``no-moe``: one shared expert, ``g_0 = max(label)`` (the emotion only via its tokens);
    * ablation ``no-global-gate``: ``g_i = 1/E`` for every expert (no global soft assignment).
    """
    g = gates_for_label(label, ablation) if stage != "stage1" else torch.zeros_like(label)
    return BatchGates(global_weights=g.repeat_interleave(frames, dim=0))


def gates_for_label(label: torch.Tensor, ablation: str = "none") -> torch.Tensor:
    """Map slider / label weights ``(B, E)`` to the ``g`` the model was trained with (see above)."""
    if ablation == "no-moe":
        g = torch.zeros_like(label)
        g[:, 0] = label.max(dim=1).values
        return g
    if ablation == "no-global-gate":
        return torch.full_like(label, 1.0 / label.shape[1])
    return label


# ============================================================================ objective
@dataclass
class StageSpec:
    stage: str
    ablation: str
    spatial_frames: int
    spatial_weight: float
    mouth_mask: str
    num_train_timesteps: int
    lip_weight: float = 0.0  # where the mouth is in the loss: weight 1 + lip_weight * mouth mask
    expression_weight: float = 0.0  # stage 2 / expert: loss weight 1 + expression_weight * region mask

    @property
    def trains_experts(self) -> bool:
        return self.stage in EXPERT_STAGES

    @property
    def masks_mouth(self) -> bool:
        return masks_mouth(self.stage, self.mouth_mask)


def masks_mouth(stage: str, mouth_mask: str) -> bool:
    """Whether ``stage`` leaves the mouth out of the loss (stage 2 / expert with ``--mouth-mask loss``,
    paper Design 3), so that the experts learn expression, not lip shape."""
    return stage in EXPERT_STAGES and mouth_mask == losses.MOUTH_MASK_LOSS


class Objective(nn.Module):
    """One training step's loss as a module, so ``accelerate`` can wrap it for multi-GPU (DDP)."""

    def __init__(self, model: MoEEModel, spec: StageSpec, data_parallel: bool = False) -> None:
        super().__init__()
        from diffusers import DDPMScheduler

        self.model = model
        self.spec = spec
        self.perceptual = FixedPerceptualNet()
        self.noise_scheduler = DDPMScheduler(**vars(model.cfg.scheduler))
        # several processes (accelerate launch): every step must reach backward in all of them
        self.data_parallel = data_parallel
        self._moe_inputs: list[tuple[EmotionMoE, torch.Tensor]] = []
        if spec.trains_experts:
            for layer in model.denoiser.moe_layers:
                layer.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, args: tuple, _out: torch.Tensor) -> None:
        if self.training and isinstance(module, EmotionMoE):
            self._moe_inputs.append((module, args[0]))

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.spec.stage == "vae":
            return self._vae_step(batch, generator)
        return self._diffusion_step(batch, generator)

    def _vae_step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        frames = batch["frames"][:, :VAE_FRAMES].flatten(0, 1)
        posterior = self.model.vae.encode(frames).latent_dist
        eps = torch.randn(posterior.mean.shape, generator=generator, device="cpu").to(frames.device, frames.dtype)
        z = posterior.mean + posterior.std * eps
        recon = self.model.vae.decode(z).sample
        parts = losses.vae_loss(recon, frames, posterior.kl(), self.perceptual)
        return {"loss": parts.total, "loss_latent": parts.kl.detach(), "loss_spatial": (parts.l1 + parts.perceptual).detach()}

    def _diffusion_step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        model, spec = self.model, self.spec
        d = model.denoiser
        frames, reference = batch["frames"], batch["reference"]
        b, f = frames.shape[:2]
        with torch.no_grad():
            latents = model.encode_images(frames.flatten(0, 1)).reshape(b, f, *d_latent_shape(model))
            ref_latent = model.encode_images(reference)
        label = _label_matrix(batch, model.num_emotions, spec.stage)
        noise = torch.randn(latents.shape, generator=generator, device="cpu").to(latents.device, latents.dtype)
        t = torch.randint(0, spec.num_train_timesteps, (b,), generator=generator, device="cpu").to(latents.device)
        t_frames = t.repeat_interleave(f)
        noisy = self.noise_scheduler.add_noise(latents.flatten(0, 1), noise.flatten(0, 1), t_frames).reshape(latents.shape)
        self._moe_inputs = []
        reference_features = d.compute_reference(ref_latent)
        audio_tokens = d.encode_audio(batch["audio"])
        emotion_tokens = d.emotion_latents(label=label)
        gates = training_gates(label, spec.stage, spec.ablation, f)
        eps = d(noisy, t, reference_features, audio_tokens, emotion_tokens, gates)
        mouth = batch["mouth_mask"].flatten(0, 1)  # (B*F, 1, H, W)
        regions = batch.get("region_mask")
        keep_latent = self._pixel_weights(mouth, None if regions is None else regions.flatten(0, 1),
                                          latents.shape[-2:])
        if keep_latent is not None:
            keep_latent = keep_latent.reshape(b, f, 1, *latents.shape[-2:])
        loss_latent = losses.latent_loss(eps, noise, keep_latent)
        loss_spatial = torch.zeros((), device=latents.device)
        if spec.spatial_weight > 0 and spec.spatial_frames > 0:
            k = min(spec.spatial_frames, f)
            pick = torch.randint(0, f - k + 1, (b,), generator=generator).tolist()
            idx_b = torch.arange(b).repeat_interleave(k)
            idx_f = torch.tensor([p + j for p in pick for j in range(k)])
            x0 = losses.predict_x0(noisy[idx_b, idx_f], eps[idx_b, idx_f], t[idx_b],
                                   self.noise_scheduler.alphas_cumprod)
            pred_images = model.vae.decode(x0 / model.cfg.vae_scaling_factor).sample
            keep_img = self._pixel_weights(batch["mouth_mask"][idx_b, idx_f],
                                           None if regions is None else regions[idx_b, idx_f])
            loss_spatial = losses.spatial_loss(pred_images, frames[idx_b, idx_f], t[idx_b],
                                               spec.num_train_timesteps, self.perceptual, keep_img)
        loss = loss_latent + spec.spatial_weight * loss_spatial
        if spec.stage == "stage2" and spec.ablation == "none" and self._moe_inputs:
            loss = loss + GATE_AUX_WEIGHT * self._gate_aux(label, f)
        self._moe_inputs = []
        if self.data_parallel and not loss.requires_grad and emotion_tokens.requires_grad:
            # no expert ran (an all-neutral batch): a zero term keeps this process in the gradient all-reduce
            loss = loss + 0.0 * emotion_tokens.sum()
        return {"loss": loss, "loss_latent": loss_latent.detach(), "loss_spatial": loss_spatial.detach()}

    def _pixel_weights(self, mouth: torch.Tensor, regions: torch.Tensor | None = None,
                       size: tuple[int, int] | None = None) -> torch.Tensor | None:
        """Per-pixel loss weights from mouth masks ``(N, 1, H, W)``, area-resized to ``size`` if given.

        ``1 - mouth`` in stage 2 / expert (the mouth is masked out), ``1 + lip_weight * mouth`` with a
        lip weight where the mouth is in the loss (stage 1; stage 2 / expert with ``--mouth-mask none``),
        else None (every pixel counts once). In stage 2 / expert with an expression weight, times
        ``1 + expression_weight * regions`` (brows, eyes, ...: where the experts' expressions show).
        """
        spec = self.spec
        weights = None
        if spec.masks_mouth:
            weights = losses.latent_keep_mask(mouth, size) if size is not None else 1.0 - mouth
        elif spec.lip_weight > 0:
            weights = losses.emphasis_map(mouth, spec.lip_weight, size)
        if spec.trains_experts and spec.expression_weight > 0 and regions is not None:
            emphasis = losses.emphasis_map(regions, spec.expression_weight, size)
            weights = emphasis if weights is None else weights * emphasis
        return weights

    def _gate_aux(self, label: torch.Tensor, frames: int) -> torch.Tensor:
        """``CE(label, softmax(G_global(Pool(X))))`` over the MoE layers, for samples with an emotion."""
        target = label.repeat_interleave(frames, dim=0)
        has = target.sum(dim=1) > 0
        if not bool(has.any()):
            return torch.zeros((), device=label.device)
        target = target[has] / target[has].sum(dim=1, keepdim=True)
        total = torch.zeros((), device=label.device)
        for layer, x in self._moe_inputs:
            logits = layer.gate_global(layer.norm(x[has]).mean(dim=1))
            total = total - (target * torch.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()
        return total / max(1, len(self._moe_inputs))


def d_latent_shape(model: MoEEModel) -> tuple[int, int, int]:
    return model.cfg.latent_channels, model.cfg.latent_size, model.cfg.latent_size


def _label_matrix(batch: dict[str, torch.Tensor], num_emotions: int, stage: str) -> torch.Tensor:
    """The soft label ``(B, E)``: the six basic weights, plus the custom column in the expert stage."""
    basic = batch["emotion"].float()
    label = torch.zeros(basic.shape[0], num_emotions, device=basic.device)
    label[:, : basic.shape[1]] = basic
    if stage == "expert":
        custom = batch["custom"].to(basic.device)
        label[custom > 0, : basic.shape[1]] = 0.0  # an example of the custom emotion is only that
        label[:, -1] = custom
    return label


# ============================================================================ LR + checkpoints
def lr_at(step: int, total: int, base_lr: float) -> float:
    """Linear warm-up then cosine decay to ``FINAL_LR_FRACTION * base_lr`` (a pure function of the step)."""
    warmup = max(1, min(MAX_WARMUP_STEPS, int(total * WARMUP_FRACTION)))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": state["param_groups"], "scalars": {}}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars["scalars"][f"{idx}.{key}"] = value
    return tensors, scalars


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for name, value in scalars["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = scalars["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(out: Path, model: MoEEModel, optimizer: torch.optim.Optimizer, step: int,
                    generator: torch.Generator, meta: dict[str, Any]) -> Path:
    """Write ``OUT/checkpoint`` atomically (built in a temporary folder, then swapped in)."""
    final = out / CHECKPOINT_DIR
    tmp = out / f".{CHECKPOINT_DIR}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model(model, tmp / "model", dtype=torch.float32, notes={"trained": False, "checkpoint_step": step})
    tensors, scalars = _optimizer_tensors(optimizer)
    save_file(tensors, str(tmp / OPTIMIZER_FILE))
    save_file({"torch_cpu": torch.get_rng_state(), "noise": generator.get_state()}, str(tmp / RNG_FILE))
    state = {"version": TRAINER_STATE_VERSION, "step": step, "optimizer": scalars, **meta}
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    old = out / f".{CHECKPOINT_DIR}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    return final


# ============================================================================ the run
def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``moee train`` / ``python -m training.trainer``."""
    parser.add_argument("stage", choices=STAGES, help="training stage")
    parser.add_argument("--data", required=True, help="data set folder (any layout training.datasets reads)")
    parser.add_argument("--out", required=True, help="output folder (model folder + checkpoint/)")
    parser.add_argument("--config", default="demo", choices=("demo", "tiny", "sd15"), help="model size (new models)")
    parser.add_argument("--init", default=None, help="model folder to start from (stage1/stage2; expert: --model)")
    parser.add_argument("--model", default=None, help="base model folder for the expert stage (default: bundled)")
    parser.add_argument("--name", default=None, help="expert stage: the new emotion's name")
    parser.add_argument("--colour", default=None, help="expert stage: the new emotion's colour (#rrggbb)")
    parser.add_argument("--renderer", default="auto", choices=("auto", "portrait", "pixel"),
                        help="expert stage: train a slot of the motion model (portrait, the default renderer) or of "
                             "the pixel model; auto: portrait when the base model folder has a motion model")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimiser steps (default per stage: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items()) + ")")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=4, help="frames per training clip (temporal window)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint exactly")
    parser.add_argument("--log", default=None, help="JSON-lines log (step, loss, loss_latent, loss_spatial, lr, samples_per_s)")
    parser.add_argument("--log-every", type=int, default=1)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--stop-after", type=int, default=None, help="save a checkpoint and stop after this step")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="save a checkpoint and stop once this much time has passed (a job's wall-clock limit)")
    parser.add_argument("--stop-file", default=None, metavar="PATH",
                        help="save a checkpoint and stop once this file exists (continue with --resume; the studio's Stop)")
    parser.add_argument("--no-noisy-sampling", action="store_true", help="ablation: no noisy labels, no mouth mask")
    parser.add_argument("--mouth-mask", default=losses.MOUTH_MASK_LOSS, choices=losses.MOUTH_MASK_MODES)
    parser.add_argument("--lip-weight", type=float, default=0.0,
                        help="extra loss weight on the mouth region (1 + W x mouth mask) for lip sync: stage 1, "
                             "or stage 2 / expert with --mouth-mask none")
    parser.add_argument("--expression-weight", type=float, default=0.0,
                        help="stage 2 / expert: extra loss weight on the expression regions (1 + W x region mask)")
    parser.add_argument("--expression-regions", default=",".join(DEFAULT_EXPRESSION_REGIONS),
                        help="face regions weighed by --expression-weight (comma-separated; from engine.io.face.REGIONS)")
    parser.add_argument("--p-noisy", type=float, default=DEFAULT_P_NOISY)
    parser.add_argument("--ablation", default="none", choices=ABLATIONS)
    parser.add_argument("--spatial-frames", type=int, default=1, help="decoded frames per clip for L_spatial")
    parser.add_argument("--spatial-weight", type=float, default=1.0)
    parser.add_argument("--mixed-precision", default="no", choices=("no", "fp16", "bf16"))
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes that build batches ahead (for a GPU; the same batches as with 0)")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16"), help="dtype of the saved model")
    parser.add_argument("--no-progress", action="store_true")


def expression_regions(args: argparse.Namespace) -> tuple[str, ...]:
    """The face regions ``--expression-weight`` weighs (none when the weight is 0 or the stage trains no expert)."""
    from engine.io.face import REGIONS

    if args.expression_weight <= 0 or args.stage not in EXPERT_STAGES:
        return ()
    names = tuple(n.strip() for n in args.expression_regions.split(",") if n.strip())
    unknown = [n for n in names if n not in REGIONS]
    if unknown or not names:
        raise TrainingError(f"--expression-regions: unknown region(s) {', '.join(unknown) or '(none given)'}; "
                            f"known: {', '.join(REGIONS)}")
    return names


def _build_model(args: argparse.Namespace) -> MoEEModel:
    if args.stage == "expert":
        from engine.io.resources import DEFAULT_MODEL_DIR

        model = load_model(args.model or args.init or DEFAULT_MODEL_DIR)
        if not args.name:
            raise TrainingError("the expert stage needs --name (the new emotion's name)")
        model.add_emotion(args.name, args.colour)
        return model
    if args.init:
        return load_model(args.init)
    if args.stage != "vae":
        print(f"warning: {args.stage} starts from a random model (no --init)", file=sys.stderr)
    torch.manual_seed(args.seed)
    return MoEEModel(get_config(args.config))


def calibrate_latent_scale(model: MoEEModel, data: StepSampler, items: int = LATENT_SCALE_ITEMS) -> float:
    """Set ``vae_scaling_factor = 1 / std(latents)`` for a freshly trained VAE (as Stable Diffusion did).

    The diffusion schedule assumes unit-variance latents; a VAE trained here has its own scale.
    Deterministic (the first ``items`` items of the data order), so a resumed run computes the same.
    """
    with torch.no_grad():
        frames = torch.cat([data.item(k)["frames"] for k in range(min(items, data.n))])
        latents = model.vae.encode(frames).latent_dist.mean
    model.cfg.vae_scaling_factor = float(1.0 / latents.std().clamp_min(1e-6))
    print(f"latent scale calibrated: vae_scaling_factor = {model.cfg.vae_scaling_factor:.5f}")
    return model.cfg.vae_scaling_factor


def run_train(args: argparse.Namespace) -> int:
    """Run one training stage; returns the exit code (0 on success)."""
    if args.stage == "expert":
        from training.motion_expert import expert_renderer, run_motion_expert

        if expert_renderer(args) == "portrait":
            return run_motion_expert(args)
    try:
        return _train(args)
    finally:
        close_process_group()


def close_process_group() -> None:
    """Tear down the data-parallel process group, if ``accelerate launch`` started one.

    A process that exits with the group still open can abort in gloo's destructor ("terminate called
    without an active exception"), turning a finished run (or a clear error) into a crash.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _check_arguments(args: argparse.Namespace) -> tuple[str, ...]:
    """Step 1: fill in the stage's default ``--steps``, refuse impossible settings before any work.

    ``--no-noisy-sampling`` turns noisy labels and the mouth mask off (in ``args``). Returns the face
    regions ``--expression-weight`` weighs.
    """
    if args.steps is None:
        args.steps = DEFAULT_STEPS[args.stage]
    if args.steps < 1 or args.batch < 1 or args.frames < 1:
        raise TrainingError("--steps, --batch and --frames must be at least 1")
    if args.workers < 0:
        raise TrainingError("--workers must be 0 or more")
    if args.time_limit is not None and args.time_limit < 0:
        raise TrainingError("--time-limit must be 0 seconds or more")
    if args.no_noisy_sampling:
        args.p_noisy, args.mouth_mask = 0.0, losses.MOUTH_MASK_NONE
    if args.lip_weight < 0 or args.expression_weight < 0:
        raise TrainingError("--lip-weight and --expression-weight must be 0 or more")
    if args.lip_weight > 0 and masks_mouth(args.stage, args.mouth_mask):
        raise TrainingError(f"--lip-weight weighs the mouth, but {args.stage} leaves the mouth out of the loss; "
                            "add --mouth-mask none to train it with the mouth in")
    return expression_regions(args)  # bad region names fail before any work


@dataclass
class TrainingRun:
    """What the training loop works with (built by :func:`_prepare_run`)."""

    model: MoEEModel
    params: list[nn.Parameter]  # the parameters this stage trains
    data: StepSampler
    base_lr: float
    raw_optimizer: torch.optim.Optimizer  # the optimiser itself, as checkpoints save it
    optimizer: Any  # ``raw_optimizer`` as ``accelerate`` wraps it
    objective: Any  # :class:`Objective` as ``accelerate`` wraps it
    accelerator: Any
    generator: torch.Generator  # diffusion noise and timesteps (process 0); its state is checkpointed


def _prepare_run(args: argparse.Namespace, regions: tuple[str, ...]) -> TrainingRun:
    """Step 2: the model (trainable parameters set), the data, the optimiser and ``accelerate``."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    from training.datasets import ClipSampler

    model = _build_model(args).float().train()
    if args.stage == "vae" and model.cfg.name == "sd15":
        raise TrainingError("the vae stage is for the demo/tiny configs; sd15 uses Stable Diffusion's VAE")
    params = set_trainable(model, args.stage)
    if args.gradient_checkpointing:
        model.denoiser.unet.enable_gradient_checkpointing()
        model.denoiser.reference_net.enable_gradient_checkpointing()
    dataset = _open_dataset(args.data, args.name if args.stage == "expert" else None)
    p_noisy = args.p_noisy if args.stage in EXPERT_STAGES else 0.0
    split = None if args.stage == "expert" else "train"
    clip_sampler = ClipSampler(dataset, num_frames=args.frames, p_noisy=p_noisy, seed=args.seed, split=split,
                               size=model.cfg.image_size, audio_config=model.cfg.audio,
                               expression_regions=regions)
    data = StepSampler(clip_sampler, args.seed)
    if args.stage == "stage1" and getattr(model, "notes", {}).get("stage") == "vae":
        calibrate_latent_scale(model, data)
    base_lr = args.lr or DEFAULT_LR[args.stage]
    optimizer = raw_optimizer = torch.optim.AdamW(params, lr=base_lr, weight_decay=0.0)
    spec = StageSpec(args.stage, args.ablation, args.spatial_frames, args.spatial_weight, args.mouth_mask,
                     model.cfg.scheduler.num_train_timesteps, args.lip_weight, args.expression_weight)
    # experts whose emotion is not in a batch do not run: DDP must look for unused parameters
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=not torch.cuda.is_available(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    objective = Objective(model, spec, data_parallel=accelerator.num_processes > 1)
    objective, optimizer = accelerator.prepare(objective, optimizer)
    generator = torch.Generator().manual_seed(args.seed)
    return TrainingRun(model, params, data, base_lr, raw_optimizer, optimizer, objective, accelerator, generator)


def _resume(args: argparse.Namespace, run: TrainingRun, out: Path) -> int:
    """Step 3 (``--resume``): load the checkpoint's model, optimiser and RNG states; returns its step."""
    ckpt = out / CHECKPOINT_DIR
    if not (ckpt / STATE_FILE).exists():
        raise TrainingError(f"--resume: no checkpoint in {ckpt}")
    state = json.loads((ckpt / STATE_FILE).read_text())
    if state.get("stage") != args.stage:
        raise TrainingError(f"--resume: the checkpoint is of stage {state.get('stage')}, not {args.stage}")
    saved = load_model(ckpt / "model")
    run.model.load_state_dict(saved.state_dict())
    run.model.train()
    _load_optimizer(run.raw_optimizer, load_file(str(ckpt / OPTIMIZER_FILE)), state["optimizer"])
    rng = load_file(str(ckpt / RNG_FILE))
    torch.set_rng_state(rng["torch_cpu"])
    run.generator.set_state(rng["noise"])
    return int(state["step"])


def _open_log(args: argparse.Namespace, is_main_process: bool, start: int) -> TextIO | None:
    """Step 4: the ``--log`` JSON-lines file (main process only), continued from ``start`` on resume."""
    if not (args.log and is_main_process):  # one writer when several processes train
        return None
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    if args.resume:
        _truncate_log(Path(args.log), start)
    return open(args.log, "a" if args.resume else "w", buffering=1)


def _train_step(args: argparse.Namespace, run: TrainingRun, step: int,
                batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
    """One optimiser step at ``step`` (0-based) on this process's slice of the batch; returns (loss parts, lr)."""
    accelerator = run.accelerator
    lr = lr_at(step, args.steps, run.base_lr)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
    with accelerator.autocast():
        parts = run.objective(batch, noise_generator(run.generator, args.seed, step, accelerator.process_index))
    run.optimizer.zero_grad(set_to_none=True)
    if parts["loss"].requires_grad:  # all-neutral batch in stage 2: no expert ran, nothing to learn
        accelerator.backward(parts["loss"])
        accelerator.clip_grad_norm_(run.params, GRAD_CLIP_NORM)
        run.optimizer.step()
    return parts, lr


def _training_loop(args: argparse.Namespace, run: TrainingRun, out: Path, start: int, end: int,
                   log: TextIO | None, meta: dict[str, Any], started: float) -> int:
    """Step 5: steps ``start`` .. ``end`` with logging, checkpoints and the time limit; returns the last step.

    Closes ``log``. ``started`` is the ``time.monotonic()`` the ``--time-limit`` counts from.
    """
    from tqdm import tqdm

    accelerator = run.accelerator
    bar = tqdm(total=args.steps, initial=start, desc=args.stage, dynamic_ncols=True,
               disable=args.no_progress or not accelerator.is_main_process)
    step = start
    window_start = time.perf_counter()
    # data-parallel (accelerate launch): each process takes its own slice of the global batch
    batches = step_batches(run.data, args.batch, start, end, args.workers, accelerator.process_index,
                           accelerator.num_processes)
    try:
        while step < end:
            parts, lr = _train_step(args, run, step, next(batches))
            step += 1
            bar.update(1)
            if log and (step % args.log_every == 0 or step == end):
                elapsed = time.perf_counter() - window_start
                record = {"step": step, "loss": float(parts["loss"].detach()), "loss_latent": float(parts["loss_latent"]),
                          "loss_spatial": float(parts["loss_spatial"]), "lr": lr,
                          "samples_per_s": args.batch * accelerator.num_processes * args.log_every / max(elapsed, 1e-9)}
                log.write(json.dumps(record) + "\n")
                window_start = time.perf_counter()
            bar.set_postfix(loss=f"{float(parts['loss'].detach()):.4f}")
            out_of_time = args.time_limit is not None and _all_agree_time_is_up(
                accelerator, time.monotonic() - started >= args.time_limit)
            stop_asked = not out_of_time and stop_requested(args, accelerator)
            if (step % args.save_every == 0 or step == end or out_of_time or stop_asked) and accelerator.is_main_process:
                save_checkpoint(out, run.model, run.raw_optimizer, step, run.generator, meta)
            if stop_asked and step < end:
                if accelerator.is_main_process:
                    print(f"stop asked for ({args.stop_file} exists)", file=sys.stderr)
                break
            if out_of_time and step < end:
                if accelerator.is_main_process:
                    print(f"time limit of {args.time_limit:g} s reached", file=sys.stderr)
                break
    finally:
        bar.close()
        if log:
            log.close()
    return step


def _train(args: argparse.Namespace) -> int:
    """Check the arguments, prepare the run, resume, open the log, train, write the outputs."""
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    regions = _check_arguments(args)
    started = time.monotonic()
    run = _prepare_run(args, regions)
    accelerator = run.accelerator
    start = _resume(args, run, out) if args.resume else 0
    log = _open_log(args, accelerator.is_main_process, start)
    meta = {"stage": args.stage, "seed": args.seed, "steps": args.steps, "batch": args.batch,
            "processes": accelerator.num_processes,
            "ablation": args.ablation, "command": recorded_command("train")}
    end = min(args.steps, args.stop_after) if args.stop_after is not None else args.steps
    step = _training_loop(args, run, out, start, end, log, meta, started)
    if accelerator.is_main_process:
        if step < args.steps:
            print(f"stopped after step {step}; continue with --resume")
        else:
            _write_outputs(args, run.model, out, meta)
    # no process leaves (and closes its end of the process group) while the first one still writes
    accelerator.wait_for_everyone()
    return 0


def stop_requested(args: argparse.Namespace, accelerator: Any) -> bool:
    """Whether ``--stop-file`` exists (all processes agree, so they stop at the same step)."""
    path = getattr(args, "stop_file", None)
    return bool(path) and _all_agree_time_is_up(accelerator, Path(path).exists())


def _all_agree_time_is_up(accelerator: Any, mine: bool) -> bool:
    """Whether any process's clock has passed the time limit: all processes stop at the same step."""
    if accelerator.num_processes == 1:
        return mine
    flag = torch.tensor([float(mine)], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def noise_generator(main: torch.Generator, seed: int, step: int, process: int) -> torch.Generator:
    """The generator of a step's diffusion noise and timesteps in process ``process``.

    Process 0 draws from ``main``, whose state the checkpoint keeps (a single-process run is unchanged);
    the other processes of a data-parallel run draw from a generator seeded by (seed, step, process),
    so each slice of the global batch gets its own noise and a resumed run draws the same.
    """
    if process == 0:
        return main
    state = np.random.SeedSequence([seed, step, process]).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log records written after the checkpoint (they will be written again)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line).get("step", 0)) <= step:
                kept.append(line)
        except (ValueError, AttributeError):
            continue
    path.write_text("".join(f"{line}\n" for line in kept))


def _write_outputs(args: argparse.Namespace, model: MoEEModel, out: Path, meta: dict[str, Any]) -> None:
    model.eval()
    if args.stage == "expert":
        path = out / f"{args.name}.moeexpert.safetensors"
        save_expert_pack(model, args.name, path, extra={"steps": str(args.steps), "seed": str(args.seed)})
        print(f"wrote {path}")
        return
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    notes = {"trained": args.stage == "stage2", "stage": args.stage, "ablation": args.ablation,
             "noisy_sampling": not args.no_noisy_sampling, "training": meta}
    save_model(model, out, dtype=dtype, notes=notes)
    print(f"wrote {out}")


def package_model(src: str | Path, dst: str | Path, notes: dict[str, Any], dtype: torch.dtype = torch.float16,
                  sampling: SamplingConfig | None = None) -> Path:
    """Copy a trained model folder to ``dst`` as fp16 safetensors with ``notes`` merged in.

    ``sampling`` replaces the model's default sampling settings (those it was evaluated with).
    """
    model = load_model(src)
    if sampling is not None:
        model.cfg.sampling = sampling
    merged = {**getattr(model, "notes", {}), **notes}
    return save_model(model, dst, dtype=dtype, notes=merged)


def trainable_names(model: MoEEModel, params: Iterable[nn.Parameter]) -> list[str]:
    ids = {id(p) for p in params}
    return [n for n, p in model.named_parameters() if id(p) in ids]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.trainer", description="Train MoEE stages.")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_train(args)
    except MoEEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

