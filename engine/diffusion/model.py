"""The whole MoEE model: a VAE (image <-> latent) and the MoEE denoising network, plus emotion names."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import nn

from engine.diffusion.config import ModelConfig
from engine.diffusion.unet import MoEEUNet
from engine.emotions import EMOTION_COLOURS
from engine.errors import CheckpointError

#: Colour given to a custom expert when its pack names none.
DEFAULT_CUSTOM_COLOUR = "#20b2aa"


class MoEEModel(nn.Module):
    """VAE + MoEE U-Net. ``emotions`` names the expert slots in order (six basic + custom)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vae = AutoencoderKL(**cfg.vae)
        self.denoiser = MoEEUNet(cfg)
        self.emotions: list[str] = list(cfg.moee.emotions)
        self.colours: dict[str, str] = {e: EMOTION_COLOURS.get(e, DEFAULT_CUSTOM_COLOUR) for e in self.emotions}

    @property
    def num_emotions(self) -> int:
        return len(self.emotions)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 3, H, W)`` in -1..1 -> scaled latents ``(N, C, H/8, W/8)`` (posterior mean)."""
        posterior = self.vae.encode(images).latent_dist
        return posterior.mean * self.cfg.vae_scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in -1..1."""
        return self.vae.decode(latents / self.cfg.vae_scaling_factor).sample.clamp(-1, 1)

    def add_emotion(self, name: str, colour: str | None = None) -> int:
        """Add a custom expert slot (every MoE layer + the label encoder). Returns its index."""
        if name in self.emotions:
            raise CheckpointError(f"the model already has an emotion called {name!r}")
        for layer in self.denoiser.moe_layers:
            layer.add_expert()
        self.denoiser.emotion_latents.add_emotion()
        self.emotions.append(name)
        self.cfg.moee.emotions = list(self.emotions)
        self.colours[name] = colour or DEFAULT_CUSTOM_COLOUR
        return len(self.emotions) - 1

    @classmethod
    def from_base_model(cls, cfg: ModelConfig, base_dir: str | Path) -> MoEEModel:
        """Initialise the U-Net, ReferenceNet and VAE from a local diffusers SD folder (``unet/``, ``vae/``).

        The new MoEE modules stay at their (identity) initialisation. The folder's own U-Net and VAE
        configurations replace those of ``cfg``.
        """
        base_dir = Path(base_dir)
        for sub in ("unet", "vae"):
            if not (base_dir / sub / "config.json").is_file():
                raise CheckpointError(f"{base_dir} is not a diffusers model folder: {sub}/config.json is missing")
        unet = UNet2DConditionModel.from_pretrained(base_dir, subfolder="unet")
        vae = AutoencoderKL.from_pretrained(base_dir, subfolder="vae")
        cfg.unet = {k: v for k, v in unet.config.items() if not k.startswith("_")}
        cfg.vae = {k: v for k, v in vae.config.items() if not k.startswith("_")}
        cfg.vae_scaling_factor = float(vae.config.get("scaling_factor", cfg.vae_scaling_factor))
        model = cls(cfg)
        state = unet.state_dict()
        model.denoiser.unet.load_state_dict(state)
        model.denoiser.reference_net.load_state_dict(state)
        model.vae.load_state_dict(vae.state_dict())
        return model
