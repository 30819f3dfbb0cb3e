"""The MoEE U-Net: shapes, identity initialisation, gates reaching the network, SD 1.5 key layout."""

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock

from engine.diffusion.config import sd15_config, tiny_config
from engine.diffusion.model import MoEEModel
from engine.moee import BatchGates, GateControl
from tests.engine_helpers import tiny_model

FRAMES = 3


def run(model: MoEEModel, weights=None, noise_seed=0, frames=FRAMES, masks=None, alpha=None):
    cfg = model.cfg
    g = torch.Generator().manual_seed(noise_seed)
    size = cfg.latent_size
    noisy = torch.randn(1, frames, cfg.latent_channels, size, size, generator=g)
    ref_latent = torch.randn(1, cfg.latent_channels, size, size, generator=torch.Generator().manual_seed(9))
    window = torch.randn(1, frames, 12, cfg.audio.n_mels, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        reference = model.denoiser.compute_reference(ref_latent)
        audio = model.denoiser.encode_audio(window)
        label = torch.zeros(1, model.num_emotions) if weights is None else torch.tensor([weights]).float()
        tokens = model.denoiser.emotion_latents(label)
        gates = None
        if weights is not None:
            gates = BatchGates.stack([GateControl(weights, masks, alpha)] * frames, model.num_emotions)
        return model.denoiser(noisy, 500, reference, audio, tokens, gates)


def test_output_shape_and_module_shapes():
    model = tiny_model()
    cfg = model.cfg
    out = run(model)
    assert out.shape == (1, FRAMES, cfg.latent_channels, cfg.latent_size, cfg.latent_size)
    blocks = [m for m in model.denoiser.unet.modules() if isinstance(m, BasicTransformerBlock)]
    assert len(model.denoiser.extras) == len(blocks) > 0
    with torch.no_grad():
        reference = model.denoiser.compute_reference(torch.zeros(2, 4, 16, 16))
        assert set(reference.states) == set(model.denoiser.block_names_attn1())
        assert reference.context.shape == (2, cfg.moee.reference_context_grid**2, cfg.unet["cross_attention_dim"])
        audio = model.denoiser.encode_audio(torch.zeros(2, 5, 12, cfg.audio.n_mels))
        assert audio.shape == (2, 5, cfg.moee.audio_tokens, cfg.moee.audio_dim)
        tokens = model.denoiser.emotion_latents(torch.zeros(2, 6), torch.zeros(2, 384), torch.zeros(2, 32))
        assert tokens.shape == (2, cfg.moee.emotion_tokens, cfg.moee.emotion_dim)


def test_new_modules_start_as_identity():
    torch.manual_seed(0)
    model = MoEEModel(tiny_config()).eval()  # not randomised: zero-initialised output projections
    neutral = run(model, [0.0] * 6)
    emotional = run(model, [0.5, 0, 0, 0, 0, 0.5])
    torch.testing.assert_close(neutral, emotional)


def test_a_slider_change_changes_the_unet_output():
    model = tiny_model()
    calm = run(model, [0.0, 0, 0, 0, 0, 0])
    happy = run(model, [1.0, 0, 0, 0, 0, 0])
    angry = run(model, [0, 0, 1.0, 0, 0, 0])
    assert (calm - happy).abs().mean() > 1e-4
    assert (happy - angry).abs().mean() > 1e-4


def test_painted_mask_reaches_the_unet():
    model = tiny_model()
    masks = np.zeros((6, 32, 32), np.float32)
    alpha = np.zeros(6, np.float32)
    alpha[2] = 1.0
    unpainted = run(model, [0, 0, 1.0, 0, 0, 0], masks=masks, alpha=alpha)
    masks[2, :16] = 1.0
    painted = run(model, [0, 0, 1.0, 0, 0, 0], masks=masks, alpha=alpha)
    assert (painted - unpainted).abs().mean() > 1e-5


def test_temporal_attention_links_frames():
    model = tiny_model()
    base = run(model, [0.5, 0, 0, 0, 0, 0.5], noise_seed=0)
    cfg = model.cfg
    size = cfg.latent_size
    g = torch.Generator().manual_seed(0)
    noisy = torch.randn(1, FRAMES, cfg.latent_channels, size, size, generator=g)
    noisy[0, 0] += 1.0  # only frame 0 changes
    ref_latent = torch.randn(1, cfg.latent_channels, size, size, generator=torch.Generator().manual_seed(9))
    window = torch.randn(1, FRAMES, 12, cfg.audio.n_mels, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        reference = model.denoiser.compute_reference(ref_latent)
        tokens = model.denoiser.emotion_latents(torch.tensor([[0.5, 0, 0, 0, 0, 0.5]]))
        gates = BatchGates.stack([GateControl([0.5, 0, 0, 0, 0, 0.5])] * FRAMES, 6)
        out = model.denoiser(noisy, 500, reference, model.denoiser.encode_audio(window), tokens, gates)
    assert (out[0, 2] - base[0, 2]).abs().mean() > 1e-5  # frame 2 sees frame 0 through temporal attention


def test_sd15_unet_keys_match_diffusers_on_the_meta_device():
    cfg = sd15_config()
    with torch.device("meta"):
        model = MoEEModel(cfg)
        reference = UNet2DConditionModel(**cfg.unet)
        vae = AutoencoderKL(**cfg.vae)
    keys = set(reference.state_dict())
    assert set(model.denoiser.unet.state_dict()) == keys
    assert set(model.denoiser.reference_net.state_dict()) == keys
    assert set(model.vae.state_dict()) == set(vae.state_dict())
    n_params = sum(p.numel() for p in model.denoiser.unet.parameters())
    assert 850e6 < n_params < 880e6  # SD 1.5's U-Net has 859.5 M parameters
    assert len(model.denoiser.extras) == 16  # one MoEE block per SD 1.5 transformer block


def test_from_base_model_loads_a_local_diffusers_folder(tmp_path):
    cfg = tiny_config()
    torch.manual_seed(3)
    UNet2DConditionModel(**cfg.unet).save_pretrained(tmp_path / "unet")
    AutoencoderKL(**cfg.vae).save_pretrained(tmp_path / "vae")
    model = MoEEModel.from_base_model(tiny_config(), tmp_path)
    saved = UNet2DConditionModel.from_pretrained(tmp_path / "unet").state_dict()
    for key, value in saved.items():
        assert torch.equal(model.denoiser.unet.state_dict()[key], value)
        assert torch.equal(model.denoiser.reference_net.state_dict()[key], value)


def test_a_single_frame_runs_the_temporal_module_as_in_training():
    """A one-frame preview must see the same temporal term as a frame of a trained clip (softmax over one key)."""
    from engine.diffusion.attention import TemporalAttention, sinusoidal_positions

    torch.manual_seed(0)
    temporal = TemporalAttention(16, heads=2)
    torch.nn.init.normal_(temporal.to_out.weight, std=0.3)
    x = torch.randn(1, 9, 16)
    with torch.no_grad():
        _, _, v = temporal.to_qkv(temporal.norm(x) + sinusoidal_positions(1, 16)[None]).chunk(3, dim=-1)
        torch.testing.assert_close(temporal(x, num_frames=1), x + temporal.to_out(v))


def test_reference_concat_feeds_the_portrait_latent_to_the_unet_input():
    """With ``reference_concat`` the portrait latent reaches the U-Net even with the ReferenceNet's input cut."""
    cfg = tiny_config()
    cfg.moee.reference_concat = True
    torch.manual_seed(0)
    model = MoEEModel(cfg).eval()
    assert model.denoiser.unet.conv_in.in_channels == 2 * cfg.latent_channels
    assert model.denoiser.reference_net.conv_in.in_channels == cfg.latent_channels  # still SD-shaped
    size = cfg.latent_size
    noisy = torch.randn(1, FRAMES, cfg.latent_channels, size, size, generator=torch.Generator().manual_seed(1))
    tokens = model.denoiser.emotion_latents(torch.zeros(1, 6))
    outs = []
    with torch.no_grad():
        for seed in (2, 3):
            ref_latent = torch.randn(1, cfg.latent_channels, size, size, generator=torch.Generator().manual_seed(seed))
            reference = model.denoiser.compute_reference(ref_latent)
            reference.states = {k: torch.zeros_like(v) for k, v in reference.states.items()}
            reference.context = torch.zeros_like(reference.context)
            outs.append(model.denoiser(noisy, 500, reference, None, tokens))
    assert outs[0].shape == noisy.shape
    assert not torch.allclose(outs[0], outs[1])
