"""A job's prediction intervals: calibrated on its validation part, scored on its holdout, put around its forecast.

The job's final point forecast, whatever function makes it (the model's, blended toward the recent mean, or a
combination with the baselines), is forecast at every origin of each strategy's validation part
(:func:`~stratcast.daemon.engine.data.windows.validation_windows` with stride 1, targets masked at the holdout);
those out-of-sample residuals calibrate split-conformal intervals
(:mod:`stratcast.daemon.engine.evaluation.conformal`), which go around the holdout forecast (coverage and MSIS in
``metrics.json["intervals"]``) and the future forecast (``lo80``, ``hi80``, ... in ``forecast.parquet``). A job
without a validation part (``val_size=0``) has no residuals to calibrate on: it says so and writes no bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stratcast.daemon.engine.data.windows import validation_windows
from stratcast.daemon.engine.evaluation import skill
from stratcast.daemon.engine.evaluation.conformal import Conformal, calibrate, coverage, series_scale
from stratcast.daemon.engine.prediction.forecast import blend_toward_mean
from stratcast.daemon.engine.run.build import Forecaster, Log, Prepared
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.shared.intervals import RANK_BY_MEAN, bound_name

PointForecast = Callable[[Tensor, Tensor, Tensor], Tensor]
"""The job's final point forecast: (scaled inputs [M, L], rows [M], origins [M]) -> raw forecasts [M, H]."""
NO_VALIDATION = "no intervals: the run has no validation part (val_size=0) to calibrate them on"


@dataclass
class JobIntervals:
    """A job's calibrated intervals: the calibration and the scale of every strategy."""

    conformal: Conformal
    scale: Tensor
    """[N] each strategy's scale (the mean absolute change of its training part)."""


def final_point(spec: RunSpec, prep: Prepared, forecast_fn: Forecaster) -> PointForecast:
    """The model's forecast with its first ``blend_steps`` blended toward each strategy's trailing mean at the origin.

    This is the forecast the holdout scores and the job ranks by (``evaluate_holdout``, ``forecast_future``).
    """
    cfg = spec.train

    def run(x: Tensor, rows: Tensor, origin: Tensor) -> Tensor:
        fc = forecast_fn(x, rows, origin)
        recent = skill.trailing_mean(prep.raw[rows], prep.start[rows], origin, cfg.trailing_window)
        return blend_toward_mean(fc, recent, cfg.blend_steps)

    return run


def raw_targets(prep: Prepared, rows: Tensor, origin: Tensor, steps: int) -> Tensor:
    """[M, steps] the raw values from each origin on (0 past the grid's end: mask those)."""
    t = origin[:, None] + torch.arange(steps, device=origin.device)  # [M, steps]
    return prep.raw[rows].gather(1, t.clamp(max=prep.raw.shape[1] - 1))


def calibrate_job(spec: RunSpec, prep: Prepared, point_fn: PointForecast, log: Log) -> JobIntervals | None:
    """Calibrate on the validation part at every origin; None (and a log line) when there is none."""
    val = validation_windows(prep.windows, prep.split, stride=1) if prep.split.val_size else None
    if val is None:
        log(NO_VALIDATION)
        return None
    fc = point_fn(val.x, val.rows, val.origin)
    realized = raw_targets(prep, val.rows, val.origin, fc.shape[1])
    scale = series_scale(prep.raw, prep.start, prep.split.train_end.expand_as(prep.start))
    position = val.origin - prep.split.train_end.expand_as(prep.start)[val.rows]  # [M] origin within its own part
    per_strategy = int(torch.bincount(val.rows).max())
    source = f"validation part: {per_strategy} origins x {int(torch.unique(val.rows).numel())} strategies"
    conf = calibrate(
        fc,
        realized,
        val.mask,
        val.rows,
        scale,
        spec.levels,
        order=position,
        gamma=spec.train.interval_gamma,
        own_min=spec.train.interval_own_min,
        monotone=spec.train.interval_monotone,
        source=source,
    )
    for note in conf.notes:
        log(f"intervals: {note}")
    log(f"intervals: {', '.join(f'{v:g}%' for v in spec.levels)} calibrated on the {source}")
    return JobIntervals(conf, scale)


def holdout_coverage(spec: RunSpec, prep: Prepared, point_fn: PointForecast, ji: JobIntervals) -> dict[str, Any]:
    """Each level's coverage on the holdout per step and pooled, with MSIS, the scores and the source."""
    batch = prep.windows.origins_at(prep.split.val_end)
    if batch is None:
        return {}
    steps = spec.holdout
    fc = point_fn(batch.x, batch.rows, batch.origin)[:, :steps]
    realized = raw_targets(prep, batch.rows, batch.origin, steps)
    mask = torch.ones_like(realized, dtype=torch.bool)
    bands = ji.conformal.intervals(fc, batch.rows, ji.scale)
    scale = ji.scale[batch.rows]
    out = {}
    for level in ji.conformal.levels:
        lo, hi = bands[bound_name("lo", level)], bands[bound_name("hi", level)]
        scored = coverage(lo.cpu(), hi.cpu(), realized.cpu(), mask.cpu(), level, scale.cpu())
        scored["scores_per_step"] = [int(c) for c in ji.conformal.counts[:steps]]
        scored["source"] = ji.conformal.source
        out[f"{level:g}"] = scored
    return out


def job_intervals(
    spec: RunSpec, prep: Prepared, point_fn: PointForecast, future: Tensor, log: Log
) -> tuple[dict[str, Tensor] | None, dict[str, Any]]:
    """The future forecast's bounds (None without calibration) and ``metrics.json["intervals"]``."""
    ji = calibrate_job(spec, prep, point_fn, log)
    if ji is None:
        notes = [NO_VALIDATION]
        if spec.rank_by != RANK_BY_MEAN:
            notes.append(f"ranked by the forecast mean: --rank-by {spec.rank_by} needs intervals")
            log(notes[-1])
        return None, {"calibrated": False, "notes": notes}
    rows = torch.arange(prep.panel.n_series, device=future.device)
    bands = ji.conformal.intervals(future, rows, ji.scale)
    metrics: dict[str, Any] = {"calibrated": True, "calibration": ji.conformal.to_dict()}
    if spec.holdout:
        metrics["levels"] = holdout_coverage(spec, prep, point_fn, ji)
        for level, c in metrics["levels"].items():
            msis = "-" if c["msis"] is None else f"{c['msis']:.4g}"
            log(
                f"intervals: {level}% covered {c['coverage']:.1%} of the holdout (worst step "
                f"{c['worst_step']['step']}: {c['worst_step']['coverage']:.1%}), MSIS {msis}"
            )
    return bands, metrics
