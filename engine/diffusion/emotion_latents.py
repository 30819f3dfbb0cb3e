"""Emotion-to-Latents (MoEE, Sec. 3.3): a label, a text or an audio clip -> K emotion tokens.

Each modality is encoded, projected by a linear layer to one width ``D``, and a set of K learnable
tokens attends over the projected features (tokens as queries, features as keys/values). The K
output tokens are the keys/values every emotion expert attends to.

* label: an MLP over a *soft* label vector (one weight per emotion), so compound labels work;
* text: a sentence embedding (all-MiniLM-L6-v2, 384-d, see :mod:`engine.emotion_text`);
* audio: prosodic/spectral statistics of the clip (:func:`engine.io.audio.prosody_features`).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.cross_attention import multi_head_attention
from engine.diffusion.config import MoEEConfig


class LabelEncoder(nn.Module):
    """Soft label ``(B, E)`` -> ``tokens`` feature tokens ``(B, T, D)`` through a two-layer MLP."""

    def __init__(self, num_emotions: int, dim: int, tokens: int = 2) -> None:
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.inp = nn.Linear(num_emotions, dim)
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(dim, tokens * dim))

    def forward(self, label: torch.Tensor) -> torch.Tensor:
        return self.out(self.inp(label)).reshape(label.shape[0], self.tokens, self.dim)

    def add_emotion(self) -> None:
        """Grow the input by one emotion column (zero-initialised) for a custom expert."""
        old = self.inp
        new = nn.Linear(old.in_features + 1, old.out_features).to(old.weight.device, old.weight.dtype)
        with torch.no_grad():
            new.weight.zero_()
            new.weight[:, :-1] = old.weight
            new.bias.copy_(old.bias)
        self.inp = new


class EmotionToLatents(nn.Module):
    """Fuse the available emotion conditions into ``K`` tokens ``(B, K, D)``."""

    def __init__(self, cfg: MoEEConfig) -> None:
        super().__init__()
        dim = cfg.emotion_dim
        self.heads = max(1, cfg.expert_heads)
        self.label = LabelEncoder(len(cfg.emotions), dim)
        self.text = nn.Linear(cfg.text_embedding_dim, dim)
        self.audio = nn.Linear(cfg.audio_emotion_features, dim)
        self.modality = nn.Parameter(torch.zeros(3, dim))  # which modality a feature token came from
        self.queries = nn.Parameter(torch.randn(cfg.emotion_tokens, dim) * dim**-0.5)
        self.norm_kv = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(
        self,
        label: torch.Tensor | None = None,
        text_embedding: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """At least one condition; each is ``(B, features)``. Returns the emotion tokens ``(B, K, D)``."""
        features = []
        if label is not None:
            features.append(self.label(label) + self.modality[0])
        if text_embedding is not None:
            features.append(self.text(text_embedding)[:, None] + self.modality[1])
        if audio_features is not None:
            features.append(self.audio(audio_features)[:, None] + self.modality[2])
        if not features:
            raise ValueError("Emotion-to-Latents needs a label, a text embedding or audio features")
        kv = self.norm_kv(torch.cat(features, dim=1))
        batch = kv.shape[0]
        queries = self.queries[None].expand(batch, -1, -1).to(kv.dtype)
        tokens = queries + self.to_out(multi_head_attention(self.to_q(queries), self.to_k(kv), self.to_v(kv), self.heads))
        return tokens + self.ff(tokens)

    def add_emotion(self) -> None:
        self.label.add_emotion()
