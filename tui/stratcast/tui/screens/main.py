"""The main screen: the GPU panel over the runs table, with every run action on a key."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input, Static

from stratcast.shared.protocol import (
    RUN_STATES,
    RemoveRun,
    SetPriority,
)
from stratcast.tui.render import model_label
from stratcast.tui.screens.dialogs import ConfirmDialog, PromptDialog, problem
from stratcast.tui.screens.run_actions import RunActionScreen
from stratcast.tui.validate import whole_number
from stratcast.tui.widgets.gpu import DevicePanel
from stratcast.tui.widgets.runs import RunsTable

if TYPE_CHECKING:
    from stratcast.tui.link import Link

LINK_STYLES = {"live": "green", "connecting": "yellow", "reconnecting": "bold yellow"}


def status_line(link: Link) -> Text:
    """``● live · 2 queued, 1 running, 4 succeeded · queue paused``: runs in each state (or why the link is down)."""
    m = link.mirror
    line = Text("● ", style=LINK_STYLES[link.state]) + Text(link.state, style=LINK_STYLES[link.state])
    if link.state != "live" and link.detail:
        line.append(f" ({link.detail.splitlines()[0]})", style="dim")
    counts = Counter[str](run.state for run in m.runs.values())
    states = [f"{counts[state]} {state}" for state in RUN_STATES if counts[state]]
    if states:
        line.append(" · " + ", ".join(states))  # commas: every state's count fits 80 columns more often
    if m.queue_paused:
        line.append(" · queue paused", style="bold magenta")
    if m.notices:
        line.append(f" · {m.notices[-1]}", style="yellow")
    return line


class MainScreen(RunActionScreen):
    """GPUs (or the host) on top, runs below; ``enter`` opens a run."""

    BINDINGS = [
        Binding("n", "new_run", "New"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("h", "hold", "Hold/release"),
        Binding("k", "kill", "Kill"),
        Binding("R", "restart", "Restart"),
        Binding("x,delete", "remove", "Remove"),
        Binding("p", "priority", "Priority"),
        Binding("e", "export", "Export"),
        Binding("c", "schedules", "Schedules"),
        Binding("t", "studies", "Studies"),
        Binding("m", "saved", "Models"),
        Binding("slash", "filter", "Filter"),
        Binding("o", "sort", "Sort"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield DevicePanel()
        yield RunsTable(id="runs")
        yield Static(id="detail")
        yield Input(placeholder="filter: words, or state:running, model:nhits", id="filter", classes="-hidden")
        yield Footer()

    def on_resize(self) -> None:
        # short terminals (80x24) get two-row history charts so the runs table keeps most of the screen
        self.query_one(DevicePanel).set_class(self.size.height < 32, "-compact")
        self.call_after_refresh(self.refresh_from, self.stratcast.link)  # the table fits its new width

    def on_mount(self) -> None:
        table = self.query_one(RunsTable)
        table.focus()
        self.refresh_from(self.stratcast.link)
        # progress figures the table held back (see RunsTable.show) appear even when no further event comes
        self.set_interval(table.values_every_s / 2, lambda: table.show(self.stratcast.link.mirror.runs.values()))

    def refresh_from(self, link: Link) -> None:
        """Repaint from the link's mirror (called by the app at its fixed rate, when something changed)."""
        self.query_one("#status", Static).update(status_line(link))
        self.query_one(DevicePanel).show(link.mirror)
        self.query_one(RunsTable).show(link.mirror.runs.values())
        self._show_detail()

    @on(DataTable.RowHighlighted)
    def _show_detail(self) -> None:
        """The selected run's full state and reason, under the table."""
        run_id = self.query_one(RunsTable).selected_run
        run = self.stratcast.link.mirror.runs.get(run_id) if run_id is not None else None
        text = Text()
        if run is not None:
            text.append(f"run {run.id} {run.name} ", style="bold")
            text.append(f"{model_label(run.job)} · {run.state}")
            if run.reason:
                text.append(f": {run.reason}")
            if run.exit:
                text.append(f" · {run.exit}", style="dim")
        self.query_one("#detail", Static).update(text)

    # -- selection and opening ---------------------------------------------------------------------------------

    def _target(self) -> int | None:
        run = self.query_one(RunsTable).selected_run
        if run is None:
            self.notify("no run selected", severity="warning")
        return run

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.stratcast.open_run(int(event.row_key.value))

    # -- actions -------------------------------------------------------------------------------------------------

    @work
    async def action_remove(self) -> None:
        """Forget the selected run and delete its folder, after confirmation."""
        if (run := self._target()) is None:
            return
        if await self.app.push_screen_wait(ConfirmDialog(f"Remove run {run} and delete its folder?", yes="Remove")):
            self._send(RemoveRun(run=run), f"removed run {run}")

    @work
    async def action_priority(self) -> None:
        """Change the selected run's priority (higher starts first)."""
        if (run := self._target()) is None:
            return
        current = self.stratcast.link.mirror.runs[run].placement.priority
        answer = await self.app.push_screen_wait(
            PromptDialog(
                f"Priority of run {run} (higher starts first):", value=str(current), check=problem(whole_number)
            )
        )
        if answer is not None:
            self._send(SetPriority(run=run, priority=int(answer)), f"run {run} has priority {answer}")

    def action_new_run(self) -> None:
        """Open the new-run form."""
        self.stratcast.open_new_run()

    def action_schedules(self) -> None:
        """Open the schedules screen."""
        self.stratcast.open_schedules()

    def action_studies(self) -> None:
        """Open the studies screen."""
        self.stratcast.open_studies()

    def action_saved(self) -> None:
        """Open the saved models screen."""
        self.stratcast.open_saved()

    def action_filter(self) -> None:
        """Show the filter box."""
        box = self.query_one("#filter", Input)
        box.remove_class("-hidden")
        box.focus()

    def action_clear_filter(self) -> None:
        """Clear and hide the filter box."""
        box = self.query_one("#filter", Input)
        box.value = ""
        box.add_class("-hidden")
        self._set_filter("")

    def action_sort(self) -> None:
        """Sort by the next column."""
        table = self.query_one(RunsTable)
        self.notify(f"sorted by {table.cycle_sort()}", timeout=2)
        table.show(self.stratcast.link.mirror.runs.values())

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.query_one(RunsTable).focus()

    def _set_filter(self, text: str) -> None:
        table = self.query_one(RunsTable)
        table.query_text = text
        table.show(self.stratcast.link.mirror.runs.values())
        if not text:
            table.focus()
