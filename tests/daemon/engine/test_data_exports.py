"""Strategy reports as trading tools export them: delimiter, decimal mark and date order found or given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stratcast.daemon.engine.data.load import load_panel
from stratcast.daemon.engine.data.panel import DataError, Panel
from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from tests.daemon.engine.trading_exports import write_export


def clean_and_export(tmp_path: Path, **shape) -> tuple[Panel, Path]:
    """The same report as clean parquet (loaded) and as an export shaped by ``shape``."""
    frame = make_strategy_panel(6, 30, seed=2)
    frame.to_parquet(tmp_path / "clean.parquet", index=False)
    return load_panel(tmp_path / "clean.parquet"), write_export(frame, tmp_path / "export.csv", **shape)


def assert_same_panel(panel: Panel, clean: Panel) -> None:
    assert panel.ids.tolist() == clean.ids.tolist()
    np.testing.assert_array_equal(panel.times, clean.times)
    np.testing.assert_array_equal(panel.values, clean.values)
    np.testing.assert_array_equal(panel.start, clean.start)


def write_lines(path: Path, *lines: str) -> Path:
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    return path


@pytest.mark.parametrize(
    ("shape", "columns"),
    [
        ({}, {}),  # StrategyQuant: No.;Week;Profit, 31.12.2019, decimal commas
        ({"date_format": "%Y.%m.%d", "names": ("Strategy", "Date", "Profit")}, {"id_col": "Strategy"}),  # MetaTrader
        ({"sep": "\t", "date_format": "%d/%m/%Y"}, {}),
        ({"sep": ",", "decimal": ".", "date_format": "%d/%m/%Y"}, {}),
        ({"sep": ";", "decimal": ".", "date_format": "%d.%m.%y"}, {}),
    ],
    ids=["strategyquant", "metatrader", "tab-separated", "comma-separated-day-first", "two-digit-years"],
)
def test_an_export_loads_like_the_same_report_in_parquet(tmp_path, shape, columns):
    clean, export = clean_and_export(tmp_path, **shape)
    assert_same_panel(load_panel(export, **columns), clean)


def test_thousands_separators_next_to_decimal_commas_are_read(tmp_path):
    path = write_lines(
        tmp_path / "report.csv",
        "No.;Week;Profit",
        "1;04.01.2016;1.234,5",
        "1;11.01.2016;-12,25",
        "2;04.01.2016;0",
        "2;11.01.2016;-2.000.000,75",
    )
    assert load_panel(path).values.tolist() == [[1234.5, -12.25], [0.0, -2000000.75]]


def test_thousands_separators_next_to_decimal_points_are_read(tmp_path):
    path = write_lines(tmp_path / "report.csv", "No.;week;profit", "1;2016-01-04;1,234.5", "1;2016-01-11;-12.25")
    assert load_panel(path).values.tolist() == [[1234.5, -12.25]]


def test_a_date_format_that_is_no_format_is_reported_as_such(tmp_path):
    _, export = clean_and_export(tmp_path)
    with pytest.raises(DataError, match=r"--date-format '%Q' is not a date format"):
        load_panel(export, date_format="%Q")


def test_day_first_dates_are_detected_and_the_assumption_is_noted(tmp_path):
    _, export = clean_and_export(tmp_path)
    (note,) = load_panel(export).notes
    assert "day first" in note and "18.01.2016 -> 2016-01-18" in note and "--date-format" in note


def test_month_first_dates_are_detected_from_a_second_field_past_12(tmp_path):
    clean, export = clean_and_export(tmp_path, sep=",", decimal=".", date_format="%m/%d/%Y")
    panel = load_panel(export)
    assert_same_panel(panel, clean)
    assert "month first" in panel.notes[0]


def test_a_date_format_reads_the_dates_exactly_and_without_a_note(tmp_path):
    clean, export = clean_and_export(tmp_path)
    panel = load_panel(export, date_format="%d.%m.%Y")
    assert_same_panel(panel, clean)
    assert panel.notes == ()


def test_dates_that_do_not_fit_the_date_format_are_rejected_naming_it(tmp_path):
    _, export = clean_and_export(tmp_path)
    with pytest.raises(DataError) as info:
        load_panel(export, date_format="%Y-%m-%d")
    message = str(info.value)
    assert "%Y-%m-%d" in message and "Week=04.01.2016" in message and "--date-format" in message


# Two strategies two weeks each, a month apart: no field goes past 12, so nothing says which comes first.
UNDECIDED = ("No.;Week;Profit", "1;04/01/2016;1", "1;11/01/2016;2", "2;01/02/2016;3", "2;08/02/2016;4")


def test_dayfirst_reads_undecided_dates_day_first(tmp_path):
    panel = load_panel(write_lines(tmp_path / "r.csv", *UNDECIDED), dayfirst=True, fill_missing="zero")
    assert panel.times[0] == np.datetime64("2016-01-04") and panel.times[-1] == np.datetime64("2016-02-08")
    assert panel.notes == ()


def test_a_month_first_misread_off_the_grid_says_the_date_format_may_be_the_cause(tmp_path):
    with pytest.raises(DataError) as info:
        load_panel(write_lines(tmp_path / "r.csv", *UNDECIDED), fill_missing="zero")
    message = str(info.value)
    assert "date format may be the cause" in message
    assert "11/01/2016 -> 2016-11-01" in message and "08/02/2016 -> 2016-08-02" in message
    assert "--date-format" in message and "--dayfirst" in message


def test_undecided_dates_with_dots_are_read_day_first_and_the_note_says_so(tmp_path):
    lines = [line.replace("/", ".") for line in UNDECIDED]
    panel = load_panel(write_lines(tmp_path / "r.csv", *lines), fill_missing="zero")
    assert panel.times[0] == np.datetime64("2016-01-04") and panel.n_times == 6
    (note,) = panel.notes
    assert "day first" in note and "--dayfirst" not in note and "--date-format" in note


def test_a_semicolon_file_with_decimal_points_keeps_them(tmp_path):
    path = write_lines(tmp_path / "r.csv", "No.;week;profit", "1;2016-01-04;1.5", "1;2016-01-11;-2.25")
    assert load_panel(path).values.tolist() == [[1.5, -2.25]]
