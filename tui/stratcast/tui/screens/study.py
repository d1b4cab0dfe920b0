"""One study's screen: its trials, the best value so far, the Pareto front, the parameters' importances, its final run.

The screen reads ``show_study`` on mount and every :attr:`StudyScreen.POLL_S` seconds while the study runs (and
now and then while it does not: it may be resumed from the command line). ``enter`` on a trial with a child run
opens that run's screen; ``s`` and ``r`` stop and resume the study; ``b`` trains its best configuration into a
saved final run (``retrain_study``, asked in :class:`RetrainDialog`); ``f`` opens that final run. A failed read or
a refused request is shown, and the screen goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Label, Select, Static

from stratcast.shared.cli import saved_name
from stratcast.shared.client import DaemonUnavailable, RequestFailed
from stratcast.shared.protocol import ResumeStudy, RetrainStudy, ShowStudy, StopStudy
from stratcast.shared.report import duration_text
from stratcast.tui import validate
from stratcast.tui.link import failure_text
from stratcast.tui.render import study_line
from stratcast.tui.screens.base import AppScreen
from stratcast.tui.study_view import (
    Cell,
    best_so_far,
    complete,
    elapsed_s,
    importance_bars,
    objectives_text,
    pareto,
    scatter,
    steps,
    trial_cells,
    trial_detail,
)
from stratcast.tui.widgets.chart import BrailleChart

if TYPE_CHECKING:
    pass

COLUMNS = (
    ("number", "trial"),
    ("state", "state"),
    ("values", "value"),
    ("run", "run"),
    ("took", "took"),
    ("params", "parameters"),
    ("reason", "reason"),
)
"""The trials table's column keys and headers (as :func:`~stratcast.tui.study_view.trial_cells` orders them)."""


def value_text(value: float) -> str:
    """An objective's value on a chart's axis: four figures, as trials of a study often differ in the third."""
    return f"{value:.4g}"


KEEP = [("all the data (no holdout)", "all-data"), ("with the trials' holdout", "holdout")]


class RetrainDialog(ModalScreen[tuple[str, str | None, int | None] | None]):
    """Ask how to train a study's best configuration (or a complete trial's): keep, saved model name, trial."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, study: int, save_as: str | None, complete: list[int]) -> None:
        super().__init__()
        self.study = study
        self.save_as = save_as or ""
        self.complete = complete
        """The complete trials' numbers (the ones whose configuration can be trained)."""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Train study {self.study}'s best configuration into a saved final run")
            yield Select(KEEP, value="all-data", allow_blank=False, id="keep", compact=True)
            yield Input(self.save_as, placeholder="save as (default: the study's name)", id="save-as")
            yield Input(placeholder="trial (default: the best)", id="trial")
            yield Label("enter sends it, escape cancels", classes="hint")
            yield Label("", id="error", classes="error")

    def on_mount(self) -> None:
        self.query_one("#save-as", Input).focus()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        name = self.query_one("#save-as", Input).value.strip()
        trial = self.query_one("#trial", Input).value.strip()
        error = self.query_one("#error", Label)
        try:
            if name:
                validate.from_option(saved_name)(name)
        except ValueError as exc:
            error.update(str(exc))
            return
        if trial and (not trial.isdigit() or int(trial) not in self.complete):
            done = ", ".join(map(str, self.complete)) or "none yet"
            error.update(f"trial {trial!r}: give a complete trial's number ({done})")
            return
        keep = self.query_one("#keep", Select).value
        self.dismiss((str(keep), name or None, int(trial) if trial else None))

    def action_cancel(self) -> None:
        """Close without retraining."""
        self.dismiss(None)


class StudyScreen(AppScreen):
    """One study (see the module docstring); ``escape`` goes back."""

    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("b", "retrain", "Retrain best"),
        Binding("f", "final_run", "Final run"),
    ]
    POLL_S = 3.0
    """Seconds between reads while the study runs."""
    IDLE_POLLS = 10
    """A study that does not run is read every this many polls (``stratcast study resume`` may start it again)."""

    def __init__(self, study: int) -> None:
        super().__init__()
        self.study_id = study
        self.reply: Mapping[str, Any] = {}
        """The last ``show_study`` reply."""
        self.problem = ""
        self._polls = 0

    def compose(self) -> ComposeResult:
        yield Static(id="study-title")
        table: DataTable[Cell] = DataTable(id="trials", cursor_type="row", zebra_stripes=True)
        for key, header in COLUMNS:
            table.add_column(header, key=key)
        yield table
        with Horizontal(id="study-charts"):
            yield BrailleChart(id="best-chart", formatter=value_text)
            yield BrailleChart(id="pareto-chart", formatter=value_text)
            yield Static(id="importances")
        yield Static(id="trial-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#trials", DataTable).focus()
        self.query_one("#pareto-chart").display = False
        self.show()
        self.read()
        self.set_interval(self.POLL_S, self._poll)

    def on_resize(self) -> None:
        # short terminals (80x24) get lower charts, so the trials table keeps rows
        self.query_one("#study-charts").set_class(self.size.height < 32, "-compact")
        self.call_after_refresh(self.show)  # the importances' bars fit their new width

    def _poll(self) -> None:
        self._polls += 1
        if self.reply.get("study", {}).get("state") == "running" or self._polls % self.IDLE_POLLS == 0:
            self.read()

    @work(group="read", exclusive=True)
    async def read(self) -> None:
        """Read the study and its trials; on failure keep the last ones and say why."""
        try:
            self.reply = await self.stratcast.link.call(ShowStudy(study=self.study_id))
            self.problem = ""
        except (RequestFailed, DaemonUnavailable) as exc:
            self.problem = f"cannot read study {self.study_id}: {failure_text(exc)}"
        self.show()

    # -- painting --------------------------------------------------------------------------------------------

    def show(self) -> None:
        """Paint the title, the trials, the charts and the importances from :attr:`reply`."""
        if not self.is_mounted:
            return
        self._show_title()
        if not self.reply:
            return
        trials = self.reply.get("trials", [])
        self._show_trials(trials)
        objectives = self.reply["study"]["spec"]["objectives"]
        xs, ys, what = best_so_far(trials, objectives[0])
        best = self.query_one("#best-chart", BrailleChart)
        best.border_title = f"best {objectives[0]} so far · x: {what}"
        xs, ys = steps(xs, ys)
        best.set_series(f"best {objectives[0]}", ys, x=xs, style="green")
        self._show_pareto(trials, objectives)
        box = self.query_one("#importances", Static)
        width = box.content_size.width or 40  # 0 before the first layout
        box.update(importance_bars(self.reply.get("importances") or {}, width, complete_trials=len(complete(trials))))
        self._show_detail()

    def _show_title(self) -> None:
        title = Text(f"Study {self.study_id}", style="bold")
        s = self.reply.get("study")
        if s is not None:
            title = Text(study_line(self.reply), style="bold")
            spec = s["spec"]
            title.append(f" · {objectives_text(spec['objectives'])} · {','.join(spec['models'])}")
            title.append(
                f" · {s['asked']}/{spec['trials']} asked · {duration_text(elapsed_s(s, self.stratcast.clock()))}"
            )
            if s.get("final_run") is not None:
                title.append(f" · final run {s['final_run']}", style="cyan")
        for line in (self.reply.get("note"), self.problem):
            if line:
                title.append(f" · {line}", style="red")
        self.query_one("#study-title", Static).update(title)

    def _show_trials(self, trials: list[Mapping[str, Any]]) -> None:
        table: DataTable[Cell] = self.query_one("#trials", DataTable)
        numbers = {str(t["number"]) for t in trials}
        for gone in [key for key in table.rows if key.value not in numbers]:
            table.remove_row(gone)
        for t in trials:
            key, cells = str(t["number"]), trial_cells(t, self.reply["study"]["spec"]["objectives"])
            if key not in table.rows:
                table.add_row(*cells, key=key)
                continue
            for (column, _), cell in zip(COLUMNS, cells, strict=True):
                if table.get_cell(key, column) != cell:
                    table.update_cell(key, column, cell, update_width=True)

    def _show_pareto(self, trials: list[Mapping[str, Any]], objectives: list[str]) -> None:
        chart = self.query_one("#pareto-chart", BrailleChart)
        chart.display = len(objectives) > 1
        if len(objectives) < 2:
            return
        everyone, front = pareto(trials, self.reply.get("best") or [])
        xs, ys = scatter(everyone)
        chart.border_title = f"x {objectives[0]}, y {objectives[1]}"
        chart.set_series("trials", ys, x=xs, style="dim")
        chart.set_series("Pareto front", [y for _, y in front], x=[x for x, _ in front], style="bold yellow")

    @on(DataTable.RowHighlighted)
    def _show_detail(self) -> None:
        trial = self._trial()
        text = Text("no trials yet", style="dim") if trial is None else trial_detail(trial)
        self.query_one("#trial-detail", Static).update(text)

    def _trial(self) -> Mapping[str, Any] | None:
        table: DataTable[Cell] = self.query_one("#trials", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((t for t in self.reply.get("trials", []) if str(t["number"]) == key), None)

    # -- actions ---------------------------------------------------------------------------------------------

    @on(DataTable.RowSelected)
    def _open(self) -> None:
        trial = self._trial()
        if trial is None:
            return
        if trial.get("run") is None:
            self.notify(f"trial {trial['number']} has no run: {trial.get('reason') or 'never ran'}", timeout=4)
            return
        self.stratcast.open_run(int(trial["run"]))

    @work
    async def action_stop(self) -> None:
        """Stop the study: no new trials, its running ones stopped with a checkpoint."""
        if await self.stratcast.call(StopStudy(study=self.study_id), f"stopped study {self.study_id}"):
            self.read()

    @work
    async def action_resume(self) -> None:
        """Resume the stopped study."""
        if await self.stratcast.call(ResumeStudy(study=self.study_id), f"resumed study {self.study_id}"):
            self.read()

    @work
    async def action_retrain(self) -> None:
        """Ask keep, name and trial, then train the best configuration (or the trial's) into a final run."""
        spec = self.reply.get("study", {}).get("spec", {})
        done = [int(t["number"]) for t in complete(self.reply.get("trials", []))]
        answer = await self.app.push_screen_wait(RetrainDialog(self.study_id, spec.get("save_as"), done))
        if answer is None:
            return
        keep, save_as, trial = answer
        request = RetrainStudy(
            study=self.study_id, keep="holdout" if keep == "holdout" else "all-data", save_as=save_as, trial=trial
        )
        result = await self.stratcast.call(request)
        if result is not None:
            what = "the best" if trial is None else f"trial {trial}"
            run = result["run"]["id"]
            self.notify(f"study {self.study_id}: final run {run} queued, training {what} ({keep})", timeout=6)
            self.read()

    def action_final_run(self) -> None:
        """Open the study's final run."""
        run = self.reply.get("study", {}).get("final_run")
        if run is None:
            self.notify("no final run yet: b trains the best configuration into one", timeout=4)
            return
        self.stratcast.open_run(int(run))

    def action_back(self) -> None:
        """Back to the previous screen."""
        self.dismiss()
