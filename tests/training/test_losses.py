"""MoEE loss pieces: w(t), x0 recovery, spatial / latent losses with the mouth mask, the perceptual net."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler

from engine.diffusion.config import SchedulerConfig
from training import losses
from training.perceptual import FixedPerceptualNet, perceptual_distance

T = 1000


def test_timestep_weight_values() -> None:
    assert float(losses.timestep_weight(0, T)) == pytest.approx(1.0)
    assert float(losses.timestep_weight(T, T)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.timestep_weight(T // 2, T)) == pytest.approx(math.cos(math.pi / 4))
    w = losses.timestep_weight(torch.arange(0, T, 50), T)
    assert torch.all(w[1:] < w[:-1])


def test_predict_x0_inverts_add_noise() -> None:
    sched = DDPMScheduler(**vars(SchedulerConfig()))
    x0 = torch.randn(3, 4, 8, 8)
    eps = torch.randn_like(x0)
    t = torch.tensor([10, 400, 900])
    noisy = sched.add_noise(x0, eps, t)
    assert torch.allclose(losses.predict_x0(noisy, eps, t, sched.alphas_cumprod), x0, atol=1e-3)


def test_spatial_loss_zero_for_identical_and_weighted_by_t() -> None:
    net = FixedPerceptualNet()
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    t = torch.tensor([0, 0])
    assert float(losses.spatial_loss(img, img, t, T, net)) == pytest.approx(0.0, abs=1e-7)
    other = torch.rand(2, 3, 32, 32) * 2 - 1
    early = losses.spatial_loss(other, img, torch.tensor([0, 0]), T, net)
    late = losses.spatial_loss(other, img, torch.tensor([900, 900]), T, net)
    assert float(late) < float(early)
    assert float(losses.spatial_loss(other, img, torch.tensor([T, T]), T, net)) == pytest.approx(0.0, abs=1e-5)


def test_mouth_mask_excludes_the_mouth_from_the_loss() -> None:
    eps = torch.zeros(1, 2, 4, 8, 8)
    pred = torch.zeros_like(eps)
    pred[..., 6:, 2:6] = 5.0  # error only inside the "mouth"
    mouth = torch.zeros(2, 1, 32, 32)
    mouth[..., 24:, 8:24] = 1.0
    keep = losses.latent_keep_mask(mouth, (8, 8)).reshape(1, 2, 1, 8, 8)
    assert float(losses.latent_loss(pred, eps)) > 0
    assert float(losses.latent_loss(pred, eps, keep)) == pytest.approx(0.0)
    net = FixedPerceptualNet()
    a = torch.zeros(2, 3, 32, 32)
    b = a.clone()
    b[..., 26:30, 12:20] = 1.0
    keep_img = 1.0 - mouth
    unmasked = losses.spatial_loss(b, a, torch.zeros(2), T, net)
    masked = losses.spatial_loss(b, a, torch.zeros(2), T, net, keep_img)
    assert float(masked) < 0.2 * float(unmasked)


def test_perceptual_net_is_fixed_and_sensitive() -> None:
    a, b = FixedPerceptualNet(), FixedPerceptualNet()
    assert not any(p.requires_grad for p in a.parameters())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert all(torch.equal(u, v) for u, v in zip(a(x), b(x), strict=True))
    shifted = torch.roll(x, 2, dims=-1)
    assert float(perceptual_distance(a, shifted, x)) > 0
    assert float(perceptual_distance(a, x, x)) == 0.0


def test_vae_loss_parts() -> None:
    net = FixedPerceptualNet()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    parts = losses.vae_loss(x, x, torch.ones(2), net)
    assert float(parts.l1) == 0.0 and float(parts.perceptual) == 0.0
    assert float(parts.total) == pytest.approx(losses.VAE_KL_WEIGHT)


def test_lip_weight_counts_mouth_errors_more() -> None:
    eps = torch.zeros(1, 2, 4, 8, 8)
    mouth = torch.zeros(2, 1, 32, 32)
    mouth[..., 24:, 8:24] = 1.0
    weight = losses.emphasis_map(mouth, 4.0, (8, 8))
    assert weight.shape == (2, 1, 8, 8)
    assert float(weight[..., 6:, 2:6].min()) == pytest.approx(5.0) and float(weight[..., :6, :].max()) == 1.0
    weight = weight.reshape(1, 2, 1, 8, 8)
    in_mouth, elsewhere = torch.zeros_like(eps), torch.zeros_like(eps)
    in_mouth[..., 6:, 2:6] = 1.0
    elsewhere[..., :2, 2:6] = 1.0  # the same number of wrong latents, away from the mouth
    assert float(losses.latent_loss(in_mouth, eps)) == pytest.approx(float(losses.latent_loss(elsewhere, eps)))
    assert float(losses.latent_loss(in_mouth, eps, weight)) == pytest.approx(
        5.0 * float(losses.latent_loss(elsewhere, eps, weight)))
