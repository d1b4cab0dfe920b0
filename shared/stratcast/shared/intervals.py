"""Prediction-interval names shared by the engine, the protocol and the printers: levels and bound columns.

A level is a nominal coverage in percent; its bounds are the columns ``lo{level:g}`` and ``hi{level:g}`` of
``forecast.parquet`` and ``summary.parquet`` (``lo80``, ``hi95``, ``lo97.5``).

A model that forecasts a distribution also writes its quantiles to ``forecast.parquet``: the quantile at level
``0.1`` is the column ``q10`` (:func:`quantile_name`; ``0.025`` is ``q2.5``), read back by :func:`quantile_level`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

DEFAULT_LEVELS = (80.0, 95.0)
"""Nominal coverages of a job's intervals, in percent, unless ``--levels`` says otherwise."""
DEFAULT_QUANTILES = (0.1, 0.5, 0.9)
"""Levels of the quantiles a distribution forecast writes, unless ``forecast_quantiles`` says otherwise."""
RANK_BY_MEAN = "mean"
"""``--rank-by`` for the forecast mean (the default)."""


def bound_name(side: str, level: float) -> str:
    """``lo80``, ``hi95``, ``lo97.5``: the column of one bound (``lo`` or ``hi``) of one level."""
    return f"{side}{level:g}"


def level_text(levels: tuple[float, ...] | list[float]) -> str:
    """``80,95``: levels as ``--levels`` takes them."""
    return ",".join(f"{v:g}" for v in levels)


_QUANTILE = re.compile(r"q(\d+(?:\.\d+)?)")


def quantile_name(level: float) -> str:
    """``q10``, ``q50``, ``q2.5``: the column of the quantile at ``level`` in (0, 1).

    Raises:
        ValueError: for a level outside (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"a quantile level lies within (0, 1), got {level}")
    return f"q{round(level * 100, 8):.10g}"


def quantile_level(name: str) -> float | None:
    """The level of a quantile column (``q10`` -> 0.1), or None when ``name`` is not one (``forecast``, ``lo80``)."""
    match = _QUANTILE.fullmatch(name)
    if match is None:
        return None
    level = round(float(match.group(1)) / 100, 10)  # 99.9 / 100 is 0.9990000000000001
    return level if 0 < level < 1 else None


def quantile_columns(names: Iterable[str]) -> list[str]:
    """The quantile columns among ``names``, lowest level first."""
    levels = {name: level for name in names if (level := quantile_level(name)) is not None}
    return sorted(levels, key=levels.__getitem__)
