"""TimesNet: the FFT finds a sine's period, folding into a 2-D grid and back keeps every step in place."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stratcast.daemon.zoo.models.timesnet import TimesBlock, TimesNet, TimesNetConfig, top_periods


@pytest.mark.parametrize("period", [4, 6, 12])
def test_the_strongest_period_is_the_sines(period: int) -> None:
    t = torch.arange(48, dtype=torch.float32)
    x = torch.sin(2 * math.pi * t / period)[None, :, None].expand(2, -1, 3)  # [B, T, D]
    periods, amplitudes = top_periods(x, 2)
    assert periods[:, 0].tolist() == [period, period]
    assert (amplitudes[:, 0] > amplitudes[:, 1]).all()


@pytest.mark.parametrize("period", [1, 5, 7, 24])
def test_folding_and_unfolding_keeps_every_step_in_place(period: int) -> None:
    block = TimesBlock(TimesNetConfig.tiny())
    block.conv = nn.Identity()
    x = torch.randn(3, 24, 4)
    torch.testing.assert_close(block.fold_conv(x, period), x)


def test_windows_with_different_periods_are_folded_by_their_own() -> None:
    torch.manual_seed(0)
    config = TimesNetConfig(d_model=4, d_ff=4, n_layers=1, top_k=2, n_kernels=2, dropout=0.0)
    model = TimesNet(config, input_size=24, horizon=6).eval()
    t = torch.arange(24, dtype=torch.float32)
    x = torch.stack([torch.sin(2 * math.pi * t / p) for p in (3, 4, 6, 8)])  # [4, L]
    together = model(x)
    alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone)
