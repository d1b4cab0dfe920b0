"""A distribution forecast's quantiles: written beside the mean, moved with it, scored on the holdout, resumable."""

import json
import re

import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from stratcast.daemon.engine.prediction.forecast import SAMPLES, VALIDATION_SAMPLES, sample_mean
from stratcast.daemon.engine.prediction.quantiles import (
    Distribution,
    EnsembleDistribution,
    empirical_quantiles,
    quantile_scores,
    sample_distribution,
    shifted,
)
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.daemon.engine.training.checkpoint import load_checkpoint, save_checkpoint
from stratcast.daemon.engine.training.trainer import VAL_DRAWS
from stratcast.daemon.zoo.catalog import CATALOG
from stratcast.shared.runfiles import Outputs
from tests.daemon.engine.small_jobs import write_small_panel
from tests.daemon.zoo.toys import OWN_LOSS, OwnLossLinear

SETS = ["max_steps=20", "batch_size=32", "val_check_steps=5", "hidden_size=16", "num_layers=1"]


@pytest.fixture(scope="module")
def panel_file(tmp_path_factory):
    return write_small_panel(tmp_path_factory.mktemp("data") / "panel.parquet")


def job(panel_file, out, *sets, holdout=4, ensemble=(), mode="batch"):
    return build_spec(
        data=str(panel_file), model="mlp", out=str(out), device="cpu", horizon=4, input_size=8, holdout=holdout,
        sets=[*SETS, *sets], ensemble=ensemble, mode=mode,
    )  # fmt: skip


def test_a_gaussian_head_writes_increasing_quantiles_and_scores_them_on_the_holdout(tmp_path, panel_file):
    result = run_job(job(panel_file, tmp_path / "out", "loss=gaussian", "blend_steps=2"), log=lambda line: None)
    forecast = pd.read_parquet(Outputs(tmp_path / "out").forecast)
    assert [c for c in forecast.columns if c.startswith("q")] == ["q10", "q50", "q90"]
    assert (forecast["q10"] < forecast["q50"]).all() and (forecast["q50"] < forecast["q90"]).all()
    # a normal's median is its mean: moved with the blended (and combined) forecast, q50 stays on it
    assert forecast["q50"].to_numpy() == pytest.approx(forecast["forecast"].to_numpy(), rel=1e-5, abs=1e-6)
    quantiles = json.loads(Outputs(tmp_path / "out").metrics.read_text())["quantiles"]
    assert quantiles == result.metrics["quantiles"]
    assert quantiles["levels"] == [0.1, 0.5, 0.9] and quantiles["columns"] == ["q10", "q50", "q90"]
    holdout = quantiles["holdout"]
    assert holdout["band"] == ["q10", "q90"] and holdout["nominal"] == 0.8
    assert 0 <= holdout["coverage"] <= 1 and holdout["pinball"] > 0
    below = holdout["below"]
    assert 0 <= below["q10"] <= below["q50"] <= below["q90"] <= 1
    assert set(holdout["pinball_by_column"]) == {"q10", "q50", "q90"}


def test_the_quantile_levels_are_an_option(tmp_path, panel_file):
    spec = job(panel_file, tmp_path / "out", "loss=student-t", "forecast_quantiles=[0.05,0.95]", holdout=0)
    assert spec.train.forecast_quantiles == (0.05, 0.95)
    result = run_job(spec, log=lambda line: None)
    forecast = pd.read_parquet(Outputs(tmp_path / "out").forecast)
    assert [c for c in forecast.columns if c.startswith("q")] == ["q5", "q95"]
    assert (forecast["q5"] < forecast["forecast"]).all() and (forecast["forecast"] < forecast["q95"]).all()
    assert result.metrics["quantiles"] == {"levels": [0.05, 0.95], "columns": ["q5", "q95"]}  # no holdout: no scores


def test_per_strategy_models_write_their_quantiles_too(tmp_path, panel_file):
    spec = job(panel_file, tmp_path / "out", "loss=quantile", "quantiles=0.1,0.5,0.9", mode="per-strategy")
    result = run_job(spec, log=lambda line: None)
    forecast = pd.read_parquet(Outputs(tmp_path / "out").forecast)
    assert (forecast["q10"] <= forecast["q50"]).all() and (forecast["q50"] <= forecast["q90"]).all()
    assert 0 <= result.metrics["quantiles"]["holdout"]["coverage"] <= 1


def test_a_point_loss_writes_no_quantiles_only_its_intervals(tmp_path, panel_file):
    result = run_job(job(panel_file, tmp_path / "out", "loss=mse"), log=lambda line: None)
    forecast = pd.read_parquet(Outputs(tmp_path / "out").forecast)
    assert not [c for c in forecast.columns if c.startswith("q")]
    assert "lo80" in forecast.columns and "quantiles" not in result.metrics


def test_an_ensemble_of_distribution_forecasts_averages_its_members_quantiles(tmp_path, panel_file):
    sets = ("loss=gaussian", "combine=none")
    run_job(job(panel_file, tmp_path / "both", *sets, ensemble=["mlp", "mlp"]), log=lambda line: None)
    both = pd.read_parquet(Outputs(tmp_path / "both").forecast)
    alone = []
    for seed in (0, 1):  # member i trains with seed + i
        run_job(job(panel_file, tmp_path / f"seed{seed}", *sets, f"seed={seed}"), log=lambda line: None)
        alone.append(pd.read_parquet(Outputs(tmp_path / f"seed{seed}").forecast))
    for column in ("q10", "q90"):
        mean = (alone[0][column] + alone[1][column]) / 2
        assert both[column].to_numpy() == pytest.approx(mean.to_numpy(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("levels", [(0.5, 0.1), (0.0, 0.5), (0.5, 1.0), (0.2, 0.2)])
def test_forecast_quantiles_must_increase_strictly_within_zero_and_one(levels):
    with pytest.raises(ValueError, match="forecast_quantiles"):
        TrainConfig(forecast_quantiles=levels)


def test_a_checkpoint_written_before_forecast_quantiles_existed_resumes(tmp_path, panel_file):
    spec = job(panel_file, tmp_path / "out", "loss=gaussian", "checkpoint_every_steps=10")
    run_job(spec, log=lambda line: None, should_stop=lambda: len(list((tmp_path / "out").rglob("step-*.pt"))) > 0)
    [path] = sorted((tmp_path / "out" / "checkpoints").glob("step-*.pt"))
    state = load_checkpoint(path)
    del state["train_config"]["forecast_quantiles"]  # as an older version wrote it
    save_checkpoint(path, state)
    lines: list[str] = []
    resumed = run_job(spec, log=lines.append, resume_from=path)
    assert any(line.startswith("resumed from") for line in lines)
    assert resumed.metrics["quantiles"]["columns"] == ["q10", "q50", "q90"]


def test_quantiles_move_by_what_the_job_did_to_the_mean():
    dist = Distribution(torch.tensor([[1.0, 2.0]]), torch.tensor([[[0.0, 1.0, 3.0], [1.0, 2.0, 4.0]]]))
    moved = shifted(dist, torch.tensor([[0.5, 2.0]]))
    assert moved.tolist() == [[[-0.5, 0.5, 2.5], [1.0, 2.0, 4.0]]]


def test_an_ensemble_distribution_averages_means_and_quantiles_level_by_level():
    def member(offset):
        return lambda x, rows, origin=None: Distribution(x + offset, torch.stack([x + offset - 1, x + offset + 1], -1))

    dist = EnsembleDistribution([member(0.0), member(2.0)])(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    assert dist.mean.tolist() == [[1.0, 1.0]] and dist.quantiles.tolist() == [[[0.0, 2.0], [0.0, 2.0]]]


def test_empirical_quantiles_interpolate_the_order_statistics_as_torch_quantile():
    draws = torch.randn(101, 3, 4, generator=torch.Generator().manual_seed(0))
    levels = (0.05, 0.1, 0.5, 0.9, 0.975)
    expected = torch.quantile(draws, torch.tensor(levels), dim=0).movedim(0, -1)
    assert torch.allclose(empirical_quantiles(draws, levels), expected, atol=1e-6)


def test_quantile_scores_count_coverage_and_pinball_by_hand():
    q = torch.tensor([[[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]])  # [1, 2, 3]
    realized = torch.tensor([[1.5, 3.0]])  # inside the band, then above it
    scores = quantile_scores(q, realized, (0.1, 0.5, 0.9))
    assert scores["coverage"] == 0.5 and scores["nominal"] == 0.8 and scores["band"] == ["q10", "q90"]
    assert scores["below"] == {"q10": 0.0, "q50": 0.0, "q90": 0.5}
    # pinball at 0.1: (0.1 * 1.5 + 0.1 * 3) / 2; at 0.5: (0.5 * 0.5 + 0.5 * 2) / 2; at 0.9: (0.1 * 0.5 + 0.9 * 1) / 2
    by_column = scores["pinball_by_column"]
    assert by_column["q10"] == pytest.approx(0.225) and by_column["q50"] == pytest.approx(0.625)
    assert by_column["q90"] == pytest.approx((0.1 * 0.5 + 0.9 * 1.0) / 2)
    assert scores["pinball"] == pytest.approx((0.225 + 0.625 + 0.475) / 3)


class Sampler(nn.Module):
    """A model with its own loss whose draws are its input's last value plus standard normal noise."""

    def training_loss(self, x: Tensor, y: Tensor, **side: Tensor) -> Tensor:
        return (y - x[:, -1:]).square()

    def sample(self, x: Tensor, n: int, generator: torch.Generator | None, **side: Tensor) -> Tensor:
        noise = torch.randn((n, x.shape[0], 3), generator=generator)
        return x[None, :, -1:] + noise


def test_a_sampling_models_quantiles_come_from_the_draws_whose_mean_is_its_forecast():
    x = torch.arange(10.0).view(5, 2)
    dist = sample_distribution(Sampler(), x, {}, (0.1, 0.5, 0.9), seed=3, n=400, chunk=2)
    assert torch.equal(dist.mean, sample_mean(Sampler(), x, {}, seed=3, n=400, chunk=2))
    assert dist.quantiles.shape == (5, 3, 3)
    assert (dist.quantiles[..., 0] < dist.quantiles[..., 1]).all() and (
        dist.quantiles[..., 1] < dist.quantiles[..., 2]
    ).all()
    spread = dist.quantiles[..., 2] - dist.quantiles[..., 0]  # a standard normal's 10-90% range: 2.56
    assert spread.mean().item() == pytest.approx(2.563, abs=0.2)


def test_a_sampling_model_draws_fewer_samples_at_the_validation_origins_than_for_its_forecasts(
    monkeypatch, tmp_path, panel_file
):
    # the combination's fit and the interval calibration forecast every validation origin: VALIDATION_SAMPLES
    # draws there; the holdout and the future (means and quantiles) get SAMPLES; the trainer's validation checks
    # score the mean of VAL_DRAWS
    monkeypatch.setitem(CATALOG, OWN_LOSS.name, OWN_LOSS)
    calls: list[tuple[int, int]] = []
    draw = OwnLossLinear.sample

    def counted(self: OwnLossLinear, x: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
        calls.append((n, x.shape[0]))
        return draw(self, x, n, generator)

    monkeypatch.setattr(OwnLossLinear, "sample", counted)
    spec = build_spec(
        data=str(panel_file), model=OWN_LOSS.name, out=str(tmp_path / "run"), device="cpu", horizon=4, input_size=8,
        holdout=4, sets=["max_steps=4", "batch_size=16", "val_check_steps=2"],
    )  # fmt: skip
    run_job(spec, log=lambda line: None)
    rows = {n: sum(m for k, m in calls if k == n) for n, _ in calls}
    assert set(rows) == {VAL_DRAWS, VALIDATION_SAMPLES, SAMPLES}
    n_series = int(pd.read_parquet(panel_file)["No."].nunique())
    intervals = json.loads((tmp_path / "run" / "metrics.json").read_text())["intervals"]
    found = re.match(r"validation part: (\d+) origins", intervals["calibration"]["source"])
    assert found is not None
    val_origins = int(found[1])
    # the fit, the calibration and the calibration with the holdout: each (strategy, origin) is drawn for once
    assert rows[VALIDATION_SAMPLES] == (val_origins + spec.holdout) * n_series
    assert all(m <= n_series for k, m in calls if k == SAMPLES)  # one origin a call: the holdout's, the future's
    # each of the two origins drawn for once: the holdout's scores, coverage and quantiles; the future forecast,
    # its ranking score and its quantiles
    assert rows[SAMPLES] == 2 * n_series
