"""Multi-head attention and :class:`CrossAttention`, the block every emotion expert is.

Both renderers' mixtures of experts build on it (engine.moee.EmotionExpert: U-Net tokens in the pixel
renderer, landmark tokens in the portrait renderer's motion model), and so do the U-Net's own attention
modules (engine/diffusion/attention.py) and the Emotion-to-Latents queries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def multi_head_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Scaled dot-product attention over ``heads`` heads; ``(B, n, C)`` in and out (fused kernel)."""
    batch, n_q, width = q.shape
    head_dim = width // heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], t.shape[1], heads, head_dim).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(batch, n_q, width)


class CrossAttention(nn.Module):
    """Multi-head cross-attention ``Attn(X W_q, C W_k, C W_v) W_o`` whose output projection starts at zero."""

    def __init__(self, dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def attend(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, n, C)`` queries; ``context``: ``(B, m, D)`` keys/values. Returns ``(B, n, C)``."""
        return self.to_out(multi_head_attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads))
