"""The backtest's files: the picks, the table as JSON, and the chart with or without matplotlib."""

from __future__ import annotations

import json
import math
import sys

import pandas as pd
import pytest

from stratcast.daemon.engine.backtest.report import write_backtest
from stratcast.shared.runfiles import Outputs
from tests.daemon.engine.backtest_frames import synthetic_backtest

META = {"model": "nhits", "mode": "batch", "horizon": 4, "input_size": 8, "strategies": 40, "trainings": 3}


def written(tmp_path, **options):
    picks, cutoffs, opts = synthetic_backtest(cutoffs=6, **options)
    cutoffs[0]["errors"]["model"]["rmse"] = math.nan  # a cutoff whose model scored nothing
    lines: list[str] = []
    table = write_backtest(tmp_path / "out", picks, cutoffs, opts, META, log=lines.append)
    return picks, table, lines


def test_the_picks_and_the_table_are_written_and_the_table_is_returned(tmp_path):
    picks, table, lines = written(tmp_path)
    files = Outputs(tmp_path / "out")
    frame = pd.read_parquet(files.backtest)
    assert list(frame.columns) == ["cutoff", "date", "method", "strategy", "rank", "forecast", "realized"]
    assert len(frame) == len(picks)
    on_disk = json.loads(files.backtest_table.read_text())
    assert on_disk == table
    assert on_disk["version"] == 1 and on_disk["meta"] == META
    assert on_disk["options"]["top"] == ["5", "10%"]
    assert set(on_disk["sizes"]) == {"5", "10%"}
    assert len(on_disk["sizes"]["5"]["methods"]["model"]["curve"]) == 6
    assert on_disk["cutoffs"][0]["errors"]["model"]["rmse"] is None  # NaN is null in JSON
    assert lines[-2:] == on_disk["verdicts"]
    assert on_disk["survivorship"].startswith("Survivorship: each cutoff ranks only the strategies observed through")
    assert not [p.name for p in files.path.iterdir() if p.name.endswith(".tmp")]


def test_the_chart_is_a_png_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib", reason="the chart needs the plot extra: pip install -e '.[plot]'")
    _, _, lines = written(tmp_path)
    chart = Outputs(tmp_path / "out").backtest_chart
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not any("matplotlib" in line for line in lines)


def test_without_matplotlib_the_chart_is_a_log_line_and_the_rest_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import matplotlib.figure raises ImportError
    _, _, lines = written(tmp_path)
    files = Outputs(tmp_path / "out")
    assert files.backtest_table.is_file() and not files.backtest_chart.exists()
    assert any("matplotlib is not installed" in line and "stratcast[plot]" in line for line in lines)
