"""The runs table of the main screen: one row per run, updated in place, sortable and filterable."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from stratcast.shared.protocol import RunInfo
from stratcast.tui.render import clock, duration_text

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
    """One column: its key, header, how to show a run, and how to sort by it."""

    key: str
    header: str
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


COLUMNS = (
    Column("id", "ID", lambda r: str(r.id), lambda r: r.id),
    Column("name", "Name", _name, lambda r: r.name),
    Column("model", "Model", lambda r: r.job.model, lambda r: r.job.model),
    Column("state", "State", state_cell, lambda r: r.state),
    Column("pct", "%", lambda r: _num(_percent(r), "{:.0f}"), lambda r: _key(_percent(r))),
    Column("step", "Step", lambda r: _num(r.progress.get("step"), "{}"), lambda r: _key(r.progress.get("step"))),
    Column(
        "epoch", "Epoch", lambda r: _num(r.progress.get("epoch"), "{:.1f}"), lambda r: _key(r.progress.get("epoch"))
    ),
    Column("loss", "Loss", lambda r: _num(r.progress.get("train_loss")), lambda r: _key(r.progress.get("train_loss"))),
    Column("val", "Val", lambda r: _num(r.progress.get("val_loss")), lambda r: _key(r.progress.get("val_loss"))),
    Column(
        "mb", "µB", lambda r: _num(r.progress.get("micro_batch"), "{}"), lambda r: _key(r.progress.get("micro_batch"))
    ),
    Column("gpu", "GPU", _gpu, _gpu),
    Column("peak", "Peak", _peak, lambda r: _key(r.memory.get("peak") or r.memory.get("rss"))),
    Column("eta", "ETA", _eta, lambda r: _key(r.progress.get("eta_s"))),
    Column("started", "Started", lambda r: clock(r.started) if r.started else "-", lambda r: _key(r.started)),
)
"""The table's columns, in order (``µB``: the current micro-batch)."""
BY_KEY = {c.key: c for c in COLUMNS}


def matches(run: RunInfo, query: str) -> bool:
    """Whether ``run`` passes the filter: every word of ``query`` is in its id, name, model, state or reason.

    ``state:running``-style words match that field exactly.
    """
    fields = {"id": str(run.id), "name": run.name, "model": run.job.model, "state": run.state}
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
        self._order: list[int] = []
        self._states: list[tuple[str, str]] = []
        self._values_at = -math.inf
        self.values_every_s = 1.0
        """Least seconds between updates that change only progress figures."""

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(column.header, key=column.key)

    def on_resize(self) -> None:
        self._order = []  # the wait reasons' width follows the table's: rebuild on the next show

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
        if order != self._order:
            self._rebuild(shown)
        elif states != self._states or now - self._values_at >= self.values_every_s:
            self._update(shown)
        else:
            return
        self._values_at = now
        self._states = states
        self._order = order
        if selected in order:
            self.move_cursor(row=order.index(selected), animate=False, scroll=False)

    def _cells(self, run: RunInfo) -> tuple[str | Text, ...]:
        # the wait reason gets the width left over by the other columns (about 100 characters)
        reason_width = min(40, self.size.width - 100)
        return tuple(state_cell(run, reason_width) if c.key == "state" else c.cell(run) for c in COLUMNS)

    def _rebuild(self, runs: list[RunInfo]) -> None:
        self.clear()
        self._rows = {}
        for run in runs:
            cells = self._cells(run)
            self.add_row(*cells, key=str(run.id))
            self._rows[run.id] = cells

    def _update(self, runs: list[RunInfo]) -> None:
        for run in runs:
            cells = self._cells(run)
            old = self._rows.get(run.id)
            for column, value, before in zip(COLUMNS, cells, old or (), strict=False):
                if value != before:
                    self.update_cell(str(run.id), column.key, value, update_width=True)
            self._rows[run.id] = cells

    def cycle_sort(self) -> str:
        """Sort by the next column (descending, then ascending); the new column's header."""
        keys = [c.key for c in COLUMNS]
        if not self.reverse:
            self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)]
        self.reverse = not self.reverse
        self._order = []  # rebuild on the next show
        return f"{BY_KEY[self.sort_key].header} {'↓' if self.reverse else '↑'}"
