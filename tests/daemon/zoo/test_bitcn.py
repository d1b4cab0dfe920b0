"""BiTCN's forward stack is causal and sees exactly its receptive field of the window."""

from __future__ import annotations

import pytest
import torch

from stratcast.daemon.zoo.blocks.conv import receptive_field
from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.models.bitcn import BiTCN, BiTCNConfig

INPUT = 40


def stack_output(model: BiTCN, x: torch.Tensor) -> torch.Tensor:
    """The forward stack's ``[B, C, L]`` features of windows ``x``."""
    out: torch.Tensor = model.forward_stack(value_and_indicator(x))
    return out


@pytest.mark.parametrize(("levels", "kernel"), [(3, 2), (2, 3)])
def test_forward_stack_sees_only_the_past_within_its_receptive_field(levels: int, kernel: int) -> None:
    torch.manual_seed(0)
    model = BiTCN(BiTCNConfig(hidden_size=4, num_levels=levels, kernel_size=kernel), input_size=INPUT, horizon=5)
    model.eval()
    field = receptive_field(kernel, [2**i for i in range(levels)])
    x = torch.randn(2, INPUT)
    base = stack_output(model, x)
    t = INPUT // 2
    moved = x.clone()
    moved[:, t] += 3.0
    changed = (stack_output(model, moved) - base).abs().amax(dim=(0, 1)) > 1e-6  # [L]: which steps moved
    assert not changed[:t].any()  # causal: nothing before the perturbed step
    assert changed[t : t + field].all()  # every step whose field holds t
    assert not changed[t + field :].any()  # and none beyond the field
