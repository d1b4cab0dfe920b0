"""What the new-run form's text becomes: a :class:`JobSpec`, a :class:`Placement` and perhaps a timetable.

The form knows models only from the daemon's ``list_models`` reply (:func:`read_models`); each parameter there
has a type name, a default, perhaps a range or choices, and help. Parameters are shown prefilled with their
defaults and only the changed ones are sent, as ``--set key=value`` items (``sets``), so a run records exactly
what its author chose. A model may train with defaults of its own (its ``train_defaults``, e.g. a lower learning
rate): the training options are shown with, and compared against, the chosen model's defaults
(:meth:`ModelInfo.train_options`), which are what the run would use. Every field is checked here, before anything
is sent; the daemon checks again.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from stratcast.shared.protocol import MAX_RANKS, JobSpec, Placement
from stratcast.tui import validate

T = TypeVar("T")
JOB_FIELDS = frozenset({"horizon", "input_size"})
"""Training options the form asks for as job fields (``JobSpec.horizon``), not as ``--set`` items."""
PRIORITY_RANGE = (-1_000_000, 1_000_000)
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_TUPLE = re.compile(r"tuple\[(\w+), \.\.\.\]")


class FormProblems(ValueError):
    """Fields whose text cannot be used: ``problems`` maps each field's key to what is wrong with it."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems.items()))
        self.problems = dict(problems)


@dataclass(frozen=True)
class Param:
    """A model parameter or training option as ``list_models`` describes it."""

    name: str
    type: str
    """The daemon's type name: ``int``, ``float``, ``bool``, ``str``, ``tuple[int, ...]`` and so on."""
    default: Any
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] = ()
    help: str = ""
    from_panel: bool = False
    """Left unset, the daemon chooses this option from the panel for the chosen model (``scaler`` and ``loss`` unless
    its catalog sets them, SOFTS's ``batch_size``): the form shows it empty (a blank select for a choice) and sends it
    only when something is typed in or chosen, the declared default included."""

    @classmethod
    def from_wire(cls, p: Mapping[str, Any]) -> Param:
        """From one entry of ``params`` or ``train_options``."""
        choices = tuple(p.get("choices") or ())
        if p.get("type") == "bool" and not choices:
            choices = (False, True)
        return cls(
            name=p["name"],
            type=str(p.get("type", "str")),
            default=p.get("default"),
            lo=p.get("lo"),
            hi=p.get("hi"),
            choices=choices,
            help=str(p.get("help") or ""),
        )

    def text(self, value: Any) -> str:
        """How the form shows ``value`` (and how ``--set`` takes it)."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list | tuple):
            return ",".join(self.text(v) for v in value)
        return str(value)

    @property
    def default_text(self) -> str:
        """The default as the form shows it (empty where the panel chooses)."""
        return "" if self.from_panel else self.text(self.default)

    @property
    def range_text(self) -> str:
        """``1..1001``, ``relu|gelu``, or empty."""
        if self.choices:
            return "|".join(self.text(c) for c in self.choices)
        if self.lo is None and self.hi is None:
            return ""
        return f"{'' if self.lo is None else f'{self.lo:g}'}..{'' if self.hi is None else f'{self.hi:g}'}"

    def parse(self, text: str) -> Any:
        """The value ``text`` stands for, in the daemon's terms.

        Raises:
            ValueError: the text is not of the parameter's type, range or choices.
        """
        inner = _TUPLE.fullmatch(self.type)
        if inner is not None:
            parts = [p.strip() for p in text.strip().strip("()[] ").split(",") if p.strip()]
            return tuple(self._scalar(part, inner[1]) for part in parts)
        return self._scalar(text.strip(), self.type)

    def _scalar(self, text: str, kind: str) -> Any:
        if kind == "bool":
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError(f"expected true or false, got {text!r}")
            return text.lower() in _TRUE
        if kind == "int":
            value: Any = validate.whole_number(text, lo=self.lo, hi=self.hi)
        elif kind == "float":
            value = validate.number(text, lo=self.lo, hi=self.hi)
        else:
            value = text
        if self.choices and value not in self.choices:
            raise ValueError(f"expected one of {self.range_text}, got {text!r}")
        return value

    def changed(self, text: str) -> bool:
        """Whether ``text`` means something else than the default (``1e-3`` for ``0.001`` does not).

        Raises:
            ValueError: as :meth:`parse`.
        """
        if self.from_panel:  # anything typed in is the job's choice, the default's value too
            return bool(text.strip()) and self.parse(text) is not None
        default = tuple(self.default) if isinstance(self.default, list) else self.default
        return bool(self.parse(text) != default)


@dataclass(frozen=True)
class ModelInfo:
    """One model of the daemon's model catalog."""

    name: str
    summary: str = ""
    paper: str = ""
    stackable: bool = True
    """False: batch mode only (no per-strategy training)."""
    params: tuple[Param, ...] = ()
    train_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Training options this model trains with unless the job sets them, in place of the options' own defaults."""
    good_for: str = ""
    """What it is good at, in a line."""
    from_panel: tuple[str, ...] = ()
    """Training options the daemon chooses from the panel for this model unless the job sets them."""

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> ModelInfo:
        """From one entry of ``models``."""
        params = tuple(Param.from_wire(p) for p in m.get("params", []))
        stackable = bool(m.get("stackable", True))
        defaults = dict(m.get("train_defaults") or {})
        about = (m.get("summary", ""), m.get("paper", ""))
        panel = tuple(m.get("from_panel") or ())
        return cls(m["name"], *about, stackable, params, defaults, m.get("good_for", ""), panel)

    def train_options(self, train: Sequence[Param]) -> list[Param]:
        """The training options with the defaults a run of this model would use.

        Its ``train_defaults`` win; the options the panel chooses for it are shown empty.
        """
        own, panel = self.train_defaults, self.from_panel
        return [dataclasses.replace(p, default=own.get(p.name, p.default), from_panel=p.name in panel) for p in train]


def read_models(result: Mapping[str, Any]) -> tuple[dict[str, ModelInfo], list[Param]]:
    """A ``list_models`` result as models by name and the training options."""
    models = {m["name"]: ModelInfo.from_wire(m) for m in result.get("models", [])}
    return models, [Param.from_wire(p) for p in result.get("train_options", [])]


@dataclass(frozen=True)
class Timetable:
    """When a schedule fires: a cron expression in a time zone, or an interval."""

    cron: str | None = None
    every_s: int | None = None
    timezone: str = "UTC"


class _Reader:
    """Parses the form's texts by key, remembering every problem instead of stopping at the first."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        self.texts = texts
        self.problems: dict[str, str] = {}

    def text(self, key: str) -> str:
        return self.texts.get(key, "").strip()

    def take(self, key: str, parse: Callable[[str], T], *, optional: bool = False) -> T | None:
        """``parse`` of the field's text; None for an empty optional field or a problem (recorded)."""
        text = self.text(key)
        if optional and not text:
            return None
        try:
            return parse(text)
        except ValueError as exc:
            self.problems[key] = str(exc)
            return None

    def check(self) -> None:
        if self.problems:
            raise FormProblems(self.problems)


def job_from(texts: Mapping[str, str], model: ModelInfo | None, train: Sequence[Param]) -> JobSpec:
    """The job the form describes; keys are the fields' ids (``param-<name>``, ``train-<name>`` for options).

    Raises:
        FormProblems: naming every field that cannot be used.
    """
    r = _Reader(texts)
    job = _job(r, model, train)
    r.check()
    assert job is not None
    return job


def _job(r: _Reader, model: ModelInfo | None, train: Sequence[Param]) -> JobSpec | None:
    data = r.take("data", validate.absolute_path)
    if model is None:
        r.problems["model"] = "choose a model (the daemon's list)"
    mode = r.text("mode") or "batch"
    if model is not None and mode == "per-strategy" and not model.stackable:
        r.problems["mode"] = f"{model.name} trains in batch mode only"
    horizon = r.take("horizon", lambda t: validate.whole_number(t, lo=1), optional=True)
    input_size = r.take("input_size", lambda t: validate.whole_number(t, lo=1), optional=True)
    holdout = r.take("holdout", lambda t: validate.whole_number(t, lo=0), optional=True)
    options = model.train_options(train) if model else train
    sets = _sets(r, model.params if model else (), [p for p in options if p.name not in JOB_FIELDS])
    if r.problems or data is None or model is None:
        return None
    return JobSpec(
        data=data,
        model=model.name,
        mode="per-strategy" if mode == "per-strategy" else "batch",
        horizon=horizon,
        input_size=input_size,
        holdout=holdout or 0,
        device=r.text("device") or "auto",
        id_col=r.text("id_col") or None,
        time_col=r.text("time_col") or None,
        target_col=r.text("target_col") or None,
        fill_missing="zero" if r.text("fill_missing") == "zero" else "error",
        sets=sets,
    )


def _sets(r: _Reader, params: Sequence[Param], train: Sequence[Param]) -> list[str]:
    """``key=value`` for each parameter whose text differs from its default (``model.``/``train.`` when both)."""
    both = {p.name for p in params} & {p.name for p in train}
    sets = []
    for prefix, group in (("param", params), ("train", train)):
        for p in group:
            key = f"{prefix}-{p.name}"
            if key not in r.texts:
                continue
            try:
                if p.changed(r.text(key)):
                    name = f"{'model' if prefix == 'param' else 'train'}.{p.name}" if p.name in both else p.name
                    sets.append(f"{name}={p.text(p.parse(r.text(key)))}")
            except ValueError as exc:
                r.problems[key] = str(exc)
    return sets


def placement_from(texts: Mapping[str, str]) -> Placement:
    """How the form queues the run.

    Raises:
        FormProblems: naming every field that cannot be used.
    """
    r = _Reader(texts)
    priority = r.take("priority", lambda t: validate.whole_number(t, lo=PRIORITY_RANGE[0], hi=PRIORITY_RANGE[1]))
    gpu = r.take("gpu", lambda t: validate.whole_number(t, lo=0), optional=True)
    memory = r.take("memory_gib", lambda t: validate.number(t, lo=0.01), optional=True)
    gpus = r.take("gpus", lambda t: validate.whole_number(t, lo=1, hi=MAX_RANKS), optional=True)
    after = r.take("after", _run_ids, optional=True)
    r.check()
    return Placement(
        name=r.text("name"),
        priority=priority or 0,
        after=after or [],
        gpu=gpu,
        memory_gib=memory,
        hold=r.text("hold") == "true",
        gpus=gpus or 1,
    )


def _run_ids(text: str) -> list[int]:
    ids = [p for p in re.split(r"[\s,]+", text) if p]
    if not all(p.isdigit() for p in ids):
        raise ValueError(f"expected run ids such as 3, 4, got {text!r}")
    return [int(p) for p in ids]


def timetable_from(texts: Mapping[str, str]) -> Timetable | None:
    """The schedule the form asks for; None for a single run.

    Raises:
        FormProblems: a bad cron expression, time zone or interval.
    """
    r = _Reader(texts)
    repeat = r.text("repeat")
    if repeat not in ("cron", "every"):
        return None
    if repeat == "every":
        every = r.take("every", validate.duration_seconds)
        r.check()
        return Timetable(every_s=every)
    cron = r.take("cron", validate.cron_expression)
    zone = r.take("timezone", validate.time_zone)
    r.check()
    return Timetable(cron=cron, timezone=zone or "UTC")


def read_form(
    texts: Mapping[str, str], model: ModelInfo | None, train: Sequence[Param]
) -> tuple[JobSpec, Placement, Timetable | None]:
    """The job, placement and timetable together.

    Raises:
        FormProblems: naming every field that cannot be used, in all three.
    """
    problems: dict[str, str] = {}
    parts: list[Any] = []
    for build in (lambda: job_from(texts, model, train), lambda: placement_from(texts), lambda: timetable_from(texts)):
        try:
            parts.append(build())
        except FormProblems as exc:
            problems.update(exc.problems)
    if problems:
        raise FormProblems(problems)
    job, placement, timetable = parts
    return job, placement, timetable
