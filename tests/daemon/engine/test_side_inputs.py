"""The engine gives a model the side inputs its capabilities declare (series ids, origins), at every call site."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from stratcast.daemon.engine.data.windows import PanelWindows, Split, TrainSampler, validation_windows
from stratcast.daemon.engine.prediction.forecast import predict
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.daemon.engine.training.stacked import StackedModel, StackedSampler, StackedTrainer, predict_stacked
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.zoo.catalog import CATALOG, ModelEntry
from stratcast.daemon.zoo.contract import Capabilities
from tests.daemon.zoo.toys import ORIGIN_WAVE, OWN_LOSS, SERIES_BIAS, OriginWave, ToyConfig

L, H, N, T = 8, 4, 6, 60
CFG = TrainConfig(input_size=L, horizon=H, batch_size=32, max_steps=4, val_check_steps=2, seed=0)


def listed(monkeypatch: pytest.MonkeyPatch, entry: ModelEntry) -> None:
    """Put a toy in the catalog for one test, so specs and jobs can name it."""
    monkeypatch.setitem(CATALOG, entry.name, entry)


def level_panel(path: Path, levels: list[float]) -> Path:
    """Weekly series, each its own level plus a little noise, as a long parquet file."""
    rng = np.random.default_rng(0)
    weeks = pd.date_range("2020-01-06", periods=T, freq="W-MON")
    frames = [
        pd.DataFrame({"strategy": f"s{i}", "week": weeks, "profit": level + 0.05 * rng.standard_normal(T)})
        for i, level in enumerate(levels)
    ]
    pd.concat(frames).to_parquet(path, index=False)
    return path


LEVELS = [-2.0, -1.0, -0.3, 0.4, 1.0, 2.0]


def level_job(tmp_path: Path, model: str, sets: list[str]) -> tuple[np.ndarray[Any, Any], dict[str, Any]]:
    """Train ``model`` on the level panel through a whole job; each series' mean forecast and the metrics."""
    spec = build_spec(
        data=str(level_panel(tmp_path / "levels.parquet", LEVELS)),
        model=model,
        out=str(tmp_path / "out"),
        id_col="strategy",
        device="cpu",
        horizon=H,
        input_size=L,
        holdout=H,
        sets=["scaler=identity", "loss=mse", "learning_rate=0.05", "max_steps=150", *sets],
    )
    result = run_job(spec, log=lambda m: None)
    forecast = pd.read_parquet(result.out_dir / "forecast.parquet").groupby("strategy")["forecast"].mean()
    return forecast[[f"s{i}" for i in range(N)]].to_numpy(), result.metrics


def test_a_per_series_model_learns_a_bias_for_each_series_through_the_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    listed(monkeypatch, SERIES_BIAS)
    forecast, metrics = level_job(tmp_path, SERIES_BIAS.name, ["window=false", "batch_size=64"])
    # a bias alone (the window unread) can only tell the series apart by their ids
    np.testing.assert_allclose(forecast, LEVELS, atol=0.15)
    assert metrics["holdout"]["strategies"] == N


class Recorder(nn.Module):
    """Records the inputs, ids and origins of every call; forecasts a learned constant."""

    def __init__(self) -> None:
        super().__init__()
        self.level = nn.Parameter(torch.zeros(1))
        self.calls: list[tuple[Tensor, Tensor, Tensor]] = []

    def forward(self, x: Tensor, *, ids: Tensor, origin: Tensor) -> Tensor:
        self.calls.append((x.detach().clone(), ids.clone(), origin.clone()))
        return self.level + 0 * x[..., :H, None]  # [B, L] -> [B, H, 1]


def panel_windows() -> tuple[PanelWindows, Split]:
    g = torch.Generator().manual_seed(0)
    values = torch.randn(N, T, generator=g)
    start = torch.tensor([0, 0, 5, 10, 0, 3])  # ragged starts: rows and origins matter
    return PanelWindows(values, start, input_size=L, horizon=H), Split.make(T, 2 * H, 0)


def test_the_trainer_gives_the_model_the_ids_and_origins_of_the_windows_it_reads() -> None:
    windows, split = panel_windows()
    model = Recorder()
    caps = Capabilities(per_series=True, origin=True, stackable=False)
    val = validation_windows(windows, split)
    trainer = Trainer(model, CFG, TrainSampler(windows, split.train_end, 0), val, capabilities=caps)
    trainer.train_step()  # the step's micro-batches
    trainer.probe_step(8)  # the memory planner's probe
    trainer.validation_loss()
    assert val is not None and len(model.calls) == 3
    for x, ids, origin in model.calls:
        assert ids.dtype == origin.dtype == torch.long and ids.shape == origin.shape == x.shape[:1]
        # the windows cut at those (series, origin) pairs are exactly the inputs the model got
        assert torch.equal(windows.gather(ids, origin, windows.end[ids]).x, x)
    assert torch.equal(model.calls[-1][1], val.rows) and torch.equal(model.calls[-1][2], val.origin)


def test_a_model_that_declares_nothing_is_called_with_its_windows_alone() -> None:
    windows, split = panel_windows()
    model = Recorder()
    trainer = Trainer(model, CFG, TrainSampler(windows, split.train_end, 0), None)
    with pytest.raises(TypeError, match="ids"):
        trainer.train_step()


def test_prediction_cuts_the_side_inputs_into_the_same_chunks_as_the_windows() -> None:
    torch.manual_seed(0)
    model = SERIES_BIAS.build(ToyConfig(), input_size=L, horizon=H, n_series=N)
    x = torch.randn(7, L)
    ids = torch.tensor([5, 0, 3, 3, 1, 2, 4])
    whole = predict(model, x, side={"ids": ids}, chunk=100)
    torch.testing.assert_close(predict(model, x, side={"ids": ids}, chunk=3), whole)  # the last chunk padded
    torch.testing.assert_close(whole, model(x, ids=ids))


def parity_panel(amplitudes: list[float]) -> Tensor:
    """Series ``i`` is ``amplitudes[i]`` on even periods and its negative on odd ones."""
    sign = 1 - 2 * (torch.arange(T) % 2)
    return torch.tensor(amplitudes)[:, None] * sign[None, :].float()


def test_stacked_members_get_their_own_windows_origins_and_learn_from_them() -> None:
    amplitudes = [0.5, -0.5, 1.0, -1.0]
    values = parity_panel(amplitudes)
    windows = PanelWindows(values, torch.zeros(4, dtype=torch.long), input_size=L, horizon=H)
    split = Split.make(T, H, 0)
    no_window = ToyConfig(window=False)  # the origin is all it reads

    def one() -> nn.Module:
        return ORIGIN_WAVE.build(no_window, input_size=L, horizon=H)

    model = StackedModel(one, 4, seed=0)
    cfg = dataclasses.replace(CFG, batch_size=8, max_steps=80, learning_rate=0.1, val_check_steps=20)
    trainer = StackedTrainer(
        model,
        cfg,
        StackedSampler(windows, split.train_end, 0),
        validation_windows(windows, split),
        capabilities=ORIGIN_WAVE.capabilities,
    )
    trainer.fit()
    learned = model.members.get_parameter("amplitude").detach().flatten()
    torch.testing.assert_close(learned, torch.tensor(amplitudes), atol=0.05, rtol=0)
    origin = torch.tensor([40, 41, 40, 41])  # member 1 and 3 from an odd period: the sign flips
    out = predict_stacked(model, torch.zeros(4, L), {"origin": origin})[..., 0, 0]  # [N, H, O] -> [N]
    torch.testing.assert_close(out, torch.tensor([0.5, 0.5, 1.0, 1.0]), atol=0.05, rtol=0)
    alone = OriginWave(no_window, input_size=L, horizon=H, n_outputs=1)
    alone.load_state_dict(model.member_state_dict(1))
    torch.testing.assert_close(alone(torch.zeros(1, L), origin=origin[1:2])[0, 0, 0], out[1])


def test_a_model_that_reads_origins_forecasts_the_parity_of_each_future_period_through_the_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    listed(monkeypatch, ORIGIN_WAVE)
    path = tmp_path / "wave.parquet"
    weeks = pd.date_range("2020-01-06", periods=T, freq="W-MON")
    wave = np.where(np.arange(T) % 2 == 0, 1.0, -1.0)  # +1 on even grid periods: only the origin tells them apart
    pd.concat(pd.DataFrame({"strategy": f"s{i}", "week": weeks, "profit": wave}) for i in range(N)).to_parquet(
        path, index=False
    )
    spec = build_spec(
        data=str(path),
        model=ORIGIN_WAVE.name,
        out=str(tmp_path / "out"),
        id_col="strategy",
        device="cpu",
        horizon=H,
        input_size=L,
        holdout=H,
        sets=["scaler=identity", "loss=mse", "learning_rate=0.05", "max_steps=150", "window=false"],
    )
    result = run_job(spec, log=lambda m: None)
    forecast = pd.read_parquet(result.out_dir / "forecast.parquet")
    steps = forecast.groupby("step")["forecast"].mean().to_numpy()
    # the panel ends at period T - 1 (odd), so the future's periods T, T + 1, ... are even, odd, ...
    np.testing.assert_allclose(steps, [1.0, -1.0, 1.0, -1.0], atol=0.1)
    assert result.metrics["errors"]["model"]["rmse"] < 0.1  # the holdout, scored from its own origins


def test_a_model_with_its_own_loss_trains_and_forecasts_the_mean_of_its_draws_through_the_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    listed(monkeypatch, OWN_LOSS)
    forecast, metrics = level_job(tmp_path, OWN_LOSS.name, ["batch_size=64"])
    np.testing.assert_allclose(forecast, LEVELS, atol=0.3)
    assert metrics["holdout"]["strategies"] == N


def test_a_per_series_model_cannot_run_per_strategy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    listed(monkeypatch, SERIES_BIAS)
    with pytest.raises(ValueError, match="cannot be stacked"):
        build_spec(
            data=str(tmp_path / "p.parquet"), model=SERIES_BIAS.name, out=str(tmp_path / "o"), mode="per-strategy"
        )


@pytest.mark.gpu
def test_cuda_graph_prediction_replays_with_each_chunks_side_inputs() -> None:
    torch.manual_seed(0)
    model = SERIES_BIAS.build(ToyConfig(), input_size=L, horizon=H, n_series=N).cuda()
    x = torch.randn(7, L, device="cuda")
    ids = torch.tensor([5, 0, 3, 3, 1, 2, 4], device="cuda")
    graphed = predict(model, x, side={"ids": ids}, chunk=3, precision="fp32", graphs=True)
    plain = predict(model, x, side={"ids": ids}, chunk=3, precision="fp32", graphs=False)
    torch.testing.assert_close(graphed, plain)
    torch.testing.assert_close(plain, model(x, ids=ids))
