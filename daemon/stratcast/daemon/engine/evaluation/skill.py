"""Honest skill: the model against naive baselines on the same holdout, by error and by ranking.

Error metrics (MAE, RMSE, the error of each strategy's horizon total) say how close the forecasts are; on strategy
panels the zero forecast is often hard to beat on them. The ranking metric says whether the forecasts pick good
strategies: the realized mean profit per period of the top-k strategies picked by each method, next to the
average strategy and the best possible pick. A model that loses to the zero forecast is reported as such.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

ZERO, TRAILING, LAST, SEASONAL, MODEL = "zero", "trailing_mean", "last_value", "seasonal_naive", "model"
MODEL_RAW = "model_raw"
MEMBER_PREFIX = "member "
"""The holdout's rows of an ensemble's members start so: ``member nhits#0``, ``member dlinear``."""
"""The raw model, scored beside the default forecast (``model``) when that combines it with the baselines."""


def baselines(
    raw: Tensor, start: Tensor, origin: int | Tensor, horizon: int, *, trailing_window: int, season: int = 0
) -> dict[str, Tensor]:
    """Naive forecasts [N, horizon] from the raw panel [N, T] using only periods before ``origin``.

    ``origin`` is one period for every series, or [N] one per series (each series' own).
    """
    n = raw.shape[0]
    origin = torch.as_tensor(origin, device=raw.device).expand(n)  # [N]
    tm = trailing_mean(raw, start, origin, trailing_window)
    out = {ZERO: raw.new_zeros(n, horizon), TRAILING: tm[:, None].expand(n, horizon)}
    last = raw.gather(1, (origin - 1).clamp(min=0)[:, None])[:, 0]  # [N] each series' period before its origin
    out[LAST] = torch.where(start <= origin - 1, last, 0.0)[:, None].expand(n, horizon)
    if season > 0 and bool((origin - season >= 0).any()):
        # [N, H] periods a season back from each series' origin
        idx = (origin - season)[:, None] + torch.arange(horizon, device=raw.device) % season
        seasonal = raw.gather(1, idx.clamp(min=0))
        out[SEASONAL] = torch.where(start[:, None] <= idx, seasonal, 0.0)
    return out


def trailing_mean(raw: Tensor, start: Tensor, origin: int | Tensor, window: int) -> Tensor:
    """[N] mean of each series' observed periods in ``[origin - window, origin)`` (0 when there are none)."""
    origin = torch.as_tensor(origin, device=raw.device).expand(raw.shape[0])[:, None]  # [N, 1]
    t = torch.arange(raw.shape[1], device=raw.device)[None, :]
    inside = (t >= torch.maximum(start[:, None], origin - window)) & (t < origin)
    count = inside.sum(1).clamp(min=1)
    return torch.where(inside, raw, 0.0).sum(1) / count


def top_k_sizes(n: int) -> dict[str, int]:
    """The ranking cut-offs: 10 strategies and the top 1% (at least one), each capped at ``n``."""
    return {"top10": min(10, n), "top1pct": max(1, min(n, round(n * 0.01)))}


def score(
    realized: Tensor, forecasts: dict[str, Tensor], mask: Tensor | None = None, rank_by: dict[str, Tensor] | None = None
) -> dict[str, Any]:
    """Error and ranking metrics of every forecast [N, S] against ``realized`` [N, S], same cells.

    A method ranks by its forecast's total, or by its own score [N] in ``rank_by``.
    """
    realized = realized.double()
    mask = torch.ones_like(realized, dtype=torch.bool) if mask is None else mask
    cells = mask.sum().clamp(min=1)
    errors: dict[str, dict[str, float]] = {}
    totals = {name: torch.where(mask, f.double(), 0.0).sum(1) for name, f in forecasts.items()}
    real_total = torch.where(mask, realized, 0.0).sum(1)
    for name, f in forecasts.items():
        err = torch.where(mask, f.double() - realized, 0.0)
        errors[name] = {
            "mae": float(err.abs().sum() / cells),
            "rmse": float((err.square().sum() / cells).sqrt()),
            "total_mae": float((totals[name] - real_total).abs().mean()),
        }
    return {"errors": errors, "ranking": ranking(realized, mask, {**totals, **(rank_by or {})})}


def ranking(realized: Tensor, mask: Tensor, totals: dict[str, Tensor]) -> dict[str, Any]:
    """Realized mean profit per period of the top-k strategies picked by each method's forecast total."""
    per_period = torch.where(mask, realized, 0.0).sum(1) / mask.sum(1).clamp(min=1)  # [N]
    n = per_period.shape[0]
    picks: dict[str, dict[str, float]] = {}
    for label, k in top_k_sizes(n).items():
        for name, total in {**totals, "oracle": per_period}.items():
            if name == ZERO:
                continue  # every strategy ties at 0: the zero forecast cannot rank
            chosen = torch.topk(total, k).indices
            picks.setdefault(name, {})[label] = float(per_period[chosen].mean())
    return {"k": top_k_sizes(n), "universe_mean": float(per_period.mean()), "picks": picks}


def verdict(metrics: dict[str, Any]) -> list[str]:
    """Plain sentences on whether the model beats the baselines; never hides a loss to the zero forecast."""
    errors, picks = metrics["errors"], metrics["ranking"]["picks"]
    model, lines = errors[MODEL], []
    for base in (ZERO, TRAILING):
        if base not in errors:
            continue
        diff = 100 * (model["rmse"] / max(errors[base]["rmse"], 1e-12) - 1)
        if diff < 0:
            lines.append(f"The model's RMSE is {-diff:.1f}% lower than the {base.replace('_', ' ')} forecast.")
        else:
            lines.append(f"The model LOSES to the {base.replace('_', ' ')} forecast: its RMSE is {diff:.1f}% higher.")
    lines += combination_lines(metrics)
    if TRAILING in picks:
        m, t = picks[MODEL]["top1pct"], picks[TRAILING]["top1pct"]
        word = "beat" if m > t else "did NOT beat"
        lines.append(
            f"Its top 1% picks earned {m:.3g} per period and {word} the trailing-mean picks ({t:.3g}); "
            f"the average strategy earned {metrics['ranking']['universe_mean']:.3g}."
        )
    return lines


NO_SIGNAL = (
    "The panel showed no forecastable signal on validation: forecasting zero; the ranking (by the raw model) is "
    "unproven."
)


RAW_KEPT = (
    "The forecast is the raw model's: weights fitted on the early validation origins did not beat it on the late ones."
)


def combination_lines(metrics: dict[str, Any]) -> list[str]:
    """The verdict on the combination with the baselines: its weights, the raw model's RMSE, a zero forecast."""
    combo = metrics.get("combination") or {}
    if not combo.get("fitted"):
        return []
    w = combo["mean"]
    lines = [
        f"The forecast combines the model ({w['model']:.2f}), the trailing mean ({w['trailing_mean']:.2f}) and "
        f"zero ({w['zero']:.2f}), weights fitted on validation (mean over the steps)."
    ]
    if (combo.get("check") or {}).get("kept") is False:
        lines[0] = RAW_KEPT
    errors = metrics["errors"]
    if MODEL_RAW in errors and ZERO in errors:
        diff = 100 * (errors[MODEL_RAW]["rmse"] / max(errors[ZERO]["rmse"], 1e-12) - 1)
        lines.append(f"The raw model's RMSE is {abs(diff):.1f}% {'lower' if diff < 0 else 'higher'} than zero's.")
    if combo.get("no_signal"):
        lines.append(NO_SIGNAL)
    return lines
