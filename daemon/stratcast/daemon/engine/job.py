"""One forecasting job end to end: load, scale, train, score on the holdout, forecast, write the results.

Outputs in the run folder:

* ``forecast.parquet``: ``strategy, step, forecast`` (plus ``time`` when the grid has dates or positions).
* ``summary.parquet``: one row per strategy: ``forecast_sum``, ``forecast_mean`` ("Avg Profit"), ``rank``,
  ``trailing_mean`` (realized mean of the last ``trailing_window`` periods), ``zero_share``, and with a holdout the
  strategy's own skill inputs (holdout realized and forecast means, error of the holdout total).
* ``metrics.json``: the skill table, the training summary and the spec.
* ``model.pt`` (+ ``model.pt.json`` with its sha256): the final checkpoint, loadable with ``weights_only=True``.

The future forecast comes from the model trained and early-stopped without the holdout, fed the last
``input_size`` periods, so the holdout score describes exactly the model that made the forecast.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from stratcast.daemon.engine import skill
from stratcast.daemon.engine.checkpoint import save_checkpoint, write_json_atomic
from stratcast.daemon.engine.data import drop_short, load_panel
from stratcast.daemon.engine.device import describe_device, resolve_device
from stratcast.daemon.engine.forecast import blend_toward_mean, predict
from stratcast.daemon.engine.losses import point_forecast
from stratcast.daemon.engine.panel import Panel
from stratcast.daemon.engine.scalers import SeriesScaler, WindowNorm, fit_scaler
from stratcast.daemon.engine.spec import RunSpec
from stratcast.daemon.engine.stacked import StackedModel, StackedSampler, StackedTrainer, predict_stacked
from stratcast.daemon.engine.trainer import FitResult, Progress, Trainer
from stratcast.daemon.engine.windows import PanelWindows, Split, TrainSampler, validation_windows
from stratcast.daemon.zoo.registry import build_model, make_config

Log = Callable[[str], None]


@dataclass
class JobResult:
    """What a finished job produced."""

    out_dir: Path
    device: str
    fit: FitResult
    metrics: dict[str, Any]
    top: list[dict[str, Any]]
    notes: list[str]


@dataclass
class Prepared:
    """The panel on the device, split and scaled."""

    panel: Panel
    raw: Tensor
    start: Tensor
    split: Split
    scaler: SeriesScaler
    windows: PanelWindows


def run_job(
    spec: RunSpec,
    *,
    log: Log = print,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> JobResult:
    """Run ``spec`` in this process and write its outputs to ``spec.out``."""
    t0 = time.perf_counter()
    device = resolve_device(spec.device)
    device_name = describe_device(device)
    log(f"device: {device_name}")
    torch.manual_seed(spec.train.seed)
    prep = prepare(spec, device, log)
    model = make_model(spec, prep.panel.n_series)
    trainer = make_trainer(spec, model, prep, on_progress, should_stop)
    fit = trainer.fit()
    log(f"trained {fit.steps} steps in {fit.seconds:.1f}s" + (", stopped early" if fit.stopped_early else ""))
    forecast_fn = forecaster(spec, trainer.model, prep)
    metrics, per_strategy = evaluate_holdout(spec, prep, forecast_fn) if spec.holdout else ({}, None)
    future = forecast_future(spec, prep, forecast_fn)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = write_outputs(out, spec, prep, future, per_strategy)
    metrics.update(run_info(spec, fit, device_name, prep, time.perf_counter() - t0))
    top = [{str(k): v for k, v in r.items()} for r in summary.head(10).to_dict("records")]
    metrics["best_strategy"] = top[0]
    write_json_atomic(out / "metrics.json", metrics)
    save_final(out, spec, trainer, prep)
    return JobResult(out, device_name, fit, metrics, top, list(prep.panel.notes))


def prepare(spec: RunSpec, device: torch.device, log: Log) -> Prepared:
    """Load the panel, drop series too short to train on, split it and fit the scaler on the training part."""
    cfg = spec.train
    panel = load_panel(
        spec.data,
        id_col=spec.id_col,
        time_col=spec.time_col,
        target_col=spec.target_col,
        fill_missing=spec.fill_missing,  # type: ignore[arg-type]
    )
    need = (1 if cfg.pad_start else cfg.input_size) + 1 + cfg.effective_val_size + spec.holdout
    panel = drop_short(panel, need, what="input_size + 1 + val_size + holdout")
    for note in panel.notes:
        log(f"warning: {note}")
    log(f"panel: {panel.n_series} strategies x {panel.n_times} periods from {panel.source}")
    raw = torch.from_numpy(panel.values).to(device)
    start = torch.from_numpy(panel.start).to(device)
    split = Split.make(panel.n_times, cfg.effective_val_size, spec.holdout)
    t = torch.arange(panel.n_times, device=device)
    fit_mask = (t[None, :] >= start[:, None]) & (t[None, :] < split.train_end)
    scaler = fit_scaler(cfg.scaler, raw, fit_mask)
    windows = PanelWindows(
        scaler.transform(raw), start, input_size=cfg.input_size, horizon=cfg.horizon, pad_start=cfg.pad_start
    )
    return Prepared(panel, raw, start, split, scaler, windows)


def make_model(spec: RunSpec, n_series: int) -> nn.Module:
    """The zoo model (wrapped for per-window normalisation, stacked for per-strategy mode)."""
    cfg = spec.train
    config = make_config(spec.model, spec.model_params)

    def one() -> nn.Module:
        m = build_model(spec.model, config, input_size=cfg.input_size, horizon=cfg.horizon, n_outputs=cfg.n_outputs)
        return WindowNorm(m) if cfg.scaler == "revin" else m

    if spec.mode == "per-strategy":
        return StackedModel(one, n_series, seed=cfg.seed)
    return one()


def make_trainer(
    spec: RunSpec,
    model: nn.Module,
    prep: Prepared,
    on_progress: Callable[[Progress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> Trainer:
    """A batch-mode trainer, or a stacked one for per-strategy mode."""
    val = validation_windows(prep.windows, prep.split) if prep.split.val_end > prep.split.train_end else None
    cfg = spec.train
    if spec.mode == "per-strategy":
        sampler = StackedSampler(prep.windows, prep.split.train_end, cfg.seed)
        assert isinstance(model, StackedModel)
        return StackedTrainer(model, cfg, sampler, val, on_progress=on_progress, should_stop=should_stop)
    return Trainer(
        model,
        cfg,
        TrainSampler(prep.windows, prep.split.train_end, cfg.seed),
        val,
        on_progress=on_progress,
        should_stop=should_stop,
    )


Forecaster = Callable[[Tensor, Tensor], Tensor]
PerStrategy = dict[str, np.ndarray[Any, Any]]
"""Holdout figures per scored strategy: ``rows`` (panel rows) and one array per summary column."""


def forecaster(spec: RunSpec, model: nn.Module, prep: Prepared) -> Forecaster:
    """A function mapping (scaled inputs [M, L], their series rows [M]) to raw point forecasts [M, H]."""
    cfg = spec.train
    quantiles = cfg.quantiles if cfg.loss == "quantile" else None

    def run(x: Tensor, rows: Tensor) -> Tensor:
        if isinstance(model, StackedModel):
            # every member forecasts its own series: place the rows' inputs at their members
            full = x.new_zeros(model.n_members, x.shape[1]).index_copy(0, rows, x)
            out = predict_stacked(model, full)[rows]
        else:
            out = predict(model, x, precision=cfg.precision)
        return prep.scaler.inverse(point_forecast(out, quantiles), rows)

    return run


def evaluate_holdout(spec: RunSpec, prep: Prepared, forecast_fn: Forecaster) -> tuple[dict[str, Any], PerStrategy]:
    """Score the model and the baselines on the holdout, from the same origin and on the same strategies."""
    origin, cfg = prep.split.val_end, spec.train
    batch = prep.windows.origins_at(origin)
    if batch is None:
        raise ValueError("no strategy has enough history before the holdout to be scored")
    rows, steps = batch.rows, spec.holdout
    model_fc = forecast_fn(batch.x, rows)[:, :steps]
    recent = skill.trailing_mean(prep.raw[rows], prep.start[rows], origin, cfg.trailing_window)
    model_fc = blend_toward_mean(model_fc, recent, cfg.blend_steps)
    base = skill.baselines(
        prep.raw[rows],
        prep.start[rows],
        origin,
        steps,
        trailing_window=cfg.trailing_window,
        season=cfg.season,
    )
    realized = prep.raw[rows, origin : origin + steps]
    forecasts = {skill.MODEL: model_fc, **base}
    metrics = skill.score(realized.cpu(), {k: v.cpu() for k, v in forecasts.items()})
    metrics["verdict"] = skill.verdict(metrics)
    metrics["holdout"] = {"periods": steps, "strategies": int(rows.numel()), "origin": int(origin)}
    per_strategy = {
        "rows": rows.cpu().numpy(),
        "realized_mean": realized.mean(1).cpu().numpy(),
        "forecast_mean": model_fc.mean(1).cpu().numpy(),
        "total_error": (model_fc.sum(1) - realized.sum(1)).cpu().numpy(),
    }
    return metrics, per_strategy


def forecast_future(spec: RunSpec, prep: Prepared, forecast_fn: Forecaster) -> Tensor:
    """Raw point forecasts [N, H] past the end of the grid for every strategy."""
    cfg = spec.train
    rows = torch.arange(prep.panel.n_series, device=prep.raw.device)
    fc = forecast_fn(prep.windows.forecast_inputs(), rows)
    recent = skill.trailing_mean(prep.raw, prep.start, prep.panel.n_times, cfg.trailing_window)
    return blend_toward_mean(fc, recent, cfg.blend_steps)


def write_outputs(
    out: Path, spec: RunSpec, prep: Prepared, future: Tensor, per_strategy: PerStrategy | None
) -> pd.DataFrame:
    """Write ``forecast.parquet`` and ``summary.parquet``; returns the summary sorted by rank."""
    panel, cfg = prep.panel, spec.train
    fc = future.cpu().double().numpy()
    n, h = fc.shape
    long = pd.DataFrame(
        {"strategy": np.repeat(panel.ids, h), "step": np.tile(np.arange(1, h + 1), n), "forecast": fc.ravel()}
    )
    long["time"] = np.tile(future_times(panel.times, h), n)
    _atomic_parquet(long, out / "forecast.parquet")
    summary = strategy_summary(panel, prep, fc, cfg.trailing_window)
    if per_strategy is not None:
        for key in ("realized_mean", "forecast_mean", "total_error"):
            col = np.full(n, np.nan)
            col[per_strategy["rows"]] = per_strategy[key]
            summary[f"holdout_{key}"] = col
    summary = summary.sort_values("rank").reset_index(drop=True)
    _atomic_parquet(summary, out / "summary.parquet")
    return summary


def strategy_summary(panel: Panel, prep: Prepared, fc: np.ndarray[Any, Any], window: int) -> pd.DataFrame:
    """One row per strategy: forecast sum and mean, rank by forecast, trailing mean, zero share."""
    trailing = skill.trailing_mean(prep.raw, prep.start, panel.n_times, window).cpu().double().numpy()
    observed = np.arange(panel.n_times)[None, :] >= panel.start[:, None]
    zero_share = ((panel.values == 0) & observed).sum(1) / np.maximum(observed.sum(1), 1)
    mean = fc.mean(1)
    rank = np.empty(len(mean), dtype=np.int64)
    rank[np.argsort(-mean, kind="stable")] = np.arange(1, len(mean) + 1)
    return pd.DataFrame(
        {
            "strategy": panel.ids,
            "rank": rank,
            "forecast_mean": mean,
            "forecast_sum": fc.sum(1),
            "trailing_mean": trailing,
            "zero_share": zero_share,
            "observed_periods": panel.lengths,
        }
    )


def future_times(times: np.ndarray[Any, Any], steps: int) -> np.ndarray[Any, Any]:
    """The ``steps`` grid times after the last one, continuing the grid's step."""
    step = times[-1] - times[-2] if len(times) > 1 else 1
    out: np.ndarray[Any, Any] = times[-1] + step * np.arange(1, steps + 1)
    return out


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def run_info(spec: RunSpec, fit: FitResult, device: str, prep: Prepared, seconds: float) -> dict[str, Any]:
    """The training summary and the spec, for ``metrics.json``."""
    return {
        "run": {
            "model": spec.model,
            "mode": spec.mode,
            "device": device,
            "strategies": prep.panel.n_series,
            "periods": prep.panel.n_times,
            "steps": fit.steps,
            "best_step": fit.best_step,
            "best_val_loss": fit.best_val_loss,
            "stopped_early": fit.stopped_early,
            "interrupted": fit.interrupted,
            "train_seconds": fit.seconds,
            "total_seconds": seconds,
            "notes": list(prep.panel.notes),
        },
        "spec": {
            "data": spec.data,
            "holdout": spec.holdout,
            "train": dataclasses.asdict(spec.train),
            "model_params": dict(spec.model_params),
        },
    }


def save_final(out: Path, spec: RunSpec, trainer: Trainer, prep: Prepared) -> None:
    """The final checkpoint: trainer state, scaler and configs, loadable with ``weights_only=True``."""
    state = {
        "kind": "final",
        "model_name": spec.model,
        "mode": spec.mode,
        "model_config": dataclasses.asdict(make_config(spec.model, spec.model_params)),
        "train_config": dataclasses.asdict(spec.train),
        "trainer": trainer.state_dict(),
        "scaler": prep.scaler.state_dict(),
        "ids": [str(i) for i in prep.panel.ids],
    }
    save_checkpoint(out / "model.pt", state)
