"""Plain-text tables of a run's results from its ``metrics.json`` data, for the CLI, the daemon and the TUI.

Pure Python on plain data: no numpy, pandas or torch, so a torch-free client can print the same tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

METHOD_LABELS = {
    "model": "model",
    "zero": "zero forecast",
    "trailing_mean": "trailing mean",
    "last_value": "last value",
    "seasonal_naive": "seasonal naive",
    "oracle": "best possible",
}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A fixed-width text table; numbers right-aligned with 4 significant digits."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(_is_number(r[i]) or r[i] == MISSING for r in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(r) for r in cells)])


MISSING = "-"
"""Shown where a method has no figure (the zero forecast cannot rank)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def skill_table(metrics: Mapping[str, Any]) -> str:
    """Errors of the model and every baseline on the holdout, and the realized profit of their top picks."""
    errors: Mapping[str, Mapping[str, float]] = metrics["errors"]
    picks: Mapping[str, Mapping[str, float]] = metrics["ranking"]["picks"]
    k = metrics["ranking"]["k"]
    headers = ["method", "MAE", "RMSE", "total MAE", f"top {k['top10']} mean", f"top 1% ({k['top1pct']}) mean"]
    rows = []
    for name in [*errors, "oracle"]:
        err = errors.get(name, {})
        pick = picks.get(name, {})
        rows.append(
            [
                METHOD_LABELS.get(name, name),
                err.get("mae", MISSING),
                err.get("rmse", MISSING),
                err.get("total_mae", MISSING),
                pick.get("top10", MISSING),
                pick.get("top1pct", MISSING),
            ]
        )
    universe = metrics["ranking"]["universe_mean"]
    foot = "top-k mean: realized mean profit per period of the k strategies each method ranks highest; "
    foot += f"average strategy: {universe:.4g}"
    return table(headers, rows) + "\n" + foot


def top_table(rows: Sequence[Mapping[str, Any]], limit: int = 10) -> str:
    """The best strategies by forecast: rank, id, forecast mean ("Avg Profit") and sum, trailing mean."""
    body = [[r["rank"], r["strategy"], r["forecast_mean"], r["forecast_sum"], r["trailing_mean"]] for r in rows[:limit]]
    return table(["rank", "strategy", "avg profit", "horizon total", "trailing mean"], body)


def models_text(result: Mapping[str, Any]) -> str:
    """``stratcast models`` and ``stratcastd models``: each model's parameters, then the training options."""
    blocks = []
    for m in result["models"]:
        head = f"{m['name']}: {m['summary']} ({m['paper']}){'' if m['stackable'] else ' [batch mode only]'}"
        rows = [[p["name"], _default(p["default"]), _range(p), p["help"]] for p in m["params"]]
        blocks.append(head + "\n  " + table(["parameter", "default", "range", "help"], rows).replace("\n", "\n  "))
    options = [[p["name"], _default(p["default"]), _range(p), p["help"]] for p in result.get("train_options", [])]
    if options:
        body = table(["option", "default", "range", "help"], options).replace("\n", "\n  ")
        blocks.append("training options (--set KEY=VALUE, as model parameters):\n  " + body)
    return "\n\n".join(blocks)


def _default(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"  # as --set takes it
    return "-" if value is None else str(value)


def _range(p: Mapping[str, Any]) -> str:
    if p.get("choices"):
        return "|".join(map(str, p["choices"]))
    if p.get("lo") is None and p.get("hi") is None:
        return "-"
    return f"{'' if p.get('lo') is None else p['lo']}..{'' if p.get('hi') is None else p['hi']}"
