"""Attention modules MoEE adds to the Stable Diffusion U-Net (besides the emotion experts).

* :class:`ReferenceAttnProcessor` — *spatial attention* with a ReferenceNet: the ReferenceNet
  writes the input of each of its self-attentions into a bank; the denoising U-Net's matching
  self-attention reads ``K, V`` from ``concat(X, X_ref)`` so identity is copied from the portrait.
* :class:`AudioAttention` — cross-attention from U-Net tokens to the per-frame audio tokens.
* :class:`TemporalAttention` — self-attention across the frame axis at each spatial token.

New modules end in a zero-initialised projection, so they start as the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.cross_attention import CrossAttention, multi_head_attention


class ReferenceBank:
    """Reference self-attention states, one tensor ``(1, n, C)`` per transformer block name.

    ``projected`` caches each layer's key/value projections of the reference states during
    inference: they do not change across denoising steps or slider moves.
    """

    def __init__(self) -> None:
        self.states: dict[str, torch.Tensor] = {}
        self.projected: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.writing = False

    def clear(self) -> None:
        self.states = {}
        self.projected = None


class ReferenceAttnProcessor:
    """A diffusers attention processor for ``attn1`` that writes to or reads from a :class:`ReferenceBank`.

    In write mode (ReferenceNet) it stores its input; in read mode (denoising U-Net) keys and values
    come from ``concat(X, X_ref)``. Otherwise it is plain self-attention with the fused kernel.
    """

    def __init__(self, bank: ReferenceBank, name: str, write: bool) -> None:
        self.bank, self.name, self.write = bank, name, write

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, temb=None, **kwargs) -> torch.Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if self.write and self.bank.writing:
            self.bank.states[self.name] = hidden_states
        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        reference = None if self.write else self.bank.states.get(self.name)
        if reference is not None:
            ref_key, ref_value = self._reference_projection(attn, reference.to(hidden_states.dtype))
            rows = hidden_states.shape[0]
            key = torch.cat([key, repeat_rows(ref_key, rows)], dim=1)
            value = torch.cat([value, repeat_rows(ref_value, rows)], dim=1)
        out = multi_head_attention(query, key, value, attn.heads)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.rescale_output_factor != 1.0:
            out = out / attn.rescale_output_factor
        return out


    def _reference_projection(self, attn, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``to_k`` / ``to_v`` of the reference states, cached when the bank allows it (inference)."""
        cache = self.bank.projected
        if cache is not None and self.name in cache:
            return cache[self.name]
        projected = attn.to_k(reference), attn.to_v(reference)
        if cache is not None:
            cache[self.name] = projected
        return projected


def repeat_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """Per-clip rows ``(1 or B, ...)`` repeated to ``rows`` (one per frame: ``B*F``, clips contiguous)."""
    if tensor.shape[0] == rows:
        return tensor
    if tensor.shape[0] == 1:
        return tensor.expand(rows, *tensor.shape[1:])
    return tensor.repeat_interleave(rows // tensor.shape[0], dim=0)


class AudioAttention(CrossAttention):
    """``X' = X + Attn(LN(X), A)``: each frame's tokens attend to that frame's audio tokens ``A``."""

    def __init__(self, dim: int, audio_dim: int, heads: int) -> None:
        super().__init__(dim, audio_dim, heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, audio_tokens: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B*F, n, C)``; ``audio_tokens``: ``(B*F, m, A)``."""
        return x + self.attend(self.norm(x), audio_tokens)


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Transformer sinusoidal encoding ``PE[p, 2i] = sin(p / 10000^(2i/d))``, ``PE[p, 2i+1] = cos(...)``."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table.to(dtype)


class TemporalAttention(nn.Module):
    """Self-attention across frames at each spatial token (AnimateDiff-style motion module)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``x``: ``(B*F, n, C)`` with frames contiguous per clip (a single frame attends to itself)."""
        if num_frames == 1:
            return x + self.to_out(self.single_frame_values(x))
        batch_frames, n, width = x.shape
        clips = batch_frames // num_frames
        seq = x.reshape(clips, num_frames, n, width).permute(0, 2, 1, 3).reshape(clips * n, num_frames, width)
        h = self.norm(seq) + sinusoidal_positions(num_frames, width, x.device, x.dtype)[None]
        q, k, v = self.to_qkv(h).chunk(3, dim=-1)
        seq = seq + self.to_out(multi_head_attention(q, k, v, self.heads))
        return seq.reshape(clips, n, num_frames, width).permute(0, 2, 1, 3).reshape(batch_frames, n, width)

    def single_frame_values(self, x: torch.Tensor) -> torch.Tensor:
        """``Attn(Q, K, V) = V`` when each sequence is one frame: the softmax over a single key is 1.

        So a one-frame call (a preview) needs only the value projection ``LN(X + PE_0) W_v``, not
        ``W_q``, ``W_k`` and the attention itself (exactly the same result, a third of the matmul).
        """
        width = x.shape[-1]
        h = self.norm(x) + sinusoidal_positions(1, width, x.device, x.dtype)[None]
        return F.linear(h, self.to_qkv.weight[2 * width:])
