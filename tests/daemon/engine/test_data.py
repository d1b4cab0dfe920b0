from __future__ import annotations

import gzip
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stratcast.daemon.engine.data._panel_build as panel_build
from stratcast.daemon.engine.data.load import drop_short, load_panel, panel_from_frame, write_panel
from stratcast.daemon.engine.data.panel import DataError, Panel
from stratcast.daemon.engine.data.synthetic import make_strategy_panel

MONDAY = pd.Timestamp("2016-01-04")


def week(k: int) -> pd.Timestamp:
    return MONDAY + pd.Timedelta(weeks=k)


def weekly(n_ids: int = 3, n_weeks: int = 4) -> pd.DataFrame:
    """A complete weekly report; profit = 10 * id + week index, so every cell is recognisable."""
    ids = np.repeat(np.arange(1, n_ids + 1), n_weeks)
    ks = np.tile(np.arange(n_weeks), n_ids)
    return pd.DataFrame({"No.": ids, "week": [week(k) for k in ks], "profit": 10.0 * ids + ks})


def save(frame: pd.DataFrame, tmp_path: Path, name: str = "report.parquet") -> Path:
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def rejects(path: Path, *needles: str, **kwargs) -> str:
    """Load ``path`` expecting a DataError whose message names the file and every needle."""
    with pytest.raises(DataError) as info:
        load_panel(path, **kwargs)
    message = str(info.value)
    for needle in (str(path), *needles):
        assert needle in message, f"{needle!r} not in: {message}"
    return message


def dense(frame: pd.DataFrame) -> np.ndarray:
    return frame.pivot(index="No.", columns="week", values="profit").to_numpy(np.float32)


# --- round trips -------------------------------------------------------------------------------------------


def test_demo_panel_round_trips_through_parquet(tmp_path):
    frame = make_strategy_panel(20, 30, seed=3)
    panel = load_panel(save(frame, tmp_path))
    assert panel.ids.tolist() == list(range(1, 21))
    assert panel.times.dtype == np.dtype("datetime64[ns]")
    assert (pd.DatetimeIndex(panel.times).day_of_week == 0).all()
    np.testing.assert_array_equal(panel.values, dense(frame))
    assert panel.values.dtype == np.float32 and panel.values.flags.writeable
    assert panel.start.tolist() == [0] * 20 and panel.filled == 0
    assert (panel.source, panel.id_col, panel.time_col, panel.target_col) == (
        str(tmp_path / "report.parquet"),
        "No.",
        "week",
        "profit",
    )


@pytest.mark.parametrize("name", ["report.csv", "report.csv.gz"])
def test_demo_panel_round_trips_through_csv(tmp_path, name):
    frame = make_strategy_panel(12, 25, seed=4)
    panel = load_panel(save(frame, tmp_path, name))
    np.testing.assert_array_equal(panel.values, dense(frame))
    np.testing.assert_array_equal(panel.times, frame["week"].unique().astype("datetime64[ns]"))


def test_write_panel_round_trips_late_starts_and_filled_cells(tmp_path):
    frame = weekly(3, 6)
    frame = frame[~((frame["No."] == 2) & (frame["week"] < week(2)))]  # series 2 starts in week 2
    frame = frame[~((frame["No."] == 3) & (frame["week"] == week(3)))]  # series 3 misses week 3
    panel = load_panel(save(frame, tmp_path), fill_missing="zero")
    write_panel(panel, tmp_path / "out.parquet")
    again = load_panel(tmp_path / "out.parquet")
    np.testing.assert_array_equal(again.values, panel.values)
    np.testing.assert_array_equal(again.start, panel.start)
    np.testing.assert_array_equal(again.times, panel.times)
    assert again.ids.tolist() == panel.ids.tolist() and again.filled == 0


def test_rows_in_any_order_give_the_same_panel(tmp_path):
    frame = make_strategy_panel(15, 20, seed=5)
    shuffled = frame.sample(frac=1.0, random_state=0)
    np.testing.assert_array_equal(load_panel(save(shuffled, tmp_path)).values, dense(frame))


def test_a_frame_and_an_arrow_table_load_like_the_file():
    frame = weekly()
    from_frame = panel_from_frame(frame)
    from_table = panel_from_frame(pa.Table.from_pandas(frame), source="mine")
    np.testing.assert_array_equal(from_frame.values, from_table.values)
    assert from_frame.source == "<frame>" and from_table.source == "mine"


# --- columns -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("id_col", "time_col", "target_col"),
    [
        ("No.", "week", "profit"),
        ("unique_id", "ds", "y"),
        ("No.", "date", "y"),
        ("unique_id", "time", "profit"),
        ("unique_id", "t", "y"),
    ],
)
def test_each_column_alias_is_detected(tmp_path, id_col, time_col, target_col):
    frame = weekly().rename(columns={"No.": id_col, "week": time_col, "profit": target_col})
    frame["note"] = "x"
    panel = load_panel(save(frame, tmp_path))
    assert (panel.id_col, panel.time_col, panel.target_col) == (id_col, time_col, target_col)
    assert panel.values[1, 2] == 22.0


def test_overrides_pick_columns_with_other_names(tmp_path):
    frame = weekly().rename(columns={"No.": "strategy", "week": "period", "profit": "pnl"})
    frame["y"] = 0.0  # an alias that the override must win over
    panel = load_panel(save(frame, tmp_path), id_col="strategy", time_col="period", target_col="pnl")
    assert (panel.id_col, panel.time_col, panel.target_col) == ("strategy", "period", "pnl")
    assert panel.values[2, 3] == 33.0


@pytest.mark.parametrize(("column", "flag"), [("No.", "--id-col"), ("week", "--time-col"), ("profit", "--target-col")])
def test_a_missing_column_lists_the_columns_present_and_the_flag_to_pass(tmp_path, column, flag):
    path = save(weekly().rename(columns={column: "other"}), tmp_path)
    rejects(path, flag, "'other'", repr(column))


def test_an_override_naming_no_column_lists_the_columns_present(tmp_path):
    rejects(save(weekly(), tmp_path), "'pnl'", "--target-col", "'profit'", target_col="pnl")


def test_two_matching_columns_are_ambiguous(tmp_path):
    frame = weekly()
    frame["date"] = frame["week"]
    rejects(save(frame, tmp_path), "ambiguous", "'week'", "'date'", "--time-col")


def test_one_column_cannot_play_two_roles(tmp_path):
    rejects(save(weekly(), tmp_path), "'profit'", "--id-col", id_col="profit")


# --- times -------------------------------------------------------------------------------------------------


def test_integer_positions_make_an_integer_grid(tmp_path):
    frame = pd.DataFrame({"unique_id": ["a"] * 3 + ["b"] * 3, "t": [10, 12, 14] * 2, "y": range(6)})
    panel = load_panel(save(frame, tmp_path))
    assert panel.times.dtype == np.int64 and panel.times.tolist() == [10, 12, 14]
    assert panel.ids.tolist() == ["a", "b"]
    assert panel.values.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_date_strings_in_csv_are_parsed(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text("No.,week,profit\n1,2016/01/04,1.5\n1,2016/01/11,0\n2,2016/01/04,-2\n2,2016/01/11,3\n")
    panel = load_panel(path)
    np.testing.assert_array_equal(panel.times, np.array(["2016-01-04", "2016-01-11"], "datetime64[ns]"))
    assert panel.values.tolist() == [[1.5, 0.0], [-2.0, 3.0]]


def test_whole_float_times_are_positions_but_fractions_are_rejected(tmp_path):
    frame = pd.DataFrame({"No.": [1, 1, 1], "t": [0.0, 1.0, 2.0], "profit": [1.0, 2.0, 3.0]})
    assert load_panel(save(frame, tmp_path)).times.tolist() == [0, 1, 2]
    frame.loc[2, "t"] = 2.5
    rejects(save(frame, tmp_path, "bad.parquet"), "column 't'", "fractional", "t=2.5")


def test_unparseable_time_strings_are_rejected(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text("No.,week,profit\n1,2016/01/04,1\n7,someday,2\n")
    rejects(path, "column 'week'", "No.=7, week=someday", "not dates")


def test_categorical_ids_are_decoded(tmp_path):
    frame = weekly()
    frame["No."] = frame["No."].astype(str).astype("category")
    assert load_panel(save(frame, tmp_path)).ids.tolist() == ["1", "2", "3"]


# --- bad files ---------------------------------------------------------------------------------------------


def test_a_missing_file_is_reported(tmp_path):
    rejects(tmp_path / "nope.parquet", "no such file")


def test_an_unknown_extension_is_reported_with_the_known_ones(tmp_path):
    path = tmp_path / "report.xlsx"
    path.write_bytes(b"PK")
    rejects(path, "unknown file type", ".parquet", ".csv.gz")


def test_an_empty_file_is_reported(tmp_path):
    path = tmp_path / "report.csv"
    path.touch()
    rejects(path, "empty")


def test_a_header_without_rows_is_reported(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text("No.,week,profit\n")
    rejects(path, "no rows")


def test_a_malformed_csv_is_reported(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text("No.,week,profit\n1,2016-01-04,1.0\n2,2016-01-04,1.0,extra\n")
    rejects(path, "cannot read it as csv", "as many fields")


def test_a_corrupt_parquet_file_is_reported(tmp_path):
    path = tmp_path / "report.parquet"
    path.write_bytes(b"not parquet at all" * 10)
    message = rejects(path, "cannot read it as parquet")
    assert ".." not in message


def test_a_corrupt_gzip_is_reported(tmp_path):
    path = tmp_path / "report.csv.gz"
    path.write_bytes(gzip.compress(b"No.,week,profit\n1,2016-01-04,1\n")[:-12])
    rejects(path, "cannot read it as csv")


# --- bad values --------------------------------------------------------------------------------------------


def test_duplicate_pairs_are_rejected_with_the_first_offending_rows(tmp_path):
    frame = weekly()
    frame = pd.concat([frame, frame.iloc[[5]].assign(profit=99.0)], ignore_index=True)
    rejects(save(frame, tmp_path), "column 'week'", "1 row repeating", "No.=2, week=2016-01-11, profit=99.0")


def test_non_numeric_values_are_rejected_with_the_first_offending_rows(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text("No.,week,profit\n1,2016-01-04,1.5\n17,2016-01-04,abc\n")
    rejects(path, "column 'profit'", "non-numeric", "No.=17, week=2016-01-04, profit=abc")


def test_mixed_objects_in_a_frame_are_rejected_as_non_numeric():
    frame = weekly()
    frame["profit"] = frame["profit"].astype(object)
    frame.loc[4, "profit"] = "oops"
    with pytest.raises(DataError, match=r"<frame>: column 'profit'.*No.=2, week=2016-01-04, profit=oops"):
        panel_from_frame(frame)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_values_are_rejected_with_the_first_offending_rows(tmp_path, bad):
    frame = weekly()
    frame.loc[6, "profit"] = bad
    path = save(frame, tmp_path)
    # pandas writes NaN as a null, which reads as a missing value.
    problem = "without a value" if np.isnan(bad) else "NaN or infinite"
    message = rejects(path, "column 'profit'", problem, "No.=2, week=2016-01-18")
    assert "None" not in message


def test_values_beyond_float32_are_rejected_as_infinite(tmp_path):
    frame = weekly()
    frame.loc[0, "profit"] = 1e300
    rejects(save(frame, tmp_path), "column 'profit'", "infinite", "No.=1, week=2016-01-04, profit=1e+300")


@pytest.mark.parametrize("column", ["No.", "week"])
def test_null_ids_and_times_are_rejected_with_the_first_offending_rows(tmp_path, column):
    frame = weekly()
    frame[column] = frame[column].astype(object)
    frame.loc[3, column] = None
    path = save(frame, tmp_path)
    rejects(path, f"column {column!r}", "without a value", f"{column}=(empty)", "profit=13.0")


def test_a_time_off_the_grid_is_rejected_with_the_offending_rows(tmp_path):
    frame = weekly()
    frame.loc[5, "week"] = week(1) + pd.Timedelta(days=1)  # a Tuesday
    message = rejects(save(frame, tmp_path), "column 'week'", "off the regular time grid", "No.=2, week=2016-01-12")
    assert "7 days" in message


def test_a_gap_is_rejected_with_a_hint_to_fill_with_zero(tmp_path):
    frame = weekly().drop(index=[6])  # No. 2, week 2
    message = rejects(save(frame, tmp_path), "column 'week'", "No.=2, week=2016-01-18 missing", "--fill-missing zero")
    assert "a missing week means no trade" in message


def test_a_series_that_stops_early_ends_there_without_fill(tmp_path):
    frame = weekly().drop(index=[10, 11])  # No. 3 stops after week 1
    panel = load_panel(save(frame, tmp_path))
    assert panel.end.tolist() == [4, 4, 2] and panel.lengths.tolist() == [4, 4, 2]
    assert panel.ended_early.tolist() == [False, False, True]
    assert panel.values[2].tolist() == [30, 31, 0, 0] and panel.filled == 0
    assert panel.last_times[2] == np.datetime64(week(1))


def test_a_gap_before_an_early_end_is_still_rejected_without_fill(tmp_path):
    frame = weekly(3, 6).drop(index=[13, 16, 17])  # No. 3: week 1 missing, stops after week 3
    rejects(save(frame, tmp_path), "column 'week'", "1 series with missing periods", "No.=3, week=2016-01-11 missing")


def test_integer_positions_counted_per_series_end_each_series_at_its_own_last_observation(tmp_path):
    frame = pd.DataFrame({"unique_id": ["a"] * 4 + ["b"] * 2, "t": [0, 1, 2, 3, 0, 1], "y": range(6)})
    panel = load_panel(save(frame, tmp_path))
    assert panel.own_positions and panel.end.tolist() == [4, 2]
    assert not panel.ended_early.any() and panel.last_times.tolist() == [3, 1]


def test_integer_positions_on_a_shared_clock_keep_a_late_start_and_an_early_end(tmp_path):
    frame = pd.DataFrame({"unique_id": ["a"] * 3 + ["b"] * 2 + ["c"] * 2, "t": [0, 1, 2, 1, 2, 0, 1], "y": range(7)})
    panel = load_panel(save(frame, tmp_path))
    assert not panel.own_positions
    assert panel.start.tolist() == [0, 1, 0] and panel.end.tolist() == [3, 3, 2]
    assert panel.ended_early.tolist() == [False, False, True]


def test_a_stray_time_far_off_is_rejected_rather_than_filled(tmp_path):
    frame = weekly()
    frame.loc[2, "week"] = pd.Timestamp("2099-01-05")
    rejects(save(frame, tmp_path), "column 'week'", "stray", "No.=1, week=2099-01-05", fill_missing="zero")


def test_fill_missing_zero_fills_gaps_but_neither_leading_nor_trailing_periods(tmp_path):
    frame = weekly(3, 6)
    frame = frame[~((frame["No."] == 1) & frame["week"].isin([week(1), week(2)]))]  # 2 gaps
    frame = frame[~((frame["No."] == 2) & (frame["week"] >= week(4)))]  # stops 2 weeks early: not filled
    frame = frame[~((frame["No."] == 3) & (frame["week"] < week(3)))]  # starts late: not filled
    panel = load_panel(save(frame, tmp_path), fill_missing="zero")
    assert panel.filled == 2
    assert panel.start.tolist() == [0, 0, 3] and panel.end.tolist() == [6, 4, 6]
    assert panel.values[0].tolist() == [10, 0, 0, 13, 14, 15]
    assert panel.values[1].tolist() == [20, 21, 22, 23, 0, 0]
    assert panel.values[2].tolist() == [0, 0, 0, 33, 34, 35]
    assert panel.lengths.tolist() == [6, 4, 3]


# --- drop_short --------------------------------------------------------------------------------------------


def short_panel(lengths: list[int], n_times: int = 10) -> Panel:
    n = len(lengths)
    return Panel(
        ids=np.arange(1, n + 1),
        times=np.arange(n_times),
        values=np.zeros((n, n_times), np.float32),
        start=n_times - np.asarray(lengths, np.int64),
        end=np.full(n, n_times, np.int64),
        source="report.parquet",
    )


def test_drop_short_skips_short_series_with_a_note_listing_the_first_ids():
    panel = short_panel([10, 3] * 7)
    kept = drop_short(panel, 5, what="input_size + horizon")
    assert kept.n_series == 7 and kept.ids.tolist() == [1, 3, 5, 7, 9, 11, 13]
    (note,) = kept.notes
    assert note == "skipped 7 series shorter than input_size + horizon = 5: 2, 4, 6, 8, 10, 12, 14"


def test_drop_short_lists_ten_ids_and_the_count():
    (note,) = drop_short(short_panel([10] + [2] * 12), 5, what="need").notes
    assert note == "skipped 12 series shorter than need = 5: 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ..."


def test_drop_short_keeps_a_panel_that_is_long_enough():
    panel = short_panel([10, 8])
    assert drop_short(panel, 8, what="need") is panel


def test_drop_short_with_nothing_left_names_the_longest_series_and_what_to_change():
    with pytest.raises(DataError) as info:
        drop_short(short_panel([3, 7, 5]), 8, what="input_size + horizon")
    message = str(info.value)
    for needle in ("report.parquet", "needs 8 periods (input_size + horizon)", "No.=2", "has 7", "--input-size"):
        assert needle in message, message


# --- blocks --------------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Place rows a few at a time, so that small files cross many block boundaries."""
    monkeypatch.setattr(panel_build, "_BLOCK", 7)


@pytest.mark.usefixtures("tiny_blocks")
def test_rows_are_placed_alike_across_many_blocks_in_order_or_not(tmp_path):
    frame = make_strategy_panel(9, 11, seed=6)
    np.testing.assert_array_equal(load_panel(save(frame, tmp_path)).values, dense(frame))
    shuffled = frame.sample(frac=1.0, random_state=1)
    np.testing.assert_array_equal(load_panel(save(shuffled, tmp_path, "shuffled.parquet")).values, dense(frame))


@pytest.mark.usefixtures("tiny_blocks")
def test_duplicates_in_different_blocks_are_found(tmp_path):
    frame = weekly(4, 5)
    frame = pd.concat([frame, frame.iloc[[0]].assign(profit=-1.0)], ignore_index=True)
    rejects(save(frame, tmp_path), "1 row repeating", "No.=1, week=2016-01-04, profit=-1.0")


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_any_cells_in_any_order_and_any_blocks_load_like_a_naive_reference(data):
    n, t = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 6))
    observed = np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=t, max_size=t), min_size=n, max_size=n)))
    observed[0] = True  # one full series fixes the grid to periods 0 .. t - 1
    series, periods = np.nonzero(observed)
    order = np.array(data.draw(st.permutations(range(len(series)))))
    frame = pd.DataFrame(
        {"No.": series[order], "t": periods[order], "profit": 100.0 * series[order] + periods[order] + 1}
    )
    with patch.object(panel_build, "_BLOCK", data.draw(st.sampled_from([1, 3, 1 << 20]))):
        panel = panel_from_frame(frame, fill_missing="zero")
    kept = observed.any(axis=1)
    start = observed.argmax(axis=1)[kept]
    end = t - observed[:, ::-1].argmax(axis=1)[kept]
    expected = np.where(observed, 100.0 * np.arange(n)[:, None] + np.arange(t) + 1, 0.0)[kept]
    assert panel.ids.tolist() == np.flatnonzero(kept).tolist()
    np.testing.assert_array_equal(panel.values, expected)
    np.testing.assert_array_equal(panel.start, start)
    np.testing.assert_array_equal(panel.end, end)
    assert panel.filled == int(((end - start) - observed[kept].sum(axis=1)).sum())
