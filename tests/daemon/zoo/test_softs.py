"""SOFTS: the core pools every series without an S x S map, so the model is permutation equivariant and O(S)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from stratcast.daemon.zoo.models.softs import SOFTS, SOFTSConfig, stochastic_pool
from tests.daemon.engine.test_side_inputs import LEVELS, N, level_job

L, H = 52, 13


def model(*, seed: int = 0, config: SOFTSConfig | None = None) -> SOFTS:
    torch.manual_seed(seed)
    return SOFTS(config or SOFTSConfig.tiny(), input_size=L, horizon=H, n_outputs=2)


def panel(b: int, s: int, seed: int = 0) -> Tensor:
    """Windows [b, s, L] with many exact zeros, like weekly strategy profits."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, s, L, generator=gen)
    return x * (torch.rand(b, s, L, generator=gen) < 0.6)


def test_in_eval_a_row_s_forecasts_follow_its_series_when_they_are_permuted() -> None:
    net = model().eval()
    x = panel(3, 11)
    perm = torch.randperm(11, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(net(x[:, perm]), net(x)[:, perm])


def test_eval_pooling_is_the_softmax_weighted_mean_over_the_series() -> None:
    v = torch.randn(2, 7, 3)
    w = torch.softmax(v, dim=1)
    torch.testing.assert_close(stochastic_pool(v, sample=False), (w * v).sum(1, keepdim=True))


def test_training_pooling_keeps_one_series_value_per_channel_drawn_by_its_weight() -> None:
    torch.manual_seed(0)
    v = torch.randn(4, 9, 5)
    core = stochastic_pool(v, sample=True)  # [4, 1, 5]
    assert core.shape == (4, 1, 5)
    assert bool((core == v).any(dim=1).all())  # each channel's core is one of its series' values
    dominant = torch.zeros(1, 50, 1)
    dominant[0, 17, 0] = 30.0  # softmax weight ~1 on series 17
    draws = torch.cat([stochastic_pool(dominant, sample=True) for _ in range(20)])
    assert bool((draws == 30.0).all())


def flops(net: SOFTS, s: int) -> int:
    with FlopCounterMode(display=False) as counter:
        net(panel(2, s))
    return int(counter.get_total_flops())


def test_compute_is_linear_in_the_number_of_series() -> None:
    net = model().eval()
    assert flops(net, 200) == 2 * flops(net, 100)  # an S x S map would make it four times


def saved_bytes(net: SOFTS, s: int) -> int:
    sizes: list[int] = []

    def pack(t: Tensor) -> Tensor:
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(panel(1, s)).sum()
    return sum(sizes)


def test_training_memory_is_linear_in_the_number_of_series() -> None:
    net = model().train()
    torch.manual_seed(0)
    small, large = saved_bytes(net, 1500), saved_bytes(net, 6000)
    assert large <= 4.05 * small  # four times the series, at most four times the memory (the weights are fixed)


def test_a_full_panel_of_6000_series_trains_and_forecasts_in_one_window() -> None:
    net = model()
    x = panel(1, 6000)
    net(x).square().mean().backward()
    assert all(p.grad is not None and bool(p.grad.isfinite().all()) for p in net.parameters())
    with torch.no_grad():
        out = net.eval()(x)
    assert out.shape == (1, 6000, H, 2) and bool(out.isfinite().all())


@pytest.mark.parametrize("zero_indicator", [True, False])
def test_a_series_level_is_put_back_into_its_forecast(zero_indicator: bool) -> None:
    net = model(config=SOFTSConfig(d_model=8, d_core=4, d_ff=8, n_layers=1, zero_indicator=zero_indicator)).eval()
    x = panel(2, 5) + 1.0  # no exact zeros: the indicator does not change when the level moves
    shifted = net(x + 3.0)
    base = net(x)
    torch.testing.assert_close(shifted[..., 0], base[..., 0] + 3.0)  # the location moves with the level
    torch.testing.assert_close(shifted[..., 1], base[..., 1])  # the other outputs do not


@pytest.mark.parametrize("series", [0, 3])
def test_a_run_learns_each_series_level_and_forecasts_every_series_through_the_job(tmp_path: Path, series: int) -> None:
    tiny = ["d_model=8", "d_core=4", "d_ff=8", "n_layers=1"]
    forecast, metrics = level_job(tmp_path, "softs", ["batch_size=16", f"series_per_window={series}", *tiny])
    np.testing.assert_allclose(forecast, LEVELS, atol=0.3)
    assert metrics["holdout"]["strategies"] == N
