"""Shared helpers for engine tests: tiny models whose new modules are not at their identity init."""

from __future__ import annotations

import torch

from engine.diffusion.config import tiny_config
from engine.diffusion.model import MoEEModel


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
