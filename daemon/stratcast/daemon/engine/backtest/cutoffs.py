"""The cutoffs of a walk-forward backtest, the refusals of options it cannot run, and the panel as a cutoff sees it.

A cutoff ``c`` is the grid period where a holding starts: the model and the baselines see periods ``< c`` only, and
the picks are held over ``[c, c + hold)``. The ``cutoffs`` cutoffs lie ``every`` periods apart and the last one
``hold`` periods before the panel's end, so the last holding ends with the panel. Every ``refit_every``-th cutoff,
the first included, trains a fresh model; a block is a refit cutoff and the cutoffs that predict with its model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from stratcast.daemon.engine.data.panel import Panel
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.shared.protocol import BacktestOptions


@dataclass(frozen=True)
class CutoffPlan:
    """Where the cutoffs of a backtest lie and which of them retrain."""

    cutoffs: tuple[int, ...]
    """Grid periods of the cutoffs (each the first held period), ascending."""
    hold: int
    """Periods each pick is held."""
    refit_every: int
    dates: tuple[str, ...]
    """The panel's time label of each cutoff (:func:`period_label`)."""

    @property
    def blocks(self) -> list[list[int]]:
        """Indices into :attr:`cutoffs` per refit block: ``[[0, 1, 2, 3], [4, 5, ...], ...]``."""
        n, r = len(self.cutoffs), self.refit_every
        return [list(range(lo, min(lo + r, n))) for lo in range(0, n, r)]

    def describe(self) -> str:
        """One log line: how many cutoffs, from when to when, and how many trainings."""
        return (
            f"backtest: {len(self.cutoffs)} cutoffs from {self.dates[0]} to {self.dates[-1]}, each held "
            f"{self.hold} periods; {len(self.blocks)} trainings (refit every {self.refit_every})"
        )


def plan_cutoffs(panel: Panel, spec: RunSpec, options: BacktestOptions) -> CutoffPlan:
    """The cutoffs of ``options`` on ``panel``, refusing what cannot be backtested.

    Raises:
        ValueError: when the hold is longer than the horizon or passes the panel's end, when the first cutoff
            leaves too little history for the input and validation, or when a pick size is larger than the
            strategies a cutoff can rank; the message names the numbers and the option to change.
    """
    hold, horizon, n_times = options.hold_periods, spec.train.horizon, panel.n_times
    if hold > horizon:
        raise ValueError(
            f"--hold {hold} is longer than the horizon {horizon}: the model forecasts {horizon} periods; "
            f"lower --hold to at most {horizon} or raise --horizon to {hold}"
        )
    if hold >= n_times:
        raise ValueError(
            f"--hold {hold} runs past the panel's end: the panel has {n_times} periods, so a holding of {hold} "
            f"leaves no history before it; lower --hold below {n_times}"
        )
    first = n_times - hold - (options.cutoffs - 1) * options.every
    check_history(panel, spec, options, first)
    cutoffs = tuple(first + i * options.every for i in range(options.cutoffs))
    check_picks(panel, spec, options, cutoffs)
    dates = tuple(period_label(panel, c) for c in cutoffs)
    return CutoffPlan(cutoffs, hold, options.refit_every, dates)


def check_history(panel: Panel, spec: RunSpec, options: BacktestOptions, first: int) -> None:
    """Refuse a first cutoff whose history (the longest series' before it) cannot hold input and validation."""
    cfg = spec.train
    history = first - int(panel.start.min()) if first > 0 else first
    val = cfg.effective_val_size(max(history, 0), 0)
    required = cfg.min_input + 1 + val
    if history >= required:
        return
    label = period_label(panel, first) if 0 <= first < panel.n_times else f"{first} (before the panel's start)"
    raise ValueError(
        f"--cutoffs {options.cutoffs} --every {options.every} --hold {options.hold_periods} put the first cutoff at "
        f"period {label}: {history} periods of history before it (the panel's {panel.n_times} less "
        f"{options.hold_periods} held less {options.cutoffs - 1} x {options.every} between cutoffs), but "
        f"input_size {cfg.min_input} + 1 + val_size {val} need {required}: lower --cutoffs or --every, or "
        "--input-size, or --set val_size=N"
    )


def eligible(panel: Panel, spec: RunSpec, cutoff: int, hold: int) -> np.ndarray[tuple[int], np.dtype[np.bool_]]:
    """[N] the strategies a cutoff can rank: an input window before it and observed through the holding."""
    return (panel.start + spec.train.min_input <= cutoff) & (panel.end >= cutoff + hold)


def check_picks(panel: Panel, spec: RunSpec, options: BacktestOptions, cutoffs: tuple[int, ...]) -> None:
    """Refuse pick sizes larger than the strategies of the cutoff with the fewest to rank."""
    counts = [int(eligible(panel, spec, c, options.hold_periods).sum()) for c in cutoffs]
    fewest = int(np.argmin(counts))
    where = (
        f"at cutoff {period_label(panel, cutoffs[fewest])} {counts[fewest]} of {panel.n_series} strategies have "
        f"an input window before it and are observed through the holding"
    )
    if counts[fewest] == 0:
        raise ValueError(f"{where}: nothing to pick; lower --cutoffs or --every, or --input-size")
    try:
        options.pick_sizes(counts[fewest])
    except ValueError as exc:
        raise ValueError(f"{exc} ({where})") from None


def period_label(panel: Panel, period: int) -> str:
    """The panel's time of grid period ``period``: an ISO date for dates, the integer position otherwise."""
    t = panel.times[period]
    if np.issubdtype(panel.times.dtype, np.datetime64):
        return str(np.datetime_as_string(t, unit="D"))
    return str(int(t))


def truncate(panel: Panel, cutoff: int) -> Panel:
    """``panel`` as of ``cutoff``: its periods before it only; a series ends at ``min(its end, cutoff)``.

    The values from ``cutoff`` on are not copied: nothing built from the result can read them.
    """
    end = np.clip(np.minimum(panel.end, cutoff), panel.start.clip(max=cutoff), None)
    return dataclasses.replace(
        panel,
        times=panel.times[:cutoff].copy(),
        values=np.ascontiguousarray(panel.values[:, :cutoff]),
        start=np.minimum(panel.start, cutoff),
        end=end.astype(np.int64),
    )
