"""MoEE's training loss (CVPR 2025, Sec. 3.4) and the masked-noisy-sampling mouth mask.

``L = L_latent + L_spatial`` with

* ``L_latent = E ||eps - eps_theta(z_t, t, c)||^2`` (MSE on the predicted noise);
* ``L_spatial = w(t) * (||I_p - I_gt||_1 + ||V(I_p) - V(I_gt)||^2)`` on decoded frames, where
  ``I_p = D(x0_hat)`` is the VAE decoding of the clean latent predicted from the noise estimate,
  ``x0_hat = (z_t - sqrt(1 - abar_t) * eps_theta) / sqrt(abar_t)`` (``abar`` = the scheduler's
  ``alphas_cumprod``), ``V`` = :class:`training.perceptual.FixedPerceptualNet`, and
  ``w(t) = cos(t * pi / (2T))`` down-weights very noisy timesteps whose ``x0_hat`` is a blur.

Masked noisy sampling, mouth part: the paper masks the mouth (found from face landmarks) so the
emotion experts learn expression, not lip shape. Here **the loss is masked** (``MOUTH_MASK_LOSS``):
in stage 2 / expert training the per-pixel losses are multiplied by ``1 - mouth_mask`` (latent
MSE with the mask area-resized to the latent grid, L1 and perceptual terms in image space), so no
gradient reaches the experts from the mouth region, which is driven by the audio and was learnt in
stage 1. Masking the loss rather than the expert input keeps the forward pass identical to
inference. The trainer's ``--mouth-mask none`` / ``--no-noisy-sampling`` switch it off (ablation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.perceptual import FixedPerceptualNet, perceptual_distance

#: Where the mouth mask is applied during stage 2 / expert training.
MOUTH_MASK_LOSS = "loss"
MOUTH_MASK_NONE = "none"
MOUTH_MASK_MODES = (MOUTH_MASK_LOSS, MOUTH_MASK_NONE)
#: Weight of the VAE's KL term (stage ``vae``): small, as in Stable Diffusion's KL-f8 autoencoder.
VAE_KL_WEIGHT = 1e-6
#: Weight of the perceptual term in the VAE stage.
VAE_PERCEPTUAL_WEIGHT = 1.0
#: Smallest ``sqrt(abar_t)`` divided by when recovering ``x0_hat`` (avoids blow-ups at t ~ T).
MIN_SQRT_ALPHA = 1e-3


def timestep_weight(t: torch.Tensor | float | int, num_train_timesteps: int) -> torch.Tensor:
    """The paper's ``w(t) = cos(t * pi / (2T))``: 1 at ``t = 0``, 0 at ``t = T``."""
    t = torch.as_tensor(t, dtype=torch.float32)
    return torch.cos(t * math.pi / (2.0 * num_train_timesteps))


def predict_x0(noisy: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``x0_hat = (z_t - sqrt(1 - abar_t) * eps) / sqrt(abar_t)``; ``t`` has one entry per leading row."""
    abar = alphas_cumprod.to(noisy.device, torch.float32)[t.long()]
    shape = (-1,) + (1,) * (noisy.ndim - 1)
    sqrt_a = abar.sqrt().clamp_min(MIN_SQRT_ALPHA).reshape(shape).to(noisy.dtype)
    sqrt_1ma = (1.0 - abar).sqrt().reshape(shape).to(noisy.dtype)
    return (noisy - sqrt_1ma * eps) / sqrt_a


def masked_mean(values: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` weighted by ``keep`` (broadcast), or the plain mean when ``keep`` is None."""
    if keep is None:
        return values.mean()
    keep = keep.expand_as(values).to(values.dtype)
    return (values * keep).sum() / keep.sum().clamp_min(1e-6)


def latent_loss(eps_pred: torch.Tensor, eps: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``L_latent = ||eps - eps_theta||^2`` (mean), optionally masked (``keep`` in latent space)."""
    return masked_mean((eps_pred.float() - eps.float()).pow(2), keep)


def spatial_loss(pred_images: torch.Tensor, gt_images: torch.Tensor, t: torch.Tensor, num_train_timesteps: int,
                 perceptual: FixedPerceptualNet, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``L_spatial = w(t) * (||I_p - I_gt||_1 + ||V(I_p) - V(I_gt)||^2)``, averaged over the batch.

    ``pred_images`` / ``gt_images``: ``(N, 3, H, W)`` in -1..1; ``t``: ``(N,)``; ``keep``: optional
    ``(N, 1, H, W)`` image-space weight (``1 - mouth_mask``).
    """
    pred, gt = pred_images.float(), gt_images.float()
    l1 = (pred - gt).abs().mean(dim=1, keepdim=True)
    if keep is None:
        l1_per = l1.mean(dim=(1, 2, 3))
    else:
        l1_per = (l1 * keep).sum(dim=(1, 2, 3)) / keep.sum(dim=(1, 2, 3)).clamp_min(1e-6)
    perc = perceptual_distance(perceptual, pred, gt, keep)
    w = timestep_weight(t, num_train_timesteps).to(pred.device)
    return (w * (l1_per + perc)).mean()


def latent_keep_mask(mouth: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """``1 - mouth`` area-resized from image space ``(N, 1, H, W)`` to the latent grid ``(N, 1, h, w)``."""
    return 1.0 - F.interpolate(mouth.float(), size=latent_hw, mode="area")


def emphasis_map(mask: torch.Tensor, weight: float, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Per-pixel loss weight ``1 + lambda * mask`` that counts a region's errors more.

    Used for the lips in stage 1 (``--lip-weight``, as Hallo weights the lips) and for the face's
    expression regions in stage 2 (``--expression-weight``). ``mask``: image-space masks
    ``(N, 1, H, W)`` in 0..1; ``size``: area-resize to this grid first (the latent grid for
    ``L_latent``). Such regions are a few percent of the frame, so without extra weight what they
    show is a small part of the loss and is learnt last.
    """
    if size is not None and tuple(mask.shape[-2:]) != tuple(size):
        mask = F.interpolate(mask.float(), size=size, mode="area")
    return 1.0 + weight * mask.float()


@dataclass
class VAELossParts:
    total: torch.Tensor
    l1: torch.Tensor
    perceptual: torch.Tensor
    kl: torch.Tensor


def vae_loss(recon: torch.Tensor, images: torch.Tensor, kl: torch.Tensor, perceptual: FixedPerceptualNet,
             kl_weight: float = VAE_KL_WEIGHT, perceptual_weight: float = VAE_PERCEPTUAL_WEIGHT) -> VAELossParts:
    """Autoencoder stage: ``L1 + lambda_p * ||V(x_rec) - V(x)||^2 + lambda_kl * KL``."""
    l1 = (recon.float() - images.float()).abs().mean()
    perc = perceptual_distance(perceptual, recon.float(), images.float()).mean()
    kl_mean = kl.float().mean()
    return VAELossParts(l1 + perceptual_weight * perc + kl_weight * kl_mean, l1, perc, kl_mean)
