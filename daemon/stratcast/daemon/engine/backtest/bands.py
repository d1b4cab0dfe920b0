"""Prediction intervals in a backtest, online: each cutoff's bands calibrated only on what was realized before it.

A cutoff ``c`` calibrates split-conformal intervals (:func:`~stratcast.daemon.engine.evaluation.conformal.calibrate`)
on the residuals of the earlier cutoffs whose holdings ended by then (``c_j + hold <= c``): the model's forecasts
there against their realized values, per step of the hold, plus one more column, the mean over the hold (the
figure ``backtest.parquet`` ranks by), which gets bands of its own. Each score is divided by the strategy's local
scale at its own cutoff (:func:`~stratcast.daemon.engine.evaluation.conformal.local_scale`: the periods before it
only), and the bands go around the cutoff's forecasts with the local scale at that cutoff.

The miscoverage each level is taken at moves online (ACI, Gibbs and Candes 2021): once cutoff ``j``'s holding is
realized, before the first cutoff after it, ``alpha <- alpha + gamma (nominal alpha - miss_j)`` with ``miss_j``
the share of its cells (every step) outside its bands. A cutoff with no realized earlier cutoff, or too few scores
for a level at some step, has no bands (the columns hold NaN; a note names the cutoffs). Nothing at or after a cutoff
changes its bands: the residuals read end before it, the scale reads the periods before it, and the ACI updates
come from the same residuals.

Coverage is reported per level over the cutoffs with bands: pooled and per step (with MSIS, scaled by each
strategy's mean absolute change before its cutoff, as M4 scaled it in-sample), per range of cutoffs, and for the
hold mean.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from stratcast.daemon.engine.backtest.walk import CutoffForecasts
from stratcast.daemon.engine.data.panel import Panel
from stratcast.daemon.engine.evaluation.conformal import SCALE_FLOOR, calibrate, coverage, local_scale, series_scale
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.shared.intervals import bound_name

RANGES = 4
"""Cutoff ranges the coverage is also reported over (consecutive, about equal counts)."""


@dataclass
class Residuals:
    """One cutoff's forecasts, realized values and scales, with the hold mean as a last column."""

    fc: CutoffForecasts
    rows: Tensor
    """[M] the strategies' rows in the panel."""
    forecast: Tensor
    """[M, W + 1] the model's forecast per step, then its mean over the hold."""
    realized: Tensor
    """[M, W + 1] likewise, realized."""
    mask: Tensor
    """[M, W + 1] the cells that are scored (finite)."""
    scale: Tensor
    """[M] the local scale at the cutoff: the scores' denominator."""
    msis_scale: Tensor
    """[M] the mean absolute change of every period before the cutoff: MSIS's denominator."""
    bands: dict[str, Tensor] = field(default_factory=dict)
    """``lo80``, ``hi80``, ... [M, W + 1] (empty: no bands at this cutoff)."""


@dataclass
class BacktestBands:
    """The model rows' hold-mean bands for ``backtest.parquet`` and ``backtest.json["intervals"]``."""

    frame: pd.DataFrame
    """``cutoff, strategy, lo80, hi80, ...``: one row per cutoff and forecast strategy."""
    intervals: dict[str, Any]


def backtest_bands(forecasts: list[CutoffForecasts], panel: Panel, hold: int, spec: RunSpec) -> BacktestBands:
    """Bands at every cutoff of ``forecasts`` from the earlier cutoffs' realized residuals, and their coverage."""
    window = spec.train.interval_window or spec.train.input_size
    cutoffs = [
        residuals(fc, panel, hold, window) for fc in sorted(forecasts, key=lambda f: f.cutoff) if fc.strategies.size
    ]
    walk = OnlineWalk(spec.levels, spec.train.interval_gamma, hold)
    for now in cutoffs:
        walk.issue(now, cutoffs, spec, panel.n_series)
    return BacktestBands(band_frame(cutoffs, spec.levels), report(cutoffs, spec, walk))


def residual_frame(forecasts: list[CutoffForecasts]) -> pd.DataFrame:
    """``cutoff, date, strategy, step, model, realized``: the cutoffs' per-step forecasts, long (a resume reads it)."""
    parts = []
    for fc in forecasts:
        m, w = fc.model.shape
        part = {
            "cutoff": np.full(m * w, fc.cutoff),
            "date": np.full(m * w, fc.date, dtype=object),
            "strategy": np.repeat(fc.strategies, w),
            "step": np.tile(np.arange(w), m),
            "model": fc.model.reshape(-1).numpy(),  # [M, W] -> [M * W], strategy-major
            "realized": fc.realized.float().reshape(-1).numpy(),
        }
        parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def forecasts_from(frame: pd.DataFrame) -> list[CutoffForecasts]:
    """The cutoffs of :func:`residual_frame`'s ``frame`` again (without the baselines)."""
    out = []
    for cutoff in sorted(set(frame["cutoff"].tolist()) if not frame.empty else []):
        part = frame[frame["cutoff"] == cutoff].sort_values(["strategy", "step"], kind="stable")
        date = part["date"].iloc[0]
        ids = part["strategy"].drop_duplicates().to_numpy()
        w = int(part["step"].max()) + 1
        model = torch.from_numpy(part["model"].to_numpy().reshape(len(ids), w).copy())  # [M * W] -> [M, W]
        realized = torch.from_numpy(part["realized"].to_numpy().reshape(len(ids), w).copy())
        out.append(CutoffForecasts(int(cutoff), str(date), ids, model, {}, realized))
    return out


def residuals(fc: CutoffForecasts, panel: Panel, hold: int, window: int) -> Residuals:
    """The cutoff's model forecasts and realized values over the hold, their mean, and the scales at the cutoff."""
    index = {str(s): i for i, s in enumerate(panel.ids)}
    rows = torch.tensor([index[s] for s in fc.strategies], dtype=torch.long)
    model, realized = fc.model[:, :hold].double(), fc.realized[:, :hold].double()
    forecast = torch.cat([model, model.mean(1, keepdim=True)], 1)  # [M, W] -> [M, W + 1]
    realized = torch.cat([realized, realized.mean(1, keepdim=True)], 1)
    raw, start = torch.from_numpy(panel.values).double(), torch.from_numpy(panel.start)
    origin = torch.full_like(rows, fc.cutoff)
    scale = local_scale(raw, start, rows, origin, window, 0.0)
    positive = scale[scale > 0]
    scale = scale.clamp(min=SCALE_FLOOR * float(positive.median()) if positive.numel() else 1.0)
    msis_scale = series_scale(raw[rows], start[rows], origin)
    mask = torch.isfinite(forecast) & torch.isfinite(realized)
    return Residuals(fc, rows, forecast, realized, mask, scale, msis_scale)


class OnlineWalk:
    """The cutoffs in time order: each calibrated on the realized ones before it, alpha moved by their misses."""

    def __init__(self, levels: tuple[float, ...], gamma: float, hold: int) -> None:
        self.levels, self.gamma, self.hold = levels, gamma, hold
        self.alphas = [1 - level / 100 for level in levels]
        self.learned = 0
        """Cutoffs (from the first) whose misses have updated :attr:`alphas`."""
        self.skipped: list[str] = []

    def issue(self, now: Residuals, cutoffs: list[Residuals], spec: RunSpec, n_series: int) -> None:
        """Learn from the cutoffs realized by ``now``'s, then put bands around ``now``'s forecasts."""
        past = [r for r in cutoffs if r.fc.cutoff + self.hold <= now.fc.cutoff]
        for r in past[self.learned :]:
            self.learn(r)
        self.learned = len(past)
        if sum(int(r.rows.numel()) for r in past) < 2:
            self.skipped.append(now.fc.date)
            return
        conf = calibrate(
            torch.cat([r.forecast for r in past]),
            torch.cat([r.realized for r in past]),
            torch.cat([r.mask for r in past]),
            torch.cat([r.rows for r in past]),
            torch.cat([r.scale for r in past]),
            self.levels,
            gamma=0.0,
            own_min=spec.train.interval_own_min,
            n_series=n_series,
            walked=self.alphas,
        )
        if conf.notes:  # too few scores for a level at some step: an infinite band says nothing
            self.skipped.append(now.fc.date)
            return
        now.bands = conf.intervals(now.forecast, now.rows, now.scale)

    def learn(self, done: Residuals) -> None:
        """The ACI update from a realized cutoff's misses over its steps (none: it had no bands)."""
        if not done.bands:
            return
        steps = done.mask[:, :-1]
        for k, level in enumerate(self.levels):
            lo, hi = done.bands[bound_name("lo", level)][:, :-1], done.bands[bound_name("hi", level)][:, :-1]
            y = done.realized[:, :-1]
            miss = float((((y < lo) | (y > hi)) & steps).sum() / steps.sum().clamp(min=1))
            self.alphas[k] += self.gamma * ((1 - level / 100) - miss)


def band_frame(cutoffs: list[Residuals], levels: tuple[float, ...]) -> pd.DataFrame:
    """``cutoff, strategy`` and each bound of the hold mean (NaN at a cutoff without bands)."""
    parts = []
    for r in cutoffs:
        part = {"cutoff": np.full(r.rows.numel(), r.fc.cutoff), "strategy": r.fc.strategies}
        for level in levels:
            for side in ("lo", "hi"):
                name = bound_name(side, level)
                part[name] = r.bands[name][:, -1].numpy() if r.bands else np.full(r.rows.numel(), math.nan)
        parts.append(pd.DataFrame(part))
    columns = ["cutoff", "strategy", *(bound_name(s, v) for v in levels for s in ("lo", "hi"))]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def report(cutoffs: list[Residuals], spec: RunSpec, walk: OnlineWalk) -> dict[str, Any]:
    """``backtest.json["intervals"]``: per level the coverage over the cutoffs with bands, and the notes."""
    scored = [r for r in cutoffs if r.bands]
    source = (
        f"earlier cutoffs' realized residuals (online, ACI gamma {walk.gamma:g}): {len(scored)} of {len(cutoffs)} "
        "cutoffs"
    )
    notes = []
    if walk.skipped:
        notes.append(
            f"no bands at {len(walk.skipped)} cutoffs with too few realized residuals before them (a level needs "
            f"ceil(1 / alpha) - 1 scores a step: 4 at 80%, 19 at 95%): {', '.join(walk.skipped)}"
        )
    if not scored:
        return {"calibrated": False, "notes": notes or ["no cutoff to put bands around"]}
    levels = {f"{level:g}": level_report(scored, level, k, walk, source) for k, level in enumerate(spec.levels)}
    return {"calibrated": True, "source": source, "levels": levels, "notes": notes}


def level_report(scored: list[Residuals], level: float, k: int, walk: OnlineWalk, source: str) -> dict[str, Any]:
    """One level's coverage per step and pooled with MSIS, per cutoff range, for the hold mean, and its alpha."""
    got = scored_cells(scored, level, slice(None, -1))
    got["hold_mean"] = scored_cells(scored, level, slice(-1, None))["coverage"]
    got["ranges"] = [
        {"from": part[0].fc.date, "to": part[-1].fc.date, **_pooled(scored_cells(part, level, slice(None, -1)))}
        for part in _split(scored, RANGES)
    ]
    got["alpha"] = round(walk.alphas[k], 6)
    got["source"] = source
    return got


def scored_cells(scored: list[Residuals], level: float, columns: slice) -> dict[str, Any]:
    """:func:`coverage` of one level's bands over the cutoffs ``scored``, on ``columns``."""
    lo = torch.cat([r.bands[bound_name("lo", level)][:, columns] for r in scored])
    hi = torch.cat([r.bands[bound_name("hi", level)][:, columns] for r in scored])
    realized = torch.cat([r.realized[:, columns] for r in scored])
    mask = torch.cat([r.mask[:, columns] for r in scored])
    return coverage(lo, hi, realized, mask, level, torch.cat([r.msis_scale for r in scored]))


def _pooled(got: dict[str, Any]) -> dict[str, Any]:
    return {"coverage": round(got["coverage"], 4), "cells": got["cells"]}


def _split(items: list[Residuals], parts: int) -> list[list[Residuals]]:
    """``items`` in at most ``parts`` consecutive runs of about equal length."""
    bounds = np.linspace(0, len(items), min(parts, len(items)) + 1).round().astype(int)
    return [items[a:b] for a, b in itertools.pairwise(bounds.tolist()) if b > a]
