"""A study's Optuna side: its storage, sampler and pruner, and ask and tell by trial number.

One process is the study's Optuna client (the daemon, or ``stratcastd tune`` in the foreground); trials run as jobs
and their results come back here. Everything below works from a trial's *number*, so a trial can be asked in one
call, run elsewhere and told in another (ask-and-tell), and a trial's state and reasons are all in the storage.

Storage: by default a journal file, ``HOME/studies/journal.log`` (``JournalFileBackend``: safe for several
processes on one machine, not over NFS), or any RDB URL (``sqlite:///studies.db`` for one machine,
``postgresql://...`` across machines). ``optuna-dashboard`` opens either.

Several clients may share one study (two daemons, a daemon and ``stratcastd tune``, on one machine or many): each
asks its own trials (the storage numbers them), runs and tells them. Each trial records the client that asked it
(user attribute ``asked_by``, :func:`client_id`), so a client reaps only its own orphans and waits only for its own
running trials; a sampler's seed is offset by the trials already in the study, so two clients of one ``--seed``
(or one client reopening its study) do not draw the same configurations again.

Trial states and reasons (user attributes ``fail_reason`` and ``reason``):

* COMPLETE: told its objective values.
* PRUNED: stopped by the pruner, or ``fail_reason=invalid``: the configuration is one the model or the engine
  refuses (``reason`` says why). Pruned, not failed, because samplers learn from pruned trials (TPE counts them
  among the worst) and ignore failed ones, which would let the sampler propose the same invalid region again.
* FAIL: ``fail_reason`` ``oom`` (out of memory beyond the micro-batch's recovery), ``killed`` (stopped by hand),
  ``crashed`` (an unexpected error, or orphaned: RUNNING when its runner is gone, see :func:`reap_orphans`).

Multi-objective studies cannot prune (Optuna's ``Trial.report`` refuses): their pruner is always none.
"""

from __future__ import annotations

import socket
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from stratcast.daemon.engine.saved.manifest import StudyEvidence
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.spec.runspec import spec_from_job
from stratcast.daemon.engine.study.space import Space
from stratcast.shared.intervals import RANK_BY_MEAN
from stratcast.shared.protocol import JobSpec

SAMPLERS = ("tpe", "nsga2", "random")
PRUNERS = ("median", "hyperband", "wilcoxon", "none")
FAIL_REASONS = ("oom", "killed", "crashed", "invalid")
ASKED_BY = "asked_by"
"""The user attribute naming the client that asked a trial (:func:`client_id`)."""
JOURNAL = Path("studies") / "journal.log"
"""The default storage, under the daemon's home."""
SQLITE_BUSY_S = 30.0
"""How long an SQLite storage waits for another writer's lock before "database is locked" (sqlite3's default is
5 s): several daemons share one SQLite file, and a busy machine can hold a write that long."""
STARTUP_TRIALS = 5
WARMUP_CHECKS = 2
"""Validation checks of a trial the median pruner lets pass before it judges the trial (it prunes from the third).
Measured on all 6,000 EURUSD strategies (docs/benchmarks.md): judged at their first check, 10 of 20 N-HiTS trials
were pruned, and of the ones the unpruned study also ran, most ended better than the median of the trials before
them: the first checks show the warm-up and the schedule more than where a configuration ends."""
"""Trials a median pruner lets finish before it prunes (Optuna's default)."""


class StudyError(ValueError):
    """A study that cannot be opened as asked (unknown sampler or pruner, a pruner for several objectives)."""


def open_storage(storage: str | None, home: Path) -> BaseStorage:
    """The study storage: an RDB URL, a journal file's path, or (None) the journal file in ``home``.

    RDB URLs: ``sqlite:///...`` (one machine), ``postgresql://...`` (across machines); the default journal file is
    ``HOME/studies/journal.log``.
    """
    if storage is not None and "://" in storage:
        sqlite = {"connect_args": {"timeout": SQLITE_BUSY_S}} if storage.startswith("sqlite") else None
        return RDBStorage(storage, engine_kwargs=sqlite)
    path = Path(storage) if storage is not None else home / JOURNAL
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def client_id(kind: str, home: Path) -> str:
    """Who asks a study's trials, stable across restarts: ``stratcastd@host:/home/state`` for ``kind`` stratcastd."""
    return f"{kind}@{socket.gethostname()}:{home}"


def make_sampler(name: str, *, seed: int = 0) -> optuna.samplers.BaseSampler:
    """``tpe`` (``constant_liar``: parallel trials steer apart), ``nsga2`` or ``random``, seeded.

    Raises:
        StudyError: for an unknown name.
    """
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise StudyError(f"sampler {name!r} is not one of {', '.join(SAMPLERS)}")


def make_pruner(
    name: str, *, objectives: int = 1, startup_trials: int = STARTUP_TRIALS, warmup_steps: int = 0
) -> optuna.pruners.BasePruner:
    """``median``, ``hyperband``, ``wilcoxon`` (per-cutoff backtest values) or ``none``.

    ``warmup_steps``: the training steps before the median pruner judges a trial (:func:`pruner_warmup`).

    Raises:
        StudyError: for an unknown name, a pruner for a multi-objective study.
    """
    if name not in PRUNERS:
        raise StudyError(f"pruner {name!r} is not one of {', '.join(PRUNERS)}")
    if objectives > 1 and name != "none":
        raise StudyError(f"--pruner {name}: a study of {objectives} objectives cannot prune; use --pruner none")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_steps)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "wilcoxon":
        return wilcoxon_pruner()
    return optuna.pruners.NopPruner()


def wilcoxon_pruner() -> optuna.pruners.WilcoxonPruner:
    """Optuna's Wilcoxon pruner as studies use it: p below 0.1 prunes."""
    with warnings.catch_warnings():  # experimental in Optuna 4 and 5; chosen knowingly (NOTES.md, Optuna)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.WilcoxonPruner(p_threshold=0.1)


def open_study(
    storage: BaseStorage,
    name: str,
    directions: Sequence[str],
    sampler: str = "tpe",
    pruner: str = "median",
    *,
    seed: int = 0,
    warmup_steps: int = 0,
) -> optuna.Study:
    """Create the study ``name`` in ``storage``, or load it to go on (its directions must match).

    ``warmup_steps``: the median pruner's (:func:`make_pruner`, :func:`pruner_warmup`).

    Raises:
        StudyError: for an unknown sampler, pruner or direction, a pruner with several objectives, or a study of
            that name with other directions.
    """
    if unknown := set(directions) - {"minimize", "maximize"}:
        raise StudyError(f"directions {', '.join(sorted(unknown))}: each is minimize or maximize")
    seed += asked_before(storage, name)  # a seeded sampler replays its draws: start past those already asked
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=[StudyDirection.MAXIMIZE if d == "maximize" else StudyDirection.MINIMIZE for d in directions],
        sampler=make_sampler(sampler, seed=seed),
        pruner=make_pruner(pruner, objectives=len(directions), warmup_steps=warmup_steps),
        load_if_exists=True,
    )
    found = [d.name.lower() for d in study.directions]
    if found != list(directions):
        raise StudyError(f"study {name!r} exists with directions {', '.join(found)}, not {', '.join(directions)}")
    return study


def asked_before(storage: BaseStorage, name: str) -> int:
    """How many trials the study ``name`` holds already (0 for a new study)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


@dataclass(frozen=True)
class TrialPlan:
    """One asked trial: what its run needs (the model and ``--set`` items on top of the study's fixed job)."""

    number: int
    model: str
    params: dict[str, Any]
    """Every drawn (and override-fixed) value, decoded, by parameter name (``nhits.mlp_units``)."""
    sets: tuple[str, ...]
    invalid: str | None = None
    """Why the engine refuses this configuration; the trial is already told (PRUNED, ``fail_reason=invalid``)."""
    models: tuple[str, ...] = field(default=())
    """The study's models (to route the fixed job's ``<model>.<field>`` items)."""

    def job(self, fixed: JobSpec) -> JobSpec:
        """The trial's job: the study's fixed job with this model and the drawn values (after the fixed items).

        A holdout trial calibrates no intervals (``levels`` empty) unless its ranking reads a bound: no objective
        reads them, and calibrating forecasts every validation origin again, about as long as the combination's
        fit. A backtest's bands come from its residuals at no such cost; the kept run has the fixed job's levels.
        """
        sets = route_sets(fixed.sets, self.model, self.models)
        job = msgspec.structs.replace(fixed, model=self.model, sets=[*sets, *self.sets])
        if job.backtest is None and job.rank_by == RANK_BY_MEAN:
            job = msgspec.structs.replace(job, levels=[])
        return job


def route_sets(sets: Iterable[str], model: str, models: Sequence[str]) -> list[str]:
    """The fixed ``--set`` items for ``model``: ``nhits.x=1`` goes to nhits only (as ``model.x=1``), others to all."""
    out = []
    for item in sets:
        prefix, dot, rest = item.partition(".")
        if dot and prefix in models:
            if prefix == model:
                out.append(f"model.{rest}")
            continue
        out.append(item)
    return out


def ask(study: optuna.Study, space: Space, fixed: JobSpec, *, device: str = "auto", client: str = "") -> TrialPlan:
    """Ask for a trial (recorded as asked by ``client``) and check its configuration as a run would (``build_spec``).

    A configuration the engine refuses is told PRUNED with ``fail_reason=invalid`` and the reason; the plan then
    carries :attr:`TrialPlan.invalid` and must not be run.
    """
    trial = study.ask()
    model, params, sets = space.sample(trial)
    plan = TrialPlan(trial.number, model, params, tuple(sets), models=space.models)
    trial.set_user_attr("model", model)
    trial.set_user_attr("sets", list(sets))
    if client:
        trial.set_user_attr(ASKED_BY, client)
    try:
        spec_from_job(plan.job(fixed), out="trial", device=device)
    except (ValueError, KeyError) as exc:
        message = str(exc).strip("'\"")
        tell_failure(study, plan.number, "invalid", message)
        return TrialPlan(plan.number, model, params, tuple(sets), message, space.models)
    return plan


def live_trial(study: optuna.Study, number: int) -> optuna.Trial:
    """The :class:`optuna.Trial` of trial ``number``, to report to or set attributes on (ask-and-tell by number)."""
    # Optuna has no public lookup by number; the storage's is the one it uses itself.
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.Trial(study, trial_id)


def per_cutoff_pruner(study: optuna.Study) -> bool:
    """Whether the study prunes by per-cutoff backtest values (Wilcoxon), not by the trainer's validation scores."""
    return isinstance(study.pruner, optuna.pruners.WilcoxonPruner)


def report(study: optuna.Study, number: int, step: int, value: float) -> bool:
    """Report an intermediate value of trial ``number``; whether the pruner says to stop it.

    A study of several objectives cannot prune: nothing is reported and the answer is always no.
    """
    if len(study.directions) > 1:
        return False
    trial = live_trial(study, number)
    trial.report(value, step)
    return trial.should_prune()


def tell_result(study: optuna.Study, number: int, values: Sequence[float]) -> FrozenTrial:
    """Tell trial ``number`` COMPLETE with its objective values (one per direction)."""
    return study.tell(number, list(values) if len(values) > 1 else values[0])


def tell_pruned(study: optuna.Study, number: int, reason: str) -> FrozenTrial:
    """Tell trial ``number`` PRUNED by the pruner, saying at what point."""
    live_trial(study, number).set_user_attr("reason", reason)
    return study.tell(number, state=TrialState.PRUNED)


def tell_failure(study: optuna.Study, number: int, fail_reason: str, message: str = "") -> FrozenTrial:
    """Tell trial ``number`` FAIL (``oom``, ``killed``, ``crashed``), or PRUNED for ``invalid``, with its reason.

    Raises:
        StudyError: for a ``fail_reason`` not in :data:`FAIL_REASONS`.
    """
    if fail_reason not in FAIL_REASONS:
        raise StudyError(f"fail reason {fail_reason!r} is not one of {', '.join(FAIL_REASONS)}")
    trial = live_trial(study, number)
    trial.set_user_attr("fail_reason", fail_reason)
    trial.set_user_attr("reason", f"{fail_reason}: {message}" if message else fail_reason)
    state = TrialState.PRUNED if fail_reason == "invalid" else TrialState.FAIL
    return study.tell(number, state=state)


def running_trials(study: optuna.Study, client: str = "") -> list[FrozenTrial]:
    """The study's RUNNING trials asked by ``client`` (or recorded with no client); every one for ``client`` ''."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t for t in trials if not client or t.user_attrs.get(ASKED_BY, client) == client]


def reap_orphans(study: optuna.Study, alive: Iterable[int] = (), client: str = "") -> list[int]:
    """Tell FAIL (``crashed``) every RUNNING trial of ``client`` whose number is not in ``alive``; the numbers told.

    After a daemon restart (or a foreground study killed), the storage still holds the trials that were running;
    Optuna's heartbeats do not cover ask-and-tell, so the study's client says which ones are really running. Only
    the trials ``client`` asked are its to reap (:func:`running_trials`): another client's are running elsewhere.
    """
    keep = set(alive)
    orphans = [t.number for t in running_trials(study, client) if t.number not in keep]
    for number in orphans:
        tell_failure(study, number, "crashed", "its runner is gone (orphaned by a restart or a kill)")
    return orphans


def best(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial (one objective) or the Pareto front (several); empty before any trial completed."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    return list(study.best_trials) if len(study.directions) > 1 else [study.best_trial]


def kept_trial(study: optuna.Study, number: int | None = None) -> FrozenTrial | None:
    """The trial a study keeps: trial ``number`` (COMPLETE), or the best; None when none is COMPLETE.

    With several objectives the best is the Pareto-front trial best on the first objective (lowest number on a tie).

    Raises:
        StudyError: naming ``trial`` when trial ``number`` is not a COMPLETE trial of the study.
    """
    if number is not None:
        trials = study.get_trials(deepcopy=False)
        state = trials[number].state if number < len(trials) else None
        if state != TrialState.COMPLETE:
            said = state.name if state is not None else "not asked yet"
            raise StudyError(f"trial: trial {number} is {said}; give a COMPLETE trial's number (`stratcast study ID`)")
        return trials[number]
    front = best(study)
    if not front:
        return None
    sign = -1.0 if study.directions[0] == StudyDirection.MAXIMIZE else 1.0
    return min(front, key=lambda t: (sign * t.values[0], t.number))


def pruner_warmup(fixed: JobSpec) -> int:
    """Optuna's ``n_warmup_steps`` that spares a trial's first :data:`WARMUP_CHECKS` validation checks.

    From the fixed job's ``val_check_steps`` (the default's where the fixed job cannot be read here); Optuna judges
    a step at or past the warm-up, hence the 1 more.
    """
    try:
        every = spec_from_job(fixed, out="", device="cpu").train.val_check_steps
    except (ValueError, KeyError):
        every = TrainConfig().val_check_steps
    return WARMUP_CHECKS * every + 1


def evidence(study: optuna.Study, trial: FrozenTrial, objectives: Sequence[str], keep: str) -> StudyEvidence:
    """What the kept ``trial`` of ``study`` scored on ``objectives``: the evidence its saved version carries."""
    complete = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    values = [float(v) for v in trial.values or []]
    return StudyEvidence(
        study=study.study_name, trial=trial.number, objectives=list(objectives), values=values, keep=keep,
        complete=complete,
    )  # fmt: skip


def final_job(trial: FrozenTrial, fixed: JobSpec, models: Sequence[str], keep: str, job: JobSpec) -> JobSpec:
    """The job that trains ``trial``'s configuration to keep it: the trials' ``fixed`` job with its drawn values.

    ``keep`` ``all-data`` trains on everything (no holdout, no backtest); ``holdout`` keeps the trials' holdout (a
    backtest study's trials have none: the study's ``job``'s, else its horizon). ``models`` are the study's.

    Raises:
        StudyError: naming ``trial`` when its configuration is not recorded (a trial asked by another client).
    """
    model, sets = trial.user_attrs.get("model"), trial.user_attrs.get("sets")
    if not isinstance(model, str) or not isinstance(sets, list):
        raise StudyError(f"trial: trial {trial.number} has no recorded configuration (its model and settings)")
    plan = TrialPlan(trial.number, model, dict(trial.params), tuple(map(str, sets)), models=tuple(models))
    out = plan.job(fixed)
    holdout = 0 if keep == "all-data" else out.holdout or job.holdout or out.horizon or 52
    return msgspec.structs.replace(out, holdout=holdout, backtest=None, levels=fixed.levels)


def trial_line(trial: FrozenTrial) -> str:
    """``trial 3 COMPLETE 0.9312 nhits learning_rate=0.001 ...`` or with the reason of a pruned or failed one.

    Only a COMPLETE trial has objective values: Optuna gives a pruned one its last intermediate value (a validation
    score, in other units), which its reason states.
    """
    values = " ".join(f"{v:.6g}" for v in trial.values) if trial.values and trial.state == TrialState.COMPLETE else ""
    params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    reason = trial.user_attrs.get("reason", "")
    parts = [f"trial {trial.number}", trial.state.name, values, params, f"({reason})" if reason else ""]
    return " ".join(p for p in parts if p)
