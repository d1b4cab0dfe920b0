"""Neural GAM is additive: the lags' contributions sum to the forecast, and each depends on its own lag only."""

from __future__ import annotations

import torch

from stratcast.daemon.zoo.models.neuralgam import NeuralGAM, NeuralGAMConfig


def model(**overrides: object) -> NeuralGAM:
    torch.manual_seed(0)
    config = NeuralGAMConfig(hidden_size=8, num_layers=2, **overrides)  # type: ignore[arg-type]
    return NeuralGAM(config, input_size=12, horizon=5, n_outputs=3).eval()


def test_the_lags_contributions_sum_to_the_forecast():
    gam = model()
    x = torch.randn(7, 12)
    parts = gam.contributions(x)
    assert parts.shape == (7, 12, 5, 3)
    torch.testing.assert_close(parts.sum(1), gam(x))


def test_changing_one_lag_changes_only_that_lags_contribution():
    gam = model()
    x = torch.randn(4, 12)
    moved = x.clone()
    moved[:, 3] += 1.0
    before, after = gam.contributions(x), gam.contributions(moved)
    others = [lag for lag in range(12) if lag != 3]
    torch.testing.assert_close(before[:, others], after[:, others])
    assert not torch.allclose(before[:, 3], after[:, 3])


def test_feature_dropout_drops_whole_lag_contributions_in_training_only():
    gam = model(feature_dropout=0.5).double()
    x = torch.randn(8, 12, dtype=torch.float64)
    parts = gam.contributions(x).flatten(2)  # [B, L, H, O] -> [B, L, H*O]
    torch.testing.assert_close(gam(x).flatten(1), parts.sum(1))  # eval: nothing dropped
    torch.manual_seed(1)
    dropped = gam.train()(x).flatten(1)  # [B, H, O] -> [B, H*O]
    # each window's forecast is sum_l m_l * part_l: solve for the lags' multipliers m (15 outputs, 12 lags)
    weights = torch.linalg.lstsq(parts.transpose(1, 2), dropped.unsqueeze(-1)).solution.squeeze(-1)  # [B, L]
    kept = (weights - 2.0).abs() < 1e-6  # kept lags are scaled by 1 / (1 - p)
    assert bool((kept | (weights.abs() < 1e-6)).all())
    assert 0 < int(kept.sum()) < kept.numel()
