"""The run screen's backtest tab: each method's cumulative realized profit in braille, the table and the verdict.

The data is ``backtest.json``'s content, as the daemon's ``read_results`` reply carries it for a backtest run. The
chart shows one pick size at a time (``p`` shows the next): the model, the raw model, the trailing mean, the last
value, the random picks' mean with the 5-95% band of a single random picker (dim lines ``5%`` and ``95%``), all
strategies, and the best possible pick. The table under it is the CLI's
(:func:`~stratcast.shared.backtest_report.backtest_text`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from stratcast.shared.backtest_report import backtest_text, losses
from stratcast.tui.widgets.chart import BrailleChart

CHART_LABELS = {
    "model": ("model", "bold cyan"),
    "model_raw": ("raw", "cyan"),
    "trailing_mean": ("trailing", "magenta"),
    "last_value": ("last", "yellow"),
    "random": ("random", "white"),
    "all": ("all", "green"),
    "best": ("best", "bright_blue"),
}
"""Each method's short legend name and line style; the random picker's band takes the random line's, dimmed."""
BAND_STYLE = "dim white"


def curves(size: Mapping[str, Any]) -> dict[str, tuple[list[float | None], str]]:
    """The chart's series of one pick size: legend name -> (cumulative profit per cutoff, style)."""
    out: dict[str, tuple[list[float | None], str]] = {}
    for method, figures in size["methods"].items():
        label, style = CHART_LABELS.get(method, (method, "white"))
        out[label] = (list(figures["curve"]), style)
        if band := figures.get("curve_band"):
            out["5%"], out["95%"] = (list(band[0]), BAND_STYLE), (list(band[1]), BAND_STYLE)
    return out


def verdict_text(table: Mapping[str, Any], label: str) -> Text:
    """One pick size's verdict sentence in bold, and a red LOSES line when the model's picks lose."""
    size = table["sizes"][label]
    text = Text()
    for sentence in table.get("verdicts", []):
        if sentence.startswith(f"Top {label} ("):
            text.append(sentence, style="bold")
    for model, who in (("model", "The model's"), ("model_raw", "The raw model's")):
        if lost := losses(size["methods"], model):
            text.append(f"\n{who} top {label} LOSES to {' and '.join(lost)} per period.", style="bold red")
    return text


class BacktestView(VerticalScroll):
    """A backtest's chart, verdict and table, or what stands in for them (not finished, reading, an error)."""

    BINDINGS = [Binding("p", "next_size", "Pick size")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.table: Mapping[str, Any] = {}
        """The ``backtest.json`` content shown (empty before one arrives)."""
        self.pick = ""
        """The pick size the chart shows."""

    def compose(self) -> ComposeResult:
        yield Static(id="backtest-verdict")
        chart = BrailleChart(id="backtest-chart")
        chart.border_title = "cumulative realized profit of each method's picks"
        yield chart
        box = Static(id="backtest-table", classes="box")
        box.border_title = "methods per pick size"
        yield box

    def say(self, message: str, style: str = "dim") -> None:
        """Show ``message`` instead of a backtest."""
        self.query_one("#backtest-verdict", Static).update(Text(message, style=style))
        for widget in ("#backtest-chart", "#backtest-table"):
            self.query_one(widget).display = False

    def show(self, table: Mapping[str, Any]) -> None:
        """Show ``backtest.json``'s content: the first pick size's chart and verdict, the whole table."""
        self.table = table
        self.query_one("#backtest-table", Static).update(Text(backtest_text(table)))
        for widget in ("#backtest-chart", "#backtest-table"):
            self.query_one(widget).display = True
        self.show_size(self.pick if self.pick in table["sizes"] else next(iter(table["sizes"])))

    def show_size(self, label: str) -> None:
        """Draw pick size ``label``'s curves and verdict."""
        self.pick = label
        size = self.table["sizes"][label]
        chart = self.query_one("#backtest-chart", BrailleChart)
        for series in chart.series:
            chart.remove_series(series.name)
        for name, (values, style) in curves(size).items():
            chart.set_series(name, values, style=style)
        dates = self.table.get("dates") or []
        span = f"{dates[0]} to {dates[-1]}, " if dates else ""
        chart.border_subtitle = f"top {label} ({size['k']} strategies) · {span}{len(dates)} cutoffs · p: next size"
        self.query_one("#backtest-verdict", Static).update(verdict_text(self.table, label))

    def action_next_size(self) -> None:
        """Chart the next pick size (after the last, the first again)."""
        if not self.table:
            return
        labels = list(self.table["sizes"])
        self.show_size(labels[(labels.index(self.pick) + 1) % len(labels)])
