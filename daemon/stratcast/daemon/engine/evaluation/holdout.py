"""The trained model and the naive baselines scored on the holdout, from the same origins and strategies.

A strategy's holdout is its own last ``holdout`` periods, forecast from its own ``val_end`` (see
:mod:`stratcast.daemon.engine.data.windows`); the scores and the verdict come from
:mod:`stratcast.daemon.engine.evaluation.skill`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from stratcast.daemon.engine.data.windows import PanelWindows, Split
from stratcast.daemon.engine.evaluation import skill
from stratcast.daemon.engine.prediction.combine import CombinedForecaster, forecast_parts
from stratcast.daemon.engine.prediction.ensemble import EnsembleForecaster
from stratcast.daemon.engine.prediction.forecast import blend_toward_mean
from stratcast.daemon.engine.prediction.quantiles import DistributionForecaster, quantile_scores, shifted
from stratcast.daemon.engine.spec.runspec import RunSpec

PerStrategy = dict[str, np.ndarray[Any, Any]]
"""Holdout figures per scored strategy: ``rows`` (panel rows) and one array per summary column."""


class HoldoutPanel(Protocol):
    """The prepared panel as the holdout reads it (a run's ``Prepared`` is one)."""

    @property
    def raw(self) -> Tensor:
        """[N, T] the panel's raw values on the device."""

    @property
    def start(self) -> Tensor:
        """[N] each series' first period."""

    @property
    def split(self) -> Split:
        """Where each series' training, validation and holdout parts end."""

    @property
    def windows(self) -> PanelWindows:
        """The scaled panel's windows."""


def evaluate_holdout(
    spec: RunSpec,
    prep: HoldoutPanel,
    forecast_fn: Callable[[Tensor, Tensor, Tensor], Tensor],
    distribution: DistributionForecaster | None = None,
) -> tuple[dict[str, Any], PerStrategy]:
    """Score the model and the baselines on the holdout, from the same origins and on the same strategies.

    ``forecast_fn`` maps (scaled inputs [M, L], their series rows [M], origins [M]) to raw point forecasts [M, H].
    A strategy's holdout is its own last ``holdout`` periods, forecast from its own ``val_end``. When it combines the
    model with the baselines (:class:`~stratcast.daemon.engine.prediction.combine.CombinedForecaster`), the raw
    model is scored too (``model_raw``), the combined forecast ranks by its ranking score and ``combination`` holds
    the weights.
    An ensemble's members are scored too, each on its own (``member nhits#0``, ...).
    With the model's forecast ``distribution``, its quantiles, moved with the forecast as the future's are
    (:func:`~stratcast.daemon.engine.prediction.quantiles.shifted`), are scored under ``quantiles``.
    """
    cfg = spec.train
    batch = prep.windows.origins_at(prep.split.val_end)
    if batch is None:
        raise ValueError("no strategy has enough history before the holdout to be scored")
    rows, steps = batch.rows, spec.holdout
    origin = batch.origin  # [M] each scored strategy's first holdout period
    parts = forecast_parts(forecast_fn, batch.x, rows, origin, steps)  # the combined forecast and the raw model's
    recent = skill.trailing_mean(prep.raw[rows], prep.start[rows], origin, cfg.trailing_window)
    model_fc = blend_toward_mean(parts.point, recent, cfg.blend_steps)
    base = skill.baselines(
        prep.raw[rows],
        prep.start[rows],
        origin,
        steps,
        trailing_window=cfg.trailing_window,
        season=cfg.season,
    )
    realized = prep.raw[rows].gather(1, origin[:, None] + torch.arange(steps, device=origin.device))  # [M, steps]
    forecasts, rank_by = {skill.MODEL: model_fc}, {}
    if parts.raw is not None:
        forecasts[skill.MODEL_RAW] = blend_toward_mean(parts.raw, recent, cfg.blend_steps)
        rank_by[skill.MODEL] = parts.rank.cpu()  # the zero part ranks nothing
    forecasts |= member_forecasts(forecast_fn, batch.x, rows, origin, steps, recent, cfg.blend_steps)
    forecasts |= base
    metrics = skill.score(realized.cpu(), {k: v.cpu() for k, v in forecasts.items()}, rank_by=rank_by)
    if parts.combination is not None:
        metrics["combination"] = {"fitted": True, **parts.combination.to_dict()}
    metrics["verdict"] = skill.verdict(metrics)
    if distribution is not None:
        quantiles = shifted(distribution(batch.x, rows, origin), model_fc)
        metrics["quantiles"] = quantile_scores(quantiles.cpu(), realized.cpu(), cfg.forecast_quantiles)
    # "origin": the latest strategy's (on a rectangular panel, every strategy's)
    metrics["holdout"] = {"periods": steps, "strategies": int(rows.numel()), "origin": int(origin.max())}
    per_strategy = {
        "rows": rows.cpu().numpy(),
        "realized_mean": realized.mean(1).cpu().numpy(),
        "forecast_mean": model_fc.mean(1).cpu().numpy(),
        "total_error": (model_fc.sum(1) - realized.sum(1)).cpu().numpy(),
    }
    return metrics, per_strategy


def member_forecasts(
    fn: Callable[[Tensor, Tensor, Tensor], Tensor],
    x: Tensor,
    rows: Tensor,
    origin: Tensor,
    steps: int,
    recent: Tensor,
    blend_steps: int,
) -> dict[str, Tensor]:
    """Each member's own forecast [M, steps] when ``fn`` is an ensemble (raw or combined), as the model's is blended.

    Keyed ``member <label>`` (:data:`~stratcast.daemon.engine.evaluation.skill.MEMBER_PREFIX`); empty otherwise.
    """
    ensemble = fn.base if isinstance(fn, CombinedForecaster) else fn
    if not isinstance(ensemble, EnsembleForecaster):
        return {}
    each = ensemble.member_forecasts(x, rows, origin)[:, :, :steps]  # [K, M, steps]
    return {
        f"{skill.MEMBER_PREFIX}{label}": blend_toward_mean(fc, recent, blend_steps)
        for label, fc in zip(ensemble.labels, each, strict=True)
    }
