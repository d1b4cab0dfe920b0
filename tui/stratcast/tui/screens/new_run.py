"""The new-run form: data, model and parameters, queueing, and an optional schedule.

Models and their parameters come from the daemon (``list_models``). Every field is checked locally first
(:mod:`stratcast.tui.job_form`); then the job and its data are checked by the daemon (``check_data``, which
reads the file as a worker would) before ``submit`` (or ``add_schedule``) is sent, so a bad file is refused
with the engine's words under the data field instead of failing later in the queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Collapsible, Footer, Input, Select, Static

from stratcast.shared.client import DaemonUnavailable, RequestFailed
from stratcast.shared.protocol import DEFAULT_MODEL, AddSchedule, CheckData, JobSpec, ListModels, Placement, Submit
from stratcast.tui.job_form import JOB_FIELDS, FormProblems, ModelInfo, Param, Timetable, read_form, read_models
from stratcast.tui.link import failure_text
from stratcast.tui.screens.base import AppScreen
from stratcast.tui.widgets.form import Field

if TYPE_CHECKING:
    pass

REPEAT = [("no: run once, now", "none"), ("on a cron expression", "cron"), ("every interval", "every")]


def _input(key: str, value: str = "", placeholder: str = "") -> Input:
    return Input(value, placeholder=placeholder, id=key, compact=True)


def _select(key: str, options: list[tuple[str, str]], value: str, *, blank: str = "") -> Select[str]:
    """A select showing ``value``; with ``blank``, one that may be left blank, which then says ``blank``."""
    if blank:
        return Select(options, prompt=blank, value=value or Select.NULL, id=key, compact=True)
    return Select(options, value=value, allow_blank=False, id=key, compact=True)


def param_field(prefix: str, p: Param) -> Field:
    """A parameter's field, prefilled with its default: a select for choices and booleans, else an input.

    An option the panel chooses for the model is left empty and says so (a blank select, or an input's placeholder).
    """
    key = f"{prefix}-{p.name}"
    control: Widget
    if p.choices:
        options = [(p.text(c), p.text(c)) for c in p.choices]
        control = _select(key, options, p.default_text, blank=FROM_PANEL if p.from_panel else "")
    else:
        control = _input(key, p.default_text, placeholder=FROM_PANEL if p.from_panel else "")
    return Field(f"  {p.name}", control, help=param_help(p))


FROM_PANEL = "from the panel"
"""What an option's empty field says where the daemon chooses it from the panel for the chosen model."""


def param_help(p: Param) -> str:
    """A parameter's help with its default and range, for the hint line."""
    limits = f", {p.range_text}" if p.range_text else ""
    return f"{p.help} (default {FROM_PANEL if p.from_panel else p.default_text}{limits})"


def check_summary(result: Mapping[str, Any]) -> Text:
    """The daemon's ``check_data`` result in two lines, then its notes."""
    dropped = f" ({result['dropped']:,} dropped)" if result.get("dropped") else ""
    text = Text("✓ ", style="bold green")
    text.append(f"{result['strategies']:,} strategies{dropped}, {result['periods']:,} periods ")
    text.append(f"{result['first']} to {result['last']}")
    cols = result.get("columns", {})
    filled = f", {result['filled']:,} filled" if result.get("filled") else ""
    text.append(
        f"\n  {result['zero_share']:.0%} zeros{filled}; columns {cols.get('id')}, {cols.get('time')}, "
        f"{cols.get('target')}; a strategy needs {result.get('required_periods', '?')} periods",
        style="dim",
    )
    for note in result.get("notes", []):
        text.append(f"\n  {note}", style="yellow")
    return text


class NewRunScreen(AppScreen):
    """A form that queues a run, or adds a schedule (``schedule=True`` starts with a cron timetable)."""

    BINDINGS = [
        Binding("ctrl+s", "submit", "Submit"),
        Binding("ctrl+t", "check", "Check data"),
        Binding("escape", "cancel", "Cancel"),
        Binding("q", "nothing", show=False),  # the app's quit key would lose the form from a select or button
    ]

    def __init__(self, *, schedule: bool = False) -> None:
        super().__init__()
        self.schedule = schedule
        self.models: dict[str, ModelInfo] = {}
        self.train_options: list[Param] = []
        self.shown_train: list[Param] = []
        """The training options as their mounted fields show them: with the defaults of the model chosen then."""
        self.checked: JobSpec | None = None
        """The last job the daemon's data check accepted; submitting it again needs no new check."""
        self.busy = False
        """A submission is under way."""

    # -- layout --------------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="form-title")
        with VerticalScroll(id="form"):
            yield from self._data_fields()
            yield from self._model_fields()
            yield from self._queue_fields()
            yield from self._last_fields()
            with Horizontal(id="form-buttons"):
                yield Button("Submit ^s", variant="primary", id="submit", compact=True)
                yield Button("Cancel esc", id="cancel", compact=True)
        yield Static(id="hint")
        yield Footer()

    def _data_fields(self) -> ComposeResult:
        yield Static("Data", classes="section")
        check = Button("Check ^t", id="check", compact=True)
        path = _input("data", placeholder="/absolute/path/on/the/daemon/panel.parquet")
        yield Field("data file", path, check, help="long-format parquet or CSV file, as a path on the daemon's machine")
        yield Static(id="check-result")
        yield Field("id column", _input("id_col", placeholder="No. or unique_id"), help="the strategy id column")
        yield Field("time column", _input("time_col", placeholder="week, ds, date, time or t"), help="the time column")
        yield Field("value column", _input("target_col", placeholder="profit or y"), help="the column to forecast")
        fill = _select("fill_missing", [("refuse the file", "error"), ("fill with 0", "zero")], "error")
        yield Field("missing periods", fill, help="what a missing period of a strategy means")

    def _model_fields(self) -> ComposeResult:
        yield Static("Model", classes="section")
        models: Select[str] = Select([], prompt="loading models…", id="model", compact=True)
        yield Field("model", models, help="the daemon's models (stratcast models lists them)")
        yield Static(id="model-about")
        yield Vertical(id="params")
        yield Field("horizon", _input("horizon", placeholder="52 (default)"), help="periods to forecast")
        yield Field("input size", _input("input_size", placeholder="default"), help="periods each window sees")
        yield Field("holdout", _input("holdout", "0"), help="last periods kept out of training for honest scoring")
        mode = _select("mode", [("batch: one model for all", "batch"), ("per strategy", "per-strategy")], "batch")
        yield Field("mode", mode, help="one model for every strategy, or one per strategy")
        device = _select("device", [("auto (the daemon assigns a GPU)", "auto"), ("cpu", "cpu")], "auto")
        yield Field("device", device, help="auto: a GPU when the daemon has one; pin one under Queue")
        yield Collapsible(Vertical(id="train"), title="training options", id="train-box")

    def _queue_fields(self) -> ComposeResult:
        yield Static("Queue", classes="section")
        yield Field("name", _input("name", placeholder="optional"), help="a name for the run or the schedule")
        yield Field("priority", _input("priority", "0"), help="higher starts first; FIFO within a priority")
        yield Field("GPU", _input("gpu", placeholder="any"), help="pin to this GPU index")
        yield Field("share GiB", _input("memory_gib", placeholder="a GPU of its own"), help="share a GPU, capped")
        yield Field(
            "GPUs per run",
            _input("gpus", placeholder="1"),
            help="above 1: one model trained data-parallel over that many GPUs of its own (batch mode)",
        )
        yield Field("after runs", _input("after", placeholder="none"), help="run ids that must succeed first")
        yield Field("hold", Checkbox("queue it held", id="hold", compact=True), help="wait until released")

    def _last_fields(self) -> ComposeResult:
        """The form's last section: the schedule (the new-study form puts the study's settings there)."""
        yield from self._schedule_fields()

    def _schedule_fields(self) -> ComposeResult:
        yield Static("Schedule", classes="section")
        repeat = _select("repeat", REPEAT, "cron" if self.schedule else "none")
        yield Field("repeat", repeat, help="a schedule enqueues this job on a timetable")
        cron = _input("cron", placeholder="0 6 * * 1")
        yield Field("cron", cron, help="five crontab fields: minute hour day month weekday (0 and 7 are Sunday)")
        yield Field("time zone", _input("timezone", "UTC"), help="the cron expression's IANA time zone")
        yield Field("every", _input("every", placeholder="7d, 12h, 1h30m"), help="an interval: s, m, h, d, w")

    def on_mount(self) -> None:
        self.query_one("#data", Input).focus()
        self._show_check(None)
        self._show_repeat()
        self._load_models()

    # -- models --------------------------------------------------------------------------------------------------

    @work(group="models")
    async def _load_models(self) -> None:
        result = await self.stratcast.call(ListModels())
        about = self.query_one("#model-about", Static)
        if result is None:
            about.update(Text("could not list the daemon's models", style="red"))
            return
        self.models, self.train_options = read_models(result)
        defaults = {p.name: p.default_text for p in self.train_options}
        for key in JOB_FIELDS & defaults.keys():
            self.query_one(f"#{key}", Input).placeholder = f"{defaults[key]} (default)"
        count = sum(p.name not in JOB_FIELDS for p in self.train_options)
        self.query_one("#train-box", Collapsible).title = f"training options ({count}, only changes are sent)"
        select: Select[str] = self.query_one("#model", Select)
        select.set_options((name, name) for name in self.models)
        select.prompt = "choose a model"
        if self.models:
            select.value = DEFAULT_MODEL if DEFAULT_MODEL in self.models else next(iter(self.models))

    @on(Collapsible.Expanded, "#train-box")
    async def _show_train_options(self) -> None:
        """Mount the training options' fields when first shown (a long list: the form opens faster without)."""
        box = self.query_one("#train", Vertical)
        if not box.children:
            self.shown_train = self._train_fields_for(self.models.get(self.query_one("#field-model", Field).text))
            await box.mount_all(param_field("train", p) for p in self.shown_train)

    def _train_fields_for(self, model: ModelInfo | None) -> list[Param]:
        """The training options the form asks for, with the defaults a run of ``model`` would use."""
        options = model.train_options(self.train_options) if model else self.train_options
        return [p for p in options if p.name not in JOB_FIELDS]

    async def _follow_train_defaults(self, model: ModelInfo) -> None:
        """Show ``model``'s training defaults in the mounted fields still at the old default; typed ones stay.

        A choice the panel makes for one model and not the other gets a new select, which may or may not be blank.
        """
        new = self._train_fields_for(model)
        for old, p in zip(self.shown_train, new, strict=True):
            if old.default_text == p.default_text and old.from_panel == p.from_panel:
                continue
            field = self.query_one(f"#field-train-{p.name}", Field)
            control = field.control
            untouched = self._untouched(old, field.text)
            if isinstance(control, Select) and old.from_panel != p.from_panel:
                typed = field.text
                box = self.query_one("#train", Vertical)
                at = box.children.index(field)
                await field.remove()
                field = param_field("train", p)
                await box.mount(field, before=at if at < len(box.children) else None)
                if not untouched and isinstance(field.control, Select):
                    field.control.value = typed
                continue
            field.help = param_help(p)
            if untouched and isinstance(control, Input | Select):
                control.value = p.default_text
            if isinstance(control, Input):
                control.placeholder = FROM_PANEL if p.from_panel else ""
        self.shown_train = new

    @staticmethod
    def _untouched(p: Param, text: str) -> bool:
        try:
            return not p.changed(text)
        except ValueError:  # text that is no value at all was typed in
            return False

    @on(Select.Changed, "#model")
    async def _model_changed(self, event: Select.Changed) -> None:
        model = self.models.get(str(event.value))
        box = self.query_one("#params", Vertical)
        await box.remove_children()
        if model is None:
            self.query_one("#model-about", Static).update("")
            return
        about = Text(model.summary, style="dim")
        about.append(f" ({model.paper})" if model.paper else "")
        about.append(f"\nGood for: {model.good_for}" if model.good_for else "")
        about.append("" if model.stackable else " · batch mode only", style="yellow")
        self.query_one("#model-about", Static).update(about)
        await box.mount_all(param_field("param", p) for p in model.params)
        if self.shown_train:
            await self._follow_train_defaults(model)

    # -- schedule ------------------------------------------------------------------------------------------------

    @on(Select.Changed, "#repeat")
    def _repeat_changed(self) -> None:
        self._show_repeat()  # through the method, which the new-study form extends

    def _show_repeat(self) -> None:
        repeat = self.query_one("#field-repeat", Field).text
        for key, shown in (("cron", repeat == "cron"), ("timezone", repeat == "cron"), ("every", repeat == "every")):
            self.query_one(f"#field-{key}", Field).display = shown
        title = "New schedule" if repeat in ("cron", "every") else "New run"
        self.query_one("#form-title", Static).update(Text(title, style="bold"))

    # -- moving around -------------------------------------------------------------------------------------------

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        field = next((n for n in event.widget.ancestors_with_self if isinstance(n, Field)), None)
        hint = field.help if field is not None else ""
        if field is None and event.widget.parent is self.query_one("#train-box"):
            hint = "enter shows or hides the training options; only the ones changed are sent"
        self.query_one("#hint", Static).update(hint)

    @on(Input.Submitted)
    def _next_field(self) -> None:
        self.focus_next()

    @on(Input.Changed, "#data")
    def _data_changed(self) -> None:
        self.query_one("#field-data", Field).show_problem(None)
        self._show_check(None)

    @on(Button.Pressed, "#check")
    def _check_pressed(self) -> None:
        self.action_check()

    @on(Button.Pressed, "#submit")
    def _submit_pressed(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_nothing(self) -> None:
        """Do nothing (see the ``q`` binding)."""

    def action_cancel(self) -> None:
        """Leave without sending anything."""
        self.dismiss()

    # -- checking and sending ------------------------------------------------------------------------------------

    def _read(self) -> tuple[JobSpec, Placement, Timetable | None] | None:
        """The form's requests' parts, or None after marking every field that cannot be used."""
        fields = list(self.query(Field))
        for field in fields:
            field.show_problem(None)
        texts = {field.key: field.text for field in fields}
        try:
            return read_form(texts, self.models.get(texts["model"]), self.train_options)
        except FormProblems as exc:
            bad = [field for field in fields if field.key in exc.problems]
            for field in bad:
                field.show_problem(exc.problems[field.key])
            if bad:
                bad[0].control.focus()
            if any(field.key.startswith("train-") for field in bad):
                self.query_one("#train-box", Collapsible).collapsed = False
            count = len(exc.problems)
            self.notify(f"{count} field{'s' if count > 1 else ''} to fix", severity="error", timeout=4)
            return None

    def action_check(self) -> None:
        """Have the daemon read the data file as a worker would and describe the panel."""
        form = self._read()
        if form is not None:
            self._check_worker(form[0])

    @work(group="check", exclusive=True)
    async def _check_worker(self, job: JobSpec) -> None:
        await self._check(job)

    async def _check(self, job: JobSpec) -> bool:
        """Send ``check_data``; show the panel's summary, or the daemon's message under the data field."""
        field = self.query_one("#field-data", Field)
        self._show_check(Text(f"checking {job.data} …", style="dim"))
        try:
            result = await self.stratcast.link.call(CheckData(job=job))
        except (RequestFailed, DaemonUnavailable) as exc:
            self.checked = None
            self._show_check(None)
            field.show_problem(failure_text(exc))
            return False
        self.checked = job
        field.show_problem(None)
        self._show_check(check_summary(result))
        return True

    def _show_check(self, text: Text | None) -> None:
        box = self.query_one("#check-result", Static)
        box.update(text or "")
        box.display = text is not None

    def action_submit(self) -> None:
        """Check every field, then the data (unless this very job passed already), then queue or schedule it."""
        if self.busy:
            self.notify("already sending", timeout=2)
            return
        form = self._read()
        if form is not None:
            self.busy = True
            self._submit(*form)

    @work(group="submit")
    async def _submit(self, job: JobSpec, placement: Placement, timetable: Timetable | None) -> None:
        try:
            if job != self.checked and not await self._check(job):
                self.query_one("#data", Input).focus()
                self.notify("the data check failed: see under the data file", severity="error", timeout=6)
                return
            result = await self.stratcast.call(submission(job, placement, timetable))
        finally:
            self.busy = False
        if result is not None:  # else the app has shown the daemon's message
            self.notify(
                f"queued run {result['run']['id']}"
                if "run" in result
                else f"added schedule {result['schedule']['id']}",
                timeout=4,
            )
            self.dismiss()


def submission(job: JobSpec, placement: Placement, timetable: Timetable | None) -> Submit | AddSchedule:
    """``submit`` for a single run; ``add_schedule`` with a timetable (named as ``stratcast schedule add`` does)."""
    if timetable is None:
        return Submit(job=job, placement=placement)
    return AddSchedule(
        job=job,
        name=placement.name,
        cron=timetable.cron,
        every_s=timetable.every_s,
        timezone=timetable.timezone,
        placement=msgspec.structs.replace(placement, name=""),
    )
