"""Prediction-interval names shared by the engine, the protocol and the printers: levels and bound columns.

A level is a nominal coverage in percent; its bounds are the columns ``lo{level:g}`` and ``hi{level:g}`` of
``forecast.parquet`` and ``summary.parquet`` (``lo80``, ``hi95``, ``lo97.5``).
"""

from __future__ import annotations

DEFAULT_LEVELS = (80.0, 95.0)
"""Nominal coverages of a job's intervals, in percent, unless ``--levels`` says otherwise."""
RANK_BY_MEAN = "mean"
"""``--rank-by`` for the forecast mean (the default)."""


def bound_name(side: str, level: float) -> str:
    """``lo80``, ``hi95``, ``lo97.5``: the column of one bound (``lo`` or ``hi``) of one level."""
    return f"{side}{level:g}"


def level_text(levels: tuple[float, ...] | list[float]) -> str:
    """``80,95``: levels as ``--levels`` takes them."""
    return ",".join(f"{v:g}" for v in levels)
