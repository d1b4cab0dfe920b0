"""The in-memory panel: N strategies on one regular time grid, as one dense array."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


class DataError(ValueError):
    """Bad input data. The message names the file, the column and the first offending rows, and what to do."""


@dataclass(frozen=True, eq=False)
class Panel:
    """A panel of series on a common regular grid; a series may start late and end early (a ragged panel).

    ``values[i, t]`` is series ``i`` at ``times[t]`` for ``start[i] <= t < end[i]``; outside its periods a series'
    values are 0 and never used as data (a strategy that stopped trading has no periods after its end, not zeros).
    """

    ids: NDArray[np.generic]
    """[N] strategy ids as read (ints or strings), in the order of the rows of ``values``."""
    times: NDArray[np.generic]
    """[T] the time grid: ``datetime64[ns]`` for dates, ``int64`` for integer positions."""
    values: NDArray[np.float32]
    """[N, T] float32, finite everywhere."""
    start: NDArray[np.int64]
    """[N] index of each series' first observation."""
    end: NDArray[np.int64]
    """[N] index just past each series' last observation (``n_times`` for a series that runs to the grid's end)."""
    source: str = "<memory>"
    """Where the panel came from, for messages."""
    filled: int = 0
    """How many (id, time) cells were missing and filled with 0 (``--fill-missing zero``)."""
    id_col: str = "No."
    time_col: str = "week"
    target_col: str = "profit"
    notes: tuple[str, ...] = field(default=())
    """Warnings raised while loading (skipped series and the like), shown to the user."""
    own_positions: bool = False
    """Whether the times are each series' own integer positions (every series counts from the same first one,
    as in the M4 files), so the series all end at their own last observation and none stopped early."""

    def __post_init__(self) -> None:
        n, t = self.values.shape
        if self.ids.shape != (n,) or self.times.shape != (t,) or self.start.shape != (n,) or self.end.shape != (n,):
            raise ValueError(
                f"panel shapes disagree: values {self.values.shape}, ids {self.ids.shape}, "
                f"times {self.times.shape}, start {self.start.shape}, end {self.end.shape}"
            )

    @property
    def n_series(self) -> int:
        """Number of series (N)."""
        return int(self.values.shape[0])

    @property
    def n_times(self) -> int:
        """Length of the time grid (T)."""
        return int(self.values.shape[1])

    @property
    def lengths(self) -> NDArray[np.int64]:
        """[N] number of periods per series, from its first to its last (filled gaps included)."""
        return (self.end - self.start).astype(np.int64)

    @property
    def ended_early(self) -> NDArray[np.bool_]:
        """[N] whether a series stopped before the panel's last period (never with :attr:`own_positions`)."""
        return (self.end < self.n_times) & (not self.own_positions)

    @property
    def last_times(self) -> NDArray[np.generic]:
        """[N] the time of each series' last period: its forecast follows on from there."""
        return self.times[self.end - 1]

    def periods(self) -> NDArray[np.bool_]:
        """[N, T] true at each series' own periods, from its first to its last."""
        t = np.arange(self.n_times)[None, :]
        return (t >= self.start[:, None]) & (t < self.end[:, None])

    @property
    def zero_share(self) -> float:
        """Share of zeros among the series' own periods."""
        periods = self.periods()
        return float(((self.values == 0) & periods).sum() / max(int(periods.sum()), 1))

    def select(self, rows: NDArray[np.bool_], note: str | None = None) -> Panel:
        """A panel with only the rows where ``rows`` is true, optionally recording a note."""
        notes = (*self.notes, note) if note else self.notes
        return Panel(
            ids=self.ids[rows],
            times=self.times,
            values=self.values[rows],
            start=self.start[rows],
            end=self.end[rows],
            source=self.source,
            filled=self.filled,
            id_col=self.id_col,
            time_col=self.time_col,
            target_col=self.target_col,
            notes=notes,
            own_positions=self.own_positions,
        )
