import asyncio
import math

import pytest
from rich.style import Style
from textual.app import App, ComposeResult
from textual.geometry import Size

from stratcast.tui.widgets.braille import BRAILLE_BLANK, ChartStyles, HLine, Series, downsample, render_chart, y_range
from stratcast.tui.widgets.chart import BrailleChart, sparkline

STYLES = ChartStyles(marker=Style(color="red"), hline=Style(color="yellow"))


def series(values, x=None, name="s", color="cyan"):
    return Series(name, tuple(values), None if x is None else tuple(x), Style(color=color))


def text(line):
    return "".join(seg.text for seg in line)


def cells(line):
    """(char, style) per cell of a rendered line."""
    return [(char, seg.style) for seg in line for char in seg.text]


def is_braille(char):
    return BRAILLE_BLANK < ord(char) <= BRAILLE_BLANK + 0xFF


def mask(char):
    return ord(char) - BRAILLE_BLANK if is_braille(char) else 0


# -- braille encoding ---------------------------------------------------------------------------------------


def test_a_falling_staircase_maps_to_the_four_dot_rows_of_braille():
    # 4 cells x 1 row = 8 x 4 dots, no legend (height 1) and no axis (too narrow): x 0..7 is dot column 0..7,
    # y 3..0 on a fixed 0..3 range is dot row 0..3; each pair of points fills one dot row of one cell.
    s = series([3, 3, 2, 2, 1, 1, 0, 0])
    (line,) = render_chart([s], Size(4, 1), y_min=0, y_max=3)
    assert text(line) == "⠉⠒⠤⣀"  # dots 1+4, 2+5, 3+6, 7+8


def test_a_steep_line_between_two_points_fills_the_dots_between_them():
    (line,) = render_chart([series([0, 3])], Size(1, 1), y_min=0, y_max=3)
    # dot (0, 3) to dot (1, 0): Bresenham sets one dot per row, (0, 3) (0, 2) (1, 1) (1, 0): dots 7, 3, 5, 4
    assert text(line) == "⡜"


def test_series_take_their_own_colour_and_the_legend_shows_their_last_value():
    train = series([1.0, 2.0, 1.5], name="train", color="cyan")
    val = series([2.0, None], name="val", color="magenta")
    legend, *plot = render_chart([train, val], Size(30, 4), styles=STYLES)
    assert text(legend).startswith("━ train 1.5  ━ val 2  ")
    colours = {style.color.name for line in plot for char, style in cells(line) if is_braille(char)}
    assert colours == {"cyan", "magenta"}


# -- downsampling -------------------------------------------------------------------------------------------


def test_downsampling_keeps_a_one_point_spike_that_a_mean_would_flatten():
    points = [(float(i), 100.0 if i == 537 else 0.0) for i in range(1000)]
    kept = downsample(points, 0.0, 999.0, 10)
    assert len(kept) <= 20
    assert (537.0, 100.0) in kept
    assert [p[0] for p in kept if p] == sorted(p[0] for p in kept if p)


def test_a_spike_among_many_points_still_reaches_the_top_row():
    values = [0.0] * 5000
    values[2345] = 1.0
    _, top, *_ = render_chart([series(values)], Size(40, 6), styles=STYLES)
    assert any(is_braille(c) for c in text(top))


def test_downsampling_leaves_short_series_alone_and_keeps_gaps():
    short = [(0.0, 1.0), None, (2.0, 3.0)]
    assert downsample(short, 0, 2, 10) == short
    long = [(float(i), float(i % 7)) for i in range(50)] + [None] + [(float(i), 1.0) for i in range(50, 100)]
    kept = downsample(long, 0, 99, 5)
    assert kept.count(None) == 1
    before = kept[: kept.index(None)]
    assert all(p is not None and p[0] < 50 for p in before)


# -- gaps, markers, reference lines ---------------------------------------------------------------------------


def test_a_gap_leaves_its_cells_blank_and_the_line_resumes_after_it():
    # 8 cells (too narrow for an axis) = 16 dot columns for x 0..15: points 6..9 missing leave cells 3, 4 empty
    values: list[float | None] = [float(i % 3) for i in range(16)]
    values[6:10] = [None] * 4
    (line,) = render_chart([series(values)], Size(8, 1), y_min=0, y_max=2)
    row = text(line)
    assert row[3:5] == "  "
    assert all(is_braille(c) for c in row[:3] + row[5:])


def test_a_marker_is_a_full_dot_column_in_the_marker_colour_over_every_row():
    s = series([1.0] * 100)
    _, *plot = render_chart([s], Size(30, 6), markers=[50.0, 500.0], styles=STYLES)
    marked = [
        [i for i, (c, style) in enumerate(cells(line)) if style == STYLES.marker and mask(c) & 0x47 == 0x47]
        + [i for i, (c, style) in enumerate(cells(line)) if style == STYLES.marker and mask(c) & 0xB8 == 0xB8]
        for line in plot
    ]
    assert all(len(m) == 1 for m in marked), marked  # x=500 is off the axis: not drawn
    assert len({m[0] for m in marked}) == 1


def test_a_reference_line_shows_its_label_and_widens_an_automatic_range():
    s = series([1.0, 2.0, 1.5, 1.0])
    _, *plot = render_chart([s], Size(40, 8), hlines=[HLine(10.0, "budget")], styles=STYLES)
    rows = [text(line) for line in plot]
    labelled = [r for r, row in enumerate(rows) if "budget" in row]
    assert labelled and labelled[0] <= 1  # 10 is far above the data: near the top of a range that includes it
    line = plot[labelled[0]]
    assert any(style == STYLES.hline and is_braille(c) for c, style in cells(line))


def test_a_reference_line_outside_a_fixed_range_is_not_drawn():
    lines = render_chart([series([1.0, 2.0])], Size(40, 8), y_min=0, y_max=5, hlines=[HLine(10.0, "budget")])
    assert not any("budget" in text(line) for line in lines)


# -- y range and log scale ------------------------------------------------------------------------------------


def test_the_headroom_never_takes_the_axis_of_data_that_are_all_zero_or_more_below_zero():
    # a loss curve falling toward 0 was labelled down to -0.0226
    lo, hi = y_range([0.585, 0.3, 0.005], None, None)
    assert lo == 0.0 and hi > 0.585
    assert y_range([0.0, 10.0], None, None)[0] == 0.0


def test_an_automatic_range_has_headroom_and_a_constant_series_gets_a_band():
    lo, hi = y_range([-2.0, 10.0], None, None)
    assert lo == pytest.approx(-2.6) and hi == pytest.approx(10.6)
    assert y_range([0.0, 10.0], 0.0, 16.0) == (0.0, 16.0)
    lo, hi = y_range([4.0, 4.0], None, None)
    assert lo < 4.0 < hi


def test_a_log_scale_spaces_decades_evenly_and_drops_non_positive_values():
    values = [1.0, 10.0, 100.0, 1000.0, 10000.0, 0.0, -5.0]
    fmt = "{:g}".format
    _, *log = render_chart([series(values)], Size(40, 6), y_min=1, y_max=1e4, log_y=True, formatter=fmt)
    _, *linear = render_chart([series(values)], Size(40, 6), y_min=1, y_max=1e4, formatter=fmt)
    assert text(log[0]).lstrip().startswith("10000┤") and text(log[-1]).lstrip().startswith("1┤")
    assert text(log[2]).lstrip().startswith("100┤")  # the middle of 1..1e4 on a log scale
    assert not text(linear[2]).lstrip().startswith("100┤")
    # 0 and -5 are gaps on the log scale, and keep their place on the x axis: nothing right of x 4 of 0..6
    right = "".join(text(line)[-10:] for line in log)
    assert not any(is_braille(c) for c in right)
    assert any(is_braille(c) for c in text(log[0])[-14:])  # 1e4 at x 4, in the top row


def test_tick_labels_use_the_callers_formatter():
    def gib(v):
        return f"{v / 2**30:.1f}G"

    _, *plot = render_chart([series([0, 2**33])], Size(40, 8), y_min=0, y_max=2**34, formatter=gib)
    assert text(plot[0]).startswith("16.0G┤") and text(plot[-1]).startswith(" 0.0G┤")
    assert "8.0G┤" in text(plot[len(plot) // 2])


# -- sizes and empty data --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(20, 3), (20, 1), (3, 2), (1, 1), (200, 60)])
def test_tiny_and_large_sizes_render_one_line_per_row_with_braille(width, height):
    lines = render_chart([series([math.sin(i / 5) for i in range(300)])], Size(width, height))
    assert len(lines) == height
    assert all(len(text(line)) <= width for line in lines)
    assert any(is_braille(c) for line in lines for c in text(line))


def test_a_zero_size_renders_nothing():
    assert render_chart([series([1.0])], Size(0, 5)) == []
    assert render_chart([series([1.0])], Size(5, 0)) == []


@pytest.mark.parametrize("data", [[], [series([])], [series([None, float("nan")])]])
def test_no_plottable_data_says_so(data):
    lines = render_chart(data, Size(20, 3))
    assert [text(line).strip() for line in lines[1:]] == ["", "no data yet"]


# -- sparkline ------------------------------------------------------------------------------------------------


def test_sparkline_scales_min_to_max_over_the_eight_blocks():
    assert sparkline(range(8), 8) == "▁▂▃▄▅▆▇█"
    assert sparkline([-3.0, 0.5, 4.0], 10) == "▁▅█"


def test_sparkline_gaps_constant_series_and_averaging():
    assert sparkline([1.0, None, float("nan"), 3.0], 4) == "▁  █"
    assert sparkline([5.0, 5.0, 5.0], 3) == "▄▄▄"
    assert sparkline([0, 0, 10, 10], 2) == "▁█"  # two buckets averaged
    assert sparkline([], 5) == "" and sparkline([1.0], 0) == ""
    assert sparkline([None, None], 4) == "  "


# -- the widget ---------------------------------------------------------------------------------------------


class ChartApp(App[None]):
    def compose(self) -> ComposeResult:
        yield BrailleChart(id="chart")


def test_the_widget_renders_braille_and_a_legend_and_caches_its_frame():
    async def scenario():
        app = ChartApp()
        async with app.run_test(size=(80, 24)) as pilot:
            chart = app.query_one(BrailleChart)
            await pilot.pause()
            assert "no data yet" in "".join(chart.render_line(y).text for y in range(chart.size.height))
            chart.set_series("train", [math.sin(i / 10) + 2 for i in range(600)], style="cyan")
            chart.set_series("val", [2.5, 2.0, 1.8], x=[0, 300, 599], style="magenta")
            chart.markers = (450.0,)
            await pilot.pause()
            lines = [chart.render_line(y) for y in range(chart.size.height)]
            assert lines[0].text.startswith("━ train ") and "━ val 1.8" in lines[0].text
            assert sum(is_braille(c) for line in lines for c in line.text) > 50
            assert all(line.cell_length == 80 for line in lines)
            assert chart.render_line(3) is lines[3]  # served from the cache
            chart.set_series("train", [1.0, 2.0])
            assert chart.render_line(3) is not lines[3]
            assert [s.name for s in chart.series] == ["train", "val"]
            assert chart.series[0].style == Style.parse("cyan")  # replacing kept the style
            await pilot.resize_terminal(40, 12)
            await pilot.pause()
            assert chart.render_line(0).cell_length == 40

    asyncio.run(scenario())


def test_set_series_rejects_x_of_another_length():
    chart = BrailleChart()
    with pytest.raises(ValueError, match="2 x positions for 3 values"):
        chart.set_series("s", [1.0, 2.0, 3.0], x=[0, 1])
