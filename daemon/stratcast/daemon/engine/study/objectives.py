"""What a study optimizes: objectives read from a finished trial's metrics, and the values its pruner sees on the way.

Objectives (several at once make a multi-objective study, searched by NSGA-II):

* ``holdout-rmse`` (minimize): the default forecast's holdout RMSE over the better naive baseline's (the lowest of
  zero, trailing mean, last value and seasonal naive): below 1 beats every baseline, and values compare across data.
* ``holdout-rmse-raw`` (minimize): the default forecast's holdout RMSE, in the data's units.
* ``backtest-top-k`` (maximize): the realized profit per period, after cost, of the model's top picks (the
  backtest's first pick size, ``--top``), averaged over the cutoffs.
* ``backtest-diff`` (maximize): the same figure less the trailing mean's picks' (the backtest's paired difference).

A holdout objective needs the run's holdout (``--holdout``); a backtest objective runs the walk-forward backtest.

Intermediate values: the trainer's validation scores (the point forecast in the data's units, shrunk toward zero
per step as the combination would, its RMSE over a zero forecast's on the validation targets), at their steps, for
the median and Hyperband pruners
(:func:`intermediate_value`): not the validation loss, whose scale depends on the loss, head and scaler each
trial drew (a Huber loss on robust-scaled data is not comparable with an MSE on standardized data). The
backtest's per-cutoff values, one per cutoff, for the Wilcoxon pruner, which compares trials instance by instance
(:func:`cutoff_scores`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stratcast.shared.events import ProgressReported
from stratcast.shared.objectives import OBJECTIVES as SHARED_OBJECTIVES
from stratcast.shared.protocol import JobSpec

if TYPE_CHECKING:
    from stratcast.daemon.engine.backtest.state import Progress

MINIMIZE, MAXIMIZE = "minimize", "maximize"
BASELINES = ("zero", "trailing_mean", "last_value", "seasonal_naive")
"""The naive forecasts the relative RMSE divides by the best of (those the run scored)."""


class ObjectiveError(ValueError):
    """An objective's figure is missing from a trial's metrics, or the objective is unknown."""


@dataclass(frozen=True)
class Objective:
    """One objective: its name, direction, and whether it needs the backtest (else the holdout)."""

    name: str
    direction: str
    backtest: bool
    help: str

    def value(self, metrics: Mapping[str, Any], top: str | None = None) -> float:
        """This objective's value in a finished job's ``metrics`` (a backtest's for a backtest objective).

        ``top`` is the backtest's pick size label (None: its first).

        Raises:
            ObjectiveError: when the figure is missing or not finite.
        """
        try:
            value = READERS[self.name](metrics, top)
        except (KeyError, IndexError, TypeError, ZeroDivisionError) as exc:
            raise ObjectiveError(f"objective {self.name}: the trial's metrics lack {exc}") from None
        if value is None or not math.isfinite(value):
            raise ObjectiveError(f"objective {self.name}: the trial's figure is {value}, not a finite number")
        return float(value)


def holdout_relative_rmse(metrics: Mapping[str, Any], top: str | None = None) -> float:
    """The default forecast's holdout RMSE over the lowest baseline RMSE."""
    errors = metrics["errors"]
    return float(errors["model"]["rmse"]) / best_baseline(errors)


def best_baseline(errors: Mapping[str, Any]) -> float:
    """The lowest RMSE of the naive baselines scored in ``errors`` (at least a tiny positive number)."""
    scored = [float(errors[b]["rmse"]) for b in BASELINES if b in errors]
    if not scored:
        raise KeyError("a naive baseline's RMSE")
    return max(min(scored), 1e-12)


def holdout_raw_rmse(metrics: Mapping[str, Any], top: str | None = None) -> float:
    """The default forecast's holdout RMSE."""
    return float(metrics["errors"]["model"]["rmse"])


def backtest_size(metrics: Mapping[str, Any], top: str | None) -> Mapping[str, Any]:
    """The backtest table's section of pick size ``top`` (None: the first)."""
    sizes: Mapping[str, Mapping[str, Any]] = metrics["backtest"]["sizes"]
    return sizes[top if top is not None else next(iter(sizes))]


def backtest_top_k(metrics: Mapping[str, Any], top: str | None = None) -> float:
    """The model's picks' mean realized profit per period after cost."""
    return float(backtest_size(metrics, top)["methods"]["model"]["mean"])


def backtest_diff(metrics: Mapping[str, Any], top: str | None = None) -> float:
    """The model's picks' mean profit less the trailing mean's picks'."""
    return float(backtest_size(metrics, top)["difference"]["mean"])


READERS = {
    "holdout-rmse": holdout_relative_rmse,
    "holdout-rmse-raw": holdout_raw_rmse,
    "backtest-top-k": backtest_top_k,
    "backtest-diff": backtest_diff,
}
OBJECTIVES = {
    name: Objective(name, MAXIMIZE if info.maximize else MINIMIZE, info.backtest, info.help)
    for name, info in SHARED_OBJECTIVES.items()
}
"""The objectives the clients know (:mod:`stratcast.shared.objectives`), each with its reader in :data:`READERS`."""
DEFAULT = "holdout-rmse"


def parse_objectives(names: str | Sequence[str]) -> tuple[Objective, ...]:
    """The objectives of ``holdout-rmse,backtest-top-k`` (or a list of names), in order, without repeats.

    Raises:
        ObjectiveError: for an unknown name, naming the known ones.
    """
    listed = names.split(",") if isinstance(names, str) else list(names)
    out = []
    for name in dict.fromkeys(n.strip() for n in listed if n.strip()):
        if name not in OBJECTIVES:
            raise ObjectiveError(f"objective {name!r} is not one of {', '.join(OBJECTIVES)}")
        out.append(OBJECTIVES[name])
    if not out:
        raise ObjectiveError(f"a study needs an objective: {', '.join(OBJECTIVES)}")
    return tuple(out)


def values_of(
    objectives: Sequence[Objective],
    holdout: Mapping[str, Any] | None,
    backtest: Mapping[str, Any] | None,
    top: str | None = None,
) -> list[float]:
    """Every objective's value, from the holdout run's metrics and the backtest's (each None when not run)."""
    out = []
    for o in objectives:
        source = backtest if o.backtest else holdout
        if source is None:
            raise ObjectiveError(f"objective {o.name} needs the {'backtest' if o.backtest else 'holdout run'}")
        out.append(o.value(source, top))
    return out


def intermediate_value(event: ProgressReported) -> tuple[int, float] | None:
    """The (step, value) a pruner sees of a progress report: its validation score; None between checks."""
    if event.val_score is None or not math.isfinite(event.val_score):
        return None
    return event.step, float(event.val_score)


def cutoff_scores(objective: Objective, metrics: Mapping[str, Any], top: str | None = None) -> list[float]:
    """A backtest objective's figure at each cutoff, in cutoff order: what the Wilcoxon pruner compares.

    ``backtest-top-k``: the model's picks' profit per period after cost at each cutoff (their mean is the
    objective); ``backtest-diff``: that less the trailing mean's picks'. Both are read back from the table's
    cumulative curves (``cumsum(profit * hold)``).

    Raises:
        ObjectiveError: for a holdout objective (one value per trial, no instances), or a table without curves.
    """
    if not objective.backtest:
        raise ObjectiveError(f"objective {objective.name} has no per-cutoff values: it is scored on one holdout")
    try:
        hold = float(metrics["backtest"]["hold"])
        methods = backtest_size(metrics, top)["methods"]
        model = per_cutoff(methods["model"]["curve"], hold)
        if objective.name == "backtest-diff":
            trailing = per_cutoff(methods["trailing_mean"]["curve"], hold)
            return [m - t for m, t in zip(model, trailing, strict=True)]
    except (KeyError, IndexError, TypeError) as exc:
        raise ObjectiveError(f"objective {objective.name}: the backtest table lacks {exc}") from None
    return model


def cutoff_objective(job: JobSpec) -> Objective | None:
    """The backtest objective whose per-cutoff values ``job`` reports (``report_cutoffs``); None: none.

    Raises:
        ObjectiveError: for an unknown objective, a holdout one, or a job that is no backtest.
    """
    if job.report_cutoffs is None:
        return None
    [objective] = parse_objectives([job.report_cutoffs])
    if not objective.backtest or job.backtest is None:
        raise ObjectiveError(
            f"report_cutoffs {objective.name}: per-cutoff values are a backtest's, of a backtest objective "
            f"({', '.join(o.name for o in OBJECTIVES.values() if o.backtest)})"
        )
    return objective


def finished_cutoff_scores(objective: Objective, progress: Progress) -> list[float]:
    """:func:`cutoff_scores` of a backtest's finished cutoffs so far (after each of its blocks).

    Raises:
        ObjectiveError: as :func:`cutoff_scores`.
    """
    from stratcast.daemon.engine.backtest.stats import backtest_table

    return cutoff_scores(objective, {"backtest": backtest_table(progress.rows, progress.records, progress.options)})


def per_cutoff(curve: Sequence[float], hold: float) -> list[float]:
    """Per-cutoff profit per period of a cumulative curve of profit per holding."""
    return [(b - a) / hold for a, b in zip([0.0, *curve[:-1]], curve, strict=True)]
