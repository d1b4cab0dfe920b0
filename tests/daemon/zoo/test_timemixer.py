"""TimeMixer: its decomposition sums back, its scales halve the window, scales mix both ways."""

from __future__ import annotations

import torch

from stratcast.daemon.zoo.blocks.decompose import decompose, moving_average
from stratcast.daemon.zoo.models.timemixer import PastDecomposableMixing, TimeMixer, TimeMixerConfig, scale_lengths


def test_trend_and_remainder_sum_back_to_the_series() -> None:
    x = torch.randn(3, 5, 26, dtype=torch.float64)
    trend, remainder = decompose(x, 7)
    torch.testing.assert_close(trend + remainder, x)
    assert trend.shape == x.shape


def test_moving_average_keeps_a_line_away_from_the_edges() -> None:
    line = torch.arange(20, dtype=torch.float64)
    torch.testing.assert_close(moving_average(line, 5)[2:-2], line[2:-2])


def test_scales_halve_the_window_and_stop_at_one_step() -> None:
    assert scale_lengths(52, 3) == [52, 26, 13, 6]
    assert scale_lengths(4, 8) == [4, 2, 1]
    model = TimeMixer(TimeMixerConfig(n_scales=8), input_size=4, horizon=3)
    assert model(torch.randn(2, 4)).shape == (2, 3, 1)


def test_mixing_runs_both_ways_between_scales() -> None:
    torch.manual_seed(0)
    layer = PastDecomposableMixing(TimeMixerConfig(d_model=3, d_ff=4, moving_avg=3, dropout=0.0), [8, 4])
    fine, coarse = torch.randn(2, 3, 8), torch.randn(2, 3, 4)
    out_fine, out_coarse = layer(fine, coarse)
    # a constant is all trend: it reaches the finest scale top-down
    assert not torch.allclose(layer(fine, coarse + 0.5)[0], out_fine)
    # an alternating change is mostly season: it reaches the coarse scale bottom-up
    wiggle = torch.tensor([1.0, -1.0]).repeat(4)
    assert not torch.allclose(layer(fine + wiggle, coarse)[1], out_coarse)
