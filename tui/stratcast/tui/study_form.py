"""What the new-study form's text becomes: a :class:`StudySpec` around the job the new-run form's fields describe.

The job, its data and its placement come from the new-run form's own fields and checks
(:func:`stratcast.tui.job_form.read_form`); this adds the study's: models, trials, timeout, objectives, sampler,
pruner, space file (read here, as ``stratcast tune --space`` does), storage, Optuna name, parallel trials, seed,
what to keep and the saved model's name, and the backtest's options when an objective is a backtest's. Every
field is checked before anything is sent; the daemon checks again and names the field it refuses
(:func:`field_of`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

import msgspec

from stratcast.shared.cli import non_negative_float, positive_int, saved_name, top_picks
from stratcast.shared.jobargs import KEEP_CHOICES
from stratcast.shared.protocol import BacktestOptions, JobSpec, KeepBest, Placement, StudySpec
from stratcast.tui import validate
from stratcast.tui.job_form import FormProblems, _Reader

SAMPLERS = ("tpe", "nsga2", "random")
PRUNERS = ("median", "hyperband", "wilcoxon", "none")
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
DAEMON_FIELDS = {
    "space": "space",
    "objectives": "objectives",
    "sampler": "sampler",
    "pruner": "pruner",
    "storage": "storage",
    "name": "study",
    "job": "models",
    "study.save_as": "save_as",
    "study.keep": "keep",
    "save_as": "save_as",
}
"""The field an ``invalid_spec`` message names (``space: ...``) -> the form field it is about."""


def field_of(message: str) -> str:
    """The form field the daemon's ``invalid_spec`` message is about (the data file for the job's data checks)."""
    return DAEMON_FIELDS.get(message.split(":", 1)[0].strip(), "data")


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _models(text: str, known: Collection[str]) -> list[str]:
    models = [m.lower() for m in _names(text)]
    unknown = [m for m in models if known and m not in known]
    if unknown:
        raise ValueError(f"unknown model {', '.join(unknown)}: choose among the daemon's ({', '.join(known)})")
    if len(set(models)) != len(models):
        raise ValueError("a model is named twice")
    return models


def _objectives(text: str) -> list[str]:
    names = _names(text)
    if not 1 <= len(names) <= 8:
        raise ValueError("give one to eight objectives, such as holdout-rmse or backtest-top-k,backtest-diff")
    return names


def _storage(text: str) -> str:
    if "://" in text:
        return text
    if not text.startswith("/"):
        raise ValueError(f"{text!r}: give an RDB URL (sqlite:///...) or a journal file's absolute path on the daemon")
    return text


def _study_name(text: str) -> str:
    if STUDY_NAME.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not a study name: letters, digits, '_', '.', '-' (not first), 100 at most")
    return text


def backtest_from(texts: Mapping[str, str]) -> BacktestOptions:
    """The backtest options of the form's ``bt-`` fields (``stratcast tune``'s ``--cutoffs``, ``--top``, ...).

    Raises:
        FormProblems: naming every field that cannot be used.
    """
    r = _Reader(texts)
    cutoffs = r.take("bt-cutoffs", validate.from_option(positive_int))
    every = r.take("bt-every", validate.from_option(positive_int))
    refit_every = r.take("bt-refit_every", validate.from_option(positive_int))
    hold = r.take("bt-hold", validate.from_option(positive_int), optional=True)
    top = r.take("bt-top", validate.from_option(top_picks))
    cost = r.take("bt-cost", validate.from_option(non_negative_float))
    r.check()
    assert cutoffs is not None and every is not None and refit_every is not None and top is not None
    return BacktestOptions(cutoffs=cutoffs, every=every, refit_every=refit_every, hold=hold, top=top, cost=cost or 0.0)


def study_from(texts: Mapping[str, str], job: JobSpec, placement: Placement, known: Collection[str]) -> StudySpec:
    """The study the form describes around ``job`` (whose model is the first model searched).

    Args:
        texts: The form's texts by field key.
        job: The trials' fixed job (the new-run fields').
        placement: The trials' placement.
        known: The daemon's model names (empty: not checked here).

    Raises:
        FormProblems: naming every field that cannot be used (a space file that cannot be read too).
    """
    r = _Reader(texts)
    models = r.take("models", lambda t: _models(t, known), optional=True) or [job.model]
    trials = r.take("trials", lambda t: validate.whole_number(t, lo=1, hi=100_000))
    timeout = r.take("timeout", validate.duration_seconds, optional=True)
    objectives = r.take("objectives", _objectives)
    space = r.take("space", validate.space_file, optional=True)
    storage = r.take("storage", _storage, optional=True)
    name = r.take("study", _study_name, optional=True)
    parallel = r.take("parallel", lambda t: validate.whole_number(t, lo=1, hi=256))
    seed = r.take("seed", validate.whole_number, optional=True)
    save_as = r.take("save_as", validate.from_option(saved_name), optional=True)
    backtest = None
    if objectives is not None and any(o.startswith("backtest") for o in objectives):  # as `stratcast tune` does
        try:
            backtest = backtest_from(texts)
        except FormProblems as exc:
            r.problems.update(exc.problems)
    r.check()
    assert trials is not None and objectives is not None and parallel is not None
    keep: KeepBest = next((k for k in KEEP_CHOICES if k == r.text("keep")), "all-data")
    return StudySpec(
        models=models,
        trials=trials,
        timeout_s=None if timeout is None else float(timeout),
        objectives=objectives,
        sampler=r.text("sampler") or None,
        pruner=r.text("pruner") or None,
        space=space[0] if space else None,
        space_format=space[1] if space else "toml",
        storage=storage,
        name=name,
        parallel=parallel,
        seed=seed or 0,
        job=msgspec.structs.replace(job, model=models[0], backtest=backtest),
        placement=msgspec.structs.replace(placement, name=""),
        keep=keep,
        save_as=save_as,
    )
