"""Per-strategy (stacked) training: each member behaves exactly like a model trained alone on its series."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from stratcast.daemon.engine.data.windows import PanelWindows, Split, TrainSampler, WindowBatch, validation_windows
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.run.outputs import finite_numbers
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.daemon.engine.training.losses import masked_mean
from stratcast.daemon.engine.training.stacked import (
    StackedModel,
    StackedSampler,
    StackedTrainer,
    predict_stacked,
    stack_validation,
)
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.zoo.catalog import build_model, make_config
from tests.daemon.engine.small_jobs import write_small_panel

N, T, L, H, B = 8, 60, 12, 6, 4
SPLIT = Split.make(T, val_size=H, holdout=H)  # train_end 48, val_end 54
START = torch.tensor([0, 0, 3, 7, 0, 11, 20, 30])  # the last series has only 6 training origins


def make_windows(values: Tensor | None = None, start: Tensor = START) -> PanelWindows:
    """Zero-heavy random panel, series i scaled by i + 1, zero before its start."""
    if values is None:
        g = torch.Generator().manual_seed(0)
        values = torch.randn(N, T, generator=g) * torch.arange(1, N + 1)[:, None]
        values = values * (torch.rand(N, T, generator=g) > 0.5)
    values = torch.where(torch.arange(T) < start[:, None], 0.0, values)
    return PanelWindows(values, start, input_size=L, horizon=H)


def dlinear() -> nn.Module:
    return build_model("dlinear", make_config("dlinear", tiny=True), input_size=L, horizon=H)


def train_config(**overrides: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "input_size": L,
        "horizon": H,
        "batch_size": B,
        "max_steps": 20,
        "val_check_steps": 4,
        "learning_rate": 1e-2,
        "weight_decay": 0.01,
        "grad_clip": 0.05,
    }
    return TrainConfig(**(base | overrides))


def lstm() -> nn.Module:
    """Two LSTM layers (dropout off, so a member alone draws the same nothing), through nn.LSTM when run alone."""
    config = make_config("lstm", {"num_layers": 2, "dropout": 0.0}, tiny=True)
    return build_model("lstm", config, input_size=L, horizon=H)


def make_trainer(
    seed: int = 0,
    cls: type[StackedTrainer] = StackedTrainer,
    factory: Callable[[], nn.Module] = dlinear,
    **overrides: Any,
) -> tuple[StackedTrainer, StackedModel]:
    windows = make_windows()
    model = StackedModel(factory, N, seed=seed)
    sampler = StackedSampler(windows, SPLIT.train_end, seed)
    return cls(model, train_config(**overrides), sampler, validation_windows(windows, SPLIT)), model


def member_model(model: StackedModel, i: int) -> nn.Module:
    single = dlinear()
    single.load_state_dict(model.member_state_dict(i))
    return single


def member_batch(batch: WindowBatch, i: int) -> WindowBatch:
    return WindowBatch(batch.x[i], batch.y[i], batch.mask[i], batch.rows[i], batch.origin[i])


def assert_same_state(a: dict[str, Tensor], b: dict[str, Tensor], rtol: float = 0.0, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=atol)


# -- the ensemble ----------------------------------------------------------------------------------------------


def test_stacked_forward_equals_each_member_run_alone() -> None:
    model = StackedModel(dlinear, N, seed=1)
    x = torch.randn(N, 5, L)
    out = model(x)
    assert out.shape == (N, 5, H, 1)
    for i in range(N):
        torch.testing.assert_close(out[i], member_model(model, i)(x[i]))


def test_each_member_is_initialised_like_an_independently_seeded_model() -> None:
    model = StackedModel(dlinear, N, seed=5)
    for i in range(N):
        torch.manual_seed(int(model.seeds[i]))
        assert_same_state(model.member_state_dict(i), dlinear().state_dict())
    first, second = model.member_state_dict(0), model.member_state_dict(1)
    assert not torch.equal(first["trend.weight"], second["trend.weight"])
    assert_same_state(StackedModel(dlinear, N, seed=5).state_dict(), model.state_dict())


class _Dropped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj, self.drop = nn.Linear(L, H), nn.Dropout(0.5)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.drop(self.proj(x))
        return out[..., None]  # [b, H] -> [b, H, 1]


def test_dropout_draws_a_different_mask_for_each_member() -> None:
    model = StackedModel(_Dropped, N)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p[:1].expand_as(p))  # every member gets member 0's weights
    x = torch.randn(1, 16, L).expand(N, -1, -1)  # [1, b, L] -> [N, b, L]: the same inputs for every member
    trained = model.train()(x)
    assert not torch.equal(trained[0], trained[1])
    evaluated = predict_stacked(model, x[:, 0])
    torch.testing.assert_close(evaluated, evaluated[:1].expand_as(evaluated))


def test_predict_stacked_forecasts_each_series_with_its_own_member() -> None:
    model = StackedModel(dlinear, N, seed=2)
    x = torch.randn(N, L)
    out = predict_stacked(model, x)
    assert out.shape == (N, H, 1)
    for i in range(N):
        torch.testing.assert_close(out[i], member_model(model, i)(x[i : i + 1])[0])


# -- the sampler -----------------------------------------------------------------------------------------------


def test_sampler_windows_belong_to_their_own_series_and_never_see_the_validation_part() -> None:
    stamp = 1000.0 * torch.arange(N)[:, None] + torch.arange(T) + 1  # value encodes (series, period)
    windows = make_windows(stamp)
    batch = StackedSampler(windows, SPLIT.train_end, seed=0).sample(200)
    assert batch.x.shape == (N, 200, L) and batch.y.shape == batch.mask.shape == (N, 200, H)
    series = torch.arange(N)[:, None]
    assert torch.equal(batch.rows, series.expand(N, 200))
    lo = (START + L)[:, None]
    assert bool(((batch.origin >= lo) & (batch.origin < SPLIT.train_end)).all())
    in_t = batch.origin[..., None] + torch.arange(-L, 0)  # [N, b, L] input periods
    assert torch.equal(batch.x, 1000.0 * series[..., None] + in_t + 1)
    target_t = batch.origin[..., None] + torch.arange(H)  # [N, b, H] target periods
    assert torch.equal(batch.mask, target_t < SPLIT.train_end)
    expected = torch.where(batch.mask, 1000.0 * series[..., None] + target_t + 1, 0.0)
    assert torch.equal(batch.y, expected)
    assert set(batch.origin[-1].tolist()) == set(range(int(START[-1]) + L, SPLIT.train_end))


def test_sampler_rejects_series_without_a_training_window() -> None:
    start = START.clone()
    start[3] = SPLIT.train_end - L + 1  # earliest origin past the last training period
    with pytest.raises(ValueError, match="no training window"):
        StackedSampler(make_windows(start=start), SPLIT.train_end, seed=0)


# -- the trainer -----------------------------------------------------------------------------------------------


class _Recording(StackedTrainer):
    """Keeps the windows of every step and each member's gradient norm before clipping."""

    seen: list[WindowBatch]
    norms: list[Tensor]

    def sample(self) -> WindowBatch:
        batch = super().sample()
        self.seen = [*getattr(self, "seen", []), batch]
        return batch

    def clip(self) -> None:
        grads = [p.grad.flatten(1) for p in self.model.parameters() if p.grad is not None]
        self.norms = [*getattr(self, "norms", []), torch.cat(grads, dim=1).norm(dim=1)]
        super().clip()


class _FixedBatches(Trainer):
    """A plain single-model trainer fed given windows, keeping its gradient norm before clipping."""

    batches: list[WindowBatch]
    norms: list[Tensor]

    def sample(self) -> WindowBatch:
        return self.batches[self.step]

    def clip(self) -> None:
        grads = [p.grad.flatten() for p in self.model.parameters() if p.grad is not None]
        self.norms = [*getattr(self, "norms", []), torch.cat(grads).norm()]
        super().clip()


@pytest.mark.parametrize(("factory", "atol"), [(dlinear, 1e-7), (lstm, 1e-4)], ids=["dlinear", "lstm"])
def test_stacked_steps_update_each_member_as_if_it_trained_alone(factory: Callable[[], nn.Module], atol: float) -> None:
    """For the LSTM the stacked members run hand-written cells, the member alone ``nn.LSTM`` (float rounding
    differs, and Adam's normalisation magnifies it in gradients near zero: hence its wider tolerance)."""
    steps = 3
    trainer, model = make_trainer(cls=_Recording, factory=factory)
    assert isinstance(trainer, _Recording)
    initial = [model.member_state_dict(i) for i in range(N)]
    for _ in range(steps):
        trainer.train_step()
    assert all(bool((n > trainer.cfg.grad_clip).all()) for n in trainer.norms)  # clipping is engaged
    assert len({round(float(n), 3) for n in trainer.norms[0]}) > 1  # and per member it differs
    for i in range(N):
        single = factory()
        single.load_state_dict(initial[i])
        alone = _FixedBatches(single, trainer.cfg, TrainSampler(make_windows(), SPLIT.train_end, 0), None)
        alone.batches = [member_batch(b, i) for b in trainer.seen]
        for _ in range(steps):
            alone.train_step()
        torch.testing.assert_close(
            torch.stack(alone.norms), torch.stack(trainer.norms)[:, i], rtol=1e-5, atol=1e-6
        )  # same gradient
        assert_same_state(model.member_state_dict(i), single.state_dict(), rtol=1e-5, atol=atol)


@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_clipping_scales_only_the_members_over_the_limit(device_type: str) -> None:
    trainer, model = make_trainer(grad_clip=1.0)
    trainer.device = torch.device(device_type)  # the CUDA path scales every row; its tensors stay on the CPU here
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(0)
    scale = torch.linspace(0.01, 0.5, N)  # [N]: members from well under to well over the limit
    grads = [torch.randn(p.shape, generator=gen) * scale.view(-1, *(1,) * (p.dim() - 1)) for p in params]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    before = torch.cat([g.flatten(1) for g in grads], dim=1)  # [N, P]
    norms = before.norm(dim=1)
    assert bool((norms < 1).any()) and bool((norms > 1).any())
    trainer.clip()
    after = torch.cat([g.flatten(1) for g in grads], dim=1)  # clipped in place
    expected = before * (1.0 / (norms + 1e-6)).clamp(max=1.0)[:, None]
    torch.testing.assert_close(after, expected)
    torch.testing.assert_close(after[norms < 1], before[norms < 1], rtol=0, atol=0)  # untouched, bit for bit


def test_validation_loss_is_each_members_loss_on_its_own_series() -> None:
    trainer, model = make_trainer()
    val = trainer.validation_loss()
    flat = validation_windows(make_windows(), SPLIT)
    assert flat is not None
    for i in range(N):
        own = flat.rows == i
        with torch.no_grad():
            out = member_model(model, i)(flat.x[own])
        expected = masked_mean((out[..., 0] - flat.y[own]).square(), flat.mask[own])
        torch.testing.assert_close(val[i], expected)


class _ScriptedVal(StackedTrainer):
    """Validation losses from a script [checks, N]; the weights at every check are kept."""

    script: Tensor
    snapshots: list[dict[str, Tensor]]

    def validation_loss(self) -> Tensor:
        self.snapshots = [*getattr(self, "snapshots", []), {k: v.clone() for k, v in self.model.state_dict().items()}]
        return self.script[len(self.snapshots) - 1]


def test_per_member_early_stopping_keeps_each_members_own_best_weights() -> None:
    checks = 5
    peak = torch.arange(N) % checks  # member i is best at check peak[i]
    trainer, model = make_trainer(cls=_ScriptedVal, max_steps=4 * checks, early_stop_patience=checks)
    assert isinstance(trainer, _ScriptedVal)
    trainer.script = (torch.arange(checks)[:, None] - peak).abs().float() + 1.0  # [checks, N]
    result = trainer.fit()
    assert result.steps == 4 * checks and len(trainer.snapshots) == checks
    assert torch.equal(trainer.best_steps, 4 * (peak + 1))
    for i in range(N):
        best = {k: v[i] for k, v in trainer.snapshots[int(peak[i])].items()}
        assert_same_state(model.member_state_dict(i), {k.removeprefix("members."): v for k, v in best.items()})
    last = {k: v[0] for k, v in trainer.snapshots[-1].items()}
    assert not torch.equal(last["members.trend.weight"], model.member_state_dict(0)["trend.weight"])


def test_training_stops_early_once_no_member_improves() -> None:
    trainer, _ = make_trainer(cls=_ScriptedVal, max_steps=40, early_stop_patience=1)
    assert isinstance(trainer, _ScriptedVal)
    trainer.script = torch.arange(10.0)[:, None].expand(10, N) + 1  # every member is best at the first check
    result = trainer.fit()
    assert result.stopped_early and result.steps == 12 and torch.equal(trainer.best_steps, torch.full((N,), 4))


def test_training_is_deterministic_for_a_seed() -> None:
    first, model_a = make_trainer(seed=3)
    second, model_b = make_trainer(seed=3)
    torch.manual_seed(0)
    first.fit()
    torch.manual_seed(0)
    second.fit()
    assert_same_state(model_a.state_dict(), model_b.state_dict())
    assert torch.equal(first.best_steps, second.best_steps)
    other, model_c = make_trainer(seed=4)
    other.fit()
    assert not torch.equal(model_a.state_dict()["members.trend.weight"], model_c.state_dict()["members.trend.weight"])


def run_steps(trainer: StackedTrainer, steps: int) -> None:
    for _ in range(steps):
        trainer.train_step()
        if trainer.step % 3 == 0:
            trainer.check()


def test_resume_from_state_dict_continues_identically() -> None:
    uninterrupted, model_a = make_trainer()
    run_steps(uninterrupted, 7)
    buffer = io.BytesIO()
    torch.save(uninterrupted.state_dict(), buffer)
    run_steps(uninterrupted, 8)
    resumed, model_b = make_trainer(seed=9)  # different init and sampler: the state must override both
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    run_steps(resumed, 8)
    assert_same_state(model_a.state_dict(), model_b.state_dict())
    assert uninterrupted.best_state is not None and resumed.best_state is not None
    assert_same_state(uninterrupted.best_state, resumed.best_state)
    assert torch.equal(uninterrupted.best_steps, resumed.best_steps)


def test_stacked_validation_groups_windows_by_series() -> None:
    flat = validation_windows(make_windows(), Split.make(T, val_size=2 * H, holdout=0))
    assert flat is not None
    grouped = stack_validation(flat, N)
    assert grouped.x.shape == (N, 2, L)
    assert torch.equal(grouped.rows, torch.arange(N)[:, None].expand(N, 2))
    assert bool((grouped.origin[:, 0] < grouped.origin[:, 1]).all())


def test_stacked_weights_are_stored_in_their_gradients_layout_and_saved_in_the_modules_own() -> None:
    trainer, model = make_trainer()
    assert model.layouts  # DLinear's weights were relaid
    trainer.train_step()
    for p in model.parameters():
        assert p.is_contiguous() and p.grad is not None and p.grad.stride() == p.stride()  # no gradient copies
    single = dlinear().state_dict()
    state = model.state_dict()
    assert {k: v.shape[1:] for k, v in state.items()} == {f"members.{k}": v.shape for k, v in single.items()}
    fresh = StackedModel(dlinear, model.n_members)
    fresh.load_state_dict(state)
    x = torch.randn(model.n_members, 3, 12)
    assert torch.equal(fresh(x), model(x))


def test_a_per_strategy_lstm_job_trains_a_stacked_lstm_per_series_and_forecasts(tmp_path) -> None:
    panel = write_small_panel(tmp_path / "panel.parquet")  # 8 strategies
    sets = ["max_steps=6", "batch_size=8", "val_check_steps=3", "hidden_size=8", "num_layers=2"]
    spec = build_spec(
        data=str(panel), model="lstm", out=str(tmp_path / "out"), mode="per-strategy", device="cpu", horizon=4,
        input_size=8, holdout=4, sets=[*sets, "decoder_hidden_size=8"],
    )  # fmt: skip
    result = run_job(spec, log=lambda line: None)
    assert result.metrics["run"]["steps"] == 6
    assert finite_numbers(result.metrics["errors"]) == result.metrics["errors"]  # no NaN or infinity
    weights = torch.load(result.out_dir / "model.pt", weights_only=True)["trainer"]["model"]
    assert weights["members.encoder.weight_hh_l1"].shape == (8, 4 * 8, 8)  # nn.LSTM's keys, one slice per series
    forecast = pd.read_parquet(result.out_dir / "forecast.parquet")
    assert len(forecast) == 8 * 4 and bool(forecast["forecast"].map(math.isfinite).all())
