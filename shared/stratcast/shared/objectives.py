"""A study's objectives as every side sees them: name, direction, and where a value stops beating a naive forecast.

The daemon reads each objective's value from a trial's metrics (``stratcast.daemon.engine.study.objectives``); the
clients show the values, each with its verdict where the figure has a naive baseline in it: ``holdout-rmse`` is the
holdout RMSE over the better naive baseline's (below 1 beats it), ``backtest-diff`` the top picks' realized profit
less the trailing mean's picks' (above 0 beats them). A model that loses is shown losing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ObjectiveInfo:
    """One objective: its name, direction, whether it needs the backtest, help, and its naive baseline's value."""

    name: str
    maximize: bool
    backtest: bool
    help: str
    baseline: float | None = None
    """The value a naive forecast scores on this figure (None: the figure has no baseline in it)."""

    def verdict(self, value: float) -> str:
        """``beats``, ``ties`` or ``loses`` against the naive baseline; empty without one."""
        if self.baseline is None:
            return ""
        if value == self.baseline:
            return "ties"
        return "beats" if (value > self.baseline) == self.maximize else "loses"


OBJECTIVES = {
    o.name: o
    for o in (
        ObjectiveInfo("holdout-rmse", False, False, "holdout RMSE over the best naive baseline's", baseline=1.0),
        ObjectiveInfo("holdout-rmse-raw", False, False, "holdout RMSE in the data's units"),
        ObjectiveInfo("backtest-top-k", True, True, "backtest: realized profit per period of the top picks"),
        ObjectiveInfo(
            "backtest-diff", True, True, "backtest: top picks' profit less the trailing mean's", baseline=0.0
        ),
    )
}
"""Every objective a study can have, by name."""


def maximizes(name: str) -> bool:
    """Whether a study maximizes the objective ``name`` (an unknown name: minimizes)."""
    info = OBJECTIVES.get(name)
    return info is not None and info.maximize


def values_text(objectives: Sequence[str], values: Sequence[float], digits: int = 6) -> str:
    """``1.0059 loses 3.2`` : each value, with its verdict against the naive baseline where it has one."""
    out = []
    for name, value in zip(objectives, values, strict=False):
        info = OBJECTIVES.get(name)
        verdict = info.verdict(value) if info is not None else ""
        out.append(f"{value:.{digits}g}" + (f" {verdict}" if verdict else ""))
    return " ".join(out)


KEPT = {"all-data": "trained again on all the data", "holdout": "trained again with the trials' holdout"}
"""How a study's kept best was trained, by its ``keep``."""


def evidence_text(study: Mapping[str, Any]) -> str:
    """A saved version's study evidence (its manifest's ``study``) in a line: the kept trial's values and verdicts.

    ``study eurusd trial 7 of 14 complete: holdout-rmse 0.9933 beats; trained again on all the data``.
    """
    pairs = " ".join(
        f"{name} {values_text([name], [value])}"
        for name, value in zip(study["objectives"], study["values"], strict=False)
    )
    kept = KEPT.get(str(study["keep"]), str(study["keep"]))
    return f"study {study['study']} trial {study['trial']} of {study['complete']} complete: {pairs}; {kept}"
