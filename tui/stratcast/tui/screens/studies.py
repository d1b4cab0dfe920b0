"""The studies screen: every daemon study with its trials done, asked and planned and its best value so far.

Studies are not in the live mirror: the screen asks ``list_studies`` every :attr:`StudiesScreen.POLL_S` seconds,
and ``show_study`` for the trials of each study that runs or changed since it was last read (a finished study is
read once). A failed read is shown in the title and tried again at the next poll.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from stratcast.shared.client import DaemonUnavailable, RequestFailed
from stratcast.shared.protocol import ListStudies, ResumeStudy, ShowStudy, StopStudy
from stratcast.tui.link import failure_text
from stratcast.tui.render import study_line
from stratcast.tui.screens.base import AppScreen
from stratcast.tui.study_view import Cell, Summary, study_cells, summarize

if TYPE_CHECKING:
    pass

COLUMNS = (
    ("id", "id"),
    ("name", "name"),
    ("state", "state"),
    ("models", "models"),
    ("objectives", "objectives"),
    ("trials", "done/asked/of"),
    ("best", "best"),
    ("elapsed", "elapsed"),
)
"""Column keys and headers."""


class StudiesScreen(AppScreen):
    """Studies in a table, polled from the daemon; keys act on the selected one, ``enter`` opens it."""

    BINDINGS = [
        Binding("n", "new_study", "New study"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("escape", "back", "Back"),
    ]
    POLL_S = 3.0
    """Seconds between reads of the studies."""

    def __init__(self) -> None:
        super().__init__()
        self.studies: dict[int, Mapping[str, Any]] = {}
        """The last ``list_studies`` reply's studies, by id."""
        self.summaries: dict[int, tuple[tuple[Any, ...], Summary]] = {}
        """Each study's trials summary, with the study's (state, asked) it was read at."""
        self.problem = ""

    def compose(self) -> ComposeResult:
        yield Static(id="studies-title")
        table: DataTable[Cell] = DataTable(id="studies", cursor_type="row", zebra_stripes=True)
        for key, header in COLUMNS:
            table.add_column(header, key=key)
        yield table
        yield Static(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#studies", DataTable).focus()
        self.show()
        self.poll()
        self.set_interval(self.POLL_S, self.poll)

    def on_screen_resume(self) -> None:
        self.poll()

    # -- reading ---------------------------------------------------------------------------------------------

    @work(group="poll", exclusive=True)
    async def poll(self) -> None:
        """Read the studies, then the trials of those that run or changed; repaint."""
        link = self.stratcast.link
        try:
            reply = await link.call(ListStudies())
        except (RequestFailed, DaemonUnavailable) as exc:
            self.problem = f"cannot list the studies: {failure_text(exc)}"
            self.show()
            return
        self.problem = ""
        self.studies = {s["id"]: s for s in reply["studies"]}
        for s in self.studies.values():
            key = (s["state"], s["asked"])
            known = self.summaries.get(s["id"])
            if known is not None and known[0] == key and s["state"] != "running":
                continue
            try:
                self.summaries[s["id"]] = (key, summarize(await link.call(ShowStudy(study=s["id"]))))
            except (RequestFailed, DaemonUnavailable):
                self.summaries.pop(s["id"], None)  # shown as "?" until a read works
        self.show()

    def show(self) -> None:
        """Update the rows in place (the cursor stays on its study), the title and the detail line."""
        if not self.is_mounted:
            return
        table: DataTable[Cell] = self.query_one("#studies", DataTable)
        now = self.stratcast.clock()
        for gone in [key for key in table.rows if key.value is None or int(key.value) not in self.studies]:
            table.remove_row(gone)
        for s in sorted(self.studies.values(), key=lambda s: -int(s["id"])):
            known = self.summaries.get(s["id"])
            cells = study_cells(s, known[1] if known else None, now)
            key = str(s["id"])
            if key not in table.rows:
                table.add_row(*cells, key=key)
                continue
            for (column, _), cell in zip(COLUMNS, cells, strict=True):
                if table.get_cell(key, column) != cell:
                    table.update_cell(key, column, cell, update_width=True)
        running = sum(s["state"] == "running" for s in self.studies.values())
        title = Text("Studies", style="bold")
        title.append(f" · {len(self.studies)}" + (f", {running} running" if running else ""))
        if self.problem:
            title.append(f" · {self.problem}", style="red")
        self.query_one("#studies-title", Static).update(title)
        self._show_detail()

    @on(DataTable.RowHighlighted)
    def _show_detail(self) -> None:
        s = self._study()
        text = Text("no studies: n starts one", style="dim") if s is None else Text(study_line({"study": s}))
        if s is not None and s.get("final_run") is not None:
            text.append(f" · final run {s['final_run']}", style="dim")
        self.query_one("#detail", Static).update(text)

    def _study(self) -> Mapping[str, Any] | None:
        table: DataTable[Cell] = self.query_one("#studies", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.studies.get(int(key)) if key is not None else None

    def _selected(self) -> int | None:
        s = self._study()
        if s is None:
            self.notify("no study selected", severity="warning")
            return None
        return int(s["id"])

    # -- actions ---------------------------------------------------------------------------------------------

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.stratcast.open_study(int(event.row_key.value))

    def action_new_study(self) -> None:
        """Open the new-study form."""
        from stratcast.tui.screens.new_study import NewStudyScreen

        self.app.push_screen(NewStudyScreen())

    @work
    async def action_stop(self) -> None:
        """Stop the selected study: no new trials, its running ones stopped with a checkpoint."""
        if (study := self._selected()) is not None and await self.stratcast.call(StopStudy(study=study)):
            self.notify(f"stopped study {study}", timeout=3)
            self.poll()

    @work
    async def action_resume(self) -> None:
        """Resume the selected stopped study."""
        if (study := self._selected()) is not None and await self.stratcast.call(ResumeStudy(study=study)):
            self.notify(f"resumed study {study}", timeout=3)
            self.poll()

    def action_back(self) -> None:
        """Back to the previous screen."""
        self.dismiss()
