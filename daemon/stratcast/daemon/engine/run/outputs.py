"""A finished job's forecast and the files it writes into its output folder.

* ``forecast.parquet``: ``strategy, step, forecast, time`` (each strategy's forecast follows its own last period).
* ``forecast.parquet`` also holds the prediction interval bounds ``lo80 hi80 lo95 hi95`` (one pair per level, see
  :mod:`stratcast.daemon.engine.run.intervals`) when the run could calibrate them, and, from a model that
  forecasts a distribution, its quantiles ``q10 q50 q90`` (``forecast_quantiles``, see
  :mod:`stratcast.daemon.engine.run.quantiles`).
* ``summary.parquet``: one row per strategy: ``forecast_sum``, ``forecast_mean`` ("Avg Profit"), ``rank`` (by the
  forecast mean, or by a bound's mean with ``--rank-by lo80``), each bound's mean over the horizon,
  ``trailing_mean`` (realized mean of the last ``trailing_window`` periods), ``zero_share``, ``observed_periods``,
  ``last_period`` (the time of its last period), ``ended_early`` (it stopped before the panel's last period), and
  with a holdout the strategy's own skill inputs (holdout realized and forecast means, error of the holdout total).
  A forecast combined with the baselines adds ``rank_score``, which ranks (see
  :mod:`stratcast.daemon.engine.run.combining`).
* ``metrics.json``: the skill table, the verdict (skill sentences, then the run's warnings), the warnings
  (``{"kind", "message"}``), the training summary, the spec and the memory plan (``memory_plan``); with quantiles,
  their levels, columns and holdout coverage and pinball loss (``quantiles``).

``model.pt``, the final checkpoint, is :func:`stratcast.daemon.engine.run.checkpoints.save_final`'s.

The future forecast comes from the model trained and early-stopped without the holdout, fed the last
``input_size`` periods, so the holdout score describes exactly the model that made the forecast; it starts after
each strategy's own last period.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from stratcast.daemon.engine.data.panel import Panel
from stratcast.daemon.engine.evaluation import skill
from stratcast.daemon.engine.evaluation.holdout import PerStrategy
from stratcast.daemon.engine.prediction.forecast import blend_toward_mean
from stratcast.daemon.engine.run.advice import RunWarning
from stratcast.daemon.engine.run.build import Forecaster, Prepared
from stratcast.daemon.engine.run.runplan import RunPlan
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.daemon.engine.training.checkpoint import write_json_atomic
from stratcast.daemon.engine.training.trainparts import FitResult
from stratcast.shared.runfiles import Outputs


def forecast_future(spec: RunSpec, prep: Prepared, forecast_fn: Forecaster) -> Tensor:
    """Raw point forecasts [N, H] past each strategy's own last period."""
    cfg = spec.train
    rows = torch.arange(prep.panel.n_series, device=prep.raw.device)
    fc = forecast_fn(prep.windows.forecast_inputs(), rows, prep.windows.end)
    recent = skill.trailing_mean(prep.raw, prep.start, prep.split.end, cfg.trailing_window)
    return blend_toward_mean(fc, recent, cfg.blend_steps)


def write_outputs(
    out: Path,
    spec: RunSpec,
    prep: Prepared,
    future: Tensor,
    per_strategy: PerStrategy | None,
    rank_score: Tensor | None = None,
    bands: Mapping[str, Tensor] | None = None,
    quantiles: Mapping[str, Tensor] | None = None,
) -> pd.DataFrame:
    """Write ``forecast.parquet`` and ``summary.parquet``; returns the summary sorted by rank.

    ``rank_score`` [N] ranks the strategies (the combination's ranking score) in place of the forecast mean.
    ``bands``: the interval bounds [N, H] by column (``lo80``, ...), for both files; the summary holds each one's
    mean over the horizon, and ``spec.rank_by`` may rank by one of them (over ``rank_score``). ``quantiles``: the
    quantile forecasts [N, H] by column (``q10``, ...), for ``forecast.parquet`` only.
    """
    panel, cfg = prep.panel, spec.train
    fc = future.cpu().double().numpy()
    n, h = fc.shape
    long = pd.DataFrame(
        {"strategy": np.repeat(panel.ids, h), "step": np.tile(np.arange(1, h + 1), n), "forecast": fc.ravel()}
    )
    long["time"] = future_times(panel, h).ravel()
    bound_means = {}
    for name, band in (bands or {}).items():
        values = band.cpu().double().numpy()
        long[name] = values.ravel()  # [N, H] -> [N*H], strategy-major like the forecast
        bound_means[name] = values.mean(1)
    for name, quantile in (quantiles or {}).items():
        long[name] = quantile.cpu().double().numpy().ravel()
    write_parquet_atomic(long, Outputs(out).forecast)
    summary = strategy_summary(panel, prep, fc, cfg.trailing_window)
    if rank_score is not None:
        summary["rank_score"] = score = rank_score.cpu().double().numpy()
        summary["rank"] = ranks(score)
    for name, mean in bound_means.items():
        summary[name] = mean
    if spec.rank_by in bound_means:
        summary["rank"] = ranks(bound_means[spec.rank_by])
    if per_strategy is not None:
        for key in ("realized_mean", "forecast_mean", "total_error"):
            col = np.full(n, np.nan)
            col[per_strategy["rows"]] = per_strategy[key]
            summary[f"holdout_{key}"] = col
    summary = summary.sort_values("rank").reset_index(drop=True)
    write_parquet_atomic(summary, Outputs(out).summary)
    return summary


def write_metrics(
    out: Path,
    scores: dict[str, Any],
    info: dict[str, Any],
    best: dict[str, Any],
    plan: RunPlan,
    warnings: Sequence[RunWarning] = (),
) -> dict[str, Any]:
    """Write ``metrics.json``: the holdout ``scores``, the :func:`run_info`, the ``best`` strategy, the memory plan.

    The verdict repeats the ``warnings`` after the skill sentences, so every printer of the verdict shows them.
    Returns what was written.
    """
    metrics = {**scores, **info, "best_strategy": best, "memory_plan": plan.to_dict()}
    metrics["verdict"] = [*metrics.get("verdict", []), *(w.message for w in warnings)]
    metrics["warnings"] = [dataclasses.asdict(w) for w in warnings]
    write_json_atomic(Outputs(out).metrics, metrics)
    return metrics


def strategy_summary(panel: Panel, prep: Prepared, fc: np.ndarray[Any, Any], window: int) -> pd.DataFrame:
    """One row per strategy: forecast sum and mean, rank by forecast, trailing mean, zero share, last period.

    ``ended_early`` says whether the strategy's last period is before the panel's.
    """
    trailing = skill.trailing_mean(prep.raw, prep.start, prep.split.end, window).cpu().double().numpy()
    observed = panel.periods()
    zero_share = ((panel.values == 0) & observed).sum(1) / np.maximum(observed.sum(1), 1)
    mean = fc.mean(1)
    return pd.DataFrame(
        {
            "strategy": panel.ids,
            "rank": ranks(mean),
            "forecast_mean": mean,
            "forecast_sum": fc.sum(1),
            "trailing_mean": trailing,
            "zero_share": zero_share,
            "observed_periods": panel.lengths,
            "last_period": panel.last_times,
            "ended_early": panel.ended_early,
        }
    )


def ranks(score: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """[N] 1-based rank of each score, highest first (ties keep the panel's order)."""
    rank = np.empty(len(score), dtype=np.int64)
    rank[np.argsort(-score, kind="stable")] = np.arange(1, len(score) + 1)
    return rank


def future_times(panel: Panel, steps: int) -> np.ndarray[Any, Any]:
    """[N, steps] the grid times after each series' last period, continuing the grid's step."""
    times: np.ndarray[Any, Any] = panel.times
    step = times[-1] - times[-2] if len(times) > 1 else 1
    last: np.ndarray[Any, Any] = panel.last_times
    out: np.ndarray[Any, Any] = last[:, None] + step * np.arange(1, steps + 1)
    return out


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` through a temporary file, so a reader never sees half a file."""
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
            "train_seconds": fit.train_seconds,
            "train_segment_seconds": fit.segment_seconds,
            "total_seconds": seconds,
            "notes": list(prep.panel.notes),
        },
        "spec": {
            "data": spec.data,
            "holdout": spec.holdout,
            "train": dataclasses.asdict(spec.train),
            "model_params": dict(spec.model_params),
            "ensemble": list(spec.ensemble),
            "chosen_from_data": prep.chosen,
        },
    }


def finite_numbers(value: Any) -> Any:
    """``value`` with every NaN or infinity in it, however deep, made None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_numbers(item) for item in value]
    return value
