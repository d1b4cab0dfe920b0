"""Braille line charts as pure functions: series in, one list of Rich segments per terminal line out.

A terminal cell holds a 2x4 grid of dots, and a braille character (U+2800 plus an 8-bit dot mask) shows any subset
of them, so a 100x10-cell plot is a 200x40-dot canvas (nvitop draws its history this way). Each series is
downsampled to two points per cell column, mapped to dots and joined with Bresenham lines.

Layout, top to bottom: a one-line legend (from height 3), then the plot, with a left column of 2-3 y tick labels
when the width allows. Where layers overlap in a cell their dots merge and the cell takes the colour of the layer
drawn last: reference lines, then the series in order, then markers. ``chart.BrailleChart`` wraps this in a widget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size

BRAILLE_BLANK = 0x2800
"""Code point of the empty braille cell; a cell's character is ``chr(BRAILLE_BLANK | mask)``."""
_DOT_BIT = (0x01, 0x08, 0x02, 0x10, 0x04, 0x20, 0x40, 0x80)
"""Mask bit of the dot at row ``dy`` (0 at the top) and column ``dx`` of a cell: ``_DOT_BIT[dy * 2 + dx]``."""
HEADROOM = 0.05
"""Share of the data's span left free above and below an automatic y range."""

Point = tuple[float, float] | None
"""An (x, y) point of a series, or None for a gap (the line breaks there)."""
Formatter = Callable[[float], str]
"""Formats a y value for tick labels and the legend, e.g. bytes -> ``"12.3G"``."""


def compact(value: float) -> str:
    """A y value in at most about 5 characters, with k/M/G/T suffixes: ``12345 -> "12.3k"``."""
    size = abs(value)
    for suffix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if size >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def downsample(points: Sequence[Point], x_lo: float, x_hi: float, columns: int) -> list[Point]:
    """Reduce a series to the min and max of each of ``columns`` equal x buckets, if it has over 2 per bucket.

    The kept points stay in their order; gaps (None) are kept as breaks.

    Min/max rather than the mean: what one looks for in a loss or memory history is the spike (a loss blow-up, a
    memory peak before an OOM), and a mean of 5 points per column flattens a one-point spike to a fifth of its
    height, while the min/max envelope draws it at full height and still traces the same line where the series is
    smooth. Two points per column is one per dot column, the finest the canvas can show.
    """
    if len(points) <= 2 * columns:
        return list(points)
    scale = columns / (x_hi - x_lo) if x_hi > x_lo else 0.0
    out: list[Point] = []
    bucket: list[tuple[float, float]] = []
    column = -1
    for p in points:
        if p is None:
            _flush(bucket, out)
            out.append(None)
            column = -1
            continue
        c = min(int((p[0] - x_lo) * scale), columns - 1)
        if c != column:
            _flush(bucket, out)
            column = c
        bucket.append(p)
    _flush(bucket, out)
    return out


def _flush(bucket: list[tuple[float, float]], out: list[Point]) -> None:
    """Append a bucket's min and max points to ``out`` in x order (one point if they are the same), and empty it."""
    if not bucket:
        return
    lo = min(range(len(bucket)), key=lambda i: bucket[i][1])
    hi = max(range(len(bucket)), key=lambda i: bucket[i][1])
    out.extend(bucket[i] for i in sorted({lo, hi}))
    bucket.clear()


@dataclass(frozen=True, slots=True)
class HLine:
    """A horizontal reference line, e.g. the memory planner's budget; drawn dotted, with its label at the left."""

    y: float
    """Height of the line, in data units."""
    label: str = ""
    """Text written over the line's left end."""
    style: str = ""
    """Rich style of the line and its label; empty for the widget's ``braille-chart--hline`` style."""


@dataclass(frozen=True, slots=True)
class Series:
    """One named line of a chart: y values (None is a gap), optional x positions, and a Rich style."""

    name: str
    values: tuple[float | None, ...]
    x: tuple[float, ...] | None
    style: Style

    def points(self, log_y: bool) -> list[Point]:
        """The series as (x, y) points, y in log10 when ``log_y``.

        Missing and non-finite values (and, on a log scale, values <= 0) are gaps.
        """
        xs: Iterable[float] = range(len(self.values)) if self.x is None else self.x
        out: list[Point] = []
        for x, y in zip(xs, self.values, strict=True):
            if y is None or not math.isfinite(y) or (log_y and y <= 0):
                out.append(None)
            else:
                out.append((x, math.log10(y) if log_y else y))
        return out

    def x_span(self) -> tuple[float, float]:
        """The first and last x, gaps included: a trailing gap keeps its place on the axis."""
        return (0, len(self.values) - 1) if self.x is None else (min(self.x), max(self.x))

    def last(self) -> float | None:
        """The last finite value, for the legend."""
        return next((v for v in reversed(self.values) if v is not None and math.isfinite(v)), None)


_PLAIN, _DIM, _DIM_ITALIC = Style(), Style(dim=True), Style(dim=True, italic=True)
_RED, _YELLOW = Style(color="red"), Style(color="yellow")


@dataclass(frozen=True, slots=True)
class ChartStyles:
    """Rich styles of the parts of a chart that are not series (the widget takes them from its CSS)."""

    base: Style = _PLAIN
    axis: Style = _DIM
    empty: Style = _DIM_ITALIC
    marker: Style = _RED
    hline: Style = _YELLOW


class _Canvas:
    """Cells of braille dots; each cell remembers the style of the last layer that drew a dot in it."""

    __slots__ = ("bits", "cols", "owner", "rows", "text")

    def __init__(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self.bits = [0] * (cols * rows)
        self.owner: list[Style | None] = [None] * (cols * rows)
        self.text: dict[int, str] = {}

    def line(self, x0: int, y0: int, x1: int, y1: int, style: Style) -> None:
        """Set the dots of a Bresenham line from dot (x0, y0) to dot (x1, y1), both ends included."""
        bits, owner, cols = self.bits, self.owner, self.cols
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            i = (y0 >> 2) * cols + (x0 >> 1)
            bits[i] |= _DOT_BIT[(y0 & 3) << 1 | (x0 & 1)]
            owner[i] = style
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def write(self, row: int, col: int, text: str, style: Style) -> None:
        """Write text over cells, from (row, col), cut at the right edge."""
        for k, char in enumerate(text[: max(0, self.cols - col)]):
            i = row * self.cols + col + k
            self.text[i] = char
            self.owner[i] = style

    def row(self, r: int, base: Style) -> list[Segment]:
        """Row ``r`` as segments, one per run of cells of the same style; empty cells are spaces in ``base``."""
        segments: list[Segment] = []
        chars: list[str] = []
        current: Style | None = None
        start = r * self.cols
        for i in range(start, start + self.cols):
            style = self.owner[i]
            if style is not current:
                if chars:
                    segments.append(Segment("".join(chars), current or base))
                chars, current = [], style
            bits = self.bits[i]
            chars.append(self.text.get(i) or (chr(BRAILLE_BLANK | bits) if bits else " "))
        if chars:
            segments.append(Segment("".join(chars), current or base))
        return segments


@dataclass(frozen=True, slots=True)
class _YScale:
    """The y range in plot units (log10 when ``log``) and its mapping onto ``dots`` dot rows, top row 0."""

    lo: float
    hi: float
    log: bool
    dots: int

    def dot(self, y: float) -> int:
        """Dot row of a y in plot units, clamped to the canvas."""
        d = int((self.hi - y) * (self.dots - 1) / (self.hi - self.lo) + 0.5)
        return 0 if d < 0 else self.dots - 1 if d >= self.dots else d

    def value(self, dot: float) -> float:
        """The data value (not in log units) at a dot row."""
        # weights rather than hi - dot * step, so the bottom row is lo itself (0, not -5.55e-17)
        t = dot / max(1, self.dots - 1)
        y = self.hi * (1 - t) + self.lo * t
        return 10**y if self.log else y


def y_range(
    values: Iterable[float], y_min: float | None, y_max: float | None, log_y: bool = False
) -> tuple[float, float]:
    """The plotted y range, in plot units (log10 when ``log_y``).

    Fixed ends are as given, automatic ones at the data's min/max with ``HEADROOM``, which never takes the axis of
    data that are all >= 0 (losses, memory) below 0. The range is never empty: a constant series gets a band around it.
    """
    data = list(values)
    fixed_lo = None if y_min is None or (log_y and y_min <= 0) else (math.log10(y_min) if log_y else y_min)
    fixed_hi = None if y_max is None or (log_y and y_max <= 0) else (math.log10(y_max) if log_y else y_max)
    lo = min(data, default=0.0) if fixed_lo is None else fixed_lo
    hi = max(data, default=1.0) if fixed_hi is None else fixed_hi
    pad = (hi - lo) * HEADROOM if hi > lo else (abs(hi) * 0.1 or 1.0)
    if fixed_lo is None:
        lo = max(lo - pad, 0.0) if not log_y and lo >= 0 else lo - pad
    hi = hi + pad if fixed_hi is None else hi
    if hi <= lo:  # a fixed end on the far side of all the data
        hi = lo + (abs(lo) * 0.1 or 1.0)
    return lo, hi


def render_chart(
    series: Sequence[Series],
    size: Size,
    *,
    y_min: float | None = None,
    y_max: float | None = None,
    log_y: bool = False,
    markers: Sequence[float] = (),
    hlines: Sequence[HLine] = (),
    formatter: Formatter = compact,
    styles: ChartStyles | None = None,
) -> list[list[Segment]]:
    """A chart of ``size`` cells as one list of segments per line (see the module docstring for the layout)."""
    styles = styles or ChartStyles()
    width, height = size
    if width <= 0 or height <= 0:
        return []
    lines: list[list[Segment]] = []
    if height >= 3:
        lines.append(_legend(series, formatter, styles.base))
    rows = height - len(lines)
    runs = [(s, s.points(log_y)) for s in series]
    ys = [p[1] for _, points in runs for p in points if p is not None]
    if not ys:
        message = "no data yet"[:width].center(width)
        blank = Segment(" " * width, styles.base)
        lines += [[Segment(message, styles.empty) if r == rows // 2 else blank] for r in range(rows)]
        return lines
    levels = [math.log10(h.y) if log_y else h.y for h in hlines if h.y > 0 or not log_y]
    lo, hi = y_range([*ys, *levels], y_min, y_max, log_y)
    scale = _YScale(lo, hi, log_y, rows * 4)
    axis = _axis(scale, rows, width, formatter)
    cols = width - (len(axis[0]) if axis else 0)
    canvas = _Canvas(cols, rows)
    _draw_hlines(canvas, scale, hlines, log_y, styles)
    spans = [s.x_span() for s in series if s.values]
    x_lo, x_hi = min(first for first, _ in spans), max(last for _, last in spans)
    if x_hi == x_lo:  # one x: centre it
        x_lo, x_hi = x_lo - 1, x_hi + 1
    for s, points in runs:
        _draw_series(canvas, downsample(points, x_lo, x_hi, cols), x_lo, x_hi, scale, styles.base + s.style)
    for x in markers:
        if x_lo <= x <= x_hi:
            dx = _dot_x(x, x_lo, x_hi, cols)
            canvas.line(dx, 0, dx, rows * 4 - 1, styles.marker)
    for r in range(rows):
        left = [Segment(axis[r], styles.axis)] if axis else []
        lines.append(left + canvas.row(r, styles.base))
    return lines


def _dot_x(x: float, x_lo: float, x_hi: float, cols: int) -> int:
    return int((x - x_lo) * (cols * 2 - 1) / (x_hi - x_lo) + 0.5)


def _draw_series(
    canvas: _Canvas, points: Iterable[Point], x_lo: float, x_hi: float, scale: _YScale, style: Style
) -> None:
    kx = (canvas.cols * 2 - 1) / (x_hi - x_lo)
    prev: tuple[int, int] | None = None
    for p in points:
        if p is None:
            prev = None
            continue
        dot = int((p[0] - x_lo) * kx + 0.5), scale.dot(p[1])
        start = prev or dot  # a point alone between gaps is one dot
        canvas.line(start[0], start[1], dot[0], dot[1], style)
        prev = dot


def _draw_hlines(canvas: _Canvas, scale: _YScale, hlines: Sequence[HLine], log_y: bool, styles: ChartStyles) -> None:
    """Each line dotted (one dot per cell, so it never reads as a series), its label over its left end."""
    for h in hlines:
        if log_y and h.y <= 0:
            continue
        y = math.log10(h.y) if log_y else h.y
        if not scale.lo <= y <= scale.hi:
            continue
        style = styles.base + Style.parse(h.style) if h.style else styles.hline
        dy = scale.dot(y)
        for c in range(canvas.cols):
            canvas.line(2 * c, dy, 2 * c, dy, style)
        if h.label:
            canvas.write(dy >> 2, 0, h.label, style)


def _axis(scale: _YScale, rows: int, width: int, formatter: Formatter) -> list[str] | None:
    """Left-axis text per row, with tick labels at the top, bottom and (from 5 rows) middle rows.

    None where the plot would keep fewer than 8 columns beside it.
    """
    ticks = {0: scale.value(0)}
    if rows >= 2:
        ticks[rows - 1] = scale.value(scale.dots - 1)
    if rows >= 5:
        ticks[rows // 2] = scale.value(rows // 2 * 4 + 1.5)
    labels = {r: formatter(v) for r, v in ticks.items()}
    label_width = max(map(len, labels.values()))
    if width - label_width - 1 < 8:
        return None
    return [labels[r].rjust(label_width) + "┤" if r in labels else " " * label_width + "│" for r in range(rows)]


def _legend(series: Sequence[Series], formatter: Formatter, base: Style) -> list[Segment]:
    """``━ name last-value`` per series, in the series' colours."""
    segments: list[Segment] = []
    for s in series:
        last = s.last()
        segments.append(Segment(f"━ {s.name}", base + s.style))
        segments.append(Segment(f" {'-' if last is None else formatter(last)}  ", base))
    return segments
