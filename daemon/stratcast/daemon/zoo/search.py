"""``Search``: how a tuner should search one config field, declared beside (and inside) what is valid.

A field's validity range (``lo``/``hi`` or ``choices`` of :func:`~stratcast.daemon.zoo.contract.param`) says what a
user may set; its search space says where a tuner should look: usually a much smaller box (a width of 64 to 1024,
not 1 to 16384), on a log scale where the order of magnitude matters. ``stratcastd models --json`` shows it as
plain data; the three kinds map onto a tuner's integer, float and categorical suggestions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("int", "float", "categorical")


@dataclass(frozen=True, kw_only=True)
class Search:
    """A tuner's search space for one field: a numeric range (log-scaled or stepped) or a set of choices."""

    kind: str
    """``int``, ``float`` or ``categorical``."""
    low: float | None = None
    """Smallest value searched (numeric kinds; inclusive)."""
    high: float | None = None
    """Largest value searched (numeric kinds; inclusive)."""
    log: bool = False
    """Sample uniformly in the logarithm (``low`` > 0; not with ``step``)."""
    step: float | None = None
    """Spacing of the values searched from ``low`` (None: any value; int ranges default to 1)."""
    choices: tuple[Any, ...] | None = None
    """The values searched (categorical only)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"search kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "categorical":
            if not self.choices or self.low is not None or self.high is not None:
                raise ValueError("a categorical search space needs choices and no low or high")
            return
        if self.low is None or self.high is None or self.choices is not None or not self.low < self.high:
            raise ValueError(f"a numeric search space needs low < high and no choices, got {self.low}..{self.high}")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("a log search space needs low > 0 and no step")
        if self.step is not None and (self.step <= 0 or not _whole((self.high - self.low) / self.step)):
            raise ValueError(f"a stepped search space needs a step > 0 that divides {self.low}..{self.high}")
        if self.kind == "int" and not all(isinstance(v, int) for v in (self.low, self.high, self.step or 1)):
            raise ValueError(f"an int search space needs whole numbers, got {self.low}..{self.high}")

    def values(self) -> tuple[Any, ...]:
        """The values at the ends of the space (every choice of a categorical one), for checks against validity."""
        return self.choices if self.choices is not None else (self.low, self.high)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``stratcastd models --json`` (tuple choices become lists)."""
        choices = None if self.choices is None else [list(c) if isinstance(c, tuple) else c for c in self.choices]
        return {
            "kind": self.kind,
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "step": self.step,
            "choices": choices,
        }


def _whole(x: float) -> bool:
    return abs(x - round(x)) < 1e-9


def ints(low: int, high: int, *, log: bool = False, step: int | None = None) -> Search:
    """Whole numbers from ``low`` to ``high`` (every ``step``-th, or log-uniform)."""
    return Search(kind="int", low=low, high=high, log=log, step=step)


def floats(low: float, high: float, *, log: bool = False, step: float | None = None) -> Search:
    """Numbers from ``low`` to ``high`` (uniform, log-uniform, or every ``step``)."""
    return Search(kind="float", low=low, high=high, log=log, step=step)


def among(*choices: Any) -> Search:
    """One of ``choices`` (strings, booleans, numbers or tuples)."""
    return Search(kind="categorical", choices=choices)
