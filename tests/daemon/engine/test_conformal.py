"""Split-conformal intervals: coverage on exchangeable residuals, the finite-sample rank, per-strategy quantiles,
the adaptive update, MSIS and the scale."""

import math

import pytest
import torch

from stratcast.daemon.engine.evaluation.conformal import (
    aci_alpha,
    calibrate,
    coverage,
    finite_sample_quantile,
    local_scale,
    min_scores,
    series_scale,
    weighted_quantile,
)


def residual_panel(n_series: int, n_origins: int, horizon: int, seed: int):
    """Forecast 0 of heavy-tailed realized values whose spread grows with the step and differs by strategy."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(n_series).repeat(n_origins)  # origin-major, as validation_windows lists them
    origin = torch.arange(n_origins).repeat_interleave(n_series)
    spread = torch.rand(n_series, generator=g) * 5 + 0.5
    noise = torch.distributions.StudentT(4.0).sample((rows.numel(), horizon))
    realized = noise * spread[rows, None] * (1 + 0.2 * torch.arange(horizon))
    return torch.zeros_like(realized), realized, rows, origin, spread.double()


@pytest.mark.parametrize("per_strategy", [False, True])
def test_exchangeable_residuals_are_covered_within_sampling_error_of_nominal(per_strategy):
    torch.manual_seed(0)
    fc, realized, rows, origin, spread = residual_panel(200, 30, 3, seed=1)
    mask = torch.ones_like(realized, dtype=torch.bool)
    own_min = 0 if per_strategy else None
    conf = calibrate(fc, realized, mask, rows, spread[rows], (80, 95), order=origin, own_min=own_min)
    torch.manual_seed(1)
    new_fc, new_real, new_rows, _, _ = residual_panel(200, 30, 3, seed=1)  # same strategies, fresh noise
    bands = conf.intervals(new_fc, new_rows, spread[new_rows])
    for level in (80, 95):
        got = coverage(bands[f"lo{level}"], bands[f"hi{level}"], new_real, mask, level, spread[new_rows])
        sigma = math.sqrt(level / 100 * (1 - level / 100) / got["cells"])
        # split conformal covers between 1 - alpha and 1 - alpha + 1 / (n + 1): n = 6,000 pooled, 30 per strategy
        slack = 1 / 31 if per_strategy else 1 / 6001
        assert level / 100 - 4 * sigma < got["coverage"] < level / 100 + slack + 4 * sigma, (level, got["coverage"])
        assert all(level / 100 - 0.03 < c < level / 100 + slack + 0.03 for c in got["per_step"]), got["per_step"]


def test_the_quantile_is_the_score_of_rank_ceil_n_plus_1_times_1_minus_alpha():
    scores = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0], dtype=torch.float64)
    # n = 5: 80% takes rank ceil(6 * 0.8) = 5 (the largest); 50% rank ceil(3) = 3; 60% rank ceil(3.6) = 4
    assert finite_sample_quantile(scores, 0.2) == 5.0
    assert finite_sample_quantile(scores, 0.5) == 3.0
    assert finite_sample_quantile(scores, 0.4) == 4.0
    # 90% needs rank ceil(5.4) = 6 > 5: infinite
    assert finite_sample_quantile(scores, 0.1) == math.inf
    assert (min_scores(0.2), min_scores(0.05), min_scores(0.1)) == (4, 19, 9)


def test_too_few_scores_for_a_level_give_an_infinite_interval_and_a_note():
    fc = torch.zeros(5, 2)
    realized = torch.arange(10.0).reshape(5, 2)
    mask = torch.ones(5, 2, dtype=torch.bool)
    mask[:, 1] = False
    mask[0, 1] = True  # step 2 has one score
    conf = calibrate(fc, realized, mask, torch.arange(5), torch.ones(5, dtype=torch.float64), (80, 95))
    assert conf.pooled[0, 0] == 8.0  # 80% over [0, 2, 4, 6, 8]: rank 5
    assert torch.isinf(conf.pooled[1]).all() and torch.isinf(conf.pooled[0, 1])
    assert any("95%" in n and "steps 1-2" in n for n in conf.notes), conf.notes
    assert any("80%" in n and "steps 2" in n for n in conf.notes), conf.notes


def test_a_strategy_with_enough_scores_gets_its_own_quantile_and_the_others_the_pooled_one():
    # strategy 0: 4 scores (enough at 80%), all large; strategy 1: 3 scores (too few), small
    rows = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    realized = torch.tensor([10.0, 20.0, 30.0, 40.0, 1.0, 2.0, 3.0])[:, None]
    fc, mask, scale = torch.zeros(7, 1), torch.ones(7, 1, dtype=torch.bool), torch.ones(7, dtype=torch.float64)
    conf = calibrate(fc, realized, mask, rows, scale, (80,), own_min=0)
    assert conf.own[0, 0, 0] == 40.0  # its own: rank ceil(5 * 0.8) = 4 of 4
    assert conf.own[0, 1, 0] == conf.pooled[0, 0] == 40.0  # pooled over 7: rank ceil(6.4) = 7
    assert calibrate(fc, realized, mask, rows, scale, (80,), own_min=5).own[0, 0, 0] == conf.pooled[0, 0]
    pooled_only = calibrate(fc, realized, mask, rows, scale, (80,), own_min=None)
    assert bool((pooled_only.own == pooled_only.pooled[:, None, :]).all())
    # the other way round: strategy 0 small, strategy 1 (too few) large
    small = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0])[:, None]
    conf = calibrate(fc, small, mask, rows, scale, (80,), own_min=0)
    assert (float(conf.own[0, 0, 0]), float(conf.own[0, 1, 0])) == (4.0, 30.0)


def test_aci_widens_after_a_run_of_misses_and_narrows_after_a_run_of_hits():
    calm = torch.rand(40, 100, generator=torch.Generator().manual_seed(0))  # [origins, strategies]
    origin = torch.arange(40).repeat_interleave(100)
    wild = calm.clone()
    wild[-10:] *= 3  # the latest origins miss
    assert aci_alpha(wild.flatten(), origin, 0.2, 0.05) < 0.2 - 0.05
    quiet = calm.clone()
    quiet[-10:] *= 0.3  # the latest origins all hit
    assert aci_alpha(quiet.flatten(), origin, 0.2, 0.05) > 0.2 + 0.05
    assert aci_alpha(wild.flatten(), origin, 0.2, 0.0) == 0.2


def test_calibration_with_aci_gives_wider_intervals_after_late_misses():
    calm = torch.rand(40, 100, generator=torch.Generator().manual_seed(0)) * 2 - 1
    calm[-10:] *= 3
    realized = calm.reshape(-1, 1)  # [origins * strategies, 1]
    rows, origin = torch.arange(100).repeat(40), torch.arange(40).repeat_interleave(100)
    args = (torch.zeros_like(realized), realized, torch.ones_like(realized, dtype=torch.bool), rows)
    scale = torch.ones(4000, dtype=torch.float64)
    plain = calibrate(*args, scale, (80,), own_min=None)
    adaptive = calibrate(*args, scale, (80,), order=origin, gamma=0.05, own_min=None)
    assert adaptive.alphas[0, 0] < 0.2 and adaptive.pooled[0, 0] > plain.pooled[0, 0]


def test_msis_matches_a_hand_computation():
    lo, hi = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 2.0]])
    realized = torch.tensor([[1.0, 5.0]])  # inside; 3 above hi
    mask = torch.ones(1, 2, dtype=torch.bool)
    got = coverage(lo, hi, realized, mask, 80, torch.tensor([2.0]))
    # alpha 0.2: (2 + 0) / 2 and (2 + 2 / 0.2 * 3) / 2 = 16; mean (1 + 16) / 2
    assert got["msis"] == pytest.approx(8.5)
    assert (got["coverage"], got["per_step"]) == (0.5, [1.0, 0.0])
    assert got["worst_step"] == {"step": 2, "coverage": 0.0}


def test_intervals_scale_with_the_strategy_and_centre_on_the_point():
    fc, realized = torch.zeros(4, 1), torch.tensor([[1.0], [-1.0], [2.0], [-2.0]])
    rows, scale = torch.tensor([0, 0, 1, 1]), torch.tensor([1.0, 2.0], dtype=torch.float64)
    conf = calibrate(fc, realized, torch.ones(4, 1, dtype=torch.bool), rows, scale[rows], (50,), own_min=None)
    bands = conf.intervals(torch.tensor([[10.0], [20.0]]), torch.tensor([0, 1]), scale)
    assert bands["lo50"].flatten().tolist() == [9.0, 18.0]  # score 1 (every one), times the scale
    assert bands["hi50"].flatten().tolist() == [11.0, 22.0]


def test_the_scale_is_the_mean_absolute_change_of_the_training_part_with_a_floor_for_constant_series():
    raw = torch.tensor([[0.0, 1.0, 3.0, 100.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 2.0, 2.0], [9.0, 1.0, 3.0, 3.0]])
    start, end = torch.tensor([0, 0, 0, 1]), torch.tensor([3, 4, 4, 3])
    scale = series_scale(raw, start, end)
    assert scale[0] == pytest.approx(1.5)  # |1|, |2|: the period at 3 is past its end
    assert scale[2] == pytest.approx(2 / 3)
    assert scale[3] == pytest.approx(2.0)  # from its start: |3 - 1|
    assert scale[1] == pytest.approx(0.01 * 1.5)  # constant: 1% of the median of the others


def test_a_strategy_with_its_own_80_quantile_above_the_pooled_95_gets_nested_bands():
    # strategy 0 has 4 scores (its own 80% quantile, 100) and too few for 95%, which falls back to the pooled one
    rows = torch.tensor([0] * 4 + [1] * 60)
    realized = torch.cat([torch.tensor([0.1, 0.2, 0.3, 100.0]), torch.linspace(0, 1, 60)])[:, None]
    fc, mask, scale = torch.zeros(64, 1), torch.ones(64, 1, dtype=torch.bool), torch.ones(64, dtype=torch.float64)
    conf = calibrate(fc, realized, mask, rows, scale, (95, 80), own_min=0)
    assert float(conf.pooled[0, 0]) < 1  # 95% pooled: rank ceil(65 * 0.95) = 62 of 64
    assert float(conf.own[1, 0, 0]) == 100.0  # the 80% one, its own: rank 4 of 4
    assert float(conf.own[0, 0, 0]) == 100.0  # 95%: raised to it from the pooled quantile
    assert float(conf.own[0, 1, 0]) >= float(conf.own[1, 1, 0])  # its own, at least its 80% one


def test_monotone_quantiles_never_shrink_with_the_step():
    realized = torch.tensor([[1.0, 3.0, 2.0]]).expand(10, 3) * torch.linspace(0.1, 1, 10)[:, None]
    args = (torch.zeros(10, 3), realized, torch.ones(10, 3, dtype=torch.bool), torch.arange(10))
    scale = torch.ones(10, dtype=torch.float64)
    plain = calibrate(*args, scale, (80,), own_min=None)
    raised = calibrate(*args, scale, (80,), own_min=None, monotone=True)
    assert plain.pooled[0].tolist() == pytest.approx([0.9, 2.7, 1.8])  # rank ceil(11 * 0.8) = 9 of 10: 0.9 x
    assert raised.pooled[0].tolist() == pytest.approx([0.9, 2.7, 2.7])


def test_the_local_scale_reads_only_the_periods_before_the_origin():
    raw = torch.tensor([[0.0, 1.0, 3.0, 6.0, 10.0, 15.0], [4.0, 4.0, 4.0, 4.0, 4.0, 4.0]])
    start = torch.tensor([0, 1])
    rows, origin = torch.tensor([0, 0, 0, 1, 0]), torch.tensor([4, 3, 6, 5, 0])
    got = local_scale(raw, start, rows, origin, window=3, floor=0.1)
    # origin 4 reads periods 1..3: |2|, |3|; origin 3 reads 0..2: |1|, |2|; origin 6 reads 3..5: |4|, |5|
    assert got.tolist() == pytest.approx([2.5, 1.5, 4.5, 0.1, 0.1])  # a constant series and no past: the floor
    later = raw.clone()
    later[:, 4:] = 1000.0  # whatever happens at or after the origin
    assert local_scale(later, start, rows[:2], origin[:2], 3, 0.1).tolist() == got[:2].tolist()


def test_a_strategy_that_goes_quiet_gets_a_narrower_band_than_while_it_traded():
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(50, 80, generator=g, dtype=torch.float64)
    raw[0, 70:] = 0.0  # strategy 0 stops trading
    start = torch.zeros(50, dtype=torch.long)
    rows, origin = torch.arange(50).repeat(20), torch.arange(40, 60).repeat_interleave(50)
    realized = raw[rows, origin][:, None]  # one step, forecast 0
    scale = local_scale(raw, start, rows, origin, 10, floor=0.01)
    conf = calibrate(torch.zeros_like(realized), realized, torch.ones_like(realized, dtype=torch.bool), rows, scale)
    new_rows, new_origin = torch.tensor([0, 0]), torch.tensor([60, 80])  # while it traded; after it went quiet
    bands = conf.intervals(torch.zeros(2, 1), new_rows, local_scale(raw, start, new_rows, new_origin, 10, 0.01))
    width = (bands["hi80"] - bands["lo80"]).flatten()
    assert width[1] < width[0] / 50  # the floor's band


def test_weighted_quantile_is_the_plain_one_with_equal_weights_and_follows_the_heavy_scores():
    scores = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0], dtype=torch.float64)
    for alpha in (0.2, 0.4, 0.5, 0.1):
        assert weighted_quantile(scores, torch.ones(5), alpha) == finite_sample_quantile(scores, alpha)
    # the old scores (1, 2) barely count: 50% of the weight (the new score's 1 included) is reached at 4
    weights = torch.tensor([1.0, 0.01, 1.0, 0.01, 1.0], dtype=torch.float64)
    assert weighted_quantile(scores, weights, 0.5) == 4.0
    assert weighted_quantile(scores, torch.ones(5), 0.5) == 3.0
