import itertools

import pytest
import torch

from stratcast.daemon.engine.prediction.combine import (
    Combination,
    CombinedForecaster,
    fit_combination,
    fit_from_stats,
    forecast_parts,
    solve_simplex,
    step_stats,
)


def draws(m: int, h: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, h, generator=g, dtype=torch.float64), torch.randn(m, generator=g, dtype=torch.float64)


def all_cells(m: int, h: int):
    return torch.ones(m, h, dtype=torch.bool)


def test_known_weights_are_recovered_from_their_combination():
    a, b = draws(4000, 6, seed=0)
    noise, _ = draws(4000, 6, seed=1)
    y = 0.6 * a + 0.3 * b[:, None] + 0.1 * noise
    combo = fit_combination(a, b, y, all_cells(4000, 6))
    assert torch.allclose(combo.model, torch.full((6,), 0.6, dtype=torch.float64), atol=0.01)
    assert torch.allclose(combo.trailing, torch.full((6,), 0.3, dtype=torch.float64), atol=0.01)
    assert torch.allclose(combo.zero, torch.full((6,), 0.1, dtype=torch.float64), atol=0.015)


def test_pure_noise_puts_the_weight_on_zero():
    a, b = draws(5000, 8, seed=2)
    y, _ = draws(5000, 8, seed=3)
    combo = fit_combination(a, b, y, all_cells(5000, 8))
    assert float(combo.model.max()) < 0.03 and float(combo.trailing.max()) < 0.03
    assert float(combo.zero.min()) > 0.94


def test_a_strong_signal_puts_the_weight_on_the_model():
    a, b = draws(3000, 5, seed=4)
    noise, _ = draws(3000, 5, seed=5)
    combo = fit_combination(a, b, a + 0.05 * noise, all_cells(3000, 5))
    assert float(combo.model.min()) > 0.98 and float(combo.trailing.max()) < 0.01


@pytest.mark.parametrize("seed", range(40))
def test_the_weights_are_feasible_and_no_grid_point_of_the_simplex_does_better(seed):
    g = torch.Generator().manual_seed(seed)
    a, b, y = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(3))
    mix = torch.rand(3, generator=g, dtype=torch.float64) * 4 - 2  # y correlated with a and b, either sign
    y = mix[0] * a + mix[1] * b + mix[2] * y
    stats = [float(v) for v in (a @ a, a @ b, b @ b, a @ y, b @ y, y @ y)]
    wa, wb = solve_simplex(*stats)
    assert wa >= 0 and wb >= 0 and wa + wb <= 1 + 1e-12

    def loss(p: float, q: float) -> float:
        return float((y - p * a - q * b).square().sum())

    grid = [i / 100 for i in range(101)]
    best_on_grid = min(loss(p, q) for p, q in itertools.product(grid, grid) if p + q <= 1)
    assert loss(wa, wb) <= best_on_grid + 1e-9


def test_an_all_zero_model_forecast_gets_no_weight():
    _, b = draws(500, 4, seed=6)
    y = 0.5 * b[:, None].expand(500, 4)
    combo = fit_combination(torch.zeros(500, 4, dtype=torch.float64), b, y, all_cells(500, 4))
    assert torch.all(combo.model == 0)
    assert torch.allclose(combo.trailing, torch.full((4,), 0.5, dtype=torch.float64))


def test_a_constant_series_is_reproduced_and_an_all_zero_panel_forecasts_zero():
    const = torch.full((100, 3), 2.0, dtype=torch.float64)
    combo = fit_combination(const, const[:, 0], const, all_cells(100, 3))
    assert torch.allclose(combo.apply(const, const[:, 0]), const)
    zeros = torch.zeros(100, 3, dtype=torch.float64)
    nothing = fit_combination(zeros, zeros[:, 0], zeros, all_cells(100, 3))
    assert nothing.no_signal and torch.all(nothing.zero == 1)


def test_masked_cells_do_not_count():
    a, b = draws(2000, 4, seed=7)
    y = a.clone()
    mask = all_cells(2000, 4)
    mask[:1000] = False
    y[:1000] = -50 * a[:1000]  # would pull the model's weight to 0 if it counted
    combo = fit_combination(a, b, y, mask)
    assert float(combo.model.min()) > 0.99
    assert combo.cells.tolist() == [1000] * 4


def test_late_steps_with_few_cells_lean_on_the_pooled_weights():
    a, b = draws(4000, 2, seed=8)
    noise, _ = draws(4000, 2, seed=9)
    y = torch.stack([a[:, 0], noise[:, 1]], 1)  # step 1 all signal, step 2 all noise
    mask = all_cells(4000, 2)
    mask[40:, 1] = False  # step 2 scored by 40 cells only
    stats = step_stats(a, b, y, mask)
    own, shrunk = fit_from_stats(stats, shrink=0.0), fit_from_stats(stats)
    assert float(shrunk.model[1]) > float(own.model[1]) + 0.3
    assert float(shrunk.model[0]) > 0.85


def test_the_ranking_score_orders_as_the_combination_and_falls_back_to_the_raw_model_without_signal():
    a, b = draws(300, 5, seed=10)
    combo = Combination(
        torch.full((5,), 0.2, dtype=torch.float64), torch.full((5,), 0.1, dtype=torch.float64), torch.ones(5)
    )
    score = combo.ranking_score(a, b)
    assert torch.equal(score.argsort(), combo.apply(a, b).mean(1).argsort())
    assert torch.allclose(score, (0.2 * a.mean(1) + 0.1 * b) / 0.3)
    silent = Combination(torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64), torch.ones(5))
    assert silent.no_signal and torch.equal(silent.ranking_score(a, b), a.mean(1))
    assert torch.all(silent.apply(a, b) == 0)


def test_mismatched_shapes_are_refused_with_the_shapes():
    a, b = draws(10, 3, seed=11)
    with pytest.raises(ValueError, match=r"model \(10, 3\), trailing \(10,\), realized \(10, 4\)"):
        fit_combination(a, b, torch.zeros(10, 4), all_cells(10, 3))


def test_the_combined_forecaster_wraps_any_forecaster_and_keeps_the_raw_one():
    weights = Combination(torch.tensor([0.5, 0.0]), torch.tensor([0.25, 1.0]), torch.ones(2))

    def base(x, rows, origin):
        return x[:, -2:] * 2  # [M, L] -> [M, 2]

    def trailing(rows, origin):
        return rows.double() + origin

    fn = CombinedForecaster(base, weights, trailing)
    x, rows, origin = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([4]), torch.tensor([10])
    assert fn(x, rows, origin).tolist() == [[0.5 * 4 + 0.25 * 14, 14.0]]
    parts = forecast_parts(fn, x, rows, origin, steps=1)
    assert parts.raw is not None and parts.raw.tolist() == [[4.0]] and parts.point.tolist() == [[5.5]]
    with pytest.raises(ValueError, match="origin"):
        fn(x, rows)
