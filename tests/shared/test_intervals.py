"""Interval and quantile column names: one function names a quantile's column, another reads the level back."""

import pytest

from stratcast.shared.intervals import bound_name, quantile_columns, quantile_level, quantile_name


@pytest.mark.parametrize(
    ("level", "name"), [(0.1, "q10"), (0.5, "q50"), (0.9, "q90"), (0.025, "q2.5"), (0.975, "q97.5"), (0.999, "q99.9")]
)
def test_a_quantile_column_is_named_by_its_level_in_percent_and_read_back(level, name):
    assert quantile_name(level) == name
    assert quantile_level(name) == level


@pytest.mark.parametrize("level", [0.0, 1.0, -0.1, 1.5])
def test_a_level_outside_zero_and_one_has_no_column(level):
    with pytest.raises(ValueError, match="within"):
        quantile_name(level)


@pytest.mark.parametrize("name", ["forecast", "lo80", "q", "q0", "q100", "q1e3", "qq10", "q10x", bound_name("hi", 95)])
def test_other_columns_are_not_quantiles(name):
    assert quantile_level(name) is None


def test_the_quantile_columns_of_a_table_come_lowest_level_first():
    names = ["strategy", "step", "forecast", "q90", "lo80", "q10", "q2.5", "q50", "hi80"]
    assert quantile_columns(names) == ["q2.5", "q10", "q50", "q90"]
