"""``backtest.json`` as text: the table per pick size, the verdicts, the errors, and the model's losses named."""

from __future__ import annotations

from typing import Any

from stratcast.shared.backtest_report import backtest_text, error_line, losses


def method(mean, hit=0.5, **extra):
    return {"mean": mean, "std": 0.5, "hit_rate": hit, "cumulative": 4 * mean, "curve": [4 * mean], **extra}


def backtest(model_mean: float) -> dict[str, Any]:
    return {
        "meta": {"model": "nhits"},
        "every": 4,
        "hold": 8,
        "cost": 0.5,
        "dates": ["2019-01-07", "2019-02-04"],
        "cutoffs": [{}, {}],
        "sizes": {
            "10": {
                "k": "10",
                "methods": {
                    "model": method(model_mean, hit=0.75),
                    "trailing_mean": method(1.0),
                    "random": method(0.1, band=[-0.2, 0.4]),
                    "all": method(0.1),
                    "best": method(9.0, hit=1.0),
                },
            }
        },
        "verdicts": ["Top 10 (10 strategies): the model's picks are better than the trailing mean's at 95%: +1"],
        "errors": {"rmse": {"mean": {"model": 1.5, "zero": 1.2}, "model_ratio": {"zero": 1.25}}},
    }


def row(text: str, label: str) -> list[str]:
    return next(line for line in text.splitlines() if line.startswith(label)).split()


def test_every_method_has_its_row_with_its_difference_to_the_trailing_mean():
    text = backtest_text(backtest(2.5))
    assert "nhits, 2 cutoffs (2019-01-07 to 2019-02-04) every 4 periods, each pick held 8 periods, cost 0.5" in text
    assert row(text, "model")[1:6] == ["2.5", "0.5", "75", "10", "1.5"]
    assert row(text, "best possible")[-1] == "8"
    assert "5-95%: -0.2 to 0.4" in text
    assert "- Top 10 (10 strategies): the model's picks are better than" in text
    assert "LOSES" not in text


def test_the_models_row_says_whom_it_loses_to():
    assert "LOSES to trailing mean" in backtest_text(backtest(0.5))
    assert "LOSES to trailing mean and all strategies" in backtest_text(backtest(0.05))
    assert losses(backtest(0.05)["sizes"]["10"]["methods"]) == ["trailing mean", "all strategies"]


def test_the_error_line_names_the_models_ratio_to_each_baseline():
    line = error_line(backtest(1.0)["errors"], 2)
    assert line == "Forecast errors, mean over 2 cutoffs: the model's RMSE 1.5 (1.25x the zero forecast's)."
    assert error_line({}, 2) is None


def test_the_survivorship_caveat_is_stated_when_the_table_has_it():
    table = backtest(2.0)
    assert "Survivorship" not in backtest_text(table)
    table["survivorship"] = "Survivorship: each cutoff ranks only the strategies observed through its whole holding."
    assert table["survivorship"] in backtest_text(table).splitlines()


def test_the_raw_models_row_says_whom_it_loses_to_as_well():
    table = backtest(2.5)
    table["sizes"]["10"]["methods"]["model_raw"] = method(0.05)
    lines = backtest_text(table).splitlines()
    raw = next(line for line in lines if line.startswith("model, raw"))
    model = next(line for line in lines if line.startswith("model "))
    assert raw.endswith("LOSES to trailing mean and all strategies")
    assert "LOSES" not in model
    assert losses(table["sizes"]["10"]["methods"], "model_raw") == ["trailing mean", "all strategies"]
