"""The job's forecast function: the trained model combined with the zero forecast and the trailing mean.

After training, :func:`job_forecaster` fits the combination's weights
(:mod:`stratcast.daemon.engine.prediction.combine`) on a window at every origin of each series' validation part
(``validation_windows(..., stride=1)``), which the model never trained on, and returns the combined forecaster: the
holdout, the future forecast and anything built on the job's forecaster (intervals, backtests) get the combined
forecast. ``--set combine=none`` keeps the raw model; so does a run without validation (``val_size=0``), which has
nothing to fit on, and says so in its log.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from stratcast.daemon.engine.data.windows import validation_windows
from stratcast.daemon.engine.evaluation import skill
from stratcast.daemon.engine.evaluation.conformal import series_scale
from stratcast.daemon.engine.prediction.combine import (
    Combination,
    CombinedForecaster,
    Stats,
    Trailing,
    fit_checked,
    split_origins,
    step_stats,
)
from stratcast.daemon.engine.run.build import Forecaster, Log, Prepared
from stratcast.daemon.engine.spec.runspec import RunSpec

CHUNK = 16_384
"""Series rows per trailing-mean call (each reads a [rows, T] slice of the panel)."""


def trailing_fn(spec: RunSpec, prep: Prepared) -> Trailing:
    """(rows [M], origins [M]) -> [M] each row's trailing mean before its origin (the baseline's definition)."""
    window = spec.train.trailing_window

    def trailing(rows: Tensor, origin: Tensor) -> Tensor:
        parts = [
            skill.trailing_mean(prep.raw[r], prep.start[r], origin[lo : lo + CHUNK], window)
            for lo in range(0, rows.numel(), CHUNK)
            if (r := rows[lo : lo + CHUNK]).numel()
        ]
        return torch.cat(parts) if parts else prep.raw.new_zeros(0)

    return trailing


def fit_job_combination(spec: RunSpec, base: Forecaster, prep: Prepared, log: Log) -> Combination | None:
    """Fit the combination on the stride-1 validation windows; None (logged) when the run keeps the raw model."""
    if spec.train.combine == "none":
        log("combination: off (combine=none): the raw model forecasts")
        return None
    if prep.split.val_size:  # forecasting every validation origin takes a while for a large panel: say so first
        log(f"combination: fitting on {prep.split.val_size} validation origins x {prep.panel.n_series} strategies")
    per_origin = validation_stats(spec, base, prep)
    if not per_origin:
        log("combination: no validation windows to fit it on (val_size=0): the raw model forecasts")
        return None
    combination = fit_checked(*split_origins(per_origin))
    log(combination.summary())
    if combination.no_signal:
        log("combination: validation showed no forecastable signal: the run forecasts zero")
    return combination


def validation_stats(spec: RunSpec, base: Forecaster, prep: Prepared) -> list[Stats]:
    """The combination's per-step statistics of the windows at each validation origin, in order (none: empty).

    Every window's model forecast, trailing mean and realized values are divided by its strategy's scale
    (:func:`~stratcast.daemon.engine.evaluation.conformal.series_scale` of the training part) first, so each strategy
    weighs alike in the fit: in its own units the few series with the largest levels would decide the weights.
    """
    val = validation_windows(prep.windows, prep.split, stride=1) if prep.split.val_size else None
    if val is None:
        return []
    trailing, per_origin = trailing_fn(spec, prep), []
    scale = series_scale(prep.raw, prep.start, prep.split.train_end.expand_as(prep.start))  # [N] float64
    steps = torch.arange(spec.train.horizon, device=val.origin.device)
    offset = val.origin - prep.split.train_end.expand_as(prep.start)[val.rows]  # [M] origin within validation
    for k in range(prep.split.val_size):  # one window per series at a time: stacked and multivariate models want it
        keep = offset == k
        if not bool(keep.any()):
            continue
        b = val.map(lambda t: t[keep])  # noqa: B023 (used at once, inside the iteration)
        idx = (b.origin[:, None] + steps).clamp(max=prep.raw.shape[1] - 1)  # [M, H]; masked cells may run past T
        s = scale[b.rows]  # [M]
        realized = prep.raw[b.rows].gather(1, idx).double() / s[:, None]
        fc = base(b.x, b.rows, b.origin).double() / s[:, None]
        per_origin.append(step_stats(fc, trailing(b.rows, b.origin).double() / s, realized, b.mask))
    return per_origin


def job_forecaster(spec: RunSpec, base: Forecaster, prep: Prepared, log: Log) -> Forecaster:
    """The job's forecast function: ``base`` combined with the baselines (``combine=auto``), or ``base`` itself."""
    return job_forecasters(spec, base, base, prep, log)[0]


def job_forecasters(
    spec: RunSpec, base: Forecaster, scan: Forecaster, prep: Prepared, log: Log
) -> tuple[Forecaster, Forecaster]:
    """:func:`job_forecaster` of ``base``, and the same combination over ``scan``, which it is fitted with.

    ``scan`` forecasts the validation origins: a sampling model's with fewer draws
    (:data:`~stratcast.daemon.engine.prediction.forecast.VALIDATION_SAMPLES`), else ``base`` itself.
    """
    combination = fit_job_combination(spec, scan, prep, log)
    if combination is None:
        return base, scan
    trailing = trailing_fn(spec, prep)
    return CombinedForecaster(base, combination, trailing), CombinedForecaster(scan, combination, trailing)


def combination_info(forecast_fn: Forecaster) -> dict[str, Any]:
    """``metrics.json``'s ``combination``: the fitted weights, or ``{"fitted": false}`` for the raw model."""
    if isinstance(forecast_fn, CombinedForecaster):
        return {"combination": {"fitted": True, **forecast_fn.combination.to_dict()}}
    return {"combination": {"fitted": False}}


def future_rank_score(forecast_fn: Forecaster, prep: Prepared) -> Tensor | None:
    """[N] the ranking score of each strategy's future forecast (None: rank by the forecast itself)."""
    if not isinstance(forecast_fn, CombinedForecaster):
        return None
    rows = torch.arange(prep.panel.n_series, device=prep.raw.device)
    raw, trailing = forecast_fn.parts(prep.windows.forecast_inputs(), rows, prep.windows.end)
    return forecast_fn.combination.ranking_score(raw, trailing)
