"""Shared helpers for engine tests: tiny models whose new modules are not at their identity init."""

from __future__ import annotations

from pathlib import Path

import soundfile
import torch

from engine.diffusion.config import tiny_config
from engine.diffusion.model import MoEEModel
from engine.io.resources import demo_audio


def randomise_new_modules(model: MoEEModel, seed: int = 0, scale: float = 0.2) -> MoEEModel:
    """Give the zero-initialised output projections random weights, so every module has an effect."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.denoiser.extras.named_parameters():
            if "to_out" in name or "gate" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return model


def tiny_model(seed: int = 0, reference_concat: bool = False) -> MoEEModel:
    cfg = tiny_config()
    cfg.moee.reference_concat = reference_concat
    torch.manual_seed(seed)
    return randomise_new_modules(MoEEModel(cfg), seed).eval()


def demo_speech_excerpt(folder: Path, seconds: float) -> Path:
    """The first ``seconds`` of the bundled demo speech, written as ``folder/speech.wav``."""
    samples, rate = soundfile.read(demo_audio(), dtype="float32")
    path = folder / "speech.wav"
    soundfile.write(path, samples[: int(seconds * rate)], rate)
    return path
