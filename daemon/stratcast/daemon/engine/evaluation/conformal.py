"""Split-conformal prediction intervals around any point forecast, and their coverage and MSIS on a holdout.

The intervals wrap a point forecast; they never live inside a model. :func:`calibrate` takes out-of-sample
residuals from anywhere (a job's validation part at every origin, a backtest's cutoffs) as forecasts and realized
values [M, H] with a mask, the panel row of each [M] and each row's scale [M]; :meth:`Conformal.intervals` puts
the bands around new point forecasts, each with its own scale.

Choices, and why:

* **Score**: ``|y - yhat| / scale``, one scale per forecast. Dividing by a scale of the strategy's own makes the
  scores of a strategy trading 1 pip a week and one trading 100 comparable, so they can be pooled. The scale is
  *local* (:func:`local_scale`): the strategy's mean absolute one-step change over the periods just before the
  forecast's own origin, read in calibration at each calibration origin and again at the origin of the forecast
  the bands go around (a job reads 13 periods, ``interval_window``). A market that turned calm (or wild) since the
  calibration origins, or a strategy that went quiet, then narrows (widens) the bands by itself, where a scale
  fixed over the whole training part (:func:`series_scale`) cannot: on the EURUSD panel the fixed scale
  over-covered the calmer 2019 by 7.5 points (docs/benchmarks.md).
* **Pooled per horizon step**: the scores of every strategy and every origin at one step make one set. The error
  grows with the step, so steps are never pooled together; strategies are, because one strategy has at most
  ``val_size`` scores at a step (one at the last step), too few for 95% (which needs 19).
* **Finite-sample quantile**: the score of rank ``ceil((n + 1)(1 - alpha))`` among ``n``, which covers at least
  ``1 - alpha`` of an exchangeable new score (Vovk et al. 2005; Lei et al. 2018). When that rank exceeds ``n``
  the interval is infinite and a note says so.
* **Per strategy where it can be**: a strategy with at least ``own_min`` scores at a step, and at least
  ``ceil(1 / alpha) - 1`` (4 at 80%, 19 at 95%, below which its quantile is infinite), gets its own finite-sample
  quantile there, the others the pooled one (``own_min=None``: all pooled). Its own scores follow its own error
  pattern, the pooled set only its scale; but a quantile of ``n`` scores covers up to ``1 / (n + 1)`` more than
  nominal, and a strategy's few scores at one step come from overlapping windows of one regime: on M4 Weekly
  (13 scores per strategy and step) own quantiles put single steps 9 points under and 15 over nominal, where the
  pooled ones stayed within 4 (docs/benchmarks.md). So the default :data:`OWN_MIN` asks for 100 scores, where the
  finite-sample excess is under one point: a backtest's residuals over many cutoffs, or a long validation part.
* **Nested**: a higher level's quantile is never below a lower level's for the same strategy and step (it is
  raised to it), so the 95% band always holds the 80% band.
* **Adaptive update (ACI, Gibbs and Candes 2021)**: per step and level, the calibration origins are walked in time
  order (``order``: for a job, each origin's position in its strategy's own validation part, so that a ragged
  panel's strategies walk together); at each, the quantile of the scores of the origins before it at level
  ``1 - alpha_t`` is checked against that origin's scores, and ``alpha_{t+1} = alpha_t + gamma (alpha - miss_t)``
  with ``miss_t`` the share of its scores above it. The final ``alpha_T`` replaces ``alpha`` in every quantile: a
  run of misses at the latest origins widens the intervals, a run of hits narrows them. The first origin has no
  earlier scores and only starts the walk. ``gamma=0`` turns it off.
* **Recent origins may weigh more** (``weights``; Barber et al. 2023, conformal prediction beyond
  exchangeability): the pooled quantile of weighted scores, the new score weighing 1 (:func:`weighted_quantile`).
  Off by default (``interval_decay=1``); measured in docs/benchmarks.md.
* **MSIS** (M4): ``width + 2/alpha (lo - y)+ + 2/alpha (y - hi)+``, averaged over scored cells, each divided by
  the strategy's scale from :func:`series_scale` (the mean absolute one-step change of its training part; M4
  used the in-sample seasonal difference, which for a season of 1 is the same). MSIS keeps M4's fixed scale, so
  that the scores of differently calibrated bands compare.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stratcast.shared.intervals import DEFAULT_LEVELS, bound_name

DEFAULT_GAMMA = 0.005
"""ACI step size: Gibbs and Candes' choice; over 52 origins it moves alpha by at most 0.26 x (alpha - miss)."""
OWN_MIN = 100
"""Scores a strategy needs at a step for a quantile of its own (see the module docstring)."""
SCALE_FLOOR = 0.01
"""A strategy's scale is at least this share of the pooled median scale (a constant series has none)."""


def series_scale(raw: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """[N] each strategy's scale: the mean absolute one-step change of its periods in ``[start, end)``.

    Robust for both kinds of panel: a level series' scale is its typical change, not its level; a zero-heavy
    profit series' is the typical size of its weekly swings (not 0, which its median change often is). A series
    with no change (constant, or fewer than two periods) gets :data:`SCALE_FLOOR` of the pooled median of the
    others, so its scores stay finite.
    """
    t = torch.arange(1, raw.shape[1], device=raw.device)[None, :]  # change at t: raw[t] - raw[t - 1]
    inside = (t - 1 >= start[:, None]) & (t < end[:, None])  # [N, T - 1]
    change = (raw[:, 1:] - raw[:, :-1]).abs().double()
    count = inside.sum(1)
    scale = torch.where(inside, change, 0.0).sum(1) / count.clamp(min=1)
    usable = scale[scale > 0]
    median = float(usable.median()) if usable.numel() else 1.0
    return scale.clamp(min=SCALE_FLOOR * median)


def local_scale(raw: Tensor, start: Tensor, rows: Tensor, origin: Tensor, window: int, floor: float) -> Tensor:
    """[M] each forecast's scale: its strategy's mean absolute one-step change just before its origin.

    The periods read are ``[max(start, origin - window), origin)`` of strategy ``rows`` [M] (``origin`` [M] is the
    forecast's first period): nothing at or after the origin, so the scale adds no look-ahead. A strategy with no
    change there (it stopped trading, or has one period) gets ``floor``, and so a narrow band.
    """
    change = (raw[:, 1:] - raw[:, :-1]).abs().double()  # [N, T - 1]: change[:, t - 1] = |raw[t] - raw[t - 1]|
    total = torch.nn.functional.pad(change.cumsum(1), (1, 0))  # [N, T]: total[:, t] = sum of change[:, :t]
    first = torch.maximum(start[rows], origin - window).clamp(min=0)  # [M] the first period read
    last = (origin - 1).clamp(min=0, max=raw.shape[1] - 1)  # [M] the last period read
    count = (last - first).clamp(min=0)  # changes between periods first..last
    sums = total[rows, last] - total[rows, first.clamp(max=last)]
    scale = torch.where(count > 0, sums / count.clamp(min=1), 0.0)
    return scale.clamp(min=floor)


def finite_sample_quantile(scores: Tensor, alpha: float) -> float:
    """The score of rank ``ceil((n + 1)(1 - alpha))`` of ``n``: inf when that rank exceeds ``n``."""
    return _finite_sample_quantile(scores.detach().cpu().numpy(), alpha)


def _finite_sample_quantile(scores: np.ndarray[Any, Any], alpha: float) -> float:
    """:func:`finite_sample_quantile` of a NumPy array (``partition`` is about ten times ``torch.kthvalue``'s speed)."""
    n = scores.size
    rank = math.ceil((n + 1) * (1 - min(max(alpha, 0.0), 1.0)) - 1e-9)
    if rank > n or n == 0:
        return math.inf
    if rank < 1:
        return 0.0
    return float(np.partition(scores, rank - 1)[rank - 1])


def weighted_quantile(scores: Tensor, weights: Tensor, alpha: float) -> float:
    """The non-exchangeable conformal quantile (Barber et al. 2023): scores weighted, the new one weighing 1.

    The smallest score whose weight, with all smaller ones', reaches ``1 - alpha`` of the total weight (the new
    score's included, placed at infinity): inf when even the largest does not. With equal weights of 1 it is
    :func:`finite_sample_quantile`.
    """
    order = torch.argsort(scores)
    total = weights.double().sum() + 1
    reach = torch.cumsum(weights.double()[order], 0) / total  # [n] share of the weight up to each sorted score
    hit = torch.nonzero(reach >= (1 - min(max(alpha, 0.0), 1.0)) - 1e-12).flatten()
    return float(scores[order][hit[0]]) if hit.numel() else math.inf


def min_scores(alpha: float) -> int:
    """The fewest scores whose finite-sample quantile is finite at ``alpha``: ``ceil(1 / alpha) - 1``."""
    return math.ceil(1 / alpha - 1e-9) - 1


@dataclass
class Conformal:
    """Calibrated score quantiles per level and horizon step, pooled and per strategy."""

    levels: tuple[float, ...]
    pooled: Tensor
    """[K, H] the pooled quantile of each level (K) at each step (inf where too few scores)."""
    own: Tensor
    """[K, N, H] each strategy's quantile (its own where it has enough scores, else the pooled one)."""
    counts: Tensor
    """[H] scores per step, pooled."""
    alphas: Tensor
    """[K, H] the miscoverage each quantile was taken at, after the ACI walk."""
    source: str
    notes: list[str] = field(default_factory=list)
    own_share: Tensor | None = None
    """[K, H] share of strategies with a quantile of their own."""

    def intervals(self, point: Tensor, rows: Tensor, scale: Tensor) -> dict[str, Tensor]:
        """``{"lo80": [M, H], "hi80": ..., ...}`` around ``point`` [M, H] of strategies ``rows`` [M].

        ``scale`` [M] is each forecast's, defined as the scales given to :func:`calibrate` were (at its own origin).
        """
        h = point.shape[1]
        half = self.own[:, rows, :h].to(point.device) * scale.to(point.device)[None, :, None]  # [K, M, H]
        out: dict[str, Tensor] = {}
        for k, level in enumerate(self.levels):
            width = half[k].to(point.dtype)
            out[bound_name("lo", level)] = point - width
            out[bound_name("hi", level)] = point + width
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary: levels, scores per step, the quantiles and alphas per level, the source, notes."""
        share = self.own_share if self.own_share is not None else torch.zeros_like(self.alphas)
        return {
            "source": self.source,
            "scores_per_step": [int(c) for c in self.counts],
            "levels": {
                f"{level:g}": {
                    "pooled_quantile": [_json_float(q) for q in self.pooled[k].tolist()],
                    "alpha": [round(a, 6) for a in self.alphas[k].tolist()],
                    "own_share": [round(s, 4) for s in share[k].tolist()],
                }
                for k, level in enumerate(self.levels)
            },
            "notes": list(self.notes),
        }


def calibrate(
    forecast: Tensor,
    realized: Tensor,
    mask: Tensor,
    rows: Tensor,
    scale: Tensor,
    levels: Sequence[float] = DEFAULT_LEVELS,
    *,
    order: Tensor | None = None,
    gamma: float = DEFAULT_GAMMA,
    own_min: int | None = OWN_MIN,
    monotone: bool = False,
    source: str = "",
    n_series: int | None = None,
    walked: Sequence[float] | None = None,
    weights: Tensor | None = None,
) -> Conformal:
    """Calibrate intervals from out-of-sample forecasts ``forecast`` [M, H] of ``realized`` [M, H].

    Args:
        forecast: Point forecasts, one row per (strategy, origin).
        realized: What happened; read only where ``mask`` [M, H] is true.
        mask: The cells that are scored.
        rows: [M] the strategy (panel row) of each forecast.
        scale: [M] each forecast's scale (:func:`local_scale` at its origin, or :func:`series_scale` of its row).
        levels: Nominal coverages in percent, each in (0, 100).
        order: [M] the origin of each row (time order of the ACI walk); None: no ACI walk.
        gamma: The ACI step size (0: no walk).
        own_min: The scores a strategy needs at a step for its own quantile there (None: every quantile pooled).
        monotone: Whether a step's quantile is raised to the largest of the steps before it (errors that never
            shrink with the horizon; the last steps have the fewest calibration origins).
        source: Where the residuals came from, in words, for ``metrics.json``.
        n_series: The strategies in the panel (None: ``rows.max() + 1``), the size of the per-strategy table.
        walked: The miscoverage to take each level's quantiles at, from an ACI walk kept outside (a backtest's,
            over its cutoffs as they are realized); None: each level's own, or ``order``'s walk.
        weights: [M] each row's weight in the pooled quantiles (:func:`weighted_quantile`: recent origins may
            weigh more); None: every score alike.
    """
    scores = (realized.double() - forecast.double()).abs() / scale.double()[:, None]  # [M, H]
    n = n_series if n_series is not None else int(rows.max()) + 1 if rows.numel() else 0
    h = forecast.shape[1]
    k_levels = len(levels)
    pooled = torch.full((k_levels, h), math.inf, dtype=torch.float64)
    own = torch.full((k_levels, n, h), math.inf, dtype=torch.float64)
    alphas, share = torch.zeros(k_levels, h, dtype=torch.float64), torch.zeros(k_levels, h, dtype=torch.float64)
    notes: list[str] = []
    counts = mask.sum(0).cpu()
    for step in range(h):
        keep = mask[:, step]
        s, r = scores[keep, step].cpu(), rows[keep].cpu()
        o = None if order is None else order[keep].cpu()
        for k, level in enumerate(levels):
            alpha = 1 - level / 100
            adjusted = aci_alpha(s, o, alpha, gamma) if o is not None and gamma > 0 else alpha
            adjusted = adjusted if walked is None else walked[k]
            alphas[k, step] = adjusted
            if weights is None:
                pooled[k, step] = finite_sample_quantile(s, adjusted)
            else:
                pooled[k, step] = weighted_quantile(s, weights[keep].cpu(), adjusted)
            own[k, :, step] = pooled[k, step]
            if own_min is not None:
                need = max(own_min, min_scores(alpha), 1)
                share[k, step] = own_quantiles(s, r, n, need, adjusted, own[k, :, step])
    if monotone:
        pooled, own = pooled.cummax(-1).values, own.cummax(-1).values
    nest(own, levels)
    for k, level in enumerate(levels):
        if bool(torch.isinf(pooled[k]).any()):
            steps = [i + 1 for i in torch.nonzero(torch.isinf(pooled[k])).flatten().tolist()]
            notes.append(
                f"{level:g}%: too few calibration scores at steps {_ranges(steps)} (need {min_scores(1 - level / 100)}"
                "): the interval is infinite there"
            )
    return Conformal(tuple(levels), pooled, own, counts, alphas, source, notes, share)


def nest(quantiles: Tensor, levels: Sequence[float]) -> None:
    """Make ``quantiles`` [K, ...] grow with the level, in place.

    A strategy's own 80% quantile may exceed the pooled 95% one it falls back to, and a 95% band narrower than the
    80% band would read as nonsense.
    """
    previous = None
    for k in sorted(range(len(levels)), key=lambda i: levels[i]):
        if previous is not None:
            quantiles[k] = torch.maximum(quantiles[k], quantiles[previous])
        previous = k


def own_quantiles(scores: Tensor, rows: Tensor, n: int, need: int, adjusted: float, out: Tensor) -> float:
    """Write into ``out`` [N] each strategy's own quantile where it has ``need`` scores.

    Returns the share of strategies that got one. The rank is taken at the ``adjusted`` (ACI) miscoverage, capped
    at the strategy's own count.
    """
    count = torch.bincount(rows, minlength=n)
    enough = torch.nonzero(count >= need).flatten()
    if enough.numel() == 0:
        return 0.0
    by_score = torch.argsort(scores)
    order = by_score[torch.argsort(rows[by_score], stable=True)]  # by strategy, then by score
    srt_rows, srt = rows[order], scores[order]
    first = torch.cumsum(count, 0) - count
    pos = torch.arange(srt.numel()) - first[srt_rows]
    table = torch.full((n, int(count.max())), math.inf, dtype=scores.dtype)  # [N, most scores], sorted rows
    table[srt_rows, pos] = srt
    c = count[enough].double()
    rank = torch.ceil((c + 1) * (1 - min(max(adjusted, 0.0), 1.0)) - 1e-9).clamp(min=1)
    rank = torch.minimum(rank, c).long()
    out[enough] = table[enough, rank - 1]
    return float(enough.numel() / n)


def aci_alpha(scores: Tensor, origin: Tensor, alpha: float, gamma: float) -> float:
    """The ACI miscoverage after walking the origins of one step in time order.

    At each origin after the first, the finite-sample quantile of the earlier origins' scores at ``alpha_t`` is
    checked against this origin's scores; ``alpha_{t+1} = alpha_t + gamma (alpha - miss_t)``. In NumPy: a job
    walks about 100 origins of 6,000 strategies at each of 52 steps, and torch's CPU sorts of them took most of
    its calibration time (``benchmarks/conformal_speed.py``).
    """
    values, at = scores.detach().cpu().numpy(), origin.detach().cpu().numpy()
    ordered = np.argsort(at, kind="stable")
    srt, groups = values[ordered], at[ordered]
    bounds = np.flatnonzero(np.diff(groups)) + 1  # where each origin after the first begins
    if bounds.size == 0:
        return alpha
    ends = np.append(bounds[1:], groups.size)
    a = alpha
    for start, end in zip(bounds.tolist(), ends.tolist(), strict=True):
        q = _finite_sample_quantile(srt[:start], a)
        a = a + gamma * (alpha - float((srt[start:end] > q).mean()))
    return a


def coverage(lo: Tensor, hi: Tensor, realized: Tensor, mask: Tensor, level: float, scale: Tensor) -> dict[str, Any]:
    """Empirical coverage of ``[lo, hi]`` [M, H] per step and pooled, and MSIS, over the ``mask``ed cells.

    ``scale`` [M] is each row's strategy scale (:func:`series_scale`), MSIS's denominator.
    """
    alpha = 1 - level / 100
    y, lo, hi = realized.double(), lo.double(), hi.double()
    inside = (y >= lo) & (y <= hi) & mask
    cells = mask.sum(0).clamp(min=1)  # [H]
    finite = torch.isfinite(lo) & torch.isfinite(hi)
    penalty = (hi - lo) + 2 / alpha * ((lo - y).clamp(min=0) + (y - hi).clamp(min=0))
    score = torch.where(mask & finite, penalty / scale.double()[:, None], 0.0)
    scored = (mask & finite).sum()
    per_step = (inside.sum(0) / cells).tolist()
    return {
        "nominal": level / 100,
        "coverage": float(inside.sum() / mask.sum().clamp(min=1)),
        "per_step": [round(c, 4) for c in per_step],
        "worst_step": _worst(per_step, level / 100),
        "msis": float(score.sum() / scored) if int(scored) else None,
        "cells": int(mask.sum()),
    }


def _worst(per_step: list[float], nominal: float) -> dict[str, Any]:
    step = max(range(len(per_step)), key=lambda i: abs(per_step[i] - nominal)) if per_step else 0
    return {"step": step + 1, "coverage": round(per_step[step], 4) if per_step else None}


def _json_float(value: float) -> float | None:
    return None if not math.isfinite(value) else round(value, 6)


def _ranges(steps: list[int]) -> str:
    """``[1, 2, 3, 7]`` as ``1-3, 7``."""
    parts, i = [], 0
    while i < len(steps):
        j = i
        while j + 1 < len(steps) and steps[j + 1] == steps[j] + 1:
            j += 1
        parts.append(str(steps[i]) if i == j else f"{steps[i]}-{steps[j]}")
        i = j + 1
    return ", ".join(parts)
