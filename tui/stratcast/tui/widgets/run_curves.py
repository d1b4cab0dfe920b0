"""The run screen's curves: the loss chart (train and validation loss by step) and the memory chart.

The memory chart draws allocated, reserved and peak GiB over time, every OOM as a vertical marker and the memory
planner's budget as a dotted line. Each chart's bottom border says what its x axis spans.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.app import ComposeResult
from textual.containers import Container

from stratcast.shared.report import duration_text
from stratcast.tui.render import clock
from stratcast.tui.run_history import GIB, RunHistory, loss_curves, memory_curves, number, oom_times
from stratcast.tui.widgets.chart import BrailleChart, HLine

LOSS_STYLES = {"train": "cyan", "val": "magenta"}
MEMORY_STYLES = {"allocated": "green", "reserved": "bright_blue", "peak": "yellow", "rss": "green"}


def gib_label(value: float) -> str:
    """A GiB figure for tick labels and the legend: ``41.2G``, under 1 GiB in MiB (``358M``), never below ``0G``."""
    mib = value * 1024
    if mib >= 999.5:  # 1000M and up would print as 1e+03M
        return f"{value:.3g}G"
    return f"{mib:.3g}M" if mib >= 0.5 else "0G"


class LossChart(BrailleChart):
    """Train and validation loss by step; ``log_y`` toggles a log scale."""

    def show(self, history: RunHistory, progress: Mapping[str, Any]) -> None:
        """Draw ``history``'s losses; ``progress`` (the run's latest report) gives the planned number of steps."""
        curves = loss_curves(history.progress)
        for name, curve in curves.items():
            self.set_series(name, curve.y, x=curve.x, style=LOSS_STYLES[name])
        self.border_subtitle = _step_span(curves["train"].x, number(progress.get("max_steps")))


def _step_span(steps: list[float], max_steps: float | None) -> str:
    """``steps 0-420 of 1000`` (or nothing before the first report)."""
    if not steps:
        return ""
    of = f" of {max_steps:.0f}" if max_steps else ""
    return f"steps {steps[0]:.0f}-{steps[-1]:.0f}{of}"


class MemoryChart(BrailleChart):
    """Allocator memory over time in GiB (from 0), OOMs marked, the planner's budget drawn."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(formatter=gib_label, y_min=0, id=id)

    def show(self, history: RunHistory) -> None:
        """Draw ``history``'s allocator samples, OOMs and latest plan."""
        curves = memory_curves(history.memory)
        for name in list(s.name for s in self.series):
            if name not in curves:  # the run turned out to be on the CPU (rss), or the other way round
                self.remove_series(name)
        for name, curve in curves.items():
            self.set_series(name, curve.y, x=curve.x, style=MEMORY_STYLES[name])
        self.markers = oom_times(history.ooms)
        plan = history.plan
        budget = plan.budget if plan is not None else None
        self.hlines = (HLine(budget / GIB, "budget"),) if budget else ()
        self.border_subtitle = _time_span(next(iter(curves.values())).x if curves else [], history.oom_count)


def _time_span(times: list[float], ooms: int) -> str:
    """``12:01:05-12:13:20 (12m 15s) · 2 OOMs`` (the OOM count in the markers' red)."""
    if not times:
        return ""
    span = f"{clock(times[0])}-{clock(times[-1])} ({duration_text(times[-1] - times[0])})"
    if ooms:
        span += f" · [red]{ooms} OOM{'s' if ooms > 1 else ''}[/]"
    return span


class Curves(Container):
    """The two charts: one above the other, or side by side on a wide terminal (the screen's ``-wide`` class)."""

    def compose(self) -> ComposeResult:
        loss = LossChart(id="loss")
        loss.border_title = "loss (l: log scale)"
        memory = MemoryChart(id="memory")
        memory.border_title = "memory GiB"
        yield loss
        yield memory

    def show(self, history: RunHistory, progress: Mapping[str, Any]) -> None:
        """Draw both charts from ``history``."""
        self.query_one(LossChart).show(history, progress)
        self.query_one(MemoryChart).show(history)
