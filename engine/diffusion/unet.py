"""The MoEE denoising network: a diffusers U-Net plus ReferenceNet, audio, emotion MoE and temporal attention.

The denoising U-Net and the ReferenceNet are stock ``diffusers.UNet2DConditionModel`` instances, so
their parameter names are exactly Stable Diffusion's and SD 1.5 weights load by key. What MoEE adds
lives beside them (``extras.<i>``) and is attached without changing any diffusers module:

* each self-attention ``attn1`` of the denoising U-Net gets a :class:`ReferenceAttnProcessor` that
  reads the ReferenceNet's states (spatial attention);
* after every transformer block ``i`` a forward hook applies ``extras[i]``: audio attention, then
  the Emotion MoE (*after the audio attention*, as in the paper), then temporal attention.

With ``cfg.moee.reference_concat`` the portrait latent is also concatenated to the noisy latent as
extra input channels of the denoising U-Net (its ``conv_in`` then reads ``2C`` channels).

Frames are folded into the batch: a tensor ``(B, F, C, h, w)`` runs as ``(B*F, C, h, w)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from torch import nn

from engine.diffusion.attention import (
    AudioAttention,
    ReferenceAttnProcessor,
    ReferenceBank,
    TemporalAttention,
    repeat_rows,
)
from engine.diffusion.config import ModelConfig
from engine.diffusion.emotion_latents import EmotionToLatents
from engine.moee import BatchGates, EmotionMoE, GateRecord, token_grid


def denoiser_unet_kwargs(cfg: ModelConfig) -> dict:
    """The denoising U-Net's diffusers kwargs: ``cfg.unet``, with ``2C`` input channels under ``reference_concat``."""
    if not cfg.moee.reference_concat:
        return dict(cfg.unet)
    return {**cfg.unet, "in_channels": 2 * cfg.latent_channels}


class ReferenceContext(nn.Module):
    """Cross-attention context from the portrait: its latent pooled to ``grid x grid`` tokens, projected."""

    def __init__(self, latent_channels: int, cross_dim: int, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.proj = nn.Linear(latent_channels, cross_dim)
        self.position = nn.Parameter(torch.randn(grid * grid, cross_dim) * 0.02)

    def forward(self, reference_latent: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(reference_latent, self.grid).flatten(2).transpose(1, 2)
        return self.proj(pooled) + self.position


class AudioWindowEncoder(nn.Module):
    """Per-frame audio window ``(N, window, n_mels)`` -> ``audio_tokens`` tokens ``(N, m, audio_dim)``."""

    def __init__(self, n_mels: int, audio_dim: int, audio_tokens: int) -> None:
        super().__init__()
        self.audio_tokens = audio_tokens
        self.conv = nn.Sequential(
            nn.Conv1d(n_mels, audio_dim, kernel_size=3, padding=1), nn.GELU(),
            nn.Conv1d(audio_dim, audio_dim, kernel_size=3, padding=1), nn.GELU(),
        )
        self.position = nn.Parameter(torch.randn(audio_tokens, audio_dim) * 0.02)
        self.norm = nn.LayerNorm(audio_dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        h = self.conv(windows.transpose(1, 2))
        h = F.adaptive_avg_pool1d(h, self.audio_tokens).transpose(1, 2)
        return self.norm(h + self.position)


class BlockExtras(nn.Module):
    """What MoEE adds after one transformer block: audio attention -> Emotion MoE -> temporal attention."""

    def __init__(self, dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        m = cfg.moee
        self.audio_attn = AudioAttention(dim, m.audio_dim, m.expert_heads)
        self.moe = EmotionMoE(dim, m.emotion_dim, len(m.emotions), m.expert_heads)
        self.temporal = TemporalAttention(dim, m.temporal_heads)


@dataclass
class ReferenceFeatures:
    """What the ReferenceNet computes once per portrait (cached while sliders move)."""

    states: dict[str, torch.Tensor]  # attn1 inputs per block name, (B_ref, n, C)
    context: torch.Tensor  # cross-attention context (B_ref, grid*grid, cross_dim)
    latent: torch.Tensor  # the portrait latent itself (B_ref, C, h, w), for ``reference_concat``
    projected: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # inference K/V cache


@dataclass
class _CallContext:
    num_frames: int
    latent_hw: tuple[int, int]
    audio_tokens: torch.Tensor | None
    emotion_tokens: torch.Tensor
    gates: BatchGates | None
    record: bool


class MoEEUNet(nn.Module):
    """Denoising U-Net + ReferenceNet + the MoEE modules; predicts the noise of a clip of latents."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.unet = UNet2DConditionModel(**denoiser_unet_kwargs(cfg))
        self.reference_net = UNet2DConditionModel(**cfg.unet)
        cross_dim = cfg.unet["cross_attention_dim"]
        self.reference_context = ReferenceContext(cfg.latent_channels, cross_dim, cfg.moee.reference_context_grid)
        self.audio_encoder = AudioWindowEncoder(cfg.audio.n_mels, cfg.moee.audio_dim, cfg.moee.audio_tokens)
        self.emotion_latents = EmotionToLatents(cfg.moee)
        blocks = [(n, m) for n, m in self.unet.named_modules() if isinstance(m, BasicTransformerBlock)]
        self.block_names = [n for n, _ in blocks]
        self.extras = nn.ModuleList(BlockExtras(m.attn1.to_q.in_features, cfg) for _, m in blocks)
        self._bank = ReferenceBank()
        self._context: _CallContext | None = None
        self._install_reference_attention()
        for index, (_, block) in enumerate(blocks):
            block.register_forward_hook(self._make_block_hook(index))

    # ------------------------------------------------------------------ wiring
    def _install_reference_attention(self) -> None:
        for net, write in ((self.reference_net, True), (self.unet, False)):
            for name, module in net.named_modules():
                if isinstance(module, Attention) and name.endswith("attn1"):
                    module.set_processor(ReferenceAttnProcessor(self._bank, name, write=write))

    def _make_block_hook(self, index: int):
        def hook(_module: nn.Module, _args, output: torch.Tensor) -> torch.Tensor:
            ctx = self._context
            if ctx is None:
                return output
            extras = self.extras[index]
            x = output
            if ctx.audio_tokens is not None:
                x = extras.audio_attn(x, ctx.audio_tokens)
            grid = token_grid(x.shape[1], *ctx.latent_hw)
            x = extras.moe(x, ctx.emotion_tokens, grid, ctx.gates, ctx.record)
            return extras.temporal(x, ctx.num_frames)

        return hook

    def block_names_attn1(self) -> list[str]:
        """Names of the self-attentions that exchange reference states (one per transformer block)."""
        return [f"{name}.attn1" for name in self.block_names]

    @property
    def moe_layers(self) -> list[EmotionMoE]:
        return [extras.moe for extras in self.extras]

    def gate_records(self) -> list[GateRecord]:
        return [layer.record for layer in self.moe_layers if layer.record is not None]

    # ------------------------------------------------------------------ forward passes
    def compute_reference(self, reference_latent: torch.Tensor) -> ReferenceFeatures:
        """Run the ReferenceNet once on the portrait latent ``(B, C, h, w)`` (timestep 0)."""
        context = self.reference_context(reference_latent)
        self._bank.clear()
        self._bank.writing = True
        try:
            timestep = torch.zeros(reference_latent.shape[0], device=reference_latent.device)
            self.reference_net(reference_latent, timestep, encoder_hidden_states=context)
        finally:
            self._bank.writing = False
        states = dict(self._bank.states)
        self._bank.clear()
        return ReferenceFeatures(states, context, reference_latent)

    def encode_audio(self, windows: torch.Tensor) -> torch.Tensor:
        """Audio windows ``(..., window, n_mels)`` -> audio tokens ``(..., m, audio_dim)``."""
        lead = windows.shape[:-2]
        tokens = self.audio_encoder(windows.reshape(-1, *windows.shape[-2:]))
        return tokens.reshape(*lead, *tokens.shape[-2:])

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timestep: torch.Tensor | float | int,
        reference: ReferenceFeatures,
        audio_tokens: torch.Tensor | None,
        emotion_tokens: torch.Tensor,
        gates: BatchGates | None = None,
        record_gates: bool = False,
    ) -> torch.Tensor:
        """Predict the noise of ``noisy_latents`` ``(B, F, C, h, w)``.

        ``audio_tokens``: ``(B, F, m, A)`` from :meth:`encode_audio` (or None: no audio);
        ``emotion_tokens``: ``(B, K, D)`` or per frame ``(B, F, K, D)``;
        ``gates``: per-sample overrides with ``B*F`` rows (sliders, brush), or None.
        """
        batch, frames = noisy_latents.shape[:2]
        flat = noisy_latents.reshape(batch * frames, *noisy_latents.shape[2:])
        if self.cfg.moee.reference_concat:
            flat = torch.cat([flat, repeat_rows(reference.latent, batch * frames).to(flat.dtype)], dim=1)
        timestep = torch.as_tensor(timestep, device=flat.device)
        timestep = (timestep.reshape(-1, 1).expand(-1, frames) if timestep.numel() == batch
                    else timestep.reshape(-1)[:1].expand(batch, frames)).reshape(-1)
        if emotion_tokens.ndim == 3:
            emotion_tokens = emotion_tokens[:, None].expand(-1, frames, -1, -1)
        emotion_tokens = emotion_tokens.reshape(batch * frames, *emotion_tokens.shape[-2:]).to(flat.dtype)
        if audio_tokens is not None:
            audio_tokens = audio_tokens.reshape(batch * frames, *audio_tokens.shape[-2:]).to(flat.dtype)
        context = repeat_rows(reference.context, batch * frames).to(flat.dtype)
        self._bank.states = reference.states
        # Reference keys/values are reused across steps and slider moves, unless gradients flow.
        self._bank.projected = None if torch.is_grad_enabled() else reference.projected
        self._context = _CallContext(frames, tuple(flat.shape[-2:]), audio_tokens, emotion_tokens, gates, record_gates)
        try:
            out = self.unet(flat, timestep, encoder_hidden_states=context).sample
        finally:
            if not (torch.is_grad_enabled() and self.unet.is_gradient_checkpointing):
                self._context = None
                self._bank.clear()
            # else: the backward pass recomputes checkpointed blocks, whose hooks and reference
            # attention need this call's context and reference states; the next call replaces them
        return out.reshape(batch, frames, *out.shape[1:])

