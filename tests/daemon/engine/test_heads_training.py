"""Output heads in the engine: the head follows the loss option, hurdle scaling rules, own-loss models, whole runs."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from stratcast.daemon.cli import main
from stratcast.daemon.engine.data.load import load_panel
from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.data.windows import PanelWindows, Split, TrainSampler, validation_windows
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.spec.runspec import build_spec, choose_from_data
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.zoo.heads import OwnLoss
from stratcast.shared.errors import ExitCode
from tests.daemon.engine.test_data_defaults import level_frame, write


@pytest.mark.parametrize(
    ("loss", "n_outputs"),
    [("mse", 1), ("huber", 1), ("quantile", 3), ("gaussian", 2), ("student-t", 3), ("hurdle", 4)],
)
def test_the_models_outputs_per_step_follow_the_head(loss, n_outputs):
    cfg = TrainConfig(loss=loss)
    assert cfg.n_outputs == cfg.head.n_params == n_outputs


@pytest.mark.parametrize("scaler", ["standard", "robust-centered"])
def test_hurdle_refuses_a_scaler_that_moves_zeros_and_names_the_ones_to_use(tmp_path, scaler):
    with pytest.raises(ValueError) as info:
        build_spec(data=str(tmp_path / "p.parquet"), model="dlinear", out="-", sets=["loss=hurdle", f"scaler={scaler}"])
    message = str(info.value)
    assert f"scaler={scaler}" in message and "--set scaler=robust or --set scaler=identity" in message


@pytest.mark.parametrize("loss", ["quantile", "gaussian", "student-t", "hurdle"])
def test_revin_is_refused_for_heads_whose_outputs_are_not_values(tmp_path, loss):
    with pytest.raises(ValueError) as info:
        build_spec(data=str(tmp_path / "p.parquet"), model="dlinear", out="-", sets=[f"loss={loss}", "scaler=revin"])
    message = str(info.value)
    assert "scaler=revin" in message and f"loss={loss}" in message and "--set scaler=robust" in message
    build_spec(data=str(tmp_path / "p.parquet"), model="dlinear", out="-", sets=["loss=mae", "scaler=revin"])


def test_quantile_levels_must_increase_within_zero_and_one():
    with pytest.raises(ValueError, match="increase strictly within"):
        TrainConfig(loss="quantile", quantiles=(0.9, 0.1))
    assert TrainConfig(loss="mse", quantiles=(0.9, 0.1)).n_outputs == 1  # unused levels are not checked


@pytest.mark.parametrize("loss", ["hurdle", "student-t", "quantile"])
def test_a_distribution_head_on_a_level_panel_gets_the_profit_scaler_not_revin(tmp_path, loss):
    path = write(tmp_path, level_frame())
    spec = build_spec(data=path, model="dlinear", out="-", horizon=4, input_size=8, sets=[f"loss={loss}"])
    chosen, _ = choose_from_data(spec, load_panel(path))
    assert (chosen.train.scaler, chosen.train.loss) == ("robust", loss)


class NoisyLinear(nn.Module):
    """A toy own-loss model: a linear map trained by denoising its target, as a diffusion model would."""

    def __init__(self, input_size: int, horizon: int) -> None:
        super().__init__()
        self.net = nn.Linear(input_size + horizon, horizon)
        self.horizon = horizon
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        raise AssertionError("an own-loss model is trained through training_loss, never called")

    def training_loss(self, x: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        noisy = y + torch.randn_like(y)
        err: Tensor = (self.net(torch.cat([x, noisy], dim=-1)) - y).square()
        return err

    def sample(self, x: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
        noise = torch.randn((n, *x.shape[:-1], self.horizon), generator=generator)
        return torch.stack([self.net(torch.cat([x, z], dim=-1)) for z in noise])


def test_a_model_with_its_own_loss_trains_through_the_trainer():
    g = torch.Generator().manual_seed(0)
    tt = torch.arange(80.0)[None, :]
    values = torch.sin(tt / 3 + 6.28 * torch.rand(16, 1, generator=g)) + 0.1 * torch.randn(16, 80, generator=g)
    cfg = TrainConfig(input_size=12, horizon=4, max_steps=60, batch_size=64, learning_rate=1e-2, val_check_steps=10)
    split = Split.make(80, cfg.effective_val_size(80, 0), 0)
    windows = PanelWindows(values, torch.zeros(16, dtype=torch.long), input_size=12, horizon=4)
    torch.manual_seed(0)
    model = NoisyLinear(12, 4)
    assert isinstance(model, OwnLoss)
    trainer = Trainer(model, cfg, TrainSampler(windows, split.train_end, 0), validation_windows(windows, split))
    before = float(trainer.validation_loss())
    result = trainer.fit()
    assert model.calls > 60 and result.best_val_loss is not None and result.best_val_loss < 0.5 * before
    draws = model.sample(windows.forecast_inputs(), 3, torch.Generator().manual_seed(1))
    assert draws.shape == (3, 16, 4) and bool(draws.isfinite().all())


@pytest.mark.parametrize("loss", ["hurdle", "student-t"])
def test_stratcastd_run_with_a_distribution_head_writes_finite_forecasts(tmp_path, loss):
    frame = make_strategy_panel(12, 60, seed=3)
    assert (frame["profit"] == 0).mean() > 0.25  # zero-heavy
    path = tmp_path / "panel.parquet"
    frame.to_parquet(path, index=False)
    out = tmp_path / "run"
    argv = ["run", "--data", str(path), "--model", "mlp", "--out", str(out), "--horizon", "4", "--input-size", "8"]
    sets = [f"loss={loss}", "max_steps=20", "batch_size=32", "val_check_steps=5", "hidden_size=16"]
    code = main([*argv, "--holdout", "4", "--device", "cpu", *(a for s in sets for a in ("--set", s))])
    assert code == ExitCode.OK
    forecast = pd.read_parquet(out / "forecast.parquet")
    assert len(forecast) == 12 * 4 and np.isfinite(forecast["forecast"]).all()
    assert forecast["forecast"].abs().max() > 0
