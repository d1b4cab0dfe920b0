"""The daemon's Optuna studies: it is their only client, asking trials, running each as a child run, telling results.

A study (``submit_study``, :class:`~stratcast.shared.protocol.StudySpec`) keeps one :class:`optuna.Study` open in
the daemon (:class:`LiveStudy`) on its storage (default ``HOME/studies/journal.log``). Each :meth:`StudyManager.step`
(driven by the server's study loop, after any run change and every second):

* **settles** its trials: a child run that ended is told (``succeeded``: the objectives read from its
  ``metrics.json``; ``killed``: FAIL ``killed``; ``oom-failed``: FAIL ``oom``; ``failed``: FAIL ``crashed``, or
  PRUNED ``invalid`` for a job the worker refused; ``stopped`` by the pruner: PRUNED, with the step);
  a trial of holdout and backtest objectives together is two runs, one after the other: its holdout run
  (``study-ID/tN``) and, once that succeeded, its backtest (``study-ID/tN-backtest``, the same configuration),
  queued in the trial's place; the trial is told when the backtest ended (its values from both runs' metrics),
  or when the holdout run ended any other way (no backtest then);
* **asks** new trials while the study runs, has trials and time left and fewer than ``parallel`` trials queued or
  running; a configuration the engine refuses is told PRUNED ``invalid`` and never run, the others are queued as
  runs (``study-ID/tN``) that go through the same admission, placement, OOM handling and checkpoints as any run;
* **finishes** the study once it asks no more and none of its trials is left RUNNING, and then **keeps** its best
  (``keep``, :meth:`StudyManager.retrain`): the best trial's configuration (with several objectives, the Pareto-front
  trial best on the first) is queued as the study's final run ``study-ID/best``, trained on all the data
  (``all-data``: no holdout, no backtest) or with the trials' holdout (``holdout``), and saved when it succeeds as a
  version of ``save_as`` (default: the study's Optuna name), as ``submit --save-as`` does. The study stays
  ``finished``; its final run is an ordinary run.

Worker progress (validation scores, :attr:`~stratcast.shared.events.ProgressReported.val_score`) goes to the
pruner (:func:`~stratcast.daemon.engine.study.study.report`); with the Wilcoxon pruner, the backtest objective's
value at each cutoff goes instead (the trial's job asks its worker for ``cutoff`` events,
:attr:`~stratcast.shared.protocol.JobSpec.report_cutoffs`). When the pruner says to prune, the
run is stopped as ``stop_run`` would and the trial told PRUNED when it ends. A stopped study stops its running
trials (checkpointed), holds its queued ones and queues no backtest; resuming queues them again, and they go on from
their checkpoints. On a daemon start, every RUNNING trial none of whose runs can run again (and that waits for no
backtest) is told FAIL ``crashed`` (:func:`~stratcast.daemon.engine.study.study.reap_orphans`) and the study goes on.

Several daemons may share one Optuna study (the same ``storage`` and ``name``; an RDB URL across machines): each
asks, runs and tells its own trials, records itself as their asker
(:func:`~stratcast.daemon.engine.study.study.client_id`), asks its own ``trials``, finishes when its own trials
ended, and reaps only its own orphans; ``show_study`` shows every trial of the study, the others' with no run.

Every Optuna call (journal file I/O, an RDB's round trips) runs in a thread, one at a time per study.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from stratcast.daemon.handlers.common import STOPPING, BadState, InvalidSpec
from stratcast.daemon.worker import EXIT_BAD_INPUT
from stratcast.shared.protocol import (
    FINAL_STATES,
    IMPORTANCE_MIN_TRIALS,
    SAVED_NAME,
    BacktestOptions,
    JobSpec,
    RunInfo,
    StudyInfo,
    StudySpec,
    TrialInfo,
    study_ran_s,
)
from stratcast.shared.runfiles import RunFolder

if TYPE_CHECKING:
    import optuna

    from stratcast.daemon.engine.study.objectives import Objective
    from stratcast.daemon.engine.study.space import Space
    from stratcast.daemon.handlers.context import DaemonContext

log = logging.getLogger("stratcastd")

ALIVE = frozenset({"queued", "held", "running", "stopped", "interrupted"})
"""Child run states that may still run: their trials stay RUNNING."""
OCCUPYING = frozenset({"queued", "held", "running", "interrupted"})
"""Child run states that take one of a study's ``parallel`` places (a trial held by hand too: a study queued held
does not ask all its trials at once)."""
ACTIVE = frozenset({"running", "stopped"})
"""Study states the daemon keeps open (one daemon study per Optuna study while in these)."""
STEP_S = 1.0
"""Seconds between two steps when nothing kicks the study loop."""
FINAL = "best"
"""The final run's name after ``study-ID/``."""


@dataclass
class LiveStudy:
    """One study opened in the daemon: its Optuna study, space, objectives and fixed job, and a lock on them."""

    study: optuna.Study
    space: Space
    objectives: tuple[Objective, ...]
    fixed: JobSpec
    lock: threading.Lock = field(default_factory=threading.Lock)
    pruned: dict[int, str] = field(default_factory=dict)
    """Runs the pruner stopped, with the reason their trial is told PRUNED with when they end."""
    importances: tuple[int, dict[str, float]] = (0, {})
    """The last importances computed, with the number of COMPLETE trials they come from (computed again on a
    change: PED-ANOVA takes a moment, and ``show_study`` is polled)."""
    backtest: BacktestOptions | None = None
    """The options of each trial's second run, a backtest, when the objectives need a holdout run and a backtest;
    None: one run per trial."""
    second: dict[int, RunInfo] = field(default_factory=dict)
    """Trials whose holdout run succeeded and whose backtest is still to be queued, with that holdout run."""

    @property
    def cutoff_objective(self) -> str | None:
        """The backtest objective whose per-cutoff values the trials' runs report (Wilcoxon pruner); else None."""
        from stratcast.daemon.engine.study.study import per_cutoff_pruner

        if len(self.objectives) == 1 and self.objectives[0].backtest and per_cutoff_pruner(self.study):
            return self.objectives[0].name
        return None


def ran_s(info: StudyInfo, now: float | None = None) -> float:
    """Seconds the study has run (its time stopped not counted) at ``now`` (default: now)."""
    return study_ran_s(info.elapsed_s, info.active_since, time.time() if now is None else now)


def prepare(spec: StudySpec) -> tuple[Space, tuple[Objective, ...], JobSpec, str, str]:
    """Check a study's space, objectives, sampler and pruner; its space, objectives, fixed job, sampler and pruner.

    Raises:
        InvalidSpec: naming the field (``space``, ``objectives``, ``sampler``, ``pruner``, ``job``).
    """
    from stratcast.daemon.engine.study.objectives import ObjectiveError, parse_objectives
    from stratcast.daemon.engine.study.space import SpaceError, build_space, parse_overrides
    from stratcast.daemon.engine.study.study import StudyError, make_pruner, make_sampler

    try:
        objectives = parse_objectives(spec.objectives)
    except ObjectiveError as exc:
        raise InvalidSpec(f"objectives: {exc}") from None
    try:
        overrides = parse_overrides(spec.space, spec.space_format) if spec.space is not None else None
        space = build_space([m.lower() for m in spec.models], fixed=spec.job.sets, overrides=overrides)
    except SpaceError as exc:
        raise InvalidSpec(f"space: {exc}") from None
    several = len(objectives) > 1
    sampler = spec.sampler or ("nsga2" if several else "tpe")
    pruner = spec.pruner or ("none" if several else "median")
    try:
        make_sampler(sampler)
    except StudyError as exc:
        raise InvalidSpec(f"sampler: {exc}") from None
    if pruner == "wilcoxon" and len(objectives) == 1 and not objectives[0].backtest:
        raise InvalidSpec(
            f"pruner: wilcoxon compares trials cutoff by cutoff of a backtest, and {objectives[0].name} is scored on "
            "one holdout: choose a backtest objective (backtest-top-k, backtest-diff) or --pruner median"
        )
    try:
        make_pruner(pruner, objectives=len(objectives))
    except StudyError as exc:
        raise InvalidSpec(f"pruner: {exc}") from None
    return space, objectives, fixed_job(spec, objectives), sampler, pruner


def fixed_job(spec: StudySpec, objectives: tuple[Objective, ...]) -> JobSpec:
    """The trials' fixed job: a holdout for holdout objectives (the first run, with backtest ones), else a backtest.

    Raises:
        InvalidSpec: for an ensemble or a scoring job.
    """
    job = spec.job
    if job.ensemble:
        raise InvalidSpec("job: a study tunes single models; drop --ensemble")
    if job.saved is not None or job.save_as is not None:
        raise InvalidSpec("job: a study's trials train their own models; drop --saved and --save-as")
    if all(o.backtest for o in objectives):
        return msgspec.structs.replace(job, backtest=job.backtest or BacktestOptions(), holdout=0)
    if not job.holdout:
        job = msgspec.structs.replace(job, holdout=job.horizon or 52)  # a holdout objective needs a holdout
    return msgspec.structs.replace(job, backtest=None)


def read_metrics(run: RunInfo) -> dict[str, Any]:
    """A finished run's ``metrics.json``.

    Raises:
        OSError: when it cannot be read; ValueError: when it is not JSON.
    """
    metrics: dict[str, Any] = json.loads(RunFolder(Path(run.out)).out.metrics.read_text())
    return metrics


def second_backtest(spec: StudySpec, objectives: tuple[Objective, ...]) -> BacktestOptions | None:
    """The options of a trial's second run, its backtest, for holdout and backtest objectives together; else None."""
    if len({o.backtest for o in objectives}) > 1:
        return spec.job.backtest or BacktestOptions()
    return None


def backtest_job(job: JobSpec, options: BacktestOptions, levels: list[float]) -> JobSpec:
    """A trial's backtest run: its holdout run's ``job`` (same model and settings) as a backtest.

    With ``options`` and the study's interval ``levels`` (a holdout trial calibrates none).
    """
    return msgspec.structs.replace(job, backtest=options, holdout=0, levels=levels)


class StudyManager:
    """The daemon's studies: opened, stepped, stopped and resumed here; handlers call its public methods."""

    def __init__(self, d: DaemonContext) -> None:
        self.d = d
        self.live: dict[int, LiveStudy] = {}
        self._kick = asyncio.Event()
        self._step_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: str | None = None

    @property
    def client(self) -> str:
        """This daemon as its studies' trials record their asker (its host and home)."""
        from stratcast.daemon.engine.study.study import client_id

        if self._client is None:
            self._client = client_id("stratcastd", self.d.home.state)
        return self._client

    # -- requests --------------------------------------------------------------------------------------------

    async def submit(self, spec: StudySpec) -> StudyInfo:
        """Check ``spec`` (its data too, as ``submit`` would), open its Optuna study and start it.

        Raises:
            InvalidSpec: naming the field that is wrong.
        """
        for other in self.d.db.list_studies():
            same_storage = (other.spec.storage or None) == (spec.storage or None)
            if spec.name is not None and other.name == spec.name and same_storage and other.state in ACTIVE:
                raise InvalidSpec(
                    f"name: study {other.id} already runs the Optuna study {spec.name!r} in that storage; "
                    "let it finish, or choose another --study"
                )
        space, objectives, fixed, sampler, pruner, backtest = await self.check(spec)
        info = self.d.db.add_study(spec)
        try:
            study = await asyncio.to_thread(self._open, info, sampler, pruner, objectives)
        except InvalidSpec:
            self.d.db.remove_study(info.id)
            raise
        self.live[info.id] = LiveStudy(study, space, objectives, fixed, backtest=backtest)
        self.kick()
        return info

    async def check(
        self, spec: StudySpec
    ) -> tuple[Space, tuple[Objective, ...], JobSpec, str, str, BacktestOptions | None]:
        """Check ``spec`` (its data too, as ``submit`` would) and start nothing (a re-tuning schedule's study too).

        Returns:
            Its space, objectives, fixed job, sampler, pruner and second backtest (:func:`prepare`,
            :func:`second_backtest`).

        Raises:
            InvalidSpec: naming the field that is wrong.
        """
        from stratcast.daemon.handlers.submit import check_job, check_placement

        space, objectives, fixed, sampler, pruner = prepare(spec)
        check_placement(self.d, spec.placement)
        if spec.keep != "none":
            saved_name(spec, spec.name or "stratcast-study-0")
        first = msgspec.structs.replace(fixed, model=space.models[0])
        backtest = second_backtest(spec, objectives)
        async with self.d.validation:
            await asyncio.to_thread(check_job, first, self.d.home.workspace)
            if backtest is not None:
                await asyncio.to_thread(check_job, backtest_job(first, backtest, first.levels), self.d.home.workspace)
        return space, objectives, fixed, sampler, pruner, backtest

    async def stop(self, study_id: int) -> StudyInfo:
        """Ask no more trials; stop the running trials (checkpointed) and hold the queued ones.

        Raises:
            BadState: unless the study is running.
        """
        info = self.d.db.get_study(study_id)
        if info.state != "running":
            raise BadState(f"cannot stop study {study_id}: it is {info.state}; stop works on running studies")
        info = self.d.db.update_study(
            study_id, state="stopped", reason="stopped on request", elapsed_s=ran_s(info), active_since=None
        )
        for run in self.d.db.study_runs(study_id):
            if run.trial is None:  # its final run is an ordinary run
                continue
            if run.state == "queued":
                self.d.update_run(run.id, state="held", reason=f"held: study {study_id} is stopped")
            elif run.state == "running" and self.d.runner.stop(run.id):
                self.d.db.add_event(run.id, "stop_requested", {"study": study_id})
                self.d.update_run(run.id, reason=f"stopping with study {study_id}: {STOPPING}")
        return info

    async def resume(self, study_id: int) -> StudyInfo:
        """Run a stopped study again: its stopped and held trials are queued (they resume from their checkpoints).

        Raises:
            BadState: unless the study is stopped.
        """
        info = self.d.db.get_study(study_id)
        if info.state != "stopped":
            raise BadState(f"cannot resume study {study_id}: it is {info.state}; resume works on stopped studies")
        if study_id not in self.live:
            await self._reopen(info)
        live = self.live[study_id]
        running = await asyncio.to_thread(self._running, live)
        info = self.d.db.update_study(study_id, state="running", reason="resumed", active_since=time.time())
        for run in self.d.db.study_runs(study_id):
            if run.trial in running and run.state in ("stopped", "held") and run.id not in live.pruned:
                if run.state == "stopped":
                    self.d.db.add_event(run.id, "resumed", {"study": study_id})
                self.d.update_run(run.id, state="queued", reason=f"resuming with study {study_id}")
        self.kick()
        return info

    async def show(self, study_id: int) -> dict[str, Any]:
        """A study's record, its trials, its best trials' numbers (the Pareto front) and its importances."""
        info = self.d.db.get_study(study_id)
        runs = {r.trial: r.id for r in self.d.db.study_runs(study_id) if r.trial is not None}
        if study_id not in self.live:
            try:
                await self._reopen(info)
            except Exception as exc:  # a storage gone or unreachable: the record still shows
                note = f"cannot read its storage: {exc}"
                return {"study": info, "trials": [], "best": [], "importances": {}, "note": note}
        live = self.live[study_id]
        trials, best, importances = await asyncio.to_thread(self._read, live, runs)
        return {"study": info, "trials": trials, "best": best, "importances": importances}

    async def retrain(
        self, study_id: int, keep: str = "all-data", save_as: str | None = None, trial: int | None = None
    ) -> RunInfo:
        """Queue the study's final run: the best configuration (or trial ``trial``'s), trained and saved.

        ``keep`` is ``all-data`` (no holdout, no backtest) or ``holdout`` (the trials' holdout); the run is saved as
        a version of ``save_as`` (default: the study's ``save_as``, else its Optuna name) when it succeeds. The
        study's ``final_run`` becomes the new run.

        Raises:
            BadState: when the study has no COMPLETE trial (or its storage cannot be read).
            InvalidSpec: naming ``trial`` (not a COMPLETE trial), ``save_as`` or the job.
        """
        from stratcast.daemon.engine.study.study import StudyError, evidence, final_job, kept_trial
        from stratcast.daemon.handlers.submit import check_job

        info = self.d.db.get_study(study_id)
        if study_id not in self.live:
            try:
                await self._reopen(info)
            except Exception as exc:
                raise BadState(f"cannot retrain study {study_id}: cannot read its storage: {exc}") from None
        live = self.live[study_id]
        name = saved_name(info.spec, info.name, save_as)
        try:
            chosen = await asyncio.to_thread(self._locked, live, kept_trial, live.study, trial)
            if chosen is None:
                raise BadState(
                    f"cannot retrain study {study_id}: it has no COMPLETE trial (`stratcast study {study_id}`)"
                )
            job = final_job(chosen, live.fixed, live.space.models, keep, info.spec.job)
            kept = await asyncio.to_thread(self._locked, live, evidence, live.study, chosen, info.spec.objectives, keep)
        except StudyError as exc:
            raise InvalidSpec(str(exc)) from None
        job = msgspec.structs.replace(job, save_as=name)
        async with self.d.validation:
            await asyncio.to_thread(check_job, job, self.d.home.workspace)
        run = self._queue(
            info, job, None, name=f"study-{study_id}/{FINAL}", study_file=msgspec.json.encode(kept),
            best_of=chosen.number, keep=keep,
        )  # fmt: skip
        self.d.db.update_study(study_id, final_run=run.id)
        log.info(
            "study %d: trial %d's configuration queued as run %d, saved as %s", study_id, chosen.number, run.id, name
        )
        return run

    # -- the loop --------------------------------------------------------------------------------------------

    def kick(self) -> None:
        """Ask the study loop to step now."""
        self._kick.set()

    async def loop(self) -> None:
        """Reopen the studies the last daemon left (reaping orphaned trials), then step every second or kick."""
        for info in self.d.db.list_studies():
            if info.state in ACTIVE:
                try:
                    await self._reopen(info, reap=True)
                except Exception as exc:  # one study's storage gone must not stop the others
                    log.exception("study %d cannot be reopened", info.id)
                    self.d.db.update_study(info.id, state="failed", reason=f"cannot reopen its storage: {exc}")
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=STEP_S)
            self._kick.clear()
            if self.d.shutting_down.is_set():  # wait_for may swallow a cancel (3.11): leave by ourselves
                return
            try:
                await self.step()
            except Exception:  # a bug here must not stop the studies for good: log it and try again
                log.exception("study step failed")

    async def step(self) -> None:
        """Settle ended trials, ask new ones where there is room, finish studies that are done."""
        async with self._step_lock:
            for study_id, live in list(self.live.items()):
                info = self.d.db.get_study(study_id)
                if info.state in ("finished", "failed"):
                    continue  # kept open for show_study
                runs = self.d.db.study_runs(study_id)
                running = await asyncio.to_thread(self._settle, live, runs)
                if info.state == "running" and not self.d.shutting_down.is_set():
                    await self._ask(info, live, runs, running)
                    info = self.d.db.get_study(study_id)
                    runs = self.d.db.study_runs(study_id)
                    running = await asyncio.to_thread(self._running, live)
                    if not self._more(info) and not running:
                        now = time.time()
                        self.d.db.update_study(
                            study_id,
                            state="finished",
                            reason="",
                            finished=now,
                            elapsed_s=ran_s(info, now),
                            active_since=None,
                        )
                        await self._keep(info)

    async def _keep(self, info: StudyInfo) -> None:
        """Queue a finished study's final run as its ``keep`` says; a study with nothing to keep says why."""
        if info.spec.keep == "none":
            return
        try:
            await self.retrain(info.id, info.spec.keep)
        except (BadState, InvalidSpec) as exc:
            log.warning("study %d: its best is not kept: %s", info.id, exc)
            self.d.db.update_study(info.id, reason=f"best not kept: {exc}")

    def progress(self, run: RunInfo, step: int, value: float) -> None:
        """A trial's validation score at ``step``: report it, and stop the run when the pruner says so."""
        from stratcast.daemon.engine.study.study import per_cutoff_pruner

        live = self.live.get(run.study) if run.study is not None else None
        if live is None or run.trial is None or run.id in live.pruned or per_cutoff_pruner(live.study):
            return
        self._spawn(self._report(run, live, step, value))

    def cutoff(self, run: RunInfo, index: int, value: float) -> None:
        """A trial's backtest value at cutoff ``index`` (from 0): to the Wilcoxon pruner; stop the run if it says.

        The cutoff's index is the trial's step in Optuna (its intermediate values).
        """
        live = self.live.get(run.study) if run.study is not None else None
        if live is None or run.trial is None or run.id in live.pruned or live.cutoff_objective is None:
            return
        self._spawn(self._report(run, live, index, value, cutoff=True))

    # -- internals -------------------------------------------------------------------------------------------

    def _spawn(self, report: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(report)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, run: RunInfo, live: LiveStudy, step: int, value: float, *, cutoff: bool = False) -> None:
        """Report a validation score at ``step`` (or, with ``cutoff``, a backtest value at cutoff index ``step``)."""
        from stratcast.daemon.engine.study.study import report

        assert run.trial is not None
        try:
            prune = await asyncio.to_thread(self._locked, live, report, live.study, run.trial, step, value)
        except Exception:  # a trial already told, a storage hiccup: the run goes on
            log.exception("run %d: reporting to its study failed", run.id)
            return
        if prune and run.id not in live.pruned:
            at = f"cutoff {step + 1}" if cutoff else f"step {step}"
            reason = live.pruned[run.id] = f"pruned at {at} ({'value' if cutoff else 'validation score'} {value:.6g})"
            if self.d.runner.stop(run.id):
                event = {"cutoff": step, "value": value} if cutoff else {"step": step, "val_score": value}
                self.d.db.add_event(run.id, "pruned", {**event, "reason": reason})  # kept for a restart
                self.d.update_run(run.id, reason=f"pruned by study {run.study} at {at}: stopping")

    @staticmethod
    def _locked(live: LiveStudy, fn: Any, *args: Any) -> Any:
        with live.lock:
            return fn(*args)

    def _open(self, info: StudyInfo, sampler: str, pruner: str, objectives: tuple[Objective, ...]) -> optuna.Study:
        from stratcast.daemon.engine.study.study import StudyError, open_storage, open_study, pruner_warmup

        try:
            storage = open_storage(info.spec.storage, self.d.home.state)
            return open_study(
                storage, info.name, [o.direction for o in objectives], sampler, pruner, seed=info.spec.seed,
                warmup_steps=pruner_warmup(info.spec.job),
            )  # fmt: skip
        except (StudyError, ValueError, OSError) as exc:
            field_name = "storage" if not isinstance(exc, StudyError) else "name"
            raise InvalidSpec(f"{field_name}: {exc}") from None
        except Exception as exc:  # an RDB URL that does not connect (SQLAlchemy's errors)
            raise InvalidSpec(f"storage: {type(exc).__name__}: {exc}") from None

    async def _reopen(self, info: StudyInfo, *, reap: bool = False) -> None:
        """Open a study the last daemon left; with ``reap``, tell FAIL its trials whose runs cannot run again.

        The runs its pruner had stopped (their ``pruned`` event) are remembered, so their trials are told PRUNED.
        """
        from stratcast.daemon.engine.study.study import reap_orphans

        space, objectives, fixed, sampler, pruner = prepare(info.spec)
        study = await asyncio.to_thread(self._open, info, sampler, pruner, objectives)
        live = LiveStudy(study, space, objectives, fixed, backtest=second_backtest(info.spec, objectives))
        runs = self.d.db.study_runs(info.id)
        for run in (r for r in runs if r.state == "stopped"):  # stopped by the pruner before the last daemon told
            pruned = [e["data"] for e in self.d.db.events(run.id) if e["kind"] == "pruned"]
            if pruned and "reason" in pruned[-1]:
                live.pruned[run.id] = str(pruned[-1]["reason"])
        self.live[info.id] = live
        if reap:
            await asyncio.to_thread(self._settle, live, runs)  # runs that ended before the crash are told first
            alive = [r.trial for r in runs if r.trial is not None and r.state in ALIVE] + list(live.second)
            reaped = await asyncio.to_thread(self._locked, live, reap_orphans, study, alive, self.client)
            for number in reaped:
                log.info("study %d: trial %d was orphaned; told FAIL (crashed)", info.id, number)
            if info.state == "running":
                self.d.db.update_study(info.id, active_since=time.time())
        self.kick()

    def _running(self, live: LiveStudy) -> set[int]:
        """The numbers of the study's RUNNING trials this daemon asked (in a thread)."""
        from stratcast.daemon.engine.study.study import running_trials

        with live.lock:
            trials = running_trials(live.study, self.client)
        return {t.number for t in trials}

    def _settle(self, live: LiveStudy, runs: list[RunInfo]) -> set[int]:
        """Tell every RUNNING trial whose last run ended how it ended (in a thread); the numbers still RUNNING."""
        running = self._running(live)
        trials: dict[int, list[RunInfo]] = {}
        for run in runs:  # oldest first: a trial's last run is its holdout run or, after it, its backtest
            if run.trial is not None and run.trial in running:
                trials.setdefault(run.trial, []).append(run)
        for number, mine in trials.items():
            if self._tell(live, mine[-1], mine[:-1]):
                running.discard(number)
        return running

    def _tell(self, live: LiveStudy, run: RunInfo, earlier: Sequence[RunInfo] = ()) -> bool:
        """Tell ``run``'s trial its outcome when the run ended; whether it was told.

        ``earlier`` are the trial's runs before ``run``: a backtest's values need its holdout run's metrics. A
        holdout run that succeeded in a study that needs a backtest too is not told: its backtest is queued next.
        """
        from stratcast.daemon.engine.study.objectives import ObjectiveError, values_of
        from stratcast.daemon.engine.study.study import tell_failure, tell_pruned, tell_result

        assert run.trial is not None
        number = run.trial
        with live.lock:
            if run.state == "stopped" and run.id in live.pruned:
                tell_pruned(live.study, number, live.pruned[run.id])
            elif run.state == "succeeded" and live.backtest is not None and run.job.backtest is None:
                live.second[number] = run
                return False
            elif run.state == "succeeded":
                try:
                    metrics = read_metrics(run)
                    if run.job.backtest is None:
                        values = values_of(live.objectives, metrics, None)
                    else:
                        first = next((r for r in earlier if r.job.backtest is None and r.state == "succeeded"), None)
                        holdout = read_metrics(first) if first is not None else None
                        values = values_of(live.objectives, holdout, metrics)
                except (OSError, ValueError, ObjectiveError) as exc:
                    tell_failure(live.study, number, "crashed", f"run {run.id}: {exc}")
                else:
                    tell_result(live.study, number, values)
            elif run.state == "killed":
                tell_failure(live.study, number, "killed", f"run {run.id} {run.reason}".strip())
            elif run.state == "oom-failed":
                tell_failure(live.study, number, "oom", f"run {run.id} ran out of memory beyond recovery")
            elif run.state == "failed" and run.exit == f"exit {EXIT_BAD_INPUT}":
                tell_failure(live.study, number, "invalid", f"run {run.id}: {run.reason}")
            elif run.state in FINAL_STATES:
                tell_failure(live.study, number, "crashed", f"run {run.id}: {run.reason}")
            else:
                return False
        return True

    def _more(self, info: StudyInfo) -> bool:
        """Whether the study may ask another trial: trials left and time left."""
        if info.asked >= info.spec.trials:
            return False
        return info.spec.timeout_s is None or ran_s(info) < info.spec.timeout_s

    async def _ask(self, info: StudyInfo, live: LiveStudy, runs: list[RunInfo], running: set[int]) -> None:
        """Ask trials while the study has room, queueing each valid one as a child run."""
        from stratcast.daemon.engine.study.study import ask

        busy = sum(1 for r in runs if r.trial in running and r.state in OCCUPYING)
        for number, first in list(live.second.items()):  # in the place of their holdout runs
            del live.second[number]
            if number in running and live.backtest is not None:
                job = backtest_job(first.job, live.backtest, live.fixed.levels)
                self._queue(info, job, number, name=f"{first.name}-backtest", after=first.id)
                busy += 1
        while busy < info.spec.parallel and self._more(info):
            plan = await asyncio.to_thread(
                self._locked, live, functools.partial(ask, client=self.client), live.study, live.space, live.fixed
            )
            info = self.d.db.update_study(info.id, asked=info.asked + 1)
            if plan.invalid is not None:
                log.info("study %d: trial %d is invalid: %s", info.id, plan.number, plan.invalid)
                continue
            job = plan.job(live.fixed)
            if live.cutoff_objective is not None:
                job = msgspec.structs.replace(job, report_cutoffs=live.cutoff_objective)
            self._queue(info, job, plan.number)
            busy += 1

    def _queue(
        self,
        info: StudyInfo,
        job: JobSpec,
        number: int | None,
        *,
        name: str = "",
        study_file: bytes | None = None,
        **event: Any,
    ) -> RunInfo:
        """Queue a run of the study: trial ``number``'s (``study-ID/tN``), or one named ``name``.

        Named: a trial's backtest after its holdout run, or the final run of the best (``number`` None), whose
        ``study_file`` (the kept trial's evidence) its worker puts into the saved version. ``event`` goes into its
        ``submitted`` event.
        """
        placement = msgspec.structs.replace(info.spec.placement, name=name) if name else info.spec.placement
        run = self.d.db.add_run(job, placement, runs_dir=self.d.home.runs, study=info.id, trial=number)
        folder = RunFolder(Path(run.out))
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.job.write_bytes(msgspec.json.encode(job))
        if study_file is not None:
            folder.study.write_bytes(study_file)
        trial = {} if number is None else {"trial": number}
        self.d.db.add_event(run.id, "submitted", {"study": info.id, **trial, **event})
        return self.d.run_changed(run)

    def _read(self, live: LiveStudy, runs: dict[int, int]) -> tuple[list[TrialInfo], list[int], dict[str, float]]:
        """The study's trials, its best ones' numbers and its importances, read at one moment (in a thread)."""
        from optuna.trial import TrialState

        from stratcast.daemon.engine.study.study import best

        with live.lock:  # tells hold it too: the importances are those of these trials
            trials = live.study.get_trials(deepcopy=False)
            top = [t.number for t in best(live.study)]
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            if len(complete) != live.importances[0]:
                live.importances = (len(complete), importances(live.study, complete))
        out = [
            TrialInfo(
                number=t.number,
                state=t.state.name,
                params=dict(t.params),
                values=list(t.values) if t.values and t.state == TrialState.COMPLETE else None,  # see trial_line
                duration_s=t.duration.total_seconds() if t.duration is not None else None,
                reason=str(t.user_attrs.get("reason", "")),
                run=runs.get(t.number),
                started=t.datetime_start.timestamp() if t.datetime_start is not None else None,
                completed=t.datetime_complete.timestamp() if t.datetime_complete is not None else None,
            )
            for t in trials
        ]
        return out, top, live.importances[1]


def saved_name(spec: StudySpec, name: str, save_as: str | None = None) -> str:
    """The saved model a study's final run becomes a version of: ``save_as``, the spec's, or the study's name.

    Raises:
        InvalidSpec: naming ``save_as`` when the study's name is not a saved model's name.
    """
    chosen = save_as or spec.save_as or name
    if not SAVED_NAME.fullmatch(chosen):
        raise InvalidSpec(
            f"save_as: the study's name {chosen!r} is not a saved model's name (letters, digits, '-', '_', '.'); "
            "give --save-as NAME"
        )
    return chosen


def importances(study: optuna.Study, complete: list[optuna.trial.FrozenTrial]) -> dict[str, float]:
    """Parameter name -> importance for the first objective (summing to 1), or empty when too few trials varied.

    Needs :data:`IMPORTANCE_MIN_TRIALS` COMPLETE trials and a parameter with two distinct values. PED-ANOVA
    (Optuna's :class:`~optuna.importance.PedAnovaImportanceEvaluator`) judges each parameter on the trials that
    drew it, so the conditional spaces of several models (per-model parameters present on some trials only) are
    fine; fANOVA, Optuna's default, needs scikit-learn, which stratcast does not depend on. Any failure gives an
    empty dict: importances are a hint, never an error.
    """
    import warnings

    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
    from optuna.study import StudyDirection

    if len(complete) < IMPORTANCE_MIN_TRIALS:
        return {}
    seen: dict[str, set[str]] = {}
    for t in complete:
        for key, value in t.params.items():
            seen.setdefault(key, set()).add(repr(value))
    if all(len(values) < 2 for values in seen.values()):
        return {}
    sign = -1.0 if study.directions[0] == StudyDirection.MAXIMIZE else 1.0  # PED-ANOVA takes lower as better
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental, and "too few trials" warnings
            found = get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(), target=lambda t: sign * t.values[0]
            )
    except Exception:  # a hint only: a storage hiccup or an evaluator's refusal shows no importances
        log.exception("parameter importances failed")
        return {}
    return {key: float(value) for key, value in found.items()}
