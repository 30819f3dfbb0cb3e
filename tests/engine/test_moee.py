"""The Emotion MoE gate math: X' = X + sum_i g_i * E_i(X * s_i), slider and brush overrides."""

import numpy as np
import pytest
import torch

from engine.errors import EmotionSpecError
from engine.moee import (
    BatchGates,
    EmotionMoE,
    GateControl,
    active_experts,
    blend_local_gate,
    resize_mask_area,
    token_grid,
)

DIM, EMO_DIM, EXPERTS, GRID = 16, 8, 6, (4, 4)


@pytest.fixture
def moe() -> EmotionMoE:
    torch.manual_seed(0)
    layer = EmotionMoE(DIM, EMO_DIM, EXPERTS, heads=2)
    with torch.no_grad():
        for expert in layer.experts:
            expert.to_out.weight.normal_(0, 0.3)
            expert.to_out.bias.normal_(0, 0.3)
    return layer.eval()


def inputs(batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 16, DIM, generator=g), torch.randn(batch, 5, EMO_DIM, generator=g)


def count_calls(layer: EmotionMoE) -> list[int]:
    calls = [0] * layer.num_experts
    for i, expert in enumerate(layer.experts):
        expert.register_forward_hook(lambda *_a, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


def sliders(weights) -> BatchGates:
    return BatchGates.stack([GateControl(weights)], EXPERTS)


def test_one_hot_global_weight_is_that_expert_alone(moe):
    x, tokens = inputs()
    out = moe(x, tokens, GRID, sliders([0, 0, 1, 0, 0, 0]))
    x_norm = moe.norm(x)
    s, _ = moe.gates(x_norm)
    expected = x + moe.experts[2](x_norm * s[..., 2:3], tokens)
    torch.testing.assert_close(out, expected)


def test_all_zero_global_weights_is_identity_and_runs_no_expert(moe):
    x, tokens = inputs()
    calls = count_calls(moe)
    out = moe(x, tokens, GRID, sliders([0] * EXPERTS))
    assert torch.equal(out, x)
    assert calls == [0] * EXPERTS


def test_zero_weight_experts_are_skipped(moe):
    x, tokens = inputs()
    calls = count_calls(moe)
    moe(x, tokens, GRID, sliders([0.7, 0, 0, 0, 0, 0.3]))
    assert calls == [1, 0, 0, 0, 0, 1]


def test_naive_baseline_runs_every_expert(moe):
    x, tokens = inputs()
    calls = count_calls(moe)
    gates = sliders([0.7, 0, 0, 0, 0, 0.3])
    gates.compute_all_experts = True
    moe(x, tokens, GRID, gates)
    assert calls == [1] * EXPERTS


def test_slider_weights_scale_expert_contributions_linearly(moe):
    x, tokens = inputs()
    half = moe(x, tokens, GRID, sliders([0.5, 0, 0, 0, 0, 0])) - x
    full = moe(x, tokens, GRID, sliders([1.0, 0, 0, 0, 0, 0])) - x
    torch.testing.assert_close(full, 2 * half)


def test_model_gates_are_softmax_and_sigmoid(moe):
    x, _ = inputs(batch=3)
    with torch.no_grad():
        s, g = moe.gates(moe.norm(x))
    torch.testing.assert_close(g.sum(-1), torch.ones(3))
    assert s.shape == (3, 16, EXPERTS) and float(s.min()) > 0 and float(s.max()) < 1


def test_painted_mask_changes_only_the_tokens_under_it(moe):
    x, tokens = inputs()
    masks = np.zeros((EXPERTS, 32, 32), np.float32)
    alpha = np.zeros(EXPERTS, np.float32)
    alpha[2] = 1.0
    base = moe(x, tokens, GRID, BatchGates.stack([GateControl([0, 0, 1, 0, 0, 0], masks, alpha)], EXPERTS))
    masks[2, 0:8, 8:16] = 1.0  # exactly token (row 0, col 1) of the 4x4 grid at 32x32 px
    painted = moe(x, tokens, GRID, BatchGates.stack([GateControl([0, 0, 1, 0, 0, 0], masks, alpha)], EXPERTS))
    changed = (painted - base).abs().sum(-1).reshape(GRID) > 1e-6
    expected = np.zeros(GRID, bool)
    expected[0, 1] = True
    assert np.array_equal(changed.numpy(), expected)


def test_painted_mask_follows_each_layer_resolution():
    masks = torch.zeros(1, 64, 64)
    masks[0, :16, :16] = 1.0
    assert resize_mask_area(masks, 8, 8)[0, :2, :2].eq(1).all()
    assert resize_mask_area(masks, 8, 8)[0].sum() == 4
    coarse = resize_mask_area(masks, 2, 2)[0]
    torch.testing.assert_close(coarse, torch.tensor([[0.25, 0.0], [0.0, 0.0]]))


def test_blend_local_gate_formula():
    s_model, s_painted = torch.full((1, 4, 2), 0.2), torch.ones(1, 4, 2)
    out = blend_local_gate(s_model, s_painted, torch.tensor([0.0, 0.5]))
    torch.testing.assert_close(out[0, 0], torch.tensor([0.2, 0.6]))


def test_recorded_gates_show_the_painted_override(moe):
    x, tokens = inputs()
    masks = np.zeros((EXPERTS, 4, 4), np.float32)
    masks[1, :2] = 1.0
    alpha = np.zeros(EXPERTS, np.float32)
    alpha[1] = 1.0
    moe(x, tokens, GRID, BatchGates.stack([GateControl([0, 1, 0, 0, 0, 0], masks, alpha)], EXPERTS), record=True)
    local = moe.record.local[0, :, :, 1]
    assert local[:2].eq(1).all() and local[2:].eq(0).all()


def test_add_expert_keeps_existing_behaviour(moe):
    x, tokens = inputs()
    before = moe(x, tokens, GRID, sliders([0.5, 0.5, 0, 0, 0, 0]))
    index = moe.add_expert()
    assert index == EXPERTS and moe.gate_local.out_features == EXPERTS + 1
    after = moe(x, tokens, GRID, BatchGates.stack([GateControl([0.5, 0.5, 0, 0, 0, 0, 0])], EXPERTS + 1))
    torch.testing.assert_close(after, before)


@pytest.mark.parametrize(
    "control, message",
    [
        (GateControl([0.5] * 5), "expected 6 global weights"),
        (GateControl([1.5, 0, 0, 0, 0, 0]), "outside 0..1"),
        (GateControl([float("nan"), 0, 0, 0, 0, 0]), "NaN"),
        (GateControl(None, np.zeros((6, 8, 8)), [2.0] * 6), "outside 0..1"),
        (GateControl(None, np.zeros((5, 8, 8))), "painted masks must have shape"),
    ],
)
def test_invalid_overrides_get_clear_errors(control, message):
    with pytest.raises(EmotionSpecError, match=message):
        control.validated(6)


def test_active_experts_and_token_grid():
    assert active_experts(torch.tensor([[0.0, 0.2, 0.0], [0.0, 0.0, 0.1]])) == [1, 2]
    assert token_grid(64, 16, 16) == (8, 8)
    assert token_grid(8, 4, 8) == (2, 4)


def test_a_validated_control_is_not_checked_again():
    checked = GateControl([0.5, 0, 0, 0, 0, 0.5], np.zeros((6, 8, 8)), [1.0] * 6).validated(6)
    assert checked.validated(6) is checked
    with pytest.raises(EmotionSpecError, match="expected 7 global weights"):
        checked.validated(7)  # a different model is checked afresh
