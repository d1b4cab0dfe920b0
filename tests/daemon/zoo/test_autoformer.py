"""Autoformer: the decomposition sums back to its input, Auto-Correlation finds a sine's period and a delay's lag,
time delay aggregation is the paper's Roll, and the FFTs run in float32 under bf16 autocast."""

from __future__ import annotations

import math

import pytest
import torch

from stratcast.daemon.zoo.blocks.decompose import SeriesDecomposition
from stratcast.daemon.zoo.blocks.frequency import correlation, delay_aggregate, lag_count, top_lags
from stratcast.daemon.zoo.models.autoformer import Autoformer, AutoformerConfig

L, H = 48, 12


def model() -> Autoformer:
    torch.manual_seed(0)
    config = AutoformerConfig(d_model=8, n_heads=2, d_ff=16, encoder_layers=2, decoder_layers=1, label_len=12)
    return Autoformer(config, input_size=L, horizon=H, n_outputs=3)


def test_the_decomposition_sums_back_to_its_input_and_averages_a_whole_period_to_the_level() -> None:
    t = torch.arange(L, dtype=torch.float64)
    x = (2.0 + torch.sin(2 * math.pi * t / 7))[None, :, None].expand(3, -1, 4)  # [B, T, D], period 7
    trend, season = SeriesDecomposition(7)(x)
    torch.testing.assert_close(trend + season, x)
    interior = slice(3, L - 3)  # the edges average replicated steps
    torch.testing.assert_close(trend[:, interior], torch.full_like(trend[:, interior], 2.0))


@pytest.mark.parametrize("period", [6, 8, 12])
def test_auto_correlation_of_a_sine_picks_lags_that_are_whole_periods(period: int) -> None:
    t = torch.arange(L, dtype=torch.float32)
    x = torch.sin(2 * math.pi * t / period + 0.3)
    lags, weights = top_lags(correlation(x, x), 3)
    assert all(lag % period == 0 for lag in lags.tolist()), lags
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))


def test_cross_correlation_finds_the_delay_between_queries_and_keys() -> None:
    q = torch.randn(4, L, generator=torch.Generator().manual_seed(0))
    for delay in (1, 5, 17):
        k = torch.roll(q, delay, dims=-1)  # k_t = q_(t - delay)
        lags, _ = top_lags(correlation(q, k), 1)  # R(tau) = sum_t q_t k_(t - tau) peaks where tau = -delay
        assert lags[:, 0].tolist() == [(L - delay) % L] * 4


def test_delay_aggregation_is_the_weighted_sum_of_the_values_rolled_by_each_lag() -> None:
    v = torch.randn(2, 3, L, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lags = torch.tensor([[[0, 5, 11]], [[7, 2, 40]]])  # [B, 1, k]: each window its own lags
    weights = torch.tensor([[[0.2, 0.3, 0.5]], [[0.6, 0.1, 0.3]]], dtype=torch.float64)
    expected = torch.stack(
        [
            sum(w * torch.roll(v[b], -tau, dims=-1) for tau, w in zip(lags[b, 0].tolist(), weights[b, 0], strict=True))
            for b in range(2)
        ]
    )  # Roll(v, tau)_t = v_(t + tau)
    torch.testing.assert_close(delay_aggregate(v, lags, weights), expected)


def test_the_lag_count_is_floor_c_ln_n() -> None:
    assert lag_count(1, 52) == 3 and lag_count(2, 52) == 7 and lag_count(1, 78) == 4
    assert lag_count(3, 2) == 2 and lag_count(1, 1) == 1


def test_under_bf16_autocast_the_forecast_and_the_gradients_are_finite() -> None:
    net = model()
    x = torch.randn(8, L, generator=torch.Generator().manual_seed(2))
    x[::2, : L // 3] = 0.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert out.shape == (8, H, 3) and torch.isfinite(out).all()
    out.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_bf16_activations_are_correlated_and_rolled_in_float32() -> None:
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 4, L, generator=g).bfloat16(), torch.randn(2, 4, L, generator=g).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        corr = correlation(q, k)
        lags, weights = top_lags(corr.mean(1), 3)
        rolled = delay_aggregate(k, lags[:, None], weights[:, None])
    assert corr.dtype == rolled.dtype == torch.float32  # plain torch.fft refuses bf16 on a GPU
    torch.testing.assert_close(corr, correlation(q.float(), k.float()))
    torch.testing.assert_close(rolled, delay_aggregate(k.float(), lags[:, None], weights[:, None]))


def test_without_seasonal_read_out_or_trend_updates_the_forecast_is_the_windows_mean() -> None:
    config = AutoformerConfig(d_model=8, n_heads=2, d_ff=16, label_len=12, instance_norm=False)
    net = Autoformer(config, input_size=L, horizon=H, n_outputs=2).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith("readout.") or name.endswith(".trend.weight") or name.endswith(".trend.bias"):
                p.zero_()
    x = torch.randn(4, L, generator=torch.Generator().manual_seed(4))
    out = net(x)  # the trend accumulator starts the horizon at the window's mean
    torch.testing.assert_close(out[..., 0], x.mean(1, keepdim=True).expand(4, H))
    assert (out[..., 1] == 0).all()


def test_the_decoder_start_is_capped_by_the_window() -> None:
    short = Autoformer(AutoformerConfig.tiny(), input_size=5, horizon=3)
    assert short.label_len == 5
    assert short(torch.randn(2, 5)).shape == (2, 3, 1)
