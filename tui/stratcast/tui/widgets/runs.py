"""The runs table of the main screen: one row per run, updated in place, sortable and filterable."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

from stratcast.shared.protocol import RUN_STATES, RunInfo
from stratcast.shared.report import duration_text
from stratcast.tui.render import clock, model_label

STATE_STYLES = {
    "running": "bold green",
    "queued": "yellow",
    "held": "magenta",
    "succeeded": "green",
    "failed": "bold red",
    "oom-failed": "bold red",
    "stopped": "cyan",
    "killed": "red",
    "interrupted": "yellow",
}
"""How each state is coloured in the table."""


@dataclass(frozen=True)
class Column:
    """One column: its key, header, least width, how to show a run, and how to sort by it."""

    key: str
    header: str
    width: int
    """Cells kept for its values when choosing the columns that fit, so figures that grow later still fit."""
    cell: Callable[[RunInfo], str | Text]
    sort: Callable[[RunInfo], Any]


def _num(value: Any, fmt: str = "{:.4g}") -> str:
    return fmt.format(value) if isinstance(value, int | float) else "-"


def _percent(run: RunInfo) -> float | None:
    p = run.progress
    step, total = p.get("step"), p.get("max_steps")
    if run.state == "succeeded":
        return 100.0
    if isinstance(step, int | float) and isinstance(total, int | float) and total > 0:
        return 100.0 * step / total
    return None


def state_cell(run: RunInfo, reason_width: int = 32) -> Text:
    """The state, then as much of the wait reason as ``reason_width`` allows (the line under the table has all)."""
    text = Text(run.state, style=STATE_STYLES.get(run.state, ""))
    reason = run.reason if run.reason != run.state and run.state not in ("running", "succeeded") else ""
    if reason and reason_width > 3:
        short = reason if len(reason) <= reason_width else reason[: reason_width - 1] + "…"
        text.append(f" {short}", style="dim")
    return text


def _cell_len(cell: str | Text) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(cell)


def _name(run: RunInfo) -> str:
    name = run.name or "-"
    return name if len(name) <= 18 else name[:17] + "…"


def _gpu(run: RunInfo) -> str:
    if run.device is None or run.state != "running":
        return "-"
    return run.device.removeprefix("cuda:") if run.device.startswith("cuda") else run.device


def _peak(run: RunInfo) -> str:
    peak = run.memory.get("peak") or run.memory.get("rss")
    return f"{peak / 2**30:.2f}G" if isinstance(peak, int | float) and peak else "-"


def _eta(run: RunInfo) -> str:
    eta = run.progress.get("eta_s")
    return duration_text(eta) if run.state == "running" and isinstance(eta, int | float) else "-"


def _key(value: Any) -> tuple[bool, Any]:
    """Sort key putting missing values last."""
    return (value is None, value if value is not None else 0)


def _progress(field: str, fmt: str = "{:.4g}") -> tuple[Callable[[RunInfo], str], Callable[[RunInfo], Any]]:
    """The cell and the sort key of one progress figure."""
    return lambda r: _num(r.progress.get(field), fmt), lambda r: _key(r.progress.get(field))


COLUMNS = (
    Column("id", "ID", 2, lambda r: str(r.id), lambda r: r.id),
    Column("name", "Name", 4, _name, lambda r: r.name),
    Column("model", "Model", 5, lambda r: model_label(r.job), lambda r: model_label(r.job)),
    Column("state", "State", max(map(len, RUN_STATES)), state_cell, lambda r: r.state),
    Column("pct", "%", 3, lambda r: _num(_percent(r), "{:.0f}"), lambda r: _key(_percent(r))),
    Column("step", "Step", 5, *_progress("step", "{}")),
    Column("epoch", "Epoch", 5, *_progress("epoch", "{:.1f}")),
    Column("loss", "Loss", 6, *_progress("train_loss")),
    Column("val", "Val", 6, *_progress("val_loss")),
    Column("mb", "µB", 4, *_progress("micro_batch", "{}")),
    Column("gpu", "GPU", 3, _gpu, _gpu),
    Column("peak", "Peak", 6, _peak, lambda r: _key(r.memory.get("peak") or r.memory.get("rss"))),
    Column("eta", "ETA", 6, _eta, lambda r: _key(r.progress.get("eta_s"))),
    Column("started", "Started", 8, lambda r: clock(r.started) if r.started else "-", lambda r: _key(r.started)),
)
"""The table's columns, in order (``µB``: the current micro-batch)."""
BY_KEY = {c.key: c for c in COLUMNS}
KEEP = ("id", "name", "state", "pct", "loss", "eta", "model", "step", "val", "peak", "gpu", "mb", "epoch", "started")
"""Column keys, most needed first: a table too narrow for all drops from the end those that do not fit."""


def matches(run: RunInfo, query: str) -> bool:
    """Whether ``run`` passes the filter: every word of ``query`` is in its id, name, model, state or reason.

    ``state:running``-style words match that field exactly.
    """
    fields = {"id": str(run.id), "name": run.name, "model": model_label(run.job), "state": run.state}
    haystack = " ".join([*fields.values(), run.reason, run.device or ""]).lower()
    for word in query.lower().split():
        field, _, value = word.partition(":")
        if value and field in fields:
            if fields[field].lower() != value:
                return False
        elif word not in haystack:
            return False
    return True


class RunsTable(DataTable[str | Text]):
    """Every run, newest first by default; rows are keyed by run id and updated in place, so the cursor stays."""

    DEFAULT_CSS = """
    RunsTable { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.sort_key = "id"
        """The column runs are sorted by."""
        self.reverse = True
        self.query_text = ""
        """The filter (see :func:`matches`)."""
        self._rows: dict[int, tuple[str | Text, ...]] = {}
        self._columns: tuple[Column, ...] = ()
        """The columns shown: those of :data:`KEEP` that fit the width (see :meth:`_fit`)."""
        self._widths: dict[str, int] = {}
        """Each shown column's width (without padding), by key."""
        self._reason_width = 0
        self._order: list[int] = []
        self._stale = True
        """Whether the next show rebuilds the table (columns and rows) even if the runs' order is the same."""
        self._states: list[tuple[str, str]] = []
        self._values_at = -math.inf
        self.values_every_s = 1.0
        """Least seconds between updates that change only progress figures."""

    def on_resize(self) -> None:
        self._stale = True  # the columns shown and the wait reasons' width follow the table's

    @property
    def selected_run(self) -> int | None:
        """The id of the run under the cursor."""
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    def show(self, runs: Iterable[RunInfo]) -> None:
        """Bring the table in line with ``runs``: changed cells only, the cursor kept on the same run.

        Rows added, removed, moved or changing state show at once; changes of progress figures alone (step, loss,
        ETA) at most every :attr:`values_every_s`: Textual's DataTable renders every visible cell again after any
        change, so repainting a full table at the app's rate cost more than the whole rest of the screen.
        """
        column = BY_KEY[self.sort_key]
        shown = sorted((r for r in runs if matches(r, self.query_text)), key=column.sort, reverse=self.reverse)
        order = [r.id for r in shown]
        states: list[tuple[str, str]] = [(r.state, r.reason) for r in shown]
        selected = self.selected_run
        now = time.monotonic()
        if self._stale or order != self._order:
            self._rebuild(shown)
        elif states != self._states or now - self._values_at >= self.values_every_s:
            if not self._update(shown):
                self._rebuild(shown)
        else:
            return
        self._values_at = now
        self._states = states
        self._order = order
        if selected in order:
            self.move_cursor(row=order.index(selected), animate=False, scroll=False)

    def _cells(self, run: RunInfo) -> tuple[str | Text, ...]:
        return tuple(state_cell(run, self._reason_width) if c.key == "state" else c.cell(run) for c in self._columns)

    def _fit(self, runs: list[RunInfo]) -> None:
        """Choose the columns that fit and their widths, most needed first (:data:`KEEP`); the reasons get the rest.

        The widths are fixed (not Textual's auto width): a figure that outgrows its column rebuilds the table (see
        :meth:`_update`) rather than pushing the columns after it off the screen.
        """
        room = self.size.width - self.styles.scrollbar_size_vertical  # as if the rows overflowed
        widths: dict[str, int] = {}
        for key in KEEP:
            width = self._width(BY_KEY[key], runs, 0)
            if width + 2 * self.cell_padding <= room:
                widths[key] = width
                room -= width + 2 * self.cell_padding
        self._columns = tuple(c for c in COLUMNS if c.key in widths)
        self._reason_width = min(40, room - 1)  # less the space between a state and its reason
        if "state" in widths:
            widths["state"] = self._width(BY_KEY["state"], runs, self._reason_width)
        self._widths = widths

    @staticmethod
    def _width(column: Column, runs: list[RunInfo], reason_width: int) -> int:
        """The cells ``column`` needs: its widest value (states with ``reason_width`` of reason), header or width."""
        cells = (state_cell(r, reason_width) if column.key == "state" else column.cell(r) for r in runs)
        return max(max(map(_cell_len, cells), default=0), column.width, cell_len(column.header))

    def _rebuild(self, runs: list[RunInfo]) -> None:
        self._fit(runs)
        self._stale = False
        self.clear(columns=True)
        for column in self._columns:
            self.add_column(column.header, key=column.key, width=self._widths[column.key])
        self._rows = {}
        for run in runs:
            cells = self._cells(run)
            self.add_row(*cells, key=str(run.id))
            self._rows[run.id] = cells

    def _update(self, runs: list[RunInfo]) -> bool:
        """Change the cells that changed; False, changing none, when a value outgrew its column."""
        rows = {run.id: self._cells(run) for run in runs}
        for cells in rows.values():
            if any(_cell_len(v) > self._widths[c.key] for c, v in zip(self._columns, cells, strict=True)):
                return False
        for run_id, cells in rows.items():
            for column, value, before in zip(self._columns, cells, self._rows.get(run_id, ()), strict=False):
                if value != before:
                    self.update_cell(str(run_id), column.key, value)
            self._rows[run_id] = cells
        return True

    def cycle_sort(self) -> str:
        """Sort by the next column shown (descending, then ascending); the new column's header."""
        keys = [c.key for c in self._columns or COLUMNS]
        if not self.reverse or self.sort_key not in keys:  # a column the table no longer shows: the next shown
            at = keys.index(self.sort_key) if self.sort_key in keys else -1
            self.sort_key, self.reverse = keys[(at + 1) % len(keys)], False
        self.reverse = not self.reverse
        self._stale = True
        return f"{BY_KEY[self.sort_key].header} {'↓' if self.reverse else '↑'}"
