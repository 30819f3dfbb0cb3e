"""The Emotion MoE module of MoEE (CVPR 2025, Sec. 3.2) and the studio's gate overrides.

Paper formulas, implemented as small pure functions below and combined in :class:`EmotionMoE`:

* local (per-token) assignment   ``s = sigmoid(G_local(X))``          ``s`` in R^{n x E}
* global assignment              ``g = softmax(G_global(Pool(X)))``   ``g`` in R^E
* combination                    ``X' = X + sum_i g_i * E_i(X * s_i)``

Each expert ``E_i`` is a cross-attention module whose keys/values are the emotion latent tokens.
The gates read a layer-normalised copy of ``X`` (as every attention in the Stable Diffusion
transformer block does); the residual stream itself is what the experts add to.

The studio overrides both gates through :class:`GateControl`: its global weights *replace* ``g``
(the six sliders), and its painted masks are area-resized to the layer's token grid and blended
into ``s`` as ``s' = (1 - alpha) * s_model + alpha * s_painted``. An expert whose effective
global weight is 0 for every sample is not computed at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.cross_attention import CrossAttention
from engine.errors import EmotionSpecError


# ----------------------------------------------------------------------------- pure gate math
def global_gate(logits: torch.Tensor) -> torch.Tensor:
    """``g = softmax(G_global(Pool(X)))``: from pooled gate logits ``(B, E)`` to weights summing to 1."""
    return torch.softmax(logits, dim=-1)


def local_gate(logits: torch.Tensor) -> torch.Tensor:
    """``s = sigmoid(G_local(X))``: per-token, per-expert weights in 0..1, shape ``(B, n, E)``."""
    return torch.sigmoid(logits)


def resize_mask_area(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize image-space masks ``(..., H, W)`` to a token grid ``(..., h, w)`` by area averaging.

    Area averaging keeps the painted *coverage* of each token: a token half covered by a stroke of
    value 1 gets 0.5.
    """
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, 1, *masks.shape[-2:]).float()
    if flat.shape[-2:] == (height, width):
        resized = flat
    elif flat.shape[-2] % height == 0 and flat.shape[-1] % width == 0:
        resized = F.avg_pool2d(flat, (flat.shape[-2] // height, flat.shape[-1] // width))
    else:
        resized = F.adaptive_avg_pool2d(flat, (height, width))
    return resized.reshape(*lead, height, width)


def blend_local_gate(s_model: torch.Tensor, s_painted: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``s' = (1 - alpha) * s_model + alpha * s_painted`` with ``alpha`` per expert (last axis)."""
    return (1.0 - alpha) * s_model + alpha * s_painted


def combine_experts(x: torch.Tensor, g: torch.Tensor, expert_outputs: dict[int, torch.Tensor]) -> torch.Tensor:
    """``X' = X + sum_i g_i * E_i(X * s_i)`` over the experts that were computed.

    ``x``: ``(B, n, C)``; ``g``: ``(B, E)``; ``expert_outputs[i]``: ``E_i(X * s_i)`` as ``(B, n, C)``.
    Experts absent from ``expert_outputs`` have ``g_i = 0`` and contribute nothing.
    """
    out = x
    for i, value in expert_outputs.items():
        out = out + g[:, i, None, None].to(value.dtype) * value
    return out


def active_experts(g: torch.Tensor, compute_all: bool = False) -> list[int]:
    """Indices of experts with a non-zero global weight in at least one sample (others are skipped)."""
    if compute_all:
        return list(range(g.shape[-1]))
    return [int(i) for i in torch.nonzero((g != 0).any(dim=0)).flatten().tolist()]


def token_grid(num_tokens: int, latent_height: int, latent_width: int) -> tuple[int, int]:
    """The ``(h, w)`` grid of a layer with ``num_tokens`` tokens, for a latent of the given size."""
    scale = math.sqrt(latent_height * latent_width / num_tokens)
    height = max(1, round(latent_height / scale))
    width = max(1, num_tokens // height)
    if height * width != num_tokens:
        raise ValueError(f"cannot map {num_tokens} tokens onto a {latent_height}x{latent_width} latent")
    return height, width


# ----------------------------------------------------------------------------- user overrides
@dataclass
class GateControl:
    """The user's overrides of the MoE gates: sliders (global) and brush (local).

    * ``global_weights``: one weight in 0..1 per emotion, replacing ``g``; ``None`` keeps the
      model's own ``g``. All zeros = neutral face (every expert skipped).
    * ``local_masks``: painted masks ``(E, H, W)`` in 0..1, image space (any resolution).
    * ``local_alpha``: per emotion, how much the painted mask overrides ``s`` (0 = not at all).
    """

    global_weights: Sequence[float] | np.ndarray | None = None
    local_masks: np.ndarray | torch.Tensor | None = None
    local_alpha: Sequence[float] | np.ndarray | None = None
    checked_for: int | None = field(default=None, repr=False, compare=False)  # set on validated copies

    def validated(self, num_emotions: int) -> GateControl:
        """Check shapes and ranges against a model with ``num_emotions`` experts; raise EmotionSpecError.

        Returns a normalised copy (numpy weights, tensor masks); a copy already checked for the same
        number of emotions is returned as it is, so re-validating on the render path costs nothing.
        """
        if self.checked_for == num_emotions:
            return self
        weights = None
        if self.global_weights is not None:
            weights = np.asarray(self.global_weights, dtype=np.float32)
            if weights.shape != (num_emotions,):
                raise EmotionSpecError(
                    f"expected {num_emotions} global weights (one per emotion), got shape {weights.shape}"
                )
            _check_unit_range("global weight", weights)
        masks = alpha = None
        if self.local_masks is not None:
            masks = torch.as_tensor(np.asarray(self.local_masks, dtype=np.float32))
            if masks.ndim != 3 or masks.shape[0] != num_emotions:
                raise EmotionSpecError(
                    f"painted masks must have shape ({num_emotions}, H, W), got {tuple(masks.shape)}"
                )
            _check_unit_range("painted mask value", masks.numpy())
            alpha_values = np.ones(num_emotions, np.float32) if self.local_alpha is None else self.local_alpha
            alpha = np.asarray(alpha_values, dtype=np.float32)
            if alpha.shape != (num_emotions,):
                raise EmotionSpecError(f"expected {num_emotions} mask alphas, got shape {alpha.shape}")
            _check_unit_range("mask alpha", alpha)
        return GateControl(weights, masks, alpha, checked_for=num_emotions)


#: What a render takes for the gates: one control for every frame, one per frame index, or None (neutral).
GateSpec = GateControl | Callable[[int], GateControl] | None


def _check_unit_range(what: str, values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        raise EmotionSpecError(f"a {what} is NaN or infinite; values must be numbers in 0..1")
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        raise EmotionSpecError(f"a {what} lies outside 0..1 (min {values.min():.3g}, max {values.max():.3g})")


@dataclass
class BatchGates:
    """Validated overrides for one U-Net call: per-sample rows (batch = clips x frames)."""

    global_weights: torch.Tensor | None = None  # (B, E)
    local_masks: torch.Tensor | None = None  # (B, E, H, W)
    local_alpha: torch.Tensor | None = None  # (B, E)
    compute_all_experts: bool = False  # the naive baseline: every expert always runs

    @staticmethod
    def stack(controls: Sequence[GateControl | None], num_emotions: int) -> BatchGates:
        """One row per sample from per-sample controls (already validated or not)."""
        checked = [c.validated(num_emotions) if c is not None else GateControl() for c in controls]
        weights = masks = alpha = None
        if any(c.global_weights is not None for c in checked):
            if not all(c.global_weights is not None for c in checked):
                raise EmotionSpecError("either every frame or no frame must carry slider weights")
            weights = torch.as_tensor(np.stack([c.global_weights for c in checked]))
        if any(c.local_masks is not None for c in checked):
            shape = next(c.local_masks.shape for c in checked if c.local_masks is not None)
            rows, alphas = [], []
            for c in checked:
                if c.local_masks is None:
                    rows.append(torch.zeros(shape))
                    alphas.append(torch.zeros(num_emotions))
                else:
                    if c.local_masks.shape != shape:
                        raise EmotionSpecError("painted masks of one clip must all have one size")
                    rows.append(c.local_masks)
                    alphas.append(torch.as_tensor(c.local_alpha))
            masks, alpha = torch.stack(rows), torch.stack(alphas)
        return BatchGates(weights, masks, alpha)

    @staticmethod
    def concat(parts: Sequence[BatchGates], rows: int) -> BatchGates | None:
        """The rows of several gate sets of ``rows`` samples each, one after the other (one batched call).

        Parts without painted masks get zero masks. None where the parts cannot share one call: some
        carry slider weights and some let the model's own gate decide.
        """
        weights = [p.global_weights for p in parts]
        if any(w is None for w in weights) and not all(w is None for w in weights):
            return None
        shape = next((p.local_masks.shape[1:] for p in parts if p.local_masks is not None), None)
        masks = alpha = None
        if shape is not None:
            num = shape[0]
            masks = torch.cat([p.local_masks if p.local_masks is not None else torch.zeros(rows, *shape)
                               for p in parts])
            alpha = torch.cat([torch.as_tensor(p.local_alpha) if p.local_alpha is not None
                               else torch.zeros(rows, num) for p in parts])
        return BatchGates(None if weights[0] is None else torch.cat(weights), masks, alpha,
                          any(p.compute_all_experts for p in parts))


# ----------------------------------------------------------------------------- modules
class EmotionExpert(CrossAttention):
    """One expert ``E_i``: cross-attention from U-Net tokens to the emotion latent tokens.

    The output projection starts at zero, so a new expert is the identity of the residual stream.
    """

    def forward(self, x: torch.Tensor, emotion_tokens: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, n, C)`` gated tokens; ``emotion_tokens``: ``(B, K, D)``. Returns ``(B, n, C)``."""
        return self.attend(x, emotion_tokens)


@dataclass
class GateRecord:
    """The gates one MoE layer used in its last recorded call (for the studio's heat maps)."""

    local: torch.Tensor  # (B, h, w, E) effective s after overrides
    global_: torch.Tensor  # (B, E) effective g after overrides


class EmotionMoE(nn.Module):
    """``X' = X + sum_i g_i * E_i(X * s_i)`` with E experts (6 basic emotions + custom slots)."""

    def __init__(self, dim: int, emotion_dim: int, num_experts: int, heads: int) -> None:
        super().__init__()
        self.dim, self.emotion_dim, self.heads = dim, emotion_dim, heads
        self.norm = nn.LayerNorm(dim)
        self.experts = nn.ModuleList(EmotionExpert(dim, emotion_dim, heads) for _ in range(num_experts))
        self.gate_local = nn.Linear(dim, num_experts)
        self.gate_global = nn.Linear(dim, num_experts)
        self.record: GateRecord | None = None

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def add_expert(self) -> int:
        """Append an expert slot (a custom emotion); gate rows start at zero. Returns its index."""
        ref = self.gate_local.weight
        self.experts.append(EmotionExpert(self.dim, self.emotion_dim, self.heads).to(ref.device, ref.dtype))
        for name in ("gate_local", "gate_global"):
            old: nn.Linear = getattr(self, name)
            new = nn.Linear(self.dim, old.out_features + 1).to(ref.device, ref.dtype)
            with torch.no_grad():
                new.weight.zero_()
                new.bias.zero_()
                new.weight[:-1] = old.weight
                new.bias[:-1] = old.bias
            setattr(self, name, new)
        return self.num_experts - 1

    def gates(self, x_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's own gates: ``s`` ``(B, n, E)`` and ``g`` ``(B, E)``."""
        s = local_gate(self.gate_local(x_norm))
        g = global_gate(self.gate_global(x_norm.mean(dim=1)))
        return s, g

    def forward(
        self,
        x: torch.Tensor,
        emotion_tokens: torch.Tensor,
        grid: tuple[int, int],
        overrides: BatchGates | None = None,
        record: bool = False,
    ) -> torch.Tensor:
        """Apply the MoE to tokens ``x`` ``(B, n, C)`` laid out on ``grid`` = ``(h, w)``.

        ``emotion_tokens`` is ``(B, K, D)``; ``overrides`` hold per-sample slider / brush values.
        """
        x_norm = self.norm(x)
        s, g = self.gates(x_norm)
        compute_all = False
        if overrides is not None:
            compute_all = overrides.compute_all_experts
            if overrides.global_weights is not None:
                g = overrides.global_weights.to(x.device, x.dtype)
            if overrides.local_masks is not None:
                painted = resize_mask_area(overrides.local_masks.to(x.device), *grid)  # (B, E, h, w)
                painted = painted.flatten(2).transpose(1, 2).to(x.dtype)  # (B, n, E)
                alpha = overrides.local_alpha.to(x.device, x.dtype)[:, None, :]
                s = blend_local_gate(s, painted, alpha)
        if record:
            self.record = GateRecord(s.detach().reshape(s.shape[0], *grid, -1).float().cpu(), g.detach().float().cpu())
        outputs = {
            i: self.experts[i](x_norm * s[..., i : i + 1], emotion_tokens)
            for i in active_experts(g, compute_all)
        }
        return combine_experts(x, g, outputs)
