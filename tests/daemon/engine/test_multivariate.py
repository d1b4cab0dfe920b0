"""Multivariate models: windows of several series at shared origins, trained and forecast by the engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from stratcast.daemon.engine.data.windows import PanelWindows, SeriesSampler, Split, group_series, validation_windows
from stratcast.daemon.engine.prediction.forecast import predict_series
from stratcast.daemon.zoo.catalog import ModelEntry
from tests.daemon.engine.test_side_inputs import LEVELS, N, level_job, listed
from tests.daemon.zoo.toys import CROSS_MEAN, FIXED_MIXER, SERIES_MIXER, ToyConfig

L, H, T = 8, 4, 60


def ragged_windows() -> tuple[PanelWindows, Split]:
    values = torch.randn(N, T, generator=torch.Generator().manual_seed(0))
    start = torch.tensor([0, 0, 20, 30, 0, 3])
    return PanelWindows(values, start, input_size=L, horizon=H), Split.make(T, 2 * H, 0)


@pytest.mark.parametrize("series", [N, 3])
def test_the_sampler_draws_distinct_series_at_one_origin_per_window(series: int) -> None:
    windows, split = ragged_windows()
    sampler = SeriesSampler(windows, split.train_end, 0, series=series)
    batch = sampler.sample(64)
    assert batch.x.shape == (64, series, L) and batch.mask.shape == batch.y.shape == (64, series, H)
    assert bool((batch.origin == batch.origin[:, :1]).all())  # one origin per window
    assert all(len(set(r.tolist())) == series for r in batch.rows)  # no series twice in a window
    flat_rows, flat_origin = batch.rows.flatten(), batch.origin.flatten()
    assert torch.equal(windows.gather(flat_rows, flat_origin, windows.end[flat_rows]).x, batch.x.flatten(0, 1))
    # a series scores only targets of its own training part, at origins where its inputs are observed
    t = batch.origin[..., None] + torch.arange(H)  # [B, S, H]
    own = (t < split.train_end) & (batch.origin >= windows.earliest_origin()[batch.rows])[..., None]
    assert torch.equal(batch.mask, own) and bool(batch.mask.any())
    assert bool((batch.y[~batch.mask] == 0).all())
    if series < N:  # the subsets vary
        assert len({tuple(sorted(r.tolist())) for r in batch.rows}) > 1


def test_validation_windows_are_grouped_by_series_and_the_filler_is_not_scored() -> None:
    windows, split = ragged_windows()
    val = validation_windows(windows, split)
    assert val is not None
    grouped = group_series(val, 4)
    m = val.x.shape[0]
    assert grouped.x.shape == (-(-m // 4), 4, L)
    assert torch.equal(grouped.x.flatten(0, 1)[:m], val.x) and torch.equal(grouped.mask.flatten(0, 1)[:m], val.mask)
    assert not bool(grouped.mask.flatten(0, 1)[m:].any())


@pytest.mark.parametrize("rows", [6, 7, 2])
def test_prediction_runs_every_series_in_windows_of_the_trained_size(rows: int) -> None:
    torch.manual_seed(0)
    model = SERIES_MIXER.build(ToyConfig(), input_size=L, horizon=H, n_series=N).eval()
    x = torch.randn(rows, L)
    ids = torch.arange(rows) % N
    out = predict_series(model, x, series=3, side={"ids": ids}, precision="fp32")
    assert out.shape == (rows, H, 1)
    first = min(3, rows)  # the first window: rows 0..2 (or the rows there are, the last repeated)
    index = torch.arange(3).clamp(max=rows - 1)
    torch.testing.assert_close(out[:first], model(x[index][None], ids=ids[index][None])[0, :first])
    last = torch.arange(rows - 3, rows) if rows >= 3 else index
    torch.testing.assert_close(out[last], model(x[last][None], ids=ids[last][None])[0])


@pytest.mark.parametrize(("entry", "series"), [(CROSS_MEAN, 0), (SERIES_MIXER, 3), (FIXED_MIXER, 0)])
def test_a_multivariate_model_trains_and_forecasts_every_series_through_the_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, entry: ModelEntry, series: int
) -> None:
    listed(monkeypatch, entry)
    forecast, metrics = level_job(tmp_path, entry.name, ["batch_size=16", f"series_per_window={series}"])
    np.testing.assert_allclose(forecast, LEVELS, atol=0.3)
    assert metrics["holdout"]["strategies"] == N


@dataclasses.dataclass(frozen=True, kw_only=True)
class LimitedConfig(ToyConfig):
    """The cross-mean toy with a stated limit: at most ``limit`` series per window."""

    limit: int = 3

    def panel_problem(self, *, n_series: int, series_per_window: int) -> str | None:
        if series_per_window <= self.limit:
            return None
        return f"{series_per_window} series per window is past its limit of {self.limit}; set series_per_window"


LIMITED = dataclasses.replace(CROSS_MEAN, name="toy-limited", config_cls=LimitedConfig)


def test_a_panel_past_a_models_stated_limit_is_refused_before_training_and_naming_the_option(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    listed(monkeypatch, LIMITED)
    with pytest.raises(ValueError, match=r"'toy-limited' cannot serve this panel: 6 series per window .* limit of 3"):
        level_job(tmp_path, LIMITED.name, ["series_per_window=0"])
    assert not (tmp_path / "out").exists()  # refused before anything was written
    forecast, _ = level_job(tmp_path, LIMITED.name, ["series_per_window=3", "batch_size=16"])
    assert forecast.shape == (N,)
