import dataclasses

import pytest
import torch

from stratcast.daemon.engine.data.windows import PanelWindows, Split, TrainSampler, validation_windows
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.training.losses import masked_mean
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.zoo.catalog import build_model, make_config
from stratcast.shared.events import ProgressReported

CFG = TrainConfig(input_size=12, horizon=4, max_steps=60, batch_size=64, learning_rate=1e-2, val_check_steps=10, seed=3)


def seasonal_panel(n=16, t=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(n, 1, generator=g) * 6.28
    tt = torch.arange(t)[None, :].float()
    return torch.sin(tt / 3 + phase) + 0.1 * torch.randn(n, t, generator=g)


def make_trainer(cfg=CFG, values=None, progress=None, stop=None, model="dlinear"):
    values = seasonal_panel() if values is None else values
    split = Split.make(values.shape[1], cfg.effective_val_size(values.shape[1], 0), 0)
    windows = PanelWindows(values, torch.zeros(values.shape[0], dtype=torch.long), input_size=12, horizon=4)
    torch.manual_seed(cfg.seed)
    net = build_model(model, make_config(model, tiny=True), input_size=12, horizon=4, n_outputs=cfg.n_outputs)
    sampler = TrainSampler(windows, split.train_end, cfg.seed)
    return Trainer(net, cfg, sampler, validation_windows(windows, split), on_progress=progress, should_stop=stop)


def test_training_lowers_validation_loss_and_reports_progress():
    reports: list[ProgressReported] = []
    trainer = make_trainer(progress=reports.append)
    first = float(trainer.validation_loss())
    result = trainer.fit()
    assert result.steps == 60 and not result.interrupted
    assert result.best_val_loss is not None and result.best_val_loss < 0.5 * first
    assert [r.step for r in reports if r.val_loss is not None] == [10, 20, 30, 40, 50, 60]
    last = reports[-1]
    assert last.step == 60 and last.windows_per_s > 0 and last.eta_s == pytest.approx(0, abs=1e-6)
    assert last.epoch == pytest.approx(60 * 64 / trainer.sampler.n_windows)


def test_training_is_deterministic_on_cpu_for_a_seed():
    a, b = make_trainer(), make_trainer()
    a.fit(), b.fit()
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_early_stopping_restores_the_best_weights():
    cfg = dataclasses.replace(CFG, learning_rate=0.5, max_steps=200, early_stop_patience=1, lr_schedule="constant")
    trainer = make_trainer(cfg)
    result = trainer.fit()
    assert result.best_step is not None
    assert float(trainer.validation_loss()) == pytest.approx(result.best_val_loss, rel=1e-6)
    if result.stopped_early:
        assert result.steps < 200 and result.steps - result.best_step == 20  # patience 1: two bad checks


def test_stop_request_is_checked_every_step():
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 7

    result = make_trainer(stop=stop).fit()
    assert result.interrupted and result.steps == 7


def test_resume_after_stop_gives_identical_weights():
    cfg = dataclasses.replace(CFG, max_steps=40)
    straight = make_trainer(cfg)
    straight.fit()
    calls: list[int] = []

    def stop_after_16() -> bool:
        calls.append(1)
        return len(calls) > 16

    first = make_trainer(cfg, stop=stop_after_16)
    first.fit()
    state = first.state_dict()
    resumed = make_trainer(cfg)
    resumed.load_state_dict(state)
    resumed.fit()
    assert first.step == 16 and resumed.step == 40
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert straight.best_step == resumed.best_step


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "constant"])
def test_every_lr_schedule_runs_and_ends_where_it_should(schedule):
    cfg = dataclasses.replace(CFG, lr_schedule=schedule, max_steps=30, warmup_steps=5 if schedule != "onecycle" else 0)
    trainer = make_trainer(cfg)
    lrs = []
    trainer.on_progress = lambda p: lrs.append(p.learning_rate)
    trainer.fit()
    if schedule == "constant":
        assert lrs[-1] == pytest.approx(CFG.learning_rate)
    else:
        assert lrs[-1] < 0.05 * CFG.learning_rate


@pytest.mark.parametrize("loss", ["mse", "mae", "huber", "quantile", "gaussian", "student-t", "hurdle"])
def test_every_loss_trains(loss):
    cfg = dataclasses.replace(CFG, loss=loss, max_steps=40)
    trainer = make_trainer(cfg)
    before = float(trainer.validation_loss())
    result = trainer.fit()
    assert result.best_val_loss < before


def test_masked_mean_ignores_masked_out_cells():
    v = torch.tensor([[1.0, 100.0], [3.0, 5.0]])
    m = torch.tensor([[True, False], [True, True]])
    assert masked_mean(v, m).item() == pytest.approx(3.0)


def test_mae_collapses_toward_zero_on_zero_heavy_data_while_mse_targets_the_mean():
    g = torch.Generator().manual_seed(0)
    values = torch.where(torch.rand(32, 120, generator=g) < 0.6, 0.0, 1.0 + torch.rand(32, 120, generator=g))
    preds = {}
    for loss in ("mae", "mse"):
        cfg = dataclasses.replace(CFG, loss=loss, max_steps=150, learning_rate=3e-2, early_stop_patience=-1)
        trainer = make_trainer(cfg, values=values, model="mlp")
        trainer.fit()
        x = trainer.sampler.windows.forecast_inputs()
        preds[loss] = trainer.model(x).mean().item()
    assert preds["mae"] < 0.25 and preds["mse"] > 0.45  # true mean is 0.4 * 1.5 = 0.6; the median is 0
