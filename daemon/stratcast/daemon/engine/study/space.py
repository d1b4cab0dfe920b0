"""The search space of a study: the catalog's search metadata as Optuna distributions, with the user's overrides.

Per model, every config field that declares a :class:`~stratcast.daemon.zoo.search.Search` is searched under the name
``<model>.<field>`` (``nhits.mlp_units``), and every training option that declares one under its own name
(``learning_rate``); with several models a categorical ``model`` is drawn first and only the chosen model's fields
are drawn after it (a conditional space: Optuna's define-by-run keeps each name's distribution fixed).
Options the study fixes (``--set``) are not searched.

Tuple-valued fields (``mlp_units``) are categorical over their declared choices, encoded as ``"512,512"``: Optuna's
choices must be plain scalars. A drawn value reaches the run as a ``--set`` item, so it goes through
:func:`~stratcast.daemon.engine.spec.runspec.build_spec`'s validation like a user's.

An override file (TOML or JSON) holds a ``[train]`` table and one table per model, each mapping a field to:

* a table ``{low = 1e-4, high = 1e-2, log = true}`` (``step`` too) or ``{choices = [...]}``: its space replaced
  (also for a field the catalog does not search);
* ``{search = false}``: not searched (it keeps its default);
* any other value: fixed at that value.

Each override is checked against the field's valid range or choices and its type before the study starts;
:class:`SpaceError` names the field, the bad value and what is valid.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.zoo.catalog import get_entry
from stratcast.daemon.zoo.contract import value_problem
from stratcast.daemon.zoo.search import Search

TRAIN = "train"
"""The override file's table of training options."""
MODEL_PARAM = "model"
"""The name of the categorical model choice when a study searches several models."""
SKIP = "search"
"""``{search = false}`` in an override file: the field is not searched."""
CONDITIONS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "huber_delta": ("loss", ("huber",)),
    "warmup_steps": ("lr_schedule", ("cosine", "constant")),
}
"""Training options that matter only for some values of another (drawn before them): not drawn otherwise, so the
sampler does not spend trials on a dimension that changes nothing (``onecycle`` has its own warm-up)."""
ONE_SERIES_OPTIONS = ("batch_size",)
"""Training options whose declared space counts windows of one series (256 to 2,048): a multivariate model's window
holds every series (or ``series_per_window`` of them), so for such a model the study keeps the catalog's default (or
the panel's choice, :func:`~stratcast.daemon.engine.spec.runspec.panel_batch`) unless an override file gives the
option a space of its own."""


DECLARED = {f.name: f for f in dataclasses.fields(TrainConfig)}
"""The training options' fields, with their declared spaces in the metadata."""


class SpaceError(ValueError):
    """A search space or an override that cannot be searched: the message names the field, value and valid range."""


@dataclass(frozen=True)
class Field:
    """One searched (or fixed) field: where it goes, its space, and how a drawn value becomes a ``--set`` item."""

    owner: str
    """``train`` or a model's name."""
    name: str
    """The config field."""
    search: Search | None
    """Its space; None: fixed at :attr:`fixed`."""
    fixed: Any = None

    @property
    def key(self) -> str:
        """The Optuna parameter name: ``learning_rate`` for a training option, ``nhits.mlp_units`` for a model's."""
        return self.name if self.owner == TRAIN else f"{self.owner}.{self.name}"

    def set_item(self, value: Any) -> str:
        """The ``--set`` item of ``value`` (decoded), prefixed so it cannot be mistaken for the other config's."""
        prefix = TRAIN if self.owner == TRAIN else "model"
        return f"{prefix}.{self.name}={set_text(value)}"


@dataclass(frozen=True)
class Space:
    """A study's search space over one or several models."""

    models: tuple[str, ...]
    train: tuple[Field, ...]
    """Training options searched or fixed, shared by every model."""
    per_model: Mapping[str, tuple[Field, ...]] = field(default_factory=dict)

    def describe(self) -> list[str]:
        """One line per searched parameter: ``nhits.mlp_units: one of 128,128 | 256,256``."""
        lines = [f"{MODEL_PARAM}: one of {' | '.join(self.models)}"] if len(self.models) > 1 else []
        for f in (*self.train, *(f for m in self.models for f in self.per_model[m])):
            lines.append(f"{f.key}: {describe_search(f.search) if f.search else f'fixed at {set_text(f.fixed)}'}")
        return lines

    def sample(self, trial: optuna.Trial) -> tuple[str, dict[str, Any], list[str]]:
        """Draw a configuration: the model, every drawn value decoded by key, and the ``--set`` items."""
        model = self.models[0]
        if len(self.models) > 1:
            model = str(trial.suggest_categorical(MODEL_PARAM, list(self.models)))
        values: dict[str, Any] = {}
        sets = []
        for f in (*self.train, *self.per_model[model]):
            if f.search is not None and not applies(f, values, model):
                continue
            value = f.fixed if f.search is None else decode(draw(trial, f.key, f.search), f.search)
            values[f.key] = value
            sets.append(f.set_item(value))
        return model, values, sets


def applies(f: Field, drawn: Mapping[str, Any], model: str) -> bool:
    """Whether a searched training option is drawn for ``model``, given the values ``drawn`` before it.

    Not for a multivariate model when it is one of :data:`ONE_SERIES_OPTIONS` with its declared space; not when
    :data:`CONDITIONS` says it matters only for other values of an option drawn before. A condition on an option that
    was not drawn (fixed by the study) is taken as met.
    """
    if f.owner != TRAIN:
        return True
    if one_series_space(f) and get_entry(model).capabilities.multivariate:
        return False
    if f.name not in CONDITIONS:
        return True
    other, values = CONDITIONS[f.name]
    return other not in drawn or drawn[other] in values


def build_space(
    models: Sequence[str], *, fixed: Sequence[str] = (), overrides: Mapping[str, Any] | None = None
) -> Space:
    """The space of ``models`` from the catalog, less the ``fixed`` ``--set`` keys, with ``overrides`` applied.

    Raises:
        SpaceError: for an unknown model, field or table of the overrides, or an override that is not valid.
    """
    if not models:
        raise SpaceError("a study needs at least one model")
    for name in models:
        try:
            get_entry(name)
        except KeyError as exc:
            raise SpaceError(str(exc).strip("'\"")) from None
    overrides = dict(overrides or {})
    if unknown := set(overrides) - {TRAIN, *models}:
        raise SpaceError(
            f"override tables {', '.join(sorted(unknown))} name no searched model; tables: {TRAIN}, {', '.join(models)}"
        )
    taken = fixed_keys(fixed)
    train = owner_fields(TRAIN, TrainConfig, overrides.get(TRAIN, {}), taken)
    if all(get_entry(m).capabilities.multivariate for m in models):
        train = tuple(f for f in train if not one_series_space(f))  # not drawn for any of them (applies)
    per_model = {
        m: owner_fields(m, get_entry(m).config_cls, overrides.get(m, {}), taken, model=m) for m in dict.fromkeys(models)
    }
    return Space(tuple(dict.fromkeys(models)), train, per_model)


def one_series_space(f: Field) -> bool:
    """Whether ``f`` is one of :data:`ONE_SERIES_OPTIONS` searched in its declared space (not an override's)."""
    return f.owner == TRAIN and f.name in ONE_SERIES_OPTIONS and f.search is DECLARED[f.name].metadata.get("search")


def fixed_keys(sets: Sequence[str]) -> set[str]:
    """The keys a study's ``--set`` items fix, as given (``lr``, ``model.x``, ``nhits.x``, ``train.x``)."""
    return {item.partition("=")[0].strip() for item in sets}


def owner_fields(
    owner: str, cls: type[Any], overrides: Mapping[str, Any], taken: set[str], *, model: str | None = None
) -> tuple[Field, ...]:
    """The searched and fixed fields of one config class (``TrainConfig`` or a model's config)."""
    declared = {f.name: f for f in dataclasses.fields(cls)}
    if unknown := set(overrides) - set(declared):
        raise SpaceError(
            f"[{owner}] {', '.join(sorted(unknown))}: no such field; fields: {', '.join(sorted(declared))}"
        )
    prefixes = ("train",) if model is None else ("model", model)
    out = []
    for name, f in declared.items():
        if name in taken or any(f"{p}.{name}" in taken for p in prefixes):
            continue  # the study's own --set fixes it
        if name in overrides:
            chosen = override_field(owner, f, overrides[name])
            if chosen is not None:
                out.append(chosen)
        elif (search := f.metadata.get("search")) is not None:
            out.append(Field(owner, name, search))
    return tuple(out)


def override_field(owner: str, f: dataclasses.Field[Any], raw: Any) -> Field | None:
    """The field as one override says (None: not searched).

    Raises:
        SpaceError: naming ``owner.field``, the bad value and the valid range or choices.
    """
    where = f"{owner}.{f.name}"
    if isinstance(raw, Mapping):
        if dict(raw) == {SKIP: False}:
            return None
        search = override_search(where, raw)
        check_search(where, f, search)
        return Field(owner, f.name, search)
    value = tuple(raw) if isinstance(raw, list) else raw
    check_value(where, f, value)
    return Field(owner, f.name, None, value)


def override_search(where: str, raw: Mapping[str, Any]) -> Search:
    """The :class:`Search` an override table describes."""
    allowed = {"low", "high", "log", "step", "choices"}
    if unknown := set(raw) - allowed:
        raise SpaceError(
            f"{where}: unknown keys {', '.join(sorted(unknown))}; a space has low, high, log, step or "
            "choices ({search = false}: not searched)"
        )
    try:
        if "choices" in raw:
            choices = tuple(tuple(c) if isinstance(c, list) else c for c in raw["choices"])
            return Search(kind="categorical", choices=choices)
        low, high = raw.get("low"), raw.get("high")
        whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, raw.get("step") or 1))
        return Search(
            kind="int" if whole else "float", low=low, high=high, log=bool(raw.get("log", False)), step=raw.get("step")
        )
    except (ValueError, TypeError) as exc:
        raise SpaceError(f"{where}: {exc}") from None


def check_search(where: str, f: dataclasses.Field[Any], search: Search) -> None:
    """Refuse a space whose values the field cannot hold (type, range or choices)."""
    default = f.default
    if search.kind == "categorical":
        for choice in search.values():
            check_value(where, f, choice)
        return
    if isinstance(default, bool) or not isinstance(default, int | float):
        raise SpaceError(f"{where}: a numeric range cannot search a field whose default is {default!r}; give choices")
    if isinstance(default, int) and search.kind == "float":
        raise SpaceError(f"{where}: whole numbers only, got {search.low}..{search.high}")
    for value in search.values():
        check_value(where, f, value)


def check_value(where: str, f: dataclasses.Field[Any], value: Any) -> None:
    """Refuse a value the field cannot hold: another type, or outside its range or choices."""
    default, meta = f.default, f.metadata
    fits = isinstance(value, type(default)) or (isinstance(default, float) and isinstance(value, int))
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, bool):
        fits = False
    if not fits:
        raise SpaceError(f"{where}={value!r}: expected a value like its default {default!r}")
    if problem := value_problem(where, value, meta.get("lo"), meta.get("hi"), meta.get("choices")):
        valid = valid_text(meta)
        raise SpaceError(f"{problem}{f' (valid: {valid})' if valid else ''}")


def valid_text(meta: Mapping[str, Any]) -> str:
    """``1 to 32`` or ``relu, gelu``: what a field accepts, for messages."""
    if meta.get("choices"):
        return ", ".join(map(str, meta["choices"]))
    lo, hi = meta.get("lo"), meta.get("hi")
    return (
        "" if lo is None and hi is None else f"{lo if lo is not None else '-inf'} to {hi if hi is not None else 'inf'}"
    )


def load_overrides(path: str | Path) -> dict[str, Any]:
    """Read an override file: TOML (``.toml``) or JSON (anything else).

    Raises:
        SpaceError: when the file cannot be read or parsed, naming it.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpaceError(f"search space file {path}: {exc}") from None
    return parse_overrides(text, "toml" if path.suffix == ".toml" else "json", f"search space file {path}")


def parse_overrides(text: str, format: str, where: str = "search space") -> dict[str, Any]:
    """An override file's ``text`` in ``format`` (``toml`` or ``json``), as read by :func:`load_overrides`.

    Raises:
        SpaceError: when it does not parse or is not tables of fields, opening with ``where``.
    """
    try:
        data = tomllib.loads(text) if format == "toml" else json.loads(text)
    except ValueError as exc:
        raise SpaceError(f"{where}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise SpaceError(f"{where}: expected tables of fields ([train], [nhits], ...)")
    return data


def draw(trial: optuna.Trial, key: str, search: Search) -> Any:
    """Draw ``key`` from ``search`` (the encoded value for a categorical one)."""
    if search.kind == "categorical":
        return trial.suggest_categorical(key, [encode(c) for c in search.values()])
    assert search.low is not None and search.high is not None
    if search.kind == "int":
        step = int(search.step or 1)
        return trial.suggest_int(key, int(search.low), int(search.high), step=step, log=search.log)
    return trial.suggest_float(key, search.low, search.high, step=search.step, log=search.log)


def encode(value: Any) -> Any:
    """A choice as Optuna stores it: tuples as ``"512,512"``, everything else as it is."""
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else value


def decode(value: Any, search: Search) -> Any:
    """The field's value of a drawn (encoded) one."""
    if search.kind != "categorical":
        return value
    return next(c for c in search.values() if encode(c) == value)


def set_text(value: Any) -> str:
    """A value as a ``--set`` item writes it: ``512,512``, ``true``, ``0.001``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def describe_search(search: Search) -> str:
    """``0.0001 to 0.01 (log)`` or ``one of 128,128 | 256,256``."""
    if search.kind == "categorical":
        return "one of " + " | ".join(set_text(c) for c in search.values())
    extra = " (log)" if search.log else f" (step {search.step:g})" if search.step else ""
    return f"{search.low:g} to {search.high:g}{extra}"
