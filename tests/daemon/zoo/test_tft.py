"""TFT's gated residual networks can switch themselves off, its attention is causal and averages shared-value heads."""

import torch
from torch import nn
from torch.nn import functional as F

from stratcast.daemon.zoo.blocks.attention import InterpretableAttention
from stratcast.daemon.zoo.blocks.gated import GLU, GRN, GroupedLinear, VariableSelection
from stratcast.daemon.zoo.models.tft import TFT, TFTConfig


def shut(glu: GLU) -> None:
    """Close a GLU's gate: ``sigmoid(0 g - 1e4)`` is 0 for any input."""
    layer = glu.gate_and_value
    assert isinstance(layer, nn.Linear | GroupedLinear)
    with torch.no_grad():
        if isinstance(layer, GroupedLinear):  # [G, in, 2 out], the gate's half first
            layer.weight[..., : layer.weight.shape[-1] // 2] = 0.0
            layer.bias[..., : layer.bias.shape[-1] // 2] = -1e4
        else:  # nn.Linear: [2 out, in], the gate's rows first
            layer.weight[: layer.weight.shape[0] // 2] = 0.0
            layer.bias[: layer.bias.shape[0] // 2] = -1e4


def test_a_grn_with_its_gate_shut_passes_the_skip_through():
    torch.manual_seed(0)
    grn = GRN(6, 5, 6, dropout=0.0)
    a = 3.0 * torch.randn(4, 7, 6) + 1.0
    assert not torch.allclose(grn(a), F.layer_norm(a, (6,)), atol=1e-3)
    shut(grn.gate.glu)
    torch.testing.assert_close(grn(a), F.layer_norm(a, (6,)))


def test_a_widening_grn_with_its_gate_shut_passes_its_projected_input_through():
    torch.manual_seed(0)
    grn = GRN(4, 5, 9, dropout=0.0)
    shut(grn.gate.glu)
    a = torch.randn(3, 4)
    torch.testing.assert_close(grn(a), F.layer_norm(grn.skip(a), (9,)))


def test_grouped_grns_with_their_gates_shut_pass_each_variable_through():
    torch.manual_seed(0)
    grn = GRN(6, 6, 6, dropout=0.0, groups=3)
    shut(grn.gate.glu)
    a = torch.randn(2, 5, 3, 6)
    torch.testing.assert_close(grn(a), F.layer_norm(a, (6,)))


def test_variable_selection_weights_are_a_distribution_over_the_variables():
    torch.manual_seed(0)
    selection = VariableSelection(3, 8, dropout=0.0)
    selected, weights = selection(torch.randn(2, 5, 3, 8))
    assert selected.shape == (2, 5, 8) and weights.shape == (2, 5, 3)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5))


def test_interpretable_attention_does_not_see_later_positions():
    torch.manual_seed(0)
    attention = InterpretableAttention(8, 2, 0.0).eval()
    x = torch.randn(3, 10, 8)
    changed = x.clone()
    changed[:, 6:] += 1.0
    (before, weights), (after, _) = attention(x), attention(changed)
    torch.testing.assert_close(before[:, :6], after[:, :6])
    assert not torch.allclose(before[:, 6:], after[:, 6:])
    assert (weights.triu(1) == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 10))


def test_interpretable_attention_averages_heads_that_share_one_value_projection():
    torch.manual_seed(0)
    attention = InterpretableAttention(8, 4, 0.0, causal=False).eval()
    x = torch.randn(2, 5, 8)
    out, _ = attention(x)
    q, k = attention.qk(x).reshape(2, 5, 2, 4, 2).unbind(2)  # [B, N, 2*h*d] -> 2 x [B, N, h, d]
    values = attention.value(x)  # [B, N, d], one for every head
    heads = [
        attention.out(torch.softmax(q[:, :, i] @ k[:, :, i].transpose(1, 2) / 2**0.5, dim=-1) @ values)
        for i in range(4)
    ]
    torch.testing.assert_close(out, torch.stack(heads).mean(0))


def test_a_forecast_step_does_not_depend_on_later_horizon_steps():
    torch.manual_seed(0)
    model = TFT(TFTConfig.tiny(), input_size=12, horizon=5, n_outputs=3).eval()
    x = torch.randn(4, 12)
    before, past_weights, attention = model.decode(x)
    with torch.no_grad():
        model.position.weight[12 + 3] += 1.0  # the time index of the fourth horizon step
    after = model(x)
    torch.testing.assert_close(before[:, :3], after[:, :3])
    assert not torch.allclose(before[:, 3:], after[:, 3:])
    assert past_weights.shape == (4, 12, 3) and attention.shape == (4, 5, 17)
    assert (attention[:, 0, 13:] == 0).all()  # the first horizon step attends up to itself
