"""A backtest's table in plain text, from ``backtest.json``'s content, for the CLI and the TUI.

Pure Python on plain data, as :mod:`stratcast.shared.report` (whose :func:`~stratcast.shared.report.table` it
uses): a torch-free client prints the same table the daemon's machine would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stratcast.shared.report import METHOD_LABELS, MISSING, coverage_table, table

BACKTEST_LABELS = {
    "model": "model",
    "model_raw": "model, raw",
    "trailing_mean": "trailing mean",
    "last_value": "last value",
    "random": "random",
    "all": "all strategies",
    "best": "best possible",
}
"""The backtest's methods as the table, the chart legends and the TUI name them, in the order shown."""
HEADERS = ("method", "mean/period", "spread", "hit rate %", "cumulative", "vs trailing mean", "note")


def backtest_text(table: Mapping[str, Any]) -> str:
    """The backtest: its heading, per pick size the methods' table and verdict, the error line, the survivorship caveat.

    The model's row (and the raw model's) says LOSES where its picks earned less per period than the trailing mean's
    or than holding every strategy.
    """
    lines = [backtest_heading(table)]
    for label, size in table["sizes"].items():
        lines += ["", f"Top {label} ({size['k']} strategies per cutoff):", size_table(size)]
        if sentence := _verdict(table, label):
            lines.append(f"- {sentence}")
    if errors := error_line(table.get("errors", {}), len(table.get("cutoffs", []))):
        lines += ["", errors]
    lines += interval_lines(table.get("intervals") or {})
    if caveat := table.get("survivorship"):
        lines.append(caveat)
    foot = "mean/period: realized mean profit per period of each cutoff's picks after cost, averaged over cutoffs; "
    foot += "spread: its standard deviation across cutoffs; hit rate: cutoffs whose picks beat the average strategy; "
    foot += "random 5-95%: the range of one random picker's mean"
    return "\n".join([*lines, foot])


def interval_lines(intervals: Mapping[str, Any]) -> list[str]:
    """The model's bands over the cutoffs: per level coverage next to nominal, worst step, MSIS, by cutoff range."""
    if not intervals:
        return []
    notes = [f"- {note}" for note in intervals.get("notes", [])]
    if (coverage := coverage_table(intervals)) is None:
        return ["", *notes]
    lines = ["", "Prediction intervals over the cutoffs (each calibrated on the earlier cutoffs' residuals):", coverage]
    for level, got in intervals["levels"].items():
        ranges = ", ".join(f"{r['from']}..{r['to']} {_share(r.get('coverage'))}" for r in got.get("ranges", []))
        lines.append(f"{level}%: hold mean {_share(got.get('hold_mean'))}; by cutoffs {ranges}")
    return [*lines, *notes]


def _share(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else MISSING


def backtest_heading(table: Mapping[str, Any]) -> str:
    """What was backtested: the model, the cutoffs and their dates, the hold and the cost."""
    meta, dates = table.get("meta", {}), table.get("dates", [])
    span = f" ({dates[0]} to {dates[-1]})" if dates else ""
    model = f"{meta['model']}, " if "model" in meta else ""
    cost = f", cost {table['cost']:g} per pick" if table.get("cost") else ""
    return (
        f"Walk-forward backtest: {model}{len(dates)} cutoffs{span} every {table['every']} periods, "
        f"each pick held {table['hold']} periods{cost}"
    )


def size_table(size: Mapping[str, Any]) -> str:
    """One pick size's methods: mean, spread, hit rate, cumulative profit, difference to the trailing mean."""
    methods: Mapping[str, Mapping[str, Any]] = size["methods"]
    trailing = methods.get("trailing_mean", {}).get("mean")
    rows = []
    for name, figures in methods.items():
        vs = MISSING if trailing is None or name == "trailing_mean" else figures["mean"] - trailing
        rows.append(
            [
                BACKTEST_LABELS.get(name, name),
                figures["mean"],
                MISSING if figures.get("std") is None else figures["std"],
                MISSING if figures.get("hit_rate") is None else round(100 * figures["hit_rate"], 1),
                figures["cumulative"],
                vs,
                _note(name, figures, methods),
            ]
        )
    return table(HEADERS, rows)


MODELS = ("model", "model_raw")
"""The methods that are a model's picks (the default forecast's and the raw model's): each is told when it loses."""


def losses(methods: Mapping[str, Mapping[str, Any]], model: str = "model") -> list[str]:
    """Whom ``model``'s picks lose to per period: the trailing mean and holding every strategy, as labels."""
    if model not in methods:
        return []
    mean = methods[model]["mean"]
    return [BACKTEST_LABELS[m] for m in ("trailing_mean", "all") if m in methods and mean < methods[m]["mean"]]


def _note(name: str, figures: Mapping[str, Any], methods: Mapping[str, Mapping[str, Any]]) -> str:
    if name in MODELS and (lost := losses(methods, name)):
        return "LOSES to " + " and ".join(lost)
    if band := figures.get("band"):
        return f"5-95%: {band[0]:.3g} to {band[1]:.3g}"
    return ""


def _verdict(table: Mapping[str, Any], label: str) -> str | None:
    verdicts: Sequence[str] = table.get("verdicts", [])
    return next((v for v in verdicts if v.startswith(f"Top {label} (")), None)


def error_line(errors: Mapping[str, Any], cutoffs: int) -> str | None:
    """The model's mean RMSE and horizon-total error over cutoffs, against the zero and trailing-mean forecasts."""
    parts = []
    for metric, name in (("rmse", "RMSE"), ("total_mae", "horizon-total error")):
        figures = errors.get(metric, {})
        model, ratios = figures.get("mean", {}).get("model"), figures.get("model_ratio", {})
        if model is None:
            continue
        against = [f"{ratios[b]:.3g}x the {METHOD_LABELS[b]}'s" for b in ("zero", "trailing_mean") if b in ratios]
        parts.append(f"{name} {model:.4g} ({', '.join(against)})" if against else f"{name} {model:.4g}")
    if not parts:
        return None
    return f"Forecast errors, mean over {cutoffs} cutoffs: the model's " + "; ".join(parts) + "."
