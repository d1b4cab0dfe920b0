"""Neural VAR: the low-rank recursion is the full VAR it represents, and a short training recovers a known VAR(1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from stratcast.daemon.zoo.models.neuralvar import NeuralVAR, NeuralVARConfig
from tests.daemon.engine.test_side_inputs import LEVELS, N, level_job

LINEAR = dict(num_layers=0, dropout=0.0)
"""No MLP: the model is a linear VAR with a diagonal and a low-rank part."""


def linear_var(*, n_series: int, lags: int, rank: int, input_size: int, horizon: int, **kw: bool) -> NeuralVAR:
    config = NeuralVARConfig(lags=lags, own_lags=lags, rank=rank, **LINEAR, **kw)  # type: ignore[arg-type]
    return NeuralVAR(config, input_size=input_size, horizon=horizon, n_series=n_series)


def test_the_low_rank_recursion_equals_the_full_var_it_represents() -> None:
    net = linear_var(n_series=5, lags=2, rank=1, input_size=3, horizon=2)
    with torch.no_grad():
        net.loadings.copy_(torch.arange(10.0).view(5, 2, 1) / 10)  # U_k[i] = (2i + k) / 10
        net.weights.copy_(torch.tensor([1.0, -1.0, 2.0, 0.5, -0.5, 1.5, 0.0, 1.0, 3.0, -2.0]).view(5, 2, 1))
        net.own.weight.copy_(torch.tensor([[0.5, -0.25]]))  # w_1, w_2
        net.own.bias.fill_(0.1)
        assert net.intercept is not None
        net.intercept.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    ids = torch.tensor([[4, 1, 3]])  # a window of three of the five series, in this order
    x = torch.tensor([[[9.0, 1.0, 2.0], [9.0, -1.0, 0.5], [9.0, 0.0, 1.0]]])  # [1, 3, 3]; the first step is unused
    # the full VAR over the window's series: A_k = w_k I + U_k V_k^T / S, by hand, in matrix form
    u, v, w = net.loadings[ids[0]].detach(), net.weights[ids[0]].detach(), [0.5, -0.25]
    a = [w[k] * torch.eye(3) + u[:, k] @ v[:, k].T / 3 for k in range(2)]  # two [3, 3] matrices
    c = torch.tensor([5.0, 2.0, 4.0]) + 0.1
    y = [x[0, :, 1], x[0, :, 2]]  # y_{t-2}, y_{t-1}
    for _ in range(2):
        y.append(c + a[0] @ y[-1] + a[1] @ y[-2])
    expected = torch.stack(y[2:], dim=-1)  # [3, H]
    torch.testing.assert_close(net(x, ids=ids)[0, :, :, 0], expected)


def test_short_training_recovers_the_coefficients_of_a_known_var1() -> None:
    gen = torch.Generator().manual_seed(0)
    a = 0.3 * torch.eye(3) + torch.tensor([[0.4], [-0.2], [0.3]]) @ torch.tensor([[0.5, 0.8, -0.6]])  # diag + rank 1
    y = [torch.zeros(3)]
    noise = torch.randn(1600, 3, generator=gen)
    for e in noise:
        y.append(a @ y[-1] + e)
    series = torch.stack(y[100:])  # [T, 3], the burn-in dropped
    x, target = series[:-1, :, None], series[1:, :, None, None]  # windows of one step, [T-1, 3, 1]; [T-1, 3, 1, 1]
    torch.manual_seed(0)
    net = linear_var(n_series=3, lags=1, rank=1, input_size=1, horizon=1, intercepts=False)
    ids = torch.arange(3).expand(x.shape[0], 3)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        (net(x, ids=ids) - target).square().mean().backward()
        optimizer.step()
    fitted = net.own.weight[0, 0] * torch.eye(3) + net.loadings[:, 0] @ net.weights[:, 0].T / 3
    assert (fitted.detach() - a).abs().max() < 0.1


def flops(net: NeuralVAR, s: int) -> int:
    x = torch.randn(2, s, 8)
    with FlopCounterMode(display=False) as counter:
        net(x, ids=torch.arange(s).expand(2, s))
    return int(counter.get_total_flops())


def test_compute_is_linear_in_the_number_of_series() -> None:
    torch.manual_seed(0)
    net = NeuralVAR(NeuralVARConfig.tiny(), input_size=8, horizon=4, n_series=400).eval()
    assert flops(net, 200) == 2 * flops(net, 100)  # a full N x N VAR would make it four times


def test_a_full_panel_of_6000_series_trains_in_one_window() -> None:
    torch.manual_seed(0)
    net = NeuralVAR(NeuralVARConfig.tiny(), input_size=52, horizon=13, n_outputs=3, n_series=6000)
    x = torch.randn(1, 6000, 52)
    out = net(x, ids=torch.arange(6000)[None])
    assert out.shape == (1, 6000, 13, 3)
    out.square().mean().backward()
    assert all(p.grad is not None and bool(p.grad.isfinite().all()) for p in net.parameters())


def test_ids_must_match_the_windows_series() -> None:
    net = NeuralVAR(NeuralVARConfig.tiny(), input_size=8, horizon=2, n_series=4)
    with pytest.raises(ValueError, match="do not match"):
        net(torch.randn(2, 3, 8), ids=torch.arange(4).expand(2, 4))


def test_a_panel_whose_coefficient_tables_are_too_large_is_refused_naming_the_options() -> None:
    config = NeuralVARConfig()
    assert config.panel_problem(n_series=20_000, series_per_window=20_000) is None
    problem = config.panel_problem(n_series=20_000_000, series_per_window=1000)
    assert problem is not None and "rank" in problem and "lags" in problem


def test_without_intercepts_series_share_one_bias() -> None:
    torch.manual_seed(0)
    net = linear_var(n_series=4, lags=1, rank=1, input_size=2, horizon=1, intercepts=False)
    assert net.intercept is None
    x = torch.zeros(1, 4, 2)
    out = net(x, ids=torch.arange(4)[None])[0, :, 0, 0]
    torch.testing.assert_close(out, net.own.bias.expand(4))  # zero history: every series forecasts the bias


@pytest.mark.parametrize("series", [0, 3])
def test_a_run_learns_each_series_level_and_forecasts_every_series_through_the_job(tmp_path: Path, series: int) -> None:
    tiny = ["lags=2", "own_lags=4", "rank=2", "hidden_size=8"]
    forecast, metrics = level_job(tmp_path, "neuralvar", ["batch_size=16", f"series_per_window={series}", *tiny])
    np.testing.assert_allclose(forecast, LEVELS, atol=0.3)
    assert metrics["holdout"]["strategies"] == N
