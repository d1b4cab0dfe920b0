"""A braille line-chart widget, cheap enough to redraw three charts at 10 Hz on two cores, and block sparklines.

``BrailleChart`` renders its frame with ``braille.render_chart`` once into ``Strip``s and serves ``render_line``
from that cache until the data, the options or the size change. ``sparkline`` is for small forecasts in tables.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.style import Style
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from stratcast.tui.widgets.braille import ChartStyles, Formatter, HLine, Series, compact, render_chart

__all__ = ["BARS", "PALETTE", "BrailleChart", "HLine", "Series", "sparkline"]

BARS = "▁▂▃▄▅▆▇█"
"""The eight block characters of ``sparkline``, lowest first."""
PALETTE = ("cyan", "magenta", "green", "yellow", "bright_blue", "bright_red")
"""Series colours, in order, for series set without a style."""


def sparkline(values: Iterable[float | None], width: int, span: tuple[float, float] | None = None) -> str:
    """Values as at most ``width`` block characters, scaled from their min (▁) to their max (█).

    More values than ``width`` are averaged in ``width`` equal buckets (a forecast's level matters here, not its
    spikes); fewer give one character each, unstretched. None, NaN and infinities are spaces; a constant series is
    a flat line at mid height. ``span`` (low, high) scales several sparklines alike (a forecast and its band).
    """
    data = [v if v is not None and math.isfinite(v) else None for v in values]
    n = len(data)
    if width <= 0 or n == 0:
        return ""
    if n > width:
        buckets = (data[i * n // width : (i + 1) * n // width] for i in range(width))
        data = [_mean(bucket) for bucket in buckets]
    finite = [v for v in data if v is not None]
    if not finite:
        return " " * len(data)
    lo, hi = span if span is not None else (min(finite), max(finite))
    if hi <= lo:
        return "".join(" " if v is None else BARS[3] for v in data)
    scale = (len(BARS) - 1) / (hi - lo)
    last = len(BARS) - 1
    return "".join(" " if v is None else BARS[min(max(round((v - lo) * scale), 0), last)] for v in data)


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return sum(finite) / len(finite) if finite else None


class BrailleChart(Widget):
    """A line chart of named series in braille dots, with markers, reference lines, a y axis and a legend.

    Set data with ``set_series``; ``markers``, ``hlines``, ``y_min``, ``y_max`` and ``log_y`` are reactives. The
    frame is rendered on the first ``render_line`` after a change and served from a cache until the next one.
    """

    DEFAULT_CSS = """
    BrailleChart {
        width: 1fr;
        height: 8;
    }
    BrailleChart > .braille-chart--axis {
        color: $text-muted;
    }
    BrailleChart > .braille-chart--empty {
        color: $text-muted;
        text-style: italic;
    }
    BrailleChart > .braille-chart--marker {
        color: $error;
    }
    BrailleChart > .braille-chart--hline {
        color: $warning;
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "braille-chart--axis",
        "braille-chart--empty",
        "braille-chart--marker",
        "braille-chart--hline",
    }

    y_min: reactive[float | None] = reactive(None)
    """Fixed bottom of the y range (e.g. 0 for memory); None for the data's minimum less some headroom."""
    y_max: reactive[float | None] = reactive(None)
    """Fixed top of the y range (e.g. the device's total memory); None for the data's maximum plus headroom."""
    log_y: reactive[bool] = reactive(False)
    """Log10 y scale (for losses); values <= 0 become gaps."""
    markers: reactive[tuple[float, ...]] = reactive(())
    """x positions of vertical marks over the whole height (e.g. OOM events), drawn over the series."""
    hlines: reactive[tuple[HLine, ...]] = reactive(())
    """Horizontal reference lines (e.g. a memory budget); they count in an automatic y range."""

    def __init__(
        self,
        *,
        formatter: Formatter = compact,
        y_min: float | None = None,
        y_max: float | None = None,
        log_y: bool = False,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """A chart with no series yet (it shows "no data yet").

        Args:
            formatter: Formats y values for the tick labels and the legend.
            y_min: Initial ``y_min``.
            y_max: Initial ``y_max``.
            log_y: Initial ``log_y``.
            name: The widget's name.
            id: The widget's DOM id.
            classes: The widget's CSS classes.
        """
        super().__init__(name=name, id=id, classes=classes)
        self.formatter = formatter
        self.set_reactive(BrailleChart.y_min, y_min)
        self.set_reactive(BrailleChart.y_max, y_max)
        self.set_reactive(BrailleChart.log_y, log_y)
        self._series: dict[str, Series] = {}
        self._version = 0
        self._cache_key: tuple[object, ...] | None = None
        self._strips: list[Strip] = []

    @property
    def series(self) -> tuple[Series, ...]:
        """The series, in the order they were first set."""
        return tuple(self._series.values())

    def set_series(
        self,
        name: str,
        values: Sequence[float | None],
        *,
        x: Sequence[float] | None = None,
        style: str | Style | None = None,
    ) -> None:
        """Add or replace the series ``name``.

        Args:
            name: Legend name; a new name adds a series after the others, a known one replaces it in place.
            values: y values; None (or NaN) is a gap in the line.
            x: Ascending x positions, one per value (e.g. step numbers), so series sampled at different steps share
                one x axis; None for 0, 1, 2, ...
            style: Rich style of the line (e.g. ``"green"``); None keeps the series' style or takes the next
                palette colour.

        Raises:
            ValueError: ``x`` and ``values`` differ in length.
        """
        if x is not None and len(x) != len(values):
            raise ValueError(f"series {name!r}: {len(x)} x positions for {len(values)} values")
        old = self._series.get(name)
        if style is None:
            parsed = old.style if old else Style.parse(PALETTE[len(self._series) % len(PALETTE)])
        else:
            parsed = style if isinstance(style, Style) else Style.parse(style)
        self._series[name] = Series(name, tuple(values), None if x is None else tuple(x), parsed)
        self._changed()

    def remove_series(self, name: str) -> None:
        """Remove the series ``name`` (nothing if there is none)."""
        if self._series.pop(name, None) is not None:
            self._changed()

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the chart, from the cache (rendered again first if anything changed)."""
        key = (self.size, self._version, self.y_min, self.y_max, self.log_y, self.markers, self.hlines)
        if key != self._cache_key:
            self._strips = self._render_strips()
            self._cache_key = key
        return self._strips[y] if 0 <= y < len(self._strips) else Strip.blank(self.size.width, self.rich_style)

    def notify_style_update(self) -> None:
        """Drop the cached frame: colours come from CSS (and the theme)."""
        super().notify_style_update()
        self._cache_key = None

    def _changed(self) -> None:
        self._version += 1
        self.refresh()

    def _render_strips(self) -> list[Strip]:
        base = self.rich_style
        component = self.get_component_rich_style
        styles = ChartStyles(
            base=base,
            axis=component("braille-chart--axis"),
            empty=component("braille-chart--empty"),
            marker=component("braille-chart--marker"),
            hline=component("braille-chart--hline"),
        )
        lines = render_chart(
            self.series,
            self.size,
            y_min=self.y_min,
            y_max=self.y_max,
            log_y=self.log_y,
            markers=self.markers,
            hlines=self.hlines,
            formatter=self.formatter,
            styles=styles,
        )
        width = self.size.width
        return [Strip(segments).adjust_cell_length(width, base) for segments in lines]
