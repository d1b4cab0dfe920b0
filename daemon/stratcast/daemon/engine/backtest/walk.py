"""One refit block of a backtest: the panel as each of its cutoffs sees it, and its forecasts in one pass.

At the block's refit cutoff ``c0`` the panel is truncated at ``c0`` and prepared as a job prepares its panel (the
series too short dropped, options chosen from the data, split with the spec's validation size and no holdout,
scaler fit on each series' own training part): the model trains on that. Every cutoff ``c`` of the block sees the
same series (those the model was trained on) truncated at ``c``, split with the refit cutoff's validation size,
scaled by a scaler fit on its own training part. Nothing built for a cutoff can read a value from the cutoff on.

A strategy is forecast at ``c`` when it has an input window before ``c`` and is observed through the holding
(``end >= c + hold``), so its realized profit is known. The cutoffs' inputs are concatenated and forecast in one
pass of the model (in the scaled units), then split and scaled back each by its own cutoff's scaler; a
multivariate model, whose windows read several series at one origin, forecasts cutoff by cutoff instead.

After training, the block fits the combination with the zero forecast and the trailing mean exactly as a job does
(:func:`~stratcast.daemon.engine.run.combining.fit_job_combination` on the refit cutoff's prepared panel, whose
validation part ends before the refit cutoff), and every cutoff of the block combines its raw forecast with its own
trailing mean by those weights and ranks by
:meth:`~stratcast.daemon.engine.prediction.combine.Combination.ranking_score`.
The raw model's forecast is kept beside it, so the backtest shows whether the combination helped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from stratcast.daemon.engine.backtest.cutoffs import CutoffPlan, truncate
from stratcast.daemon.engine.backtest.picks import as_str_ids
from stratcast.daemon.engine.data.panel import Panel
from stratcast.daemon.engine.data.scalers import SeriesScaler
from stratcast.daemon.engine.evaluation import skill
from stratcast.daemon.engine.prediction.combine import Combination
from stratcast.daemon.engine.prediction.forecast import VALIDATION_SAMPLES, blend_toward_mean
from stratcast.daemon.engine.run.build import (
    Log,
    Prepared,
    Trainable,
    forecaster,
    prepare_panel,
    scaled_forecaster,
    trainable_from,
)
from stratcast.daemon.engine.run.combining import fit_job_combination
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.daemon.zoo.catalog import get_entry


@dataclass
class CutoffView:
    """One cutoff of a block: the windows of the strategies it forecasts, their scaler and their baselines.

    Only what forecasting and scoring the cutoff read is kept: its prepared panel (a copy of the panel as of the
    cutoff, and its scaled copy) is dropped once the view is made, so a block holds one prepared panel, its refit's.
    """

    index: int
    """Position in the plan (0-based)."""
    cutoff: int
    date: str
    rows: Tensor
    """[M] the forecast strategies' rows in the block's panel."""
    x: Tensor
    """[M, L] their scaled inputs, the periods just before the cutoff."""
    origin: Tensor
    """[M] the cutoff, per row."""
    scaler: SeriesScaler
    """The cutoff's own scaler (fit on its training part), for every row of the block's panel."""
    baselines: dict[str, Tensor]
    """``zero``, ``trailing_mean``, ``last_value`` (and ``seasonal_naive``) [M, hold] from the periods before the
    cutoff."""


@dataclass
class Block:
    """A refit cutoff and the cutoffs that predict with its model."""

    spec: RunSpec
    """The spec with the options chosen from the refit cutoff's data: the model is built from it."""
    panel: Panel
    """The block's series over every period (the holdings' realized values come from it)."""
    prep: Prepared
    """The refit cutoff's prepared panel: the model trains on it."""
    views: list[CutoffView]


@dataclass
class CutoffForecasts:
    """What one cutoff forecast and what happened: per-step forecasts [M, W] and realized values [M, W] (CPU).

    Kept for the interval calibration, which fits on the backtest's own residuals.
    """

    cutoff: int
    date: str
    strategies: np.ndarray[Any, Any]
    """[M] ids as str."""
    model: Tensor
    """[M, W] the forecast: the combined one when the block fitted a combination, else the raw model's."""
    baselines: dict[str, Tensor]
    """``zero``, ``trailing_mean``, ``last_value`` (and ``seasonal_naive`` with a season) [M, W] each."""
    realized: Tensor
    raw: Tensor | None = None
    """[M, W] the raw model's forecast when ``model`` is combined, else None."""
    rank: Tensor | None = None
    """[M] the ranking score when ``model`` is combined (None: rank by ``model``'s mean over the holding)."""


def make_block(
    spec: RunSpec, full: Panel, plan: CutoffPlan, indices: list[int], device: torch.device, log: Log
) -> Block:
    """Prepare every cutoff of the block of ``indices`` (``log`` receives the refit cutoff's panel lines)."""
    first = plan.cutoffs[indices[0]]
    seen = truncate(full, first)
    trainable = trainable_from(spec, seen)
    prep0 = prepare_panel(spec, trainable, device, log)
    panel = full.select(np.isin(seen.ids, trainable.panel.ids))
    views = [view_at(plan, indices[0], prep0, panel)]
    for i in indices[1:]:
        upto = truncate(panel, plan.cutoffs[i])
        same = Trainable(upto, upto, trainable.needs, trainable.longest)  # the refit's series and validation size
        views.append(view_at(plan, i, prepare_panel(prep0.spec, same, device, _quiet), panel))  # prep dropped
    return Block(prep0.spec, panel, prep0, views)


def _quiet(line: str) -> None:
    """The log of the cutoffs after a block's first: their panel lines repeat the first's."""


def view_at(plan: CutoffPlan, index: int, prep: Prepared, panel: Panel) -> CutoffView:
    """The strategies forecast at cutoff ``index``: an input window before it, observed through the holding.

    Their baselines over the holding are computed here, from ``prep``'s panel as of the cutoff.
    """
    cutoff = plan.cutoffs[index]
    batch = prep.windows.origins_at(cutoff)
    device = prep.raw.device
    if batch is None:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return CutoffView(index, cutoff, plan.dates[index], empty, prep.raw.new_zeros(0, 0), empty, prep.scaler, {})
    observed = torch.from_numpy(panel.end >= cutoff + plan.hold).to(device)[batch.rows]  # [M]
    rows = batch.rows[observed]
    cfg = prep.spec.train
    base = skill.baselines(
        prep.raw[rows], prep.start[rows], cutoff, plan.hold, trailing_window=cfg.trailing_window, season=cfg.season
    )
    return CutoffView(
        index, cutoff, plan.dates[index], rows, batch.x[observed], batch.origin[observed], prep.scaler, base
    )


def fit_block_combination(block: Block, model: nn.Module, log: Log) -> Combination | None:
    """The combination a job would fit with ``model`` on the refit cutoff's validation part (None: the raw model)."""
    scan = forecaster(block.spec, model, block.prep, draws=VALIDATION_SAMPLES)
    return fit_job_combination(block.spec, scan, block.prep, log)


def predict_block(
    block: Block, model: nn.Module, hold: int, combination: Combination | None = None
) -> list[CutoffForecasts]:
    """Forecast every cutoff of the block with ``model``: one pass for all (one per cutoff for multivariate).

    With a ``combination`` each cutoff's forecast is combined (:func:`cutoff_forecasts`).
    """
    forecast = scaled_forecaster(block.spec, model, block.prep)
    views = [v for v in block.views if v.rows.numel()]
    if get_entry(block.spec.model).capabilities.multivariate:
        scaled = [forecast(v.x, v.rows, v.origin) for v in views]
    elif views:
        joined = forecast(*(torch.cat([getattr(v, k) for v in views]) for k in ("x", "rows", "origin")))
        scaled = list(torch.split(joined, [int(v.rows.numel()) for v in views]))  # [sum M, H] -> [M, H] per cutoff
    else:
        scaled = []
    done = {v.index: cutoff_forecasts(block, v, out, hold, combination) for v, out in zip(views, scaled, strict=True)}
    return [done.get(v.index) or empty_forecasts(v) for v in block.views]


def cutoff_forecasts(
    block: Block, view: CutoffView, scaled: Tensor, hold: int, combination: Combination | None = None
) -> CutoffForecasts:
    """One cutoff's model forecast (scaled back by its own scaler, blended as a job blends), baselines, realized.

    With a ``combination``, the forecast is the combined one with the cutoff's trailing means, its ranking score the
    combination's, and the raw model's forecast is kept beside it.
    """
    cfg, rows, base = block.spec.train, view.rows, view.baselines
    trailing = base[skill.TRAILING][:, 0]  # [M] the trailing mean before the cutoff
    model = view.scaler.inverse(scaled, rows)[:, :hold]
    point = model if combination is None else combination.apply(model, trailing)
    picked = rows.cpu().numpy()
    realized = torch.from_numpy(block.panel.values[picked, view.cutoff : view.cutoff + hold].copy())
    out = CutoffForecasts(
        view.cutoff,
        view.date,
        as_str_ids(block.panel.ids[picked]),
        blend_toward_mean(point, trailing, cfg.blend_steps).float().cpu(),
        {k: v.float().cpu() for k, v in base.items()},
        realized,
    )
    if combination is not None:  # blended after combining, and ranked before blending, as the holdout does
        out.raw = blend_toward_mean(model, trailing, cfg.blend_steps).float().cpu()
        out.rank = combination.ranking_score(model, trailing).double().cpu()
    return out


def empty_forecasts(view: CutoffView) -> CutoffForecasts:
    """A cutoff with no strategy to forecast."""
    none = torch.zeros(0, 0)
    return CutoffForecasts(view.cutoff, view.date, np.array([], dtype=object), none, {}, none)
