"""The leaderboard's tables (benchmarks/zoo.py): a model worse than a naive forecast says LOSES, gaps say why."""

from typing import Any

from benchmarks.zoo import PROTOCOL, key, write_doc
from stratcast.daemon.zoo.catalog import CATALOG


def eurusd(raw: float, default: float) -> dict[str, Any]:
    rmse = {"model_raw": raw, "model": default, "zero": 10.0, "trailing_mean": 12.0}
    return {"rmse": rmse, "coverage": {"80": 0.78, "95": 0.94}, "train_seconds": 30.0, "peak_mib": 900.0}


def backtest(raw: float, default: float, trailing: float) -> dict[str, Any]:
    diff = {"mean": default - trailing, "lo": -1.0, "hi": 2.0, "verdict": "no evidence"}
    mean = {"model_raw": raw, "model": default, "trailing_mean": trailing}
    return {"mean": mean, "difference": diff, "peak_mib": 800.0, "protocol": PROTOCOL}


def test_the_board_marks_every_loss_to_a_naive_forecast_and_names_what_is_missing(tmp_path):
    results = {
        key("dlinear", "m4", "cpu", False): {"smape": 9.0, "owa": 0.98, "train_seconds": 3.0, "peak_mib": 700.0},
        key("dlinear", "eurusd", "cpu", False): eurusd(raw=11.0, default=9.5),
        key("dlinear", "backtest", "cpu", False): backtest(raw=1.0, default=3.0, trailing=2.0),
        key("mlp", "m4", "cpu", False): {"smape": 9.5, "owa": 1.02, "train_seconds": 3.0, "peak_mib": 700.0},
        key("nlinear", "eurusd", "cpu", False): {"error": "RuntimeError: out of memory"},
        key("nlinear", "backtest", "cpu", False): {"error": "timed out after 1500 s (--timeout)"},
    }
    doc = tmp_path / "models.md"
    write_doc(results, doc, ["cpu"])
    text = doc.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| dlinear |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "0.980"  # M4's OWA below 1: it beats Naive2
    assert cells[3] == "1.100 LOSES"  # raw RMSE over the zero forecast's
    assert cells[4] == "0.917"  # over the trailing mean's: it wins there
    assert cells[5] == "0.950"  # the default forecast over the better baseline
    assert cells[7] == "+1.00 LOSES" and cells[8] == "+3.00"  # raw picks below the trailing mean's, default above
    nlinear = next(line for line in text.splitlines() if line.startswith("| nlinear |"))
    assert "failed" in nlinear and "not measured" in nlinear and "timed out" in nlinear
    assert "| mlp | 9.500 | 1.020 LOSES |" in text  # Naive2 beats it on M4
    assert "`nlinear/eurusd/cpu`: RuntimeError: out of memory" in text
    for entry in CATALOG.values():  # the models table says what each is good for
        assert f"| {entry.name} | {entry.summary} | {entry.good_for} |" in text
