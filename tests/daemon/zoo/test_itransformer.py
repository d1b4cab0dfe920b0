"""iTransformer: the univariate entry attends over one series' derived variates; ``itransformer-x`` over strategies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from stratcast.daemon.engine.run.build import check_model_fits
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.daemon.zoo.models.itransformer import (
    MAX_SERIES,
    ITransformer,
    ITransformerConfig,
    ITransformerX,
    ITransformerXConfig,
    derived_variates,
)
from tests.daemon.engine.test_side_inputs import LEVELS, N, level_job

L, H = 52, 13


def cross(*, derived: bool = True, seed: int = 0) -> ITransformerX:
    torch.manual_seed(seed)
    config = ITransformerXConfig(d_model=16, n_heads=2, d_ff=32, n_layers=2, moving_avg=4, derived=derived)
    return ITransformerX(config, input_size=L, horizon=H, n_outputs=2).eval()


def panel(b: int, s: int, seed: int = 0) -> Tensor:
    """Windows [b, s, L] with many exact zeros, like weekly strategy profits."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, s, L, generator=gen)
    return x * (torch.rand(b, s, L, generator=gen) < 0.6)


@pytest.mark.parametrize("derived", [True, False])
def test_permuting_a_windows_strategies_permutes_their_forecasts_and_nothing_else(derived: bool) -> None:
    net, x = cross(derived=derived), panel(3, 7)
    order = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(net(x[:, order]), net(x)[:, order], rtol=1e-5, atol=1e-5)


def test_a_strategys_forecast_depends_on_the_other_strategies_of_its_window() -> None:
    net, x = cross(), panel(2, 5)
    changed = x.clone()
    changed[:, 1:] = panel(2, 4, seed=3)  # every strategy but the first
    with torch.no_grad():
        before, after = net(x)[:, 0], net(changed)[:, 0]
    assert (before - after).abs().max() > 1e-3


def test_the_univariate_entry_forecasts_a_row_from_its_own_window_only() -> None:
    torch.manual_seed(0)
    net = ITransformer(ITransformerConfig.tiny(), input_size=L, horizon=H).eval()
    x = panel(1, 5)[0]  # five rows [5, L], one series each
    changed = x.clone()
    changed[1:] = panel(1, 4, seed=3)[0]
    with torch.no_grad():
        torch.testing.assert_close(net(changed)[0], net(x)[0], rtol=0, atol=0)
        assert (net(changed)[1:] - net(x)[1:]).abs().max() > 1e-3  # the other rows did change


def test_derived_variates_widen_each_token_not_the_number_of_tokens() -> None:
    with_derived, plain = cross(derived=True), cross(derived=False)
    assert with_derived.embed.in_features == 4 * L and plain.embed.in_features == L
    x = panel(2, 3)
    variates = derived_variates(x.reshape(6, L), 4)  # [6, 4, L]
    torch.testing.assert_close(variates[:, 0], x.reshape(6, L))  # the first is the window itself
    with torch.no_grad():
        assert with_derived(x).shape == plain(x).shape == (2, 3, H, 2)


def test_a_window_of_one_strategy_is_forecast() -> None:
    with torch.no_grad():
        out = cross()(panel(4, 1))
    assert out.shape == (4, 1, H, 2) and out.isfinite().all()


def test_it_runs_under_bf16_autocast_with_finite_outputs_and_gradients() -> None:
    net = cross().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(panel(2, 6))
    out.float().square().mean().backward()
    assert torch.isfinite(out).all()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in net.parameters())


def test_the_limit_on_series_per_window_names_the_option() -> None:
    config = ITransformerXConfig()
    assert config.panel_problem(n_series=6000, series_per_window=MAX_SERIES) is None
    problem = config.panel_problem(n_series=6000, series_per_window=MAX_SERIES + 1)
    assert problem is not None and "series_per_window" in problem and str(MAX_SERIES) in problem
    assert ITransformerConfig().panel_problem(n_series=6000, series_per_window=6000) is None  # univariate: no limit


def test_a_run_past_the_limit_is_refused_and_the_catalog_defaults_serve_the_full_panel() -> None:
    every = build_spec(data="x", model="itransformer-x", out="o", sets=["series_per_window=0"])
    with pytest.raises(ValueError, match="series_per_window"):
        check_model_fits(every, 6000)  # 0: every one of 6,000 series in one window
    check_model_fits(every, MAX_SERIES)  # a panel no larger than the limit may be read whole
    check_model_fits(build_spec(data="x", model="itransformer-x", out="o"), 6000)  # windows of 500


def test_it_trains_on_subsets_of_series_and_forecasts_every_strategy_through_a_job(tmp_path: Path) -> None:
    tiny = ["d_model=8", "n_heads=2", "d_ff=16", "n_layers=1", "dropout=0"]
    forecast, metrics = level_job(tmp_path, "itransformer-x", ["series_per_window=4", "batch_size=8", *tiny])
    np.testing.assert_allclose(forecast, LEVELS, atol=0.3)
    assert metrics["holdout"]["strategies"] == N
