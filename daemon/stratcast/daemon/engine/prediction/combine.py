"""The combination of any model's point forecast with the two obvious ones: the zero forecast and the trailing mean.

Per horizon step ``h`` the combined forecast is ``w_model[h] * model + w_trailing[h] * trailing_mean`` (the zero
forecast takes the rest, ``w_zero[h] = 1 - w_model[h] - w_trailing[h]``), with every weight at least 0: a convex
combination of the three forecasts. The weights minimise the squared error pooled over every strategy and every
validation window (:func:`fit_combination`), so on a panel whose validation shows no signal the combination
forecasts zero, and where the model earns its keep it keeps the model. Two free parameters per step, pooled over
thousands of strategies, cannot overfit the way a per-strategy weight would.

Each step's problem is a least-squares fit over a triangle (a two-variable quadratic programme); it is solved
exactly in float64 from the step's sufficient statistics: the unconstrained minimum when it lies inside, else the
best of the three edges' own minima (the objective is convex, so its minimum over the triangle is one of these).

Late steps are scored by fewer validation windows (a window's targets stop at the validation's end), so each step's
statistics are shrunk toward the average over all steps with a prior worth :data:`SHRINK` of the average step's
cells: early steps keep nearly their own weights, the last (scored from one origin, one common shock) lean on the
pooled ones. One fixed constant and no per-series parameters keep the fit from chasing noise.

The statistics are summed over scaled errors (each strategy's values divided by its own scale, see
:func:`~stratcast.daemon.engine.run.combining.validation_stats`), so every strategy weighs alike.

**The check across origins** (:func:`fit_checked`). Weights fitted in-sample always look at least as good as the
raw model on the windows they were fitted on, even where a baseline only helps by chance or by a bias that will not
last (the trailing mean of a trending level series lags it: on a few validation weeks that can look like useful
shrinkage, and out of sample it is a biased forecast). So the weights are also fitted on the early half of the
validation origins and scored on the late half, which they never saw; the combination is kept only when it beats
the raw model there. Otherwise the run forecasts with the raw model (weights 1/0/0), and says so. The rule has no
parameter: the late origins are simply the next periods, as the future is to the whole validation part. On a
panel without signal an overfitted model loses to zero on the late origins too, so the combination (all weight on
zero) is kept; where the model forecasts well the combination must earn any weight it takes off the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

SHRINK = 0.25
"""Prior strength of the all-step statistics in each step's fit, as a fraction of the average step's cell count."""
TIE = 1e-10
"""Relative objective difference below which two candidate weightings tie (the one with less weight wins)."""
STATS = ("aa", "ab", "bb", "ay", "by", "yy", "n")
"""Per-step sufficient statistics: sums of products of model (a), trailing mean (b) and realized (y), and cells."""
Stats = dict[str, Tensor]
"""[H] float64 sums per statistic of :data:`STATS` (:func:`step_stats`)."""


@dataclass(frozen=True)
class Combination:
    """Fitted weights per horizon step: model, trailing mean and zero forecast, each >= 0, summing to 1."""

    model: Tensor
    """[H] float64 weight of the model's forecast."""
    trailing: Tensor
    """[H] float64 weight of the trailing mean."""
    cells: Tensor
    """[H] validation cells (strategy x window) that scored each step."""
    check: dict[str, float | bool] | None = None
    """The check across origins (:func:`fit_checked`): the late origins' loss of the weights fitted on the early
    ones and of the raw model, and whether the combination was kept (None: not checked)."""

    @property
    def rejected(self) -> bool:
        """True when the check across origins kept the raw model: the weights are 1/0/0."""
        return self.check is not None and not self.check["kept"]

    @property
    def zero(self) -> Tensor:
        """[H] weight of the zero forecast."""
        return (1 - self.model - self.trailing).clamp(min=0)

    @property
    def no_signal(self) -> bool:
        """True when validation gave the model and the trailing mean no weight at any step: the forecast is zero."""
        return bool(((self.model + self.trailing) <= 0).all())

    def apply(self, model_fc: Tensor, trailing: Tensor) -> Tensor:
        """The combined forecasts [N, H'] of ``model_fc`` [N, H'] (H' <= H) and the trailing means ``trailing`` [N]."""
        h = model_fc.shape[1]
        wm, wt = (w[:h].to(model_fc.device, model_fc.dtype) for w in (self.model, self.trailing))
        return wm * model_fc + wt * trailing.to(model_fc.dtype)[:, None]

    def ranking_score(self, model_fc: Tensor, trailing: Tensor) -> Tensor:
        """[N] what the ranking uses: the combination without its zero part, scaled back to a per-period mean.

        The zero forecast ranks nothing, so a strategy's score is the mean over steps of its model-and-trailing part
        divided by the mean weight of that part (the same order as the combined forecast's mean). When that weight
        is 0 at every step (:attr:`no_signal`), the score is the raw model's mean: a ranking validation did not
        prove.
        """
        if self.no_signal:
            return model_fc.mean(1)
        h = model_fc.shape[1]
        signal = float((self.model[:h] + self.trailing[:h]).mean())
        return self.apply(model_fc, trailing).mean(1) / max(signal, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        """The weights for ``metrics.json``: per step, their means over the steps, and whether there was signal."""
        per_step = {"model": self.model, "trailing_mean": self.trailing, "zero": self.zero}
        return {
            "weights": {k: [round(float(v), 6) for v in w] for k, w in per_step.items()},
            "mean": {k: float(w.mean()) for k, w in per_step.items()},
            "cells": [int(c) for c in self.cells],
            "no_signal": self.no_signal,
            "check": self.check,
        }

    def summary(self) -> str:
        """One log line: the mean weights over the steps, then the first and last step's."""

        def at(i: int | None) -> str:
            wm, wt, wz = (float(w.mean() if i is None else w[i]) for w in (self.model, self.trailing, self.zero))
            return f"model {wm:.2f}, trailing mean {wt:.2f}, zero {wz:.2f}"

        line = f"combination weights: mean {at(None)}; step 1 {at(0)}; step {self.model.numel()} {at(-1)}"
        if self.check is None:
            return line
        c = self.check
        test = f"late validation origins: fitted on the early ones {c['combined']:.6g} vs raw model {c['raw']:.6g}"
        return f"{line} ({test}: {'kept' if c['kept'] else 'not better: the raw model forecasts'})"


def step_stats(model_fc: Tensor, trailing: Tensor, realized: Tensor, mask: Tensor) -> Stats:
    """Per-step sums [H] (float64) of the products :func:`solve_simplex` needs, over the cells in ``mask`` [M, H]."""
    m = mask.double()
    a, y = model_fc.double() * m, realized.double() * m
    b = trailing.double()[:, None] * m  # [M] -> [M, H], 0 outside the mask
    return {
        "aa": (a * a).sum(0),
        "ab": (a * b).sum(0),
        "bb": (b * b).sum(0),
        "ay": (a * y).sum(0),
        "by": (b * y).sum(0),
        "yy": (y * y).sum(0),
        "n": m.sum(0),
    }


def add_stats(total: Stats | None, more: Stats) -> Stats:
    """The sum of two :func:`step_stats` results (``total`` None: ``more``)."""
    return dict(more) if total is None else {k: total[k] + more[k] for k in STATS}


def fit_combination(model_fc: Tensor, trailing: Tensor, realized: Tensor, mask: Tensor) -> Combination:
    """Fit the weights from forecasts ``model_fc`` [M, H], trailing means [M] and ``realized`` [M, H] where ``mask``.

    Raises:
        ValueError: when the shapes disagree.
    """
    if model_fc.shape != realized.shape or model_fc.shape != mask.shape or trailing.shape != model_fc.shape[:1]:
        raise ValueError(
            f"combination inputs disagree: model {tuple(model_fc.shape)}, trailing {tuple(trailing.shape)}, "
            f"realized {tuple(realized.shape)}, mask {tuple(mask.shape)} (want [M, H], [M], [M, H], [M, H])"
        )
    return fit_from_stats(step_stats(model_fc, trailing, realized, mask))


def fit_checked(early: Stats | None, late: Stats | None, shrink: float = SHRINK) -> Combination:
    """The weights fitted on all origins, kept only if those fitted on ``early`` beat the raw model on ``late``.

    ``early`` and ``late`` are the statistics of the first and the second half of the validation origins. Without
    late origins (a validation part of one period) nothing can be checked and the fit on all is returned.

    Raises:
        ValueError: when neither half has statistics.
    """
    if early is None or late is None:
        stats = early if late is None else late
        if stats is None:
            raise ValueError("the combination needs the statistics of at least one validation origin")
        return fit_from_stats(stats, shrink)
    combined = stats_loss(late, fit_from_stats(early, shrink))
    raw = stats_loss(late, raw_model(late["n"]))
    check: dict[str, float | bool] = {"combined": combined, "raw": raw, "kept": combined < raw}
    fitted = fit_from_stats(add_stats(early, late), shrink) if combined < raw else raw_model(early["n"] + late["n"])
    return replace(fitted, check=check)


def split_origins(per_origin: list[Stats]) -> tuple[Stats | None, Stats | None]:
    """The summed statistics of the early half (the larger, for an odd count) and the late half of the origins."""
    early, late = None, None
    for k, stats in enumerate(per_origin):
        if k < len(per_origin) - len(per_origin) // 2:
            early = add_stats(early, stats)
        else:
            late = add_stats(late, stats)
    return early, late


def raw_model(cells: Tensor) -> Combination:
    """The weights that forecast with the raw model: 1 on the model at every step."""
    return Combination(torch.ones_like(cells, dtype=torch.float64), torch.zeros_like(cells, dtype=torch.float64), cells)


def stats_loss(stats: Stats, combination: Combination) -> float:
    """The squared error summed over every step and cell of ``stats`` of the forecasts weighted by ``combination``."""
    wa, wb = combination.model, combination.trailing
    loss = stats["yy"] - 2 * (wa * stats["ay"] + wb * stats["by"])
    loss = loss + wa * wa * stats["aa"] + 2 * wa * wb * stats["ab"] + wb * wb * stats["bb"]
    return float(loss.sum())


def fit_from_stats(stats: Stats, shrink: float = SHRINK) -> Combination:
    """Solve each step's simplex-constrained least squares from its (shrunk) sufficient statistics."""
    cells = stats["n"]
    prior = shrink * float(cells.mean())
    pooled = {k: v.sum() / cells.sum().clamp(min=1) for k, v in stats.items()}  # per-cell average over the steps
    shrunk = {k: v + prior * pooled[k] for k, v in stats.items()}
    weights = [solve_simplex(*(float(shrunk[k][h]) for k in STATS[:-1])) for h in range(cells.numel())]
    wm, wt = torch.tensor(weights, dtype=torch.float64).T
    return Combination(wm, wt, cells.clone())


def solve_simplex(aa: float, ab: float, bb: float, ay: float, by: float, yy: float) -> tuple[float, float]:
    """(w_a, w_b) minimising ``|y - w_a a - w_b b|^2`` subject to ``w_a, w_b >= 0``, ``w_a + w_b <= 1``.

    Exact: the interior minimum when it is feasible, else the best of the edges ``w_b = 0``, ``w_a = 0`` and
    ``w_a + w_b = 1`` (each a clipped one-variable least squares). Ties go to the weighting with less total weight.
    """

    def loss(wa: float, wb: float) -> float:
        return yy - 2 * (wa * ay + wb * by) + wa * wa * aa + 2 * wa * wb * ab + wb * wb * bb

    candidates = [
        (clip01(ay, aa), 0.0),
        (0.0, clip01(by, bb)),
    ]
    s = clip01(ay - by - ab + bb, aa - 2 * ab + bb)  # w_a = s, w_b = 1 - s: |(y - b) - s (a - b)|^2
    candidates.append((s, 1 - s))
    det = aa * bb - ab * ab
    if det > 1e-12 * max(aa * bb, 1e-300):
        wa, wb = (bb * ay - ab * by) / det, (aa * by - ab * ay) / det
        if wa >= 0 and wb >= 0 and wa + wb <= 1:
            candidates.append((wa, wb))
    losses = [loss(*c) for c in candidates]
    best = min(losses)
    tied = [c for c, v in zip(candidates, losses, strict=True) if v - best <= TIE * max(abs(yy), abs(best), 1e-300)]
    return min(tied, key=lambda c: c[0] + c[1])


def clip01(num: float, den: float) -> float:
    """``num / den`` clipped to [0, 1]; 0 when ``den`` is not positive (the direction carries nothing)."""
    return min(max(num / den, 0.0), 1.0) if den > 0 else 0.0


Trailing = Callable[[Tensor, Tensor], Tensor]
"""(series rows [M], origins [M]) -> [M] each series' trailing mean before its origin."""
Base = Callable[[Tensor, Tensor, Tensor], Tensor]
"""A point forecaster: (scaled inputs [M, L], rows [M], origins [M]) -> raw forecasts [M, H]."""


class CombinedForecaster:
    """A forecaster that combines ``base``'s forecast with the trailing mean and zero by ``combination``'s weights.

    It wraps any model's forecaster and keeps the raw one reachable (:attr:`base`, :meth:`parts`), so the holdout
    can score both from one forward pass.
    """

    def __init__(self, base: Base, combination: Combination, trailing: Trailing) -> None:
        self.base, self.combination, self.trailing = base, combination, trailing

    def parts(self, x: Tensor, rows: Tensor, origin: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The raw model's forecasts [M, H] and the trailing means [M] the combination mixes.

        Raises:
            ValueError: without ``origin``: the trailing mean is taken before each input's origin.
        """
        if origin is None:
            raise ValueError("the combined forecast needs each input's origin for its trailing mean")
        return self.base(x, rows, origin), self.trailing(rows, origin)

    def __call__(self, x: Tensor, rows: Tensor, origin: Tensor | None = None) -> Tensor:
        """The combined forecasts [M, H]."""
        return self.combination.apply(*self.parts(x, rows, origin))


@dataclass(frozen=True)
class Forecasts:
    """A forecaster's output with what the holdout scores besides: the raw model and the ranking score."""

    point: Tensor
    """[M, S] the forecast (combined when the forecaster combines)."""
    raw: Tensor | None
    """[M, S] the raw model's forecast when ``point`` is combined, else None."""
    rank: Tensor
    """[M] the ranking score (:meth:`Combination.ranking_score`; the forecast's mean when not combined)."""
    combination: Combination | None


def forecast_parts(fn: Base, x: Tensor, rows: Tensor, origin: Tensor, steps: int) -> Forecasts:
    """The first ``steps`` steps of ``fn``'s forecast for inputs ``x`` [M, L], with the raw model's when combined."""
    if not isinstance(fn, CombinedForecaster):
        point = fn(x, rows, origin)[:, :steps]
        return Forecasts(point, None, point.mean(1), None)
    raw, trailing = fn.parts(x, rows, origin)
    raw = raw[:, :steps]
    combo = fn.combination
    return Forecasts(combo.apply(raw, trailing), raw, combo.ranking_score(raw, trailing), combo)
