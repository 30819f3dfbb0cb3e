"""Model folders and expert packs, in safetensors only (nothing a user hands us is ever unpickled).

A model folder holds ``config.json`` (format name + version, the :class:`ModelConfig`, the emotion
names and colours, training notes) and ``model.safetensors`` (every weight, fp16 or fp32).

An expert pack (``NAME.moeexpert.safetensors``) is one custom emotion: the expert of every MoE
layer, its rows of both gates, its column of the label encoder, and metadata (name, colour, the
fingerprint of the base model it was trained on). Loading it into a model adds a slot.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.diffusion.config import (  # noqa: F401 - the model folder's config.json lives in engine.diffusion.config (no torch)
    CONFIG_FILE,
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    ModelConfig,
    SamplingConfig,
    config_file_problem,
    read_model_config,
)
from engine.diffusion.model import MoEEModel
from engine.errors import CheckpointError, EmotionSpecError
from engine.io.atomic import atomic_path, atomic_write_text

EXPERT_FORMAT = "moee-expert"
EXPERT_FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
EXPERT_SUFFIX = ".moeexpert.safetensors"
#: How many missing / unexpected keys an error message lists before "...".
KEYS_SHOWN = 5


def save_model(model: MoEEModel, folder: str | Path, dtype: torch.dtype = torch.float32,
               notes: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``folder`` (created if needed); each file is written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": MODEL_FORMAT, "format_version": str(MODEL_FORMAT_VERSION)})
    config = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "config": model.cfg.to_dict(),
        "emotions": model.emotions,
        "colours": model.colours,
        "notes": notes or {},
    }
    with atomic_path(folder / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(config, indent=2))
    return folder


def update_sampling_defaults(folder: str | Path, notes: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """Change default sampling settings of a model folder in place (``config.json`` only, atomically).

    The weights are not touched; the new settings are checked as a :class:`SamplingConfig` first.
    ``notes`` are merged into the folder's notes (say how the new settings were found). Returns the
    folder's new sampling settings.
    """
    data = read_model_config(folder)
    sampling = {**data["config"].get("sampling", {}), **changes}
    sampling = dataclasses.asdict(SamplingConfig(**sampling))
    data["config"]["sampling"] = sampling
    data["notes"] = {**data.get("notes", {}), **(notes or {})}
    atomic_write_text(Path(folder) / CONFIG_FILE, json.dumps(data, indent=2))
    return sampling


def load_model(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> MoEEModel:
    """Rebuild a model from its folder; every key must match exactly."""
    folder = Path(folder)
    data = read_model_config(folder)
    try:
        cfg = ModelConfig.from_dict(data["config"])
    except (EmotionSpecError, TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{Path(folder) / CONFIG_FILE} holds an invalid model configuration: {exc}") from exc
    try:
        model = MoEEModel(cfg)
    except Exception as exc:
        raise CheckpointError(
            f"{Path(folder) / CONFIG_FILE} describes a network that cannot be built "
            f"({type(exc).__name__}: {exc}); check its unet / vae / moee fields"
        ) from exc
    model.emotions = list(data.get("emotions", cfg.moee.emotions))
    model.colours.update(data.get("colours", {}))
    state = _read_safetensors(folder / WEIGHTS_FILE)
    _load_exact(model, state, folder / WEIGHTS_FILE)
    model.notes = data.get("notes", {})
    return model.to(device=device, dtype=dtype).eval()


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weights file {path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc


def _load_exact(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} keys of the wrong shape ({_few(wrong)})")
    if problems:
        raise CheckpointError(f"{source} does not match its configuration: " + "; ".join(problems))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:KEYS_SHOWN]) + (", ..." if len(keys) > KEYS_SHOWN else "")


# ----------------------------------------------------------------------------- expert packs
def model_fingerprint(model: MoEEModel) -> str:
    """A short hash of the base model (configuration + the basic emotions' first expert weights).

    A pack trained on one base model is refused by another: its expert would read features it was
    never trained on.
    """
    digest = hashlib.sha256()
    cfg = model.cfg.to_dict()
    cfg["moee"] = {k: v for k, v in cfg["moee"].items() if k != "emotions"}
    digest.update(json.dumps(cfg, sort_keys=True).encode())
    first = model.denoiser.unet.conv_in.weight.detach().float().cpu().numpy().tobytes()
    digest.update(first)
    return digest.hexdigest()[:16]


def _expert_tensors(model: MoEEModel, index: int) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for layer_id, layer in enumerate(model.denoiser.moe_layers):
        for key, value in layer.experts[index].state_dict().items():
            tensors[f"layers.{layer_id}.expert.{key}"] = value
        for gate in ("gate_local", "gate_global"):
            linear = getattr(layer, gate)
            tensors[f"layers.{layer_id}.{gate}.weight"] = linear.weight[index]
            tensors[f"layers.{layer_id}.{gate}.bias"] = linear.bias[index : index + 1]
    tensors["label.weight_column"] = model.denoiser.emotion_latents.label.inp.weight[:, index]
    return {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}


def save_expert_pack(model: MoEEModel, emotion: str, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write the expert slot ``emotion`` of ``model`` to a pack file (atomically)."""
    if emotion not in model.emotions:
        raise CheckpointError(f"the model has no emotion called {emotion!r}")
    path = Path(path)
    metadata = {
        "format": EXPERT_FORMAT,
        "format_version": str(EXPERT_FORMAT_VERSION),
        "emotion": emotion,
        "colour": model.colours.get(emotion, ""),
        "base_fingerprint": model_fingerprint(model),
        "layers": str(len(model.denoiser.moe_layers)),
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        save_file(_expert_tensors(model, model.emotions.index(emotion)), str(tmp), metadata=metadata)
    return path


def read_expert_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a pack, checked for format and version (weights are not loaded)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"expert pack {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors expert pack: {exc}") from exc
    if metadata.get("format") == "moee-motion-expert":
        raise CheckpointError(f"{path} is a motion expert pack (the default portrait renderer); the pixel model "
                              "(--frame crop) cannot load it")
    if metadata.get("format") != EXPERT_FORMAT:
        raise CheckpointError(f"{path} is not a MoEE expert pack")
    if metadata.get("format_version") != str(EXPERT_FORMAT_VERSION):
        raise CheckpointError(f"{path} has expert-pack version {metadata.get('format_version')}; "
                              f"this MoEE Studio reads version {EXPERT_FORMAT_VERSION}")
    return metadata


def load_expert_pack(model: MoEEModel, path: str | Path) -> str:
    """Add the pack's emotion to ``model`` as a new expert slot. Returns the emotion's name."""
    metadata = read_expert_metadata(path)
    if metadata.get("base_fingerprint") != model_fingerprint(model):
        raise CheckpointError(
            f"{path} was trained for another base model (fingerprint {metadata.get('base_fingerprint')}, "
            f"this model is {model_fingerprint(model)})"
        )
    name = metadata["emotion"]
    tensors = _read_safetensors(Path(path))
    layers = model.denoiser.moe_layers
    expected_keys = set(_expert_tensors(model, 0))
    if set(tensors) != expected_keys:
        raise CheckpointError(f"{path} does not hold the tensors of an expert for this model")
    index = model.add_emotion(name, metadata.get("colour") or None)
    with torch.no_grad():
        for layer_id, layer in enumerate(layers):
            expert_state = {k.split(".expert.", 1)[1]: v for k, v in tensors.items()
                            if k.startswith(f"layers.{layer_id}.expert.")}
            layer.experts[index].load_state_dict(expert_state)
            for gate in ("gate_local", "gate_global"):
                linear = getattr(layer, gate)
                linear.weight[index] = tensors[f"layers.{layer_id}.{gate}.weight"]
                linear.bias[index] = tensors[f"layers.{layer_id}.{gate}.bias"][0]
        model.denoiser.emotion_latents.label.inp.weight[:, index] = tensors["label.weight_column"]
    return name
