"""The saved models screen: every saved model with its versions and aliases, its latest version's manifest summary.

Saved models are not in the live mirror: the screen asks ``list_saved`` on mount, after each action and every
:attr:`SavedScreen.POLL_S` seconds, and ``show_saved`` once per model's latest version (for its created time,
metrics and data signature; the selected model's whole summary shows under the table, as ``stratcast saved show``
prints it). Keys: ``v`` shows another version, ``a`` points an alias at a version, ``x`` removes a version (after
confirmation), ``f`` queues a scoring job of new data exactly as ``stratcast forecast --saved`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Label, Static

from stratcast.shared.cli import saved_name
from stratcast.shared.client import DaemonUnavailable, RequestFailed
from stratcast.shared.protocol import (
    SAVED_REF,
    ListSaved,
    Placement,
    RemoveSaved,
    SetAlias,
    ShowSaved,
    Submit,
)
from stratcast.shared.report import data_text, saved_evidence, saved_text
from stratcast.tui import validate
from stratcast.tui.command_line import scoring_job
from stratcast.tui.link import failure_text
from stratcast.tui.screens.base import AppScreen
from stratcast.tui.screens.dialogs import ConfirmDialog, PromptDialog, problem

Cell = str | Text
COLUMNS = (
    ("name", "name"),
    ("versions", "versions"),
    ("aliases", "aliases"),
    ("created", "latest saved"),
    ("metrics", "evidence (holdout RMSE vs baseline)"),
    ("data", "data"),
)
"""Column keys and headers."""


def saved_cells(model: Mapping[str, Any], shown: Mapping[str, Any] | None) -> tuple[Cell, ...]:
    """One row: name, versions, aliases, and the latest version's created time, metrics and data (when read)."""
    aliases = ", ".join(f"{a}={v}" for a, v in sorted(model["aliases"].items())) or "-"
    m = shown["manifest"] if shown else None
    return (
        model["name"],
        ",".join(map(str, model["versions"])),
        aliases,
        "?" if m is None else str(m["created"])[:16].replace("T", " "),
        "?" if m is None else saved_evidence(m),
        "?" if m is None else data_text(m["data"]),
    )


def _saved_ref(text: str) -> str:
    """A saved model reference (``NAME``, ``NAME@ALIAS``, ``NAME:VERSION``)."""
    ref = text.strip()
    if SAVED_REF.fullmatch(ref) is None:
        raise ValueError(f"{ref!r} is not a saved model reference: NAME, NAME@ALIAS or NAME:VERSION")
    return ref


def _version(versions: list[int]) -> Callable[[str], str | None]:
    """A :class:`PromptDialog` check: one of ``versions``."""

    def check(text: str) -> str | None:
        try:
            number = validate.whole_number(text, lo=1)
        except ValueError as exc:
            return str(exc)
        return None if number in versions else f"no version {number}: the versions are {', '.join(map(str, versions))}"

    return check


class ScoreDialog(ModalScreen[Submit | None]):
    """Ask for new data (and the version and a run name) and build the scoring job ``stratcast forecast`` queues."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, ref: str) -> None:
        super().__init__()
        self.ref = ref

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Score new data with a saved model (no training)")
            yield Input(placeholder="/absolute/path/on/the/daemon/new.parquet", id="score-data")
            yield Input(self.ref, placeholder="NAME, NAME@ALIAS or NAME:VERSION", id="score-ref")
            yield Input(placeholder="run name (optional)", id="score-name")
            yield Label("enter queues it, escape cancels", classes="hint")
            yield Label("", id="error", classes="error")

    def on_mount(self) -> None:
        self.query_one("#score-data", Input).focus()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        try:
            data = validate.absolute_path(self.query_one("#score-data", Input).value)
            ref = _saved_ref(self.query_one("#score-ref", Input).value)
        except ValueError as exc:
            self.query_one("#error", Label).update(str(exc))
            return
        name = self.query_one("#score-name", Input).value.strip()
        self.dismiss(Submit(job=scoring_job(data, ref), placement=Placement(name=name)))

    def action_cancel(self) -> None:
        """Close without queueing anything."""
        self.dismiss(None)


class SavedScreen(AppScreen):
    """Saved models in a table (see the module docstring); ``escape`` goes back."""

    BINDINGS = [
        Binding("v", "view", "Show version"),
        Binding("a", "alias", "Set alias"),
        Binding("x,delete", "remove", "Remove version"),
        Binding("f", "score", "Score new data"),
        Binding("escape", "back", "Back"),
    ]
    POLL_S = 10.0
    """Seconds between reads of the list (versions saved elsewhere appear)."""

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, Mapping[str, Any]] = {}
        """The last ``list_saved`` reply, by name."""
        self.shown: dict[str, Mapping[str, Any]] = {}
        """The latest version's ``show_saved`` reply, by ``NAME:VERSION``."""
        self.problems: dict[str, str] = {}
        """Why a version's ``show_saved`` failed, by ``NAME:VERSION``."""
        self.problem = ""
        self.viewed: dict[str, int] = {}
        """The version shown under the table, by model (``v`` picks it; the latest otherwise)."""

    def compose(self) -> ComposeResult:
        yield Static(id="saved-title")
        table: DataTable[Cell] = DataTable(id="saved", cursor_type="row", zebra_stripes=True)
        for key, header in COLUMNS:
            table.add_column(header, key=key)
        yield table
        yield Static(id="saved-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#saved", DataTable).focus()
        self.show()
        self.read()
        self.set_interval(self.POLL_S, self.read)

    # -- reading ---------------------------------------------------------------------------------------------

    @work(group="read", exclusive=True)
    async def read(self) -> None:
        """Read the list, then the manifest of each latest version not read yet; repaint."""
        link = self.stratcast.link
        try:
            models = await link.call(ListSaved())
        except (RequestFailed, DaemonUnavailable) as exc:
            self.problem = f"cannot list the saved models: {failure_text(exc)}"
            self.show()
            return
        self.problem = ""
        self.models = {m["name"]: m for m in models}
        self.show()
        for m in models:
            ref = f"{m['name']}:{m['latest']}"
            if ref in self.shown or ref in self.problems:
                continue
            try:
                self.shown[ref] = await link.call(ShowSaved(ref=ref))
            except (RequestFailed, DaemonUnavailable) as exc:
                self.problems[ref] = failure_text(exc)
            self.show()

    def show(self) -> None:
        """Update the rows in place, the title and the selected model's summary."""
        if not self.is_mounted:
            return
        table: DataTable[Cell] = self.query_one("#saved", DataTable)
        for gone in [key for key in table.rows if key.value not in self.models]:
            table.remove_row(gone)
        for name, m in self.models.items():
            cells = saved_cells(m, self.shown.get(f"{name}:{m['latest']}"))
            if name not in table.rows:
                table.add_row(*cells, key=name)
                continue
            for (column, _), cell in zip(COLUMNS, cells, strict=True):
                if table.get_cell(name, column) != cell:
                    table.update_cell(name, column, cell, update_width=True)
        versions = sum(len(m["versions"]) for m in self.models.values())
        title = Text("Saved models", style="bold")
        title.append(f" · {len(self.models)}, {versions} version{'s' if versions != 1 else ''}")
        if self.problem:
            title.append(f" · {self.problem}", style="red")
        self.query_one("#saved-title", Static).update(title)
        self._show_detail()

    @on(DataTable.RowHighlighted)
    def _show_detail(self) -> None:
        m = self._model()
        text: Text | str
        if m is None:
            text = Text("no saved models: `stratcast save RUN NAME` or a run's save-as keeps one", style="dim")
        else:
            version = self.viewed.get(m["name"], m["latest"])
            ref = f"{m['name']}:{version if version in m['versions'] else m['latest']}"
            if ref in self.shown:
                text = saved_text(self.shown[ref])
            else:
                text = Text(f"{ref}: {self.problems.get(ref, 'reading…')}", style="dim")
        self.query_one("#saved-detail", Static).update(text)

    def _model(self) -> Mapping[str, Any] | None:
        table: DataTable[Cell] = self.query_one("#saved", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.models.get(key) if key is not None else None

    def _selected(self) -> Mapping[str, Any] | None:
        m = self._model()
        if m is None:
            self.notify("no saved model selected", severity="warning")
        return m

    # -- actions ---------------------------------------------------------------------------------------------

    async def _ask_version(self, m: Mapping[str, Any], question: str) -> int | None:
        versions = list(m["versions"])
        answer = await self.app.push_screen_wait(
            PromptDialog(question, value=str(m["latest"]), check=_version(versions))
        )
        return None if answer is None else int(answer)

    @work
    async def action_view(self) -> None:
        """Show another version of the selected model under the table (read and checked by the daemon)."""
        if (m := self._selected()) is None:
            return
        version = await self._ask_version(m, f"Version of {m['name']} to show:")
        if version is None:
            return
        ref = f"{m['name']}:{version}"
        if ref not in self.shown:
            result = await self.stratcast.call(ShowSaved(ref=ref))
            if result is None:
                return
            self.shown[ref] = result
        self.viewed[m["name"]] = version
        self._show_detail()

    @work
    async def action_alias(self) -> None:
        """Point an alias (``champion``) at a version of the selected model."""
        if (m := self._selected()) is None:
            return
        version = await self._ask_version(m, f"Version of {m['name']} to point the alias at:")
        if version is None:
            return
        alias = await self.app.push_screen_wait(
            PromptDialog(
                f"Alias for {m['name']}:{version}:", value="champion", check=problem(validate.from_option(saved_name))
            )
        )
        if alias is None:
            return
        request = SetAlias(ref=f"{m['name']}:{version}", alias=alias.strip())
        if await self.stratcast.call(request, f"{m['name']}@{alias.strip()} -> version {version}"):
            self.read()

    @work
    async def action_remove(self) -> None:
        """Remove a version of the selected model, after confirmation (its aliases with it, said first)."""
        if (m := self._selected()) is None:
            return
        version = await self._ask_version(m, f"Version of {m['name']} to remove:")
        if version is None:
            return
        aliases = sorted(a for a, v in m["aliases"].items() if v == version)
        ref = f"{m['name']}:{version}"
        named = ", ".join(f"{m['name']}@{a}" for a in aliases)
        also = f" It is {named}: the alias goes too." if aliases else ""
        if not await self.app.push_screen_wait(ConfirmDialog(f"Remove {ref}?{also}", yes="Remove")):
            return
        if await self.stratcast.call(RemoveSaved(ref=ref, force=bool(aliases)), f"removed {ref}"):
            self.shown.pop(ref, None)
            self.read()

    @work
    async def action_score(self) -> None:
        """Queue a scoring job of new data with the selected model (its champion when it has one)."""
        if (m := self._selected()) is None:
            return
        ref = f"{m['name']}@champion" if "champion" in m["aliases"] else m["name"]
        request = await self.app.push_screen_wait(ScoreDialog(ref))
        if request is None:
            return
        result = await self.stratcast.call(request)
        if result is not None:
            self.notify(f"queued run {result['run']['id']}: scoring {request.job.data} with {request.job.saved}")

    def action_back(self) -> None:
        """Back to the previous screen."""
        self.dismiss()
