"""A job's prediction intervals: calibrated on its validation part, scored on its holdout, put around its forecast.

The job's final point forecast, whatever function makes it (the model's, blended toward the recent mean, or a
combination with the baselines), is forecast at every origin of each strategy's validation part
(:func:`~stratcast.daemon.engine.data.windows.validation_windows` with stride 1, targets masked at the holdout);
those out-of-sample residuals calibrate split-conformal intervals
(:mod:`stratcast.daemon.engine.evaluation.conformal`), which go around the holdout forecast (coverage and MSIS in
``metrics.json["intervals"]``) and, calibrated again on the validation part and the holdout, the future forecast
(``lo80``, ``hi80``, ... in ``forecast.parquet``). Each score is scaled at its own origin (:class:`ScoreScale`). A
job without a validation part (``val_size=0``) has no residuals to calibrate on: it says so and writes no bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stratcast.daemon.engine.data.windows import WINDOW_FIELDS, Split, WindowBatch, validation_windows
from stratcast.daemon.engine.evaluation.conformal import (
    SCALE_FLOOR,
    Conformal,
    calibrate,
    coverage,
    local_scale,
    series_scale,
)
from stratcast.daemon.engine.prediction.forecast import blend_toward_mean
from stratcast.daemon.engine.run.build import Forecaster, Log, Prepared
from stratcast.daemon.engine.run.combining import trailing_fn
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.shared.intervals import RANK_BY_MEAN, bound_name

PointForecast = Callable[[Tensor, Tensor, Tensor], Tensor]
"""The job's final point forecast: (scaled inputs [M, L], rows [M], origins [M]) -> raw forecasts [M, H]."""
NO_VALIDATION = "no intervals: the run has no validation part (val_size=0) to calibrate them on"
NO_LEVELS = "no intervals: no levels asked for (--levels)"


@dataclass(frozen=True)
class ScoreScale:
    """How a job scales its interval scores: at each forecast's own origin (``local``) or per strategy (``train``)."""

    raw: Tensor
    start: Tensor
    kind: str
    window: int
    fixed: Tensor
    """[N] each strategy's mean absolute change over its training part: the ``train`` scale, MSIS's denominator, and
    (as :data:`SCALE_FLOOR` of its median) the floor of the local one."""
    floor: float | None = None
    """The local scale's floor when kept from elsewhere (a saved model's, whose panel may have other strategies);
    None: :data:`SCALE_FLOOR` of :attr:`fixed`'s median."""

    @classmethod
    def of(cls, spec: RunSpec, prep: Prepared) -> ScoreScale:
        """The job's scale, as its ``interval_scale`` and ``interval_window`` options say."""
        cfg = spec.train
        fixed = series_scale(prep.raw, prep.start, prep.split.train_end.expand_as(prep.start))
        window = cfg.interval_window or cfg.input_size
        return cls(prep.raw, prep.start, cfg.interval_scale, window, fixed)

    def at(self, rows: Tensor, origin: Tensor) -> Tensor:
        """[M] the scale of the forecasts of strategies ``rows`` [M] from ``origin`` [M]."""
        if self.kind == "train":
            return self.fixed[rows]
        return local_scale(self.raw, self.start, rows, origin, self.window, self.local_floor)

    @property
    def local_floor(self) -> float:
        """The floor of the local scale: :attr:`floor`, or :data:`SCALE_FLOOR` of :attr:`fixed`'s median."""
        return SCALE_FLOOR * float(self.fixed.median()) if self.floor is None else self.floor


@dataclass
class JobIntervals:
    """A job's calibrated intervals and the scale their scores are measured in."""

    conformal: Conformal
    scale: ScoreScale


def final_point(spec: RunSpec, prep: Prepared, forecast_fn: Forecaster) -> PointForecast:
    """The model's forecast with its first ``blend_steps`` blended toward each strategy's trailing mean at the origin.

    This is the forecast the holdout scores and the job ranks by (``evaluate_holdout``, ``forecast_future``).
    """
    cfg = spec.train
    trailing = trailing_fn(spec, prep)  # in chunks: a calibration forecasts every validation origin of every strategy

    def run(x: Tensor, rows: Tensor, origin: Tensor) -> Tensor:
        fc = forecast_fn(x, rows, origin)
        return blend_toward_mean(fc, trailing(rows, origin), cfg.blend_steps)

    return run


def raw_targets(prep: Prepared, rows: Tensor, origin: Tensor, steps: int) -> Tensor:
    """[M, steps] the raw values from each origin on (0 past the grid's end: mask those).

    Indexed in place: ``prep.raw[rows]`` would copy every row's whole history first ([M, T]: 5 GB for the
    calibration windows of 50,000 strategies x 1,000 weeks).
    """
    t = origin[:, None] + torch.arange(steps, device=origin.device)  # [M, steps]
    return prep.raw[rows[:, None], t.clamp(max=prep.raw.shape[1] - 1)]


def calibration_windows(prep: Prepared, *, with_holdout: bool = False) -> WindowBatch | None:
    """Windows at every origin of the validation part (and then of the holdout): out-of-sample residuals.

    Each is scored up to the end of its part (the validation part's windows stop at the holdout). None when the
    job has no validation part.
    """
    split = prep.split
    val = validation_windows(prep.windows, split, stride=1) if split.val_size else None
    if val is None or not with_holdout or not split.holdout:
        return val
    # the holdout as a validation part of its own: origins every period from val_end, targets up to the end
    hold = validation_windows(prep.windows, Split(split.end, split.holdout, 0), stride=1)
    if hold is None:
        return val
    return WindowBatch(*(torch.cat([getattr(val, k), getattr(hold, k)]) for k in WINDOW_FIELDS))


def calibrate_job(
    spec: RunSpec, prep: Prepared, point_fn: PointForecast, log: Log, *, with_holdout: bool = False
) -> JobIntervals | None:
    """Calibrate on the validation part at every origin (``with_holdout``: and the holdout's after them).

    The ACI walk goes over the origins in time order; None (and a log line) when there is no validation part.
    """
    batch = calibration_windows(prep, with_holdout=with_holdout)
    if batch is None:
        log(NO_VALIDATION)
        return None
    fc = point_fn(batch.x, batch.rows, batch.origin)
    realized = raw_targets(prep, batch.rows, batch.origin, fc.shape[1])
    scale = ScoreScale.of(spec, prep)
    position = batch.origin - prep.split.train_end.expand_as(prep.start)[batch.rows]  # [M] origin within its part
    per_strategy = int(torch.bincount(batch.rows).max())
    part = "validation part and holdout" if with_holdout and spec.holdout else "validation part"
    source = f"{part}: {per_strategy} origins x {int(torch.unique(batch.rows).numel())} strategies"
    cfg = spec.train
    conf = calibrate(
        fc,
        realized,
        batch.mask,
        batch.rows,
        scale.at(batch.rows, batch.origin),
        spec.levels,
        order=position,
        gamma=cfg.interval_gamma,
        own_min=cfg.interval_own_min,
        monotone=cfg.interval_monotone,
        source=source,
        n_series=prep.panel.n_series,
        weights=None if cfg.interval_decay == 1 else cfg.interval_decay ** (position.max() - position).double(),
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
    bands = ji.conformal.intervals(fc, batch.rows, ji.scale.at(batch.rows, batch.origin))
    msis_scale = ji.scale.fixed[batch.rows]
    out = {}
    for level in ji.conformal.levels:
        lo, hi = bands[bound_name("lo", level)], bands[bound_name("hi", level)]
        scored = coverage(lo.cpu(), hi.cpu(), realized.cpu(), mask.cpu(), level, msis_scale.cpu())
        scored["scores_per_step"] = [int(c) for c in ji.conformal.counts[:steps]]
        scored["source"] = ji.conformal.source
        out[f"{level:g}"] = scored
    return out


def job_intervals(
    spec: RunSpec,
    prep: Prepared,
    point_fn: PointForecast,
    future: Tensor,
    log: Log,
    *,
    calibration_fn: PointForecast | None = None,
) -> tuple[dict[str, Tensor] | None, dict[str, Any]]:
    """The future forecast's bounds (None without calibration) and ``metrics.json["intervals"]``.

    The holdout is scored with bands calibrated on the validation part only (honest); the future forecast's
    bands then calibrate on the validation part and the holdout, its most recent out-of-sample residuals
    (``future_calibration`` in the metrics). ``calibration_fn`` forecasts the origins calibrated on (default
    ``point_fn``, which forecasts the holdout scored): a sampling model's with fewer draws.
    """
    bands, metrics, _ = future_intervals(spec, prep, point_fn, future, log, calibration_fn=calibration_fn)
    return bands, metrics


def future_intervals(
    spec: RunSpec,
    prep: Prepared,
    point_fn: PointForecast,
    future: Tensor,
    log: Log,
    *,
    calibration_fn: PointForecast | None = None,
) -> tuple[dict[str, Tensor] | None, dict[str, Any], JobIntervals | None]:
    """:func:`job_intervals`, and the calibration the future forecast's bands come from (None without one)."""
    calibration_fn = calibration_fn or point_fn
    ji = calibrate_job(spec, prep, calibration_fn, log) if spec.levels else None
    if ji is None:
        notes = [NO_VALIDATION if spec.levels else NO_LEVELS]
        if not spec.levels:
            log(NO_LEVELS)
        if spec.rank_by != RANK_BY_MEAN:
            notes.append(f"ranked by the forecast mean: --rank-by {spec.rank_by} needs intervals")
            log(notes[-1])
        return None, {"calibrated": False, "notes": notes}, None
    metrics: dict[str, Any] = {"calibrated": True, "calibration": ji.conformal.to_dict()}
    if spec.holdout:
        metrics["levels"] = holdout_coverage(spec, prep, point_fn, ji)
        log_coverage(metrics["levels"], log)
        ji = calibrate_job(spec, prep, calibration_fn, log, with_holdout=True) or ji
    metrics["future_calibration"] = ji.conformal.to_dict()
    return future_bands(ji, prep, future), metrics, ji


def future_bands(ji: JobIntervals, prep: Prepared, future: Tensor) -> dict[str, Tensor]:
    """The bounds [N, H] by column around ``future`` [N, H], each strategy's forecast from its own last period."""
    rows = torch.arange(prep.panel.n_series, device=future.device)
    return ji.conformal.intervals(future, rows, ji.scale.at(rows, prep.windows.end))


def log_coverage(levels: dict[str, Any], log: Log) -> None:
    """One log line per level: its holdout coverage, worst step and MSIS."""
    for level, c in levels.items():
        msis = "-" if c["msis"] is None else f"{c['msis']:.4g}"
        log(
            f"intervals: {level}% covered {c['coverage']:.1%} of the holdout (worst step "
            f"{c['worst_step']['step']}: {c['worst_step']['coverage']:.1%}), MSIS {msis}"
        )
