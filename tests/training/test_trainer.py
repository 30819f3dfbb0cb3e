"""Trainer: stage-2 parameter selection, expert packs, exact resume, JSON logs, safetensors checkpoints."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from engine.diffusion.checkpoint import load_expert_pack, load_model, save_model
from engine.diffusion.config import tiny_config
from engine.diffusion.model import MoEEModel
from engine.io.audio import window_length
from training import trainer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("tinydata")
    generate_dataset(root, identities=2, emotions=("neutral", "happiness", "anger"), intensities=(1.0,),
                     clip_seconds=0.4, size=32, seed=1, use_espeak=False, progress=False)
    return root


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("base")
    save_model(MoEEModel(tiny_config()), folder, notes={"trained": False})
    return folder


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    trainer.add_train_arguments(parser)
    return parser.parse_args([*argv, "--no-progress", "--config", "tiny", "--threads", "1"])


def _batch(cfg, batch: int = 1, frames: int = 2) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    size = cfg.image_size
    win = window_length(cfg.fps, cfg.audio)
    return {
        "frames": torch.rand(batch, frames, 3, size, size, generator=gen) * 2 - 1,
        "reference": torch.rand(batch, 3, size, size, generator=gen) * 2 - 1,
        "audio": torch.randn(batch, frames, win, cfg.audio.n_mels, generator=gen),
        "emotion": torch.full((batch, 6), 0.5),
        "mouth_mask": torch.zeros(batch, frames, 1, size, size),
        "custom": torch.zeros(batch),
    }


def test_stage2_trains_exactly_moe_and_emotion_to_latents() -> None:
    torch.manual_seed(0)
    model = MoEEModel(tiny_config())
    params = trainer.set_trainable(model, "stage2")
    names = set(trainer.trainable_names(model, params))
    expected = {n for n, _ in model.named_parameters()
                if n.startswith("denoiser.emotion_latents.") or (".moe." in n and n.startswith("denoiser.extras."))}
    assert names == expected
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    # the experts' output projections start at zero; give them a nudge so gradients flow everywhere
    with torch.no_grad():
        for layer in model.denoiser.moe_layers:
            for expert in layer.experts:
                expert.to_out.weight.normal_(0, 0.02)
    spec = trainer.StageSpec("stage2", "none", 1, 1.0, "loss", model.cfg.scheduler.num_train_timesteps)
    objective = trainer.Objective(model, spec).train()
    parts = objective(_batch(model.cfg), torch.Generator().manual_seed(1))
    parts["loss"].backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad <= expected
    # every MoE parameter and the label path of Emotion-to-Latents learn (text/audio projections
    # only learn when text/audio conditions are given)
    must = {n for n in expected if ".moe." in n or ".emotion_latents.label." in n or n.endswith("queries")}
    assert must <= with_grad, sorted(must - with_grad)[:5]


def test_stage1_freezes_moe() -> None:
    model = MoEEModel(tiny_config())
    names = set(trainer.trainable_names(model, trainer.set_trainable(model, "stage1")))
    assert not any(".moe." in n or "emotion_latents" in n or n.startswith("vae.") for n in names)
    assert any("audio_attn" in n for n in names) and any("temporal" in n for n in names)
    assert any(n.startswith("denoiser.reference_net.") for n in names)


@pytest.mark.parametrize("stage, mouth_mask", [("stage1", "loss"), ("stage2", "none")])
def test_lip_weight_changes_the_loss_only_where_there_is_a_mouth(stage: str, mouth_mask: str) -> None:
    """Stage 1, and stage 2 trained with the mouth in the loss: the lip weight counts mouth errors more."""
    torch.manual_seed(0)
    model = MoEEModel(tiny_config())
    batch = _batch(model.cfg)

    def loss(lip_weight: float, mouth: torch.Tensor) -> float:
        spec = trainer.StageSpec(stage, "none", 1, 1.0, mouth_mask, model.cfg.scheduler.num_train_timesteps, lip_weight)
        objective = trainer.Objective(model, spec).eval()
        with torch.no_grad():
            return float(objective({**batch, "mouth_mask": mouth}, torch.Generator().manual_seed(3))["loss"])

    no_mouth = torch.zeros_like(batch["mouth_mask"])
    mouth = no_mouth.clone()
    mouth[..., 20:28, 8:24] = 1.0
    assert loss(4.0, no_mouth) == pytest.approx(loss(0.0, no_mouth))
    assert loss(4.0, mouth) != pytest.approx(loss(0.0, mouth))
    assert loss(0.0, mouth) == pytest.approx(loss(0.0, no_mouth))  # the mouth is not masked out


def test_stage2_expression_weight_counts_errors_in_the_regions_more() -> None:
    torch.manual_seed(0)
    model = MoEEModel(tiny_config())
    batch = _batch(model.cfg)
    size = model.cfg.image_size

    def loss(expression_weight: float, regions: torch.Tensor) -> float:
        spec = trainer.StageSpec("stage2", "none", 1, 1.0, "loss", model.cfg.scheduler.num_train_timesteps,
                                 expression_weight=expression_weight)
        objective = trainer.Objective(model, spec).eval()
        with torch.no_grad():
            return float(objective({**batch, "region_mask": regions}, torch.Generator().manual_seed(3))["loss"])

    none = torch.zeros(1, 2, 1, size, size)
    brows = none.clone()
    brows[..., 4:10, 6:26] = 1.0
    assert loss(4.0, none) == pytest.approx(loss(0.0, none))
    assert loss(4.0, brows) != pytest.approx(loss(0.0, brows))
    assert loss(0.0, brows) == pytest.approx(loss(0.0, none))  # without a weight the regions do nothing


def test_expression_regions_argument(tiny_data: Path, base_model: Path, tmp_path: Path) -> None:
    common = ["--data", str(tiny_data), "--init", str(base_model), "--steps", "1", "--batch", "1", "--frames", "2"]
    assert trainer.expression_regions(_args("stage2", *common, "--out", "x")) == ()
    weighted = _args("stage2", *common, "--out", "x", "--expression-weight", "4")
    assert trainer.expression_regions(weighted) == trainer.DEFAULT_EXPRESSION_REGIONS
    with pytest.raises(trainer.TrainingError, match="unknown region.*chin"):
        trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "a"), "--expression-weight", "4",
                                "--expression-regions", "brows,chin"))
    with pytest.raises(trainer.TrainingError, match="0 or more"):
        trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "b"), "--expression-weight", "-1"))
    assert trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "c"), "--expression-weight", "4",
                                   "--expression-regions", "brows,eyes")) == 0
    assert (tmp_path / "c" / "model.safetensors").exists()


def test_stage2_lip_weight_needs_the_mouth_in_the_loss(tiny_data: Path, base_model: Path, tmp_path: Path) -> None:
    common = ["--data", str(tiny_data), "--init", str(base_model), "--steps", "1", "--batch", "1", "--frames", "2",
              "--lip-weight", "3"]
    with pytest.raises(trainer.TrainingError, match="mouth out of the loss.*--mouth-mask none"):
        trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "a")))
    assert not (tmp_path / "a" / "model.safetensors").exists()
    assert trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "b"), "--mouth-mask", "none")) == 0
    assert (tmp_path / "b" / "model.safetensors").exists()


def test_resume_equals_unbroken_run(tiny_data: Path, base_model: Path, tmp_path: Path) -> None:
    common = ["--data", str(tiny_data), "--init", str(base_model), "--steps", "4", "--batch", "1",
              "--frames", "2", "--seed", "5", "--save-every", "100"]
    assert trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "a"),
                                   "--log", str(tmp_path / "a.jsonl"))) == 0
    assert trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "b"), "--stop-after", "2",
                                   "--log", str(tmp_path / "b.jsonl"))) == 0
    assert not (tmp_path / "b" / "model.safetensors").exists()
    with open(tmp_path / "b.jsonl", "a") as fh:  # a record written after the checkpoint, before a crash
        fh.write(json.dumps({"step": 3, "loss": 9.0}) + "\n")
    assert trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "b"), "--resume",
                                   "--log", str(tmp_path / "b.jsonl"))) == 0
    a = load_model(tmp_path / "a").state_dict()
    b = load_model(tmp_path / "b").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the run changed the MoE (it is not trivially equal to the base)
    base = load_model(base_model).state_dict()
    assert any(not torch.equal(a[k], base[k]) for k in a if ".moe." in k)
    # JSON-lines log: one parseable record per step, the resumed log continues
    for name in ("a.jsonl", "b.jsonl"):
        records = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
        assert [r["step"] for r in records] == [1, 2, 3, 4]
        for r in records:
            assert {"step", "loss", "loss_latent", "loss_spatial", "lr", "samples_per_s"} <= set(r)
            assert np.isfinite(r["loss"])
    la = [json.loads(x)["loss"] for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert la == lb
    # checkpoints are safetensors + JSON, never pickle
    ckpt = tmp_path / "b" / trainer.CHECKPOINT_DIR
    for f in (ckpt / trainer.OPTIMIZER_FILE, ckpt / trainer.RNG_FILE, ckpt / "model" / "model.safetensors"):
        with safe_open(str(f), framework="pt") as handle:
            assert list(handle.keys())
    json.loads((ckpt / trainer.STATE_FILE).read_text())
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".bin")]


def test_batches_built_ahead_in_worker_processes_train_the_same_model(tiny_data: Path, base_model: Path,
                                                                      tmp_path: Path) -> None:
    common = ["--data", str(tiny_data), "--init", str(base_model), "--steps", "3", "--batch", "2",
              "--frames", "2", "--seed", "3", "--mouth-mask", "none", "--lip-weight", "2"]
    assert trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "inline"))) == 0
    assert trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "ahead"), "--workers", "2")) == 0
    inline = load_model(tmp_path / "inline").state_dict()
    ahead = load_model(tmp_path / "ahead").state_dict()
    assert all(torch.equal(inline[k], ahead[k]) for k in inline)
    with pytest.raises(trainer.TrainingError, match="--workers"):
        trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "bad"), "--workers", "-1"))


def test_data_parallel_processes_split_the_global_batch(tiny_data: Path) -> None:
    from training.datasets import ClipSampler

    clips = trainer._open_dataset(str(tiny_data), None)
    data = trainer.StepSampler(ClipSampler(clips, num_frames=2, seed=2, size=32), seed=2)
    for step in (0, 3):  # two processes at batch 2 see what one process sees at batch 4, and no clip twice
        whole = data.batch(step, 4)
        parts = [data.batch(step, 2, shard, 2) for shard in (0, 1)]
        for key in ("frames", "reference", "emotion", "audio"):
            assert torch.equal(torch.cat([part[key] for part in parts]), whole[key])
        assert not torch.equal(parts[0]["frames"], parts[1]["frames"])
    ahead = list(trainer.step_batches(data, 2, 1, 3, workers=1, shard=1, shards=2))
    assert len(ahead) == 2
    for step, batch in zip((1, 2), ahead, strict=True):  # built ahead in a worker: the same slice
        assert torch.equal(batch["frames"], data.batch(step, 2, 1, 2)["frames"])


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_gradient_checkpointing_gives_the_same_gradients(stage: str) -> None:
    """--gradient-checkpointing (for sd15) recomputes blocks in the backward pass; the block hooks
    (audio, MoE, temporal attention) and the reference attention must see the same inputs again."""
    torch.manual_seed(0)
    model = MoEEModel(tiny_config()).float().train()
    params = trainer.set_trainable(model, stage)
    spec = trainer.StageSpec(stage, "none", 1, 1.0, "loss", model.cfg.scheduler.num_train_timesteps)
    objective = trainer.Objective(model, spec)
    batch = _batch(model.cfg, batch=2)
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            model.denoiser.unet.enable_gradient_checkpointing()
            model.denoiser.reference_net.enable_gradient_checkpointing()
        model.zero_grad(set_to_none=True)
        objective(batch, torch.Generator().manual_seed(3))["loss"].backward()
        grads.append([p.grad for p in params])
    assert sum(g is not None for g in grads[0]) > 0
    for plain, recomputed in zip(*grads, strict=True):
        assert (plain is None) == (recomputed is None)
        if plain is not None:
            assert torch.allclose(plain, recomputed, atol=1e-6, rtol=1e-4)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two accelerate-launched processes: the slowest test here (about 20 s to 2 min)
def test_two_processes_through_accelerate_launch_train_and_resume_exactly(tiny_data: Path, base_model: Path,
                                                                          tmp_path: Path) -> None:
    """Data-parallel training as on several GPUs (here two CPU processes, gloo): experts that a slice of
    the batch does not use, all-neutral slices, a time limit and the exact resume all go through DDP."""
    import os
    import subprocess
    import sys

    def launch(out: str, *extra: str) -> None:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(_free_port()), "-m", "training.trainer", "stage2",
                   "--data", str(tiny_data), "--init", str(base_model), "--config", "tiny", "--steps", "3",
                   "--batch", "1", "--frames", "2", "--seed", "4", "--threads", "1", "--no-progress",
                   "--save-every", "100", "--out", str(tmp_path / out), "--log", str(tmp_path / f"{out}.jsonl"),
                   *extra]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
        assert done.returncode == 0, done.stderr[-3000:]

    launch("whole")
    launch("parts", "--time-limit", "0")  # every process stops after step 1, at the same step
    launch("parts", "--resume")
    whole, parts = load_model(tmp_path / "whole"), load_model(tmp_path / "parts")
    assert whole.notes["training"]["processes"] == 2
    a, b = whole.state_dict(), parts.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    base = load_model(base_model).state_dict()
    assert any(not torch.equal(a[k], base[k]) for k in a if ".moe." in k)
    for name in ("whole", "parts"):  # one writer: each step logged once
        steps = [json.loads(line)["step"] for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        assert steps == [1, 2, 3]


def test_time_limit_saves_a_checkpoint_that_resumes_to_the_unbroken_run(tiny_data: Path, base_model: Path,
                                                                         tmp_path: Path) -> None:
    common = ["--data", str(tiny_data), "--init", str(base_model), "--steps", "3", "--batch", "1",
              "--frames", "2", "--seed", "8", "--save-every", "100"]
    assert trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "a"))) == 0
    # a zero time limit stops after the first step, with a checkpoint and no model
    assert trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "b"), "--time-limit", "0")) == 0
    assert not (tmp_path / "b" / "model.safetensors").exists()
    state = json.loads((tmp_path / "b" / trainer.CHECKPOINT_DIR / trainer.STATE_FILE).read_text())
    assert state["step"] == 1
    assert trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "b"), "--resume")) == 0
    a, b = load_model(tmp_path / "a").state_dict(), load_model(tmp_path / "b").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(trainer.TrainingError, match="--time-limit"):
        trainer.run_train(_args("stage2", *common, "--out", str(tmp_path / "c"), "--time-limit", "-1"))


def test_expert_stage_pack_loads_as_seventh_emotion(tiny_data: Path, base_model: Path, tmp_path: Path) -> None:
    from training.evaluate import generate

    out = tmp_path / "expert"
    args = _args("expert", "--data", str(tiny_data), "--model", str(base_model), "--name", "smug", "--out",
                 str(out), "--steps", "3", "--batch", "1", "--frames", "2", "--lr", "1e-2",
                 "--log", str(tmp_path / "e.jsonl"))
    assert trainer.run_train(args) == 0
    pack = out / "smug.moeexpert.safetensors"
    assert pack.is_file()
    model = load_model(base_model)
    assert load_expert_pack(model, pack) == "smug"
    assert model.emotions[-1] == "smug" and model.num_emotions == 7
    size = model.cfg.image_size
    reference = np.full((size, size, 3), 128, np.uint8)
    windows = np.zeros((2, window_length(model.cfg.fps, model.cfg.audio), model.cfg.audio.n_mels), np.float32)
    labels = np.zeros((2, 7), np.float32)
    labels[1, 6] = 1.0
    frames = generate(model, reference, windows, labels, steps=2, seed=0)
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).max() > 0


def test_expert_parameters_leave_other_rows_untouched(base_model: Path) -> None:
    model = load_model(base_model).train()
    model.add_emotion("smug")
    params = trainer.set_trainable(model, "expert")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    spec = trainer.StageSpec("expert", "none", 0, 0.0, "loss", model.cfg.scheduler.num_train_timesteps)
    objective = trainer.Objective(model, spec).train()
    batch = _batch(model.cfg)
    batch["custom"] = torch.ones(1)
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    for _ in range(2):
        optimizer.zero_grad()
        objective(batch, torch.Generator().manual_seed(0))["loss"].backward()
        optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".experts.6." in n or "gate_" in n or "label.inp" in n for n in changed)
    for layer in model.denoiser.moe_layers:
        for gate in (layer.gate_local, layer.gate_global):
            name = next(n for n, p in model.named_parameters() if p is gate.weight)
            assert torch.equal(gate.weight[:6], before[name][:6])
    column = model.denoiser.emotion_latents.label.inp.weight
    assert torch.equal(column[:, :6], before["denoiser.emotion_latents.label.inp.weight"][:, :6])


def test_lr_schedule_and_gates() -> None:
    assert trainer.lr_at(0, 100, 1.0) == pytest.approx(0.2)
    assert trainer.lr_at(99, 100, 1.0) == pytest.approx(trainer.FINAL_LR_FRACTION, abs=1e-3)
    label = torch.tensor([[0.0, 0.5, 0.0, 0.0, 0.5, 0.0]])
    assert torch.equal(trainer.gates_for_label(label), label)
    assert trainer.gates_for_label(label, "no-moe")[0].tolist() == [0.5, 0, 0, 0, 0, 0]
    assert trainer.gates_for_label(label, "no-global-gate").sum().item() == pytest.approx(1.0)
    assert trainer.training_gates(label, "stage1", "none", 3).global_weights.abs().sum() == 0
