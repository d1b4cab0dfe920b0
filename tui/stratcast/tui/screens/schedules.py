"""The schedules screen: every schedule with its timetable, next firing and last run; add, pause, remove, run now."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from stratcast.shared.protocol import (
    PauseSchedule,
    RemoveSchedule,
    ResumeSchedule,
    RunScheduleNow,
    ScheduleInfo,
    to_builtins,
)
from stratcast.shared.report import duration_text
from stratcast.tui.render import interval_text, model_label, schedule_last, schedule_model
from stratcast.tui.screens.base import AppScreen
from stratcast.tui.screens.dialogs import ConfirmDialog

if TYPE_CHECKING:
    from stratcast.tui.link import Link

COLUMNS = (
    ("id", "id"),
    ("name", "name"),
    ("state", "state"),
    ("next", "next"),
    ("last", "last run"),
    ("when", "when"),
    ("model", "model"),
    ("data", "data"),
)
"""Column keys and headers; what changes comes first, so 80 columns show it."""
Cell = str | Text


def timetable_text(s: ScheduleInfo) -> str:
    """``0 6 * * 1 Europe/Zurich`` or ``every 7d``."""
    return f"{s.cron} {s.timezone}" if s.cron else f"every {interval_text(s.every_s or 0)}"


def until_text(when: float | None, now: float) -> str:
    """``in 3h 10m``; ``due`` once the time has come; ``-`` for none."""
    if when is None:
        return "-"
    return f"in {duration_text(when - now)}" if when > now else "due"


def last_run_text(s: ScheduleInfo, now: float) -> str:
    """``run 17, 2h 05m ago`` (``study 4, ...`` for a re-tuning schedule), or ``-`` before the first firing."""
    if s.last_run is None:
        return "-"
    ago = f"{duration_text(max(0.0, now - s.last_run))} ago"
    last = schedule_last(to_builtins(s))
    return ago if last == "-" else f"{last}, {ago}"


def schedule_cells(s: ScheduleInfo, now: float) -> tuple[Cell, ...]:
    """One table row, in :data:`COLUMNS` order."""
    state = Text("paused", style="magenta") if s.paused else Text("active", style="green")
    name = s.name if len(s.name) <= 20 else s.name[:19] + "…"
    data = os.path.basename(s.job.data) or s.job.data
    next_run = "-" if s.paused else until_text(s.next_run, now)
    what = schedule_model(to_builtins(s)) if s.study is not None else model_label(s.job)
    return str(s.id), name, state, next_run, last_run_text(s, now), timetable_text(s), what, data


class SchedulesScreen(AppScreen):
    """Schedules in a table, kept live from the mirror; keys act on the selected one."""

    BINDINGS = [
        Binding("a", "add", "Add"),
        Binding("p", "pause", "Pause/resume"),
        Binding("g", "run_now", "Run now"),
        Binding("x,delete", "remove", "Remove"),
        Binding("escape", "back", "Back"),
    ]

    def compose(self) -> ComposeResult:
        yield Static(id="schedules-title")
        table: DataTable[Cell] = DataTable(id="schedules", cursor_type="row", zebra_stripes=True)
        for key, header in COLUMNS:
            table.add_column(header, key=key)
        yield table
        yield Static(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#schedules", DataTable).focus()
        self.refresh_from(self.stratcast.link)

    def on_screen_resume(self) -> None:
        self.refresh_from(self.stratcast.link)

    def refresh_from(self, link: Link) -> None:
        """Update the rows in place (the cursor stays on its schedule), then the title and the detail line."""
        table: DataTable[Cell] = self.query_one("#schedules", DataTable)
        now = self.stratcast.clock()
        schedules = link.mirror.schedules
        selected = self._schedule()
        for gone in [key for key in table.rows if key.value is None or int(key.value) not in schedules]:
            table.remove_row(gone)
        for s in sorted(schedules.values(), key=lambda s: s.id):
            cells = schedule_cells(s, now)
            if str(s.id) not in table.rows:
                table.add_row(*cells, key=str(s.id))
                continue
            for (column, _), cell in zip(COLUMNS, cells, strict=True):
                if table.get_cell(str(s.id), column) != cell:
                    table.update_cell(str(s.id), column, cell, update_width=True)
        if selected is not None and selected.id in schedules:  # rows removed above it would move the cursor
            row = table.get_row_index(str(selected.id))
            if row != table.cursor_row:
                table.move_cursor(row=row)
        paused = sum(s.paused for s in schedules.values())
        title = Text("Schedules", style="bold")
        title.append(f" · {len(schedules)}" + (f", {paused} paused" if paused else ""))
        self.query_one("#schedules-title", Static).update(title)
        self._show_detail()

    @on(DataTable.RowHighlighted)
    def _show_detail(self) -> None:
        """The selected schedule's job and placement in full, and its last run's state."""
        s = self._schedule()
        text = Text()
        if s is None:
            text.append("no schedules: a adds one", style="dim")
        else:
            text.append(f"schedule {s.id} {s.name} ", style="bold")
            if s.study is not None:
                what = f"re-tuning: {schedule_model(to_builtins(s))}"
            elif s.job.saved:
                what = f"scoring with saved model {s.job.saved}"
            else:
                what = f"{s.job.model} ({s.job.mode})"
            text.append(f"{what} on {s.job.data}" + "".join(f" {x}" for x in s.job.sets))
            if s.study is not None and s.last_study_id is not None:
                text.append(f" · last study {s.last_study_id}", style="dim")
            text.append(f" · priority {s.placement.priority}")
            last = self.stratcast.link.mirror.runs.get(s.last_run_id) if s.last_run_id is not None else None
            if last is not None:
                text.append(f" · last run {last.id} {last.state}", style="dim")
        self.query_one("#detail", Static).update(text)

    def _schedule(self) -> ScheduleInfo | None:
        table: DataTable[Cell] = self.query_one("#schedules", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.stratcast.link.mirror.schedules.get(int(key)) if key is not None else None

    def _selected(self) -> ScheduleInfo | None:
        s = self._schedule()
        if s is None:
            self.notify("no schedule selected", severity="warning")
        return s

    # -- actions -------------------------------------------------------------------------------------------------

    def action_add(self) -> None:
        """Open the new-run form with a timetable."""
        from stratcast.tui.screens.new_run import NewRunScreen

        self.app.push_screen(NewRunScreen(schedule=True))

    def action_pause(self) -> None:
        """Pause the selected schedule, or resume a paused one."""
        if (s := self._selected()) is None:
            return
        if s.paused:
            self.stratcast.send(ResumeSchedule(schedule=s.id), f"resumed schedule {s.id}")
        else:
            self.stratcast.send(PauseSchedule(schedule=s.id), f"paused schedule {s.id}")

    @work
    async def action_remove(self) -> None:
        """Delete the selected schedule after confirmation (its runs stay)."""
        if (s := self._selected()) is None:
            return
        question = f"Remove schedule {s.id} ({s.name})? Its runs stay."
        if await self.app.push_screen_wait(ConfirmDialog(question, yes="Remove")):
            self.stratcast.send(RemoveSchedule(schedule=s.id), f"removed schedule {s.id}")

    @work
    async def action_run_now(self) -> None:
        """Enqueue the selected schedule's job now, outside its timetable."""
        if (s := self._selected()) is None:
            return
        result = await self.stratcast.call(RunScheduleNow(schedule=s.id))
        if result is not None and "study" in result:
            self.notify(f"schedule {s.id} started study {result['study'].get('id', '?')}", timeout=4)
        elif result is not None:
            run = result.get("run", {}).get("id", "?")
            self.notify(f"schedule {s.id} queued run {run}", timeout=4)

    def action_back(self) -> None:
        """Back to the previous screen."""
        self.dismiss()
