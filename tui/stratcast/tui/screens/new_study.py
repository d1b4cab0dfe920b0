"""The new-study form: the new-run form's job, data and queue fields, then the study's settings; sends ``submit_study``.

The job part is the new-run form itself (:class:`~stratcast.tui.screens.new_run.NewRunScreen`: one definition of
the job's fields and checks); its model is the first model searched unless the ``models`` field names others. Every
field is checked locally (:mod:`stratcast.tui.study_form`; the space file is read here); the daemon checks the
study and its data again, and its ``invalid_spec`` message is shown under the field it names. With a timetable
(the form's last section, as the new-run form's) it adds a schedule that re-tunes instead (``add_schedule`` with
the study, as ``stratcast schedule add --tune``): each firing starts the study afresh and saves its best.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Collapsible, Static

from stratcast.shared.client import DaemonUnavailable, RequestFailed
from stratcast.shared.jobargs import KEEP_CHOICES
from stratcast.shared.protocol import AddSchedule, BacktestOptions, StudySpec, SubmitStudy
from stratcast.tui.job_form import FormProblems, Timetable
from stratcast.tui.link import failure_text
from stratcast.tui.screens.new_run import NewRunScreen, _input, _select
from stratcast.tui.study_form import PRUNERS, SAMPLERS, field_of, study_from
from stratcast.tui.widgets.form import Field

KEEP_LABELS = {
    "all-data": "all-data: train the best on all the data, save it",
    "holdout": "holdout: train the best with the holdout, save it",
    "none": "none: keep nothing (b on the study does it later)",
}


class NewStudyScreen(NewRunScreen):
    """A form that starts a daemon study (``stratcast tune``'s fields); ``ctrl+s`` sends it."""

    def _last_fields(self) -> ComposeResult:
        yield Static("Study", classes="section")
        help_models = "models to search, comma-separated (empty: the model above); the model's fields fix settings"
        yield Field("models", _input("models", placeholder="the model above, or nhits,tide,…"), help=help_models)
        yield Field("trials", _input("trials", "20"), help="trials to ask (pruned and failed ones count)")
        yield Field("timeout", _input("timeout", placeholder="none"), help="ask no trial after this: 30m, 6h, 2d")
        objectives = _input("objectives", "holdout-rmse")
        yield Field("objectives", objectives, help="holdout-rmse, holdout-rmse-raw, backtest-top-k, backtest-diff")
        default = [("default (tpe; nsga2 for several objectives)", "")]
        yield Field("sampler", _select("sampler", default + [(s, s) for s in SAMPLERS], ""), help="Optuna's sampler")
        default = [("default (median; none for several objectives)", "")]
        yield Field(
            "pruner", _select("pruner", default + [(p, p) for p in PRUNERS], ""), help="stops poor trials early"
        )
        space = _input("space", placeholder="the catalog's spaces")
        yield Field("space file", space, help="a TOML or JSON file here that replaces, fixes or removes spaces")
        storage = _input("storage", placeholder="HOME/studies/journal.log")
        yield Field("storage", storage, help="an RDB URL or a journal file's absolute path on the daemon's machine")
        yield Field("study name", _input("study", placeholder="stratcast-study-ID"), help="an existing one goes on")
        yield Field("parallel", _input("parallel", "1"), help="trials queued or running at once")
        yield Field("seed", _input("seed", "0"), help="the sampler's seed")
        keep = _select("keep", [(KEEP_LABELS[k], k) for k in KEEP_CHOICES], "all-data")
        yield Field("keep", keep, help="what the study keeps of its best trial when it finishes")
        yield Field("save as", _input("save_as", placeholder="the study's name"), help="the saved model it becomes")
        title = "backtest options (for backtest objectives)"
        yield Collapsible(*self._backtest_fields(), title=title, id="backtest-box")
        yield from self._schedule_fields()

    def _backtest_fields(self) -> list[Field]:
        d = BacktestOptions()
        return [
            Field("  cutoffs", _input("bt-cutoffs", str(d.cutoffs)), help="walk-forward cutoffs"),
            Field("  every", _input("bt-every", str(d.every)), help="periods between cutoffs"),
            Field("  refit every", _input("bt-refit_every", str(d.refit_every)), help="retrain at every R-th cutoff"),
            Field("  hold", _input("bt-hold", placeholder="every"), help="periods each pick is held"),
            Field("  top", _input("bt-top", ",".join(d.top)), help="pick sizes: counts and shares, such as 10,1%"),
            Field("  cost", _input("bt-cost", f"{d.cost:g}"), help="cost per pick and holding, in the panel's unit"),
        ]

    def on_mount(self) -> None:
        self.query_one("#field-name", Field).display = False  # the daemon names each trial study-ID/tN

    def _show_repeat(self) -> None:
        """The timetable's fields as the new-run form shows them; the title says study or re-tuning schedule."""
        super()._show_repeat()
        repeat = self.query_one("#field-repeat", Field).text
        title = "New re-tuning schedule" if repeat in ("cron", "every") else "New study"
        self.query_one("#form-title", Static).update(Text(title, style="bold"))

    def action_submit(self) -> None:
        """Check every field (the space file is read), then send ``submit_study`` (or ``add_schedule``)."""
        if self.busy:
            self.notify("already sending", timeout=2)
            return
        read = self._read_study()
        if read is not None:
            self.busy = True
            self._submit_study(*read)

    def _read_study(self) -> tuple[StudySpec, Timetable | None] | None:
        """The study and its timetable (None: start it now), or None after marking every field that cannot be used."""
        form = self._read()
        if form is None:
            return None
        job, placement, timetable = form
        fields = {field.key: field for field in self.query(Field)}
        try:
            spec = study_from({k: f.text for k, f in fields.items()}, job, placement, self.models.keys())
        except FormProblems as exc:
            self._mark(fields, exc.problems)
            return None
        return spec, timetable

    def _mark(self, fields: dict[str, Field], problems: dict[str, str]) -> None:
        for key, problem in problems.items():
            fields[key].show_problem(problem)
        if any(key.startswith("bt-") for key in problems):
            self.query_one("#backtest-box", Collapsible).collapsed = False
        fields[next(iter(problems))].control.focus()
        count = len(problems)
        self.notify(f"{count} field{'s' if count > 1 else ''} to fix", severity="error", timeout=4)

    @work(group="submit")
    async def _submit_study(self, spec: StudySpec, timetable: Timetable | None) -> None:
        request: SubmitStudy | AddSchedule = SubmitStudy(spec=spec)
        if timetable is not None:
            request = AddSchedule(
                study=spec, cron=timetable.cron, every_s=timetable.every_s, timezone=timetable.timezone
            )
        try:
            result = await self.stratcast.link.call(request)
        except (RequestFailed, DaemonUnavailable) as exc:
            if isinstance(exc, RequestFailed):
                field = self.query_one(f"#field-{field_of(exc.message)}", Field)
                field.show_problem(exc.message)
                field.control.focus()
                self.notify("the daemon refused the study: see the field marked", severity="error", timeout=6)
            else:
                self.notify(failure_text(exc), title="no daemon", severity="error", timeout=8)
            return
        finally:
            self.busy = False
        if timetable is None:
            self.notify(f"started study {result['study']['id']}", timeout=4)
        else:
            self.notify(
                f"added re-tuning schedule {result['schedule']['id']} ({result['schedule']['name']})", timeout=4
            )
        self.dismiss()
