"""The run screen's results tab: the verdict, the skill table against the baselines, the top strategies.

The tables are the CLI's (:mod:`stratcast.shared.report`); the top strategies get a sparkline of their forecast,
between those of its band's bounds when the run has one, and the skill box the intervals' coverage. The band is the
model's own quantile band (its lowest and highest quantile, ``q10``-``q90``) when it forecast a distribution, else
the 80% conformal interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from stratcast.shared.report import (
    bet_line,
    duration_text,
    intervals_lines,
    quantiles_lines,
    skill_table,
    table,
    trailing_window,
)
from stratcast.tui.run_history import number
from stratcast.tui.widgets.chart import BARS, sparkline

SPARK_WIDTH = 16
"""Characters per forecast sparkline."""


def summary_text(metrics: Mapping[str, Any]) -> Text:
    """The verdict and the training summary of ``metrics.json``."""
    text = Text()
    for sentence in verdict_lines(metrics.get("verdict")):
        text.append(f"{sentence}\n", style="bold")
    run: Mapping[str, Any] = metrics.get("run") or {}
    parts = []
    if (steps := run.get("steps")) is not None:
        parts.append(f"{steps} steps")
    if (best := number(run.get("best_val_loss"))) is not None:
        parts.append(f"best val loss {best:.4g} at step {run.get('best_step', '?')}")
    if (seconds := number(run.get("train_seconds"))) is not None:
        segments = len(run.get("train_segment_seconds") or [])  # absent in runs written before segments were kept
        parts.append(f"trained {duration_text(seconds)}" + (f" over {segments} segments" if segments > 1 else ""))
    if run.get("stopped_early"):
        parts.append("stopped early")
    if run.get("device"):
        parts.append(f"on {run['device']}")
    text.append(" · ".join(parts))
    holdout: Mapping[str, Any] = metrics.get("holdout") or {}
    if holdout:
        text.append(f"\nholdout: {holdout.get('periods', '?')} periods of {holdout.get('strategies', '?')} strategies")
    return text


def verdict_lines(verdict: Any) -> list[str]:
    """The verdict's sentences: ``metrics.json`` holds a list of them (a single string in older runs)."""
    sentences = [verdict] if isinstance(verdict, str) else verdict if isinstance(verdict, list) else []
    return [s for s in sentences if isinstance(s, str) and s]


def skill_text(metrics: Mapping[str, Any]) -> Text:
    """The skill table (model and baselines on the holdout), or why there is none, then the bands' coverage.

    The bands are the conformal intervals and the model's quantiles (:func:`~stratcast.shared.report.quantiles_lines`).
    """
    try:
        text = Text(skill_table(metrics))
    except (KeyError, TypeError):
        text = Text("metrics.json has no skill table (the run had no holdout)", style="dim")
    if coverage := [*intervals_lines(metrics), *quantiles_lines(metrics)]:
        text.append("\n" + "\n".join(coverage))
    return text


def row_band(row: Mapping[str, Any]) -> tuple[list[Any], list[Any], str, str] | None:
    """A row's band as (lower bounds, upper bounds, lower name, upper name), or None when it has none.

    The model's quantile band (``q10``, ``q90``) comes first: it is the model's own distribution; else the
    conformal interval (``lo80``, ``hi80``).
    """
    quantiles: Mapping[str, Any] = row.get("quantile_band") or {}
    if quantiles and len(names := quantiles.get("columns") or []) == 2:
        return list(quantiles.get("lo") or []), list(quantiles.get("hi") or []), str(names[0]), str(names[1])
    band: Mapping[str, Any] = row.get("band") or {}
    if band and (level := band.get("level")) is not None:
        return list(band.get("lo") or []), list(band.get("hi") or []), f"lo{level:g}", f"hi{level:g}"
    return None


def forecast_cell(row: Mapping[str, Any], width: int) -> str:
    """The forecast's sparkline; with a band, ``lo│forecast│hi``, the three on one scale (the band's range)."""
    forecast = row.get("forecast") or []
    lo, hi, _, _ = row_band(row) or ([], [], "", "")
    finite = [v for v in (*lo, *hi) if isinstance(v, int | float) and math.isfinite(v)]
    if not finite:
        return sparkline(forecast, width)
    span = (min(finite), max(finite))
    part = max(width // 3, 1)
    return "│".join(sparkline(values, part, span) for values in (lo, forecast, hi))


def forecast_heading(rows: Sequence[Mapping[str, Any]]) -> str:
    """``forecast``, or ``q10│forecast│q90`` (``lo80│forecast│hi80``) when a row has its band."""
    band = next((b for r in rows if (b := row_band(r)) is not None), None)
    return "forecast" if band is None else f"{band[2]}│forecast│{band[3]}"


def top_text(rows: Sequence[Mapping[str, Any]], width: int = SPARK_WIDTH, window: int | None = None) -> Text:
    """The best strategies by forecast, each with a sparkline of its forecast over the horizon (and its band).

    A line under them says the bet they make when most lost money over their trailing ``window``
    (:func:`~stratcast.shared.report.bet_line`).
    """
    if not rows:
        return Text("no strategies", style="dim")
    body = [
        [
            r.get("rank", "?"),
            r.get("strategy", "?"),
            r.get("forecast_mean", "-"),
            r.get("forecast_sum", "-"),
            r.get("trailing_mean", "-"),
            forecast_cell(r, width),
        ]
        for r in rows
    ]
    headers = ["rank", "strategy", "avg profit", "horizon total", "trailing mean", forecast_heading(rows)]
    text = Text(table(headers, body))
    text.highlight_regex(f"[{BARS}]+", "cyan")
    if line := bet_line(rows, window):
        text.append(f"\n{line}", style="bold")
    return text


class Results(VerticalScroll):
    """The results of a succeeded run, or what stands in for them (not finished, reading, the daemon's error)."""

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        for id_, title in (("skill", "skill against the baselines"), ("top", "top strategies")):
            box = Static(id=id_, classes="box")
            box.border_title = title
            yield box

    def say(self, message: str, style: str = "dim") -> None:
        """Show ``message`` instead of results."""
        self.query_one("#summary", Static).update(Text(message, style=style))
        for box in ("#skill", "#top"):
            self.query_one(box).display = False

    def show(self, result: Mapping[str, Any]) -> None:
        """Show a ``read_results`` result."""
        metrics: Mapping[str, Any] = result.get("metrics") or {}
        self.query_one("#summary", Static).update(summary_text(metrics))
        self.query_one("#skill", Static).update(skill_text(metrics))
        top = self.query_one("#top", Static)
        top.update(top_text(result.get("top") or [], window=trailing_window(metrics)))
        top.border_title = f"top strategies (forecast over {result.get('horizon', '?')} periods)"
        for box in ("#skill", "#top"):
            self.query_one(box).display = True
