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


# -- the validation score ------------------------------------------------------------------------------------------


def scored_trainer(loc, scale, model="dlinear", loss="mse"):
    """A trainer on the seasonal panel scaled by (loc, scale) [N] per series, told those units."""
    raw = seasonal_panel() * 3 + 1
    cfg = dataclasses.replace(CFG, loss=loss)
    trainer = make_trainer(cfg, values=(raw - loc[:, None]) / scale[:, None], model=model)
    trainer.set_units(loc, scale)
    return trainer


def test_the_validation_score_is_the_point_forecasts_rmse_in_the_data_units_over_a_zero_forecasts():
    loc, scale = torch.linspace(-1, 1, 16), torch.linspace(0.5, 4, 16)
    trainer = scored_trainer(loc, scale)
    trainer.fit()
    trainer.check()
    val = trainer.val
    with torch.no_grad():
        point = trainer.head.mean(trainer.forward(val))
    s, m = scale[val.rows][:, None], val.mask.double()
    raw_y, raw_f = (val.y * s + loc[val.rows][:, None]).double() * m, (point * s + loc[val.rows][:, None]).double() * m
    sse = 0.0
    for h in range(raw_y.shape[1]):  # each step's forecast shrunk toward zero by its least-squares weight in [0, 1]
        f, y = raw_f[:, h], raw_y[:, h]
        w = min(max(float(f @ y / (f @ f)), 0.0), 1.0)
        sse += float(((w * f - y) ** 2).sum())
    expected = (sse / float((raw_y**2).sum())) ** 0.5
    assert trainer.last_score == pytest.approx(expected, rel=1e-6)
    assert 0 < trainer.last_score < 1  # a seasonal series is forecast better than by zero


def test_the_validation_score_reaches_progress_reports_and_needs_units():
    reports: list[ProgressReported] = []
    trainer = make_trainer(progress=reports.append)
    trainer.fit()
    assert all(r.val_score is None for r in reports) and trainer.last_score is None
    trainer = scored_trainer(torch.zeros(16), torch.ones(16))
    trainer.on_progress = reports.append
    trainer.fit()
    checks = [r for r in reports if r.val_loss is not None and r.val_score is not None]
    assert [r.step for r in checks] == [10, 20, 30, 40, 50, 60] and checks[-1].val_score == trainer.last_score


def test_a_constant_forecast_scores_the_same_whatever_the_loss_and_the_scaling():
    # the loss of one forecast changes with the loss function and the scaling; its score in the data's units does not
    scores, losses = [], []
    for loss, scale in (("mse", torch.ones(16)), ("huber", torch.full((16,), 5.0)), ("mae", torch.linspace(1, 9, 16))):
        trainer = scored_trainer(torch.zeros(16), scale, loss=loss)
        with torch.no_grad():
            for p in trainer.model.parameters():
                p.zero_()  # DLinear with zero weights forecasts 0 in the scaled units: 0 in the data's
        losses.append(float(trainer.check()))
        scores.append(trainer.last_score)
    assert scores == pytest.approx([1.0, 1.0, 1.0]) and len({round(v, 4) for v in losses}) == 3


def test_a_sampling_model_is_scored_by_the_mean_of_its_draws():
    trainer = scored_trainer(torch.zeros(16), torch.ones(16), model="deepar")
    trainer.check()
    first = trainer.last_score
    trainer.check()
    assert first is not None and first > 0 and trainer.last_score == first  # seeded draws: checks are reproducible


def test_a_model_worse_than_zero_scores_1_as_the_combination_would_keep_zero():
    trainer = scored_trainer(torch.zeros(16), torch.ones(16))
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.zero_()
        trainer.model.trend.bias.fill_(-5.0)  # forecasts -5 everywhere, where the targets average about 1
    trainer.check()
    assert trainer.last_score == pytest.approx(1.0)
