"""The perceptual feature network ``V`` of MoEE's spatial loss, built to work fully offline.

MoEE's spatial loss (paper, Sec. 3.4) compares decoded frames in a perceptual feature space:
``L_spatial = w(t) * (||I_p - I_gt||_1 + ||V(I_p) - V(I_gt)||^2)``. The paper uses a pretrained
network (VGG / LPIPS style). None can be downloaded here, so ``V`` is :class:`FixedPerceptualNet`:

* **fixed random-weight multi-scale conv features** -- three conv + ReLU stages at 1, 1/2 and 1/4
  resolution whose weights are drawn once from a fixed seed (``PERCEPTUAL_SEED``) and never
  trained. Random conv features are a known, surprisingly good perceptual proxy (Ulyanov et al.,
  "Deep Image Prior"; random-feature texture losses): they respond to local structure at several
  scales, not just to per-pixel colour;
* **Sobel gradients and a Laplacian pyramid** of the luminance -- fixed, interpretable edge and
  band-pass features, so expression edges (brows, mouth corners, wrinkles of AU9) weigh in.

Every feature map is normalised by its channel count so each scale contributes comparably. The
network is deterministic (same weights on every machine for the same seed), has no trainable
parameter, and is never silently dropped: the trainer always adds this term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Seed of the random (fixed) conv weights of ``V``.
PERCEPTUAL_SEED = 1234
#: Channels of the three conv stages.
PERCEPTUAL_CHANNELS = (16, 32, 32)
#: Levels of the Laplacian pyramid of the luminance.
LAPLACIAN_LEVELS = 3
#: Rec. 601 luma weights.
LUMA = (0.299, 0.587, 0.114)


class FixedPerceptualNet(nn.Module):
    """``V``: image ``(N, 3, H, W)`` in -1..1 -> list of feature maps (random conv + Sobel + Laplacian)."""

    def __init__(self, seed: int = PERCEPTUAL_SEED, channels: tuple[int, ...] = PERCEPTUAL_CHANNELS) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        convs = []
        in_ch = 3
        for out_ch in channels:
            conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
            fan_in = in_ch * 9
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                conv.bias.zero_()
            convs.append(conv)
            in_ch = out_ch
        self.convs = nn.ModuleList(convs)
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4.0
        self.register_buffer("sobel", torch.stack([sobel, sobel.t()])[:, None], persistent=False)
        self.register_buffer("luma", torch.tensor(LUMA).reshape(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        feats: list[torch.Tensor] = []
        h = images
        for index, conv in enumerate(self.convs):
            if index:
                h = F.avg_pool2d(h, 2)
            h = F.relu(conv(h))
            feats.append(h / h.shape[1] ** 0.5)
        gray = (images * self.luma.to(images.dtype)).sum(dim=1, keepdim=True)
        feats.append(F.conv2d(gray, self.sobel.to(images.dtype), padding=1))
        level = gray
        for _ in range(LAPLACIAN_LEVELS):
            down = F.avg_pool2d(level, 2)
            up = F.interpolate(down, size=level.shape[-2:], mode="bilinear", align_corners=False)
            feats.append(level - up)
            level = down
        return feats


def perceptual_distance(net: FixedPerceptualNet, pred: torch.Tensor, target: torch.Tensor,
                        weight: torch.Tensor | None = None) -> torch.Tensor:
    """``||V(I_p) - V(I_gt)||^2`` per sample (mean over features), ``(N,)``.

    ``weight``: optional image-space mask ``(N, 1, H, W)`` (1 = counts), resized to each feature map.
    """
    total = torch.zeros(pred.shape[0], device=pred.device, dtype=pred.dtype)
    for fp, ft in zip(net(pred), net(target), strict=True):
        sq = (fp - ft).pow(2).mean(dim=1, keepdim=True)
        if weight is not None:
            w = F.interpolate(weight, size=sq.shape[-2:], mode="area")
            total = total + (sq * w).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3)).clamp_min(1e-6)
        else:
            total = total + sq.mean(dim=(1, 2, 3))
    return total
