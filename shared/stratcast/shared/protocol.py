"""The wire protocol between ``stratcastd`` and its clients (the ``stratcast`` CLI and TUI).

Two ZeroMQ sockets per daemon, both ``ipc://`` files in the daemon's 0700 runtime folder by default
(``stratcast.shared.paths``):

* **control** (daemon ``ROUTER``, client ``DEALER``): requests and replies. Every message is **one frame**: a UTF-8
  JSON object, at most :data:`MAX_FRAME` bytes. A request names its kind in ``"type"`` and carries a
  client-chosen ``"id"`` string that the reply echoes, so replies can be matched when several are in flight::

      -> {"type": "hello", "id": "1", "protocol": 2, "client": "stratcast 0.1.0"}
      <- {"type": "reply", "id": "1", "result": {"protocol": 2, "daemon": "0.1.0", "session": "9f...", ...}}
      -> {"type": "stop_run", "id": "2", "run": 7}
      <- {"type": "error", "id": "2", "code": "bad_state", "message": "run 7 is queued, not running; ..."}

  **Handshake:** the first request on a connection must be ``hello`` with the client's :data:`PROTOCOL` version;
  anything else first gets ``handshake_required``, a different version ``version_mismatch``. A frame that is not
  valid JSON, too large, of an unknown type or with a wrong field gets an ``error`` reply (with ``"id"`` when
  it could be read) and the connection stays usable.
* **events** (daemon ``PUB``, client ``SUB``): **two frames**, ``[topic, body]``: the topic in ASCII (the event's
  kind) and a JSON :class:`~stratcast.shared.events.Event` whose ``data`` is one typed event of
  :mod:`stratcast.shared.events`. Every event carries the daemon's ``session`` (new at each daemon start) and a
  ``seq`` that grows by one per event across all topics, so subscribe to all topics (``b""``) to detect gaps.

**Keeping a live copy (the ZeroMQ guide's Clone pattern).** Subscribe first and buffer events; then send
``snapshot``: its result holds the full state and the ``seq`` it reflects. Drop buffered events with
``seq <= snapshot.seq``, apply the rest in order. On a gap (an event's ``seq`` is not the last one plus one) or
a new ``session``, take a new snapshot. The daemon publishes a ``heartbeat`` event every
:data:`HEARTBEAT_S` seconds; no event for three heartbeats means the daemon is gone.

No pickle anywhere: JSON only, decoded into the typed structs below (``msgspec``), which validates every field;
anything else raises :class:`ProtocolError`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from stratcast.shared.intervals import DEFAULT_LEVELS, RANK_BY_MEAN

PROTOCOL = 2
"""Version of this protocol; ``hello`` must carry it. 2: events are typed (:mod:`stratcast.shared.events`), each
in an envelope's ``data`` under its kind, with the run's id in the envelope (1: untyped ``data`` dicts)."""
MAX_FRAME = 1 << 20
"""Largest control frame accepted (1 MiB); larger frames are refused before parsing."""
HEARTBEAT_S = 1.0
"""Seconds between ``heartbeat`` events."""
Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
"""A run or schedule id: what SQLite's INTEGER holds."""
Priority = Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]

RunState = Literal["queued", "held", "running", "succeeded", "failed", "oom-failed", "stopped", "killed", "interrupted"]
"""A run's lifecycle state. ``stopped`` runs have a checkpoint and can be resumed; ``interrupted`` runs were
running when the daemon died and are resumed automatically within the restart budget."""
RUN_STATES: tuple[str, ...] = RunState.__args__  # type: ignore[attr-defined]
FINAL_STATES = frozenset({"succeeded", "failed", "oom-failed", "killed"})
"""States a run never leaves by itself (``restart`` starts it again)."""


class ProtocolError(ValueError):
    """A frame that is not a valid message: too large, not JSON, unknown type, a wrong or missing field.

    ``code`` is the error code sent back; ``request_id`` is the request's ``id`` when it could be read.
    """

    def __init__(self, message: str, *, code: str = "bad_request", request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


# -- what a run is -------------------------------------------------------------------------------------------


DEFAULT_MODEL = "nhits"
"""The model people start with: ``stratcastd demo``'s default and the first choice of the TUI's new-run form."""


TopPick = Annotated[str, msgspec.Meta(pattern=r"^([1-9][0-9]*|[0-9]+(\.[0-9]+)?%)$")]
"""How many strategies a backtest picks: a count (``10``) or a share of the strategies (``1%``)."""


IntervalLevel = Annotated[float, msgspec.Meta(gt=0, lt=100)]
"""A prediction interval's nominal coverage in percent, strictly between 0 and 100."""
RankBy = Annotated[str, msgspec.Meta(pattern=r"^(mean|(lo|hi)[0-9]+(\.[0-9]+)?)$")]
MAX_MEMBERS = 32
"""The most members an ensemble may have (``--ensemble``)."""
MemberModel = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
"""A model name of an ensemble's member (the daemon checks it against its catalog)."""
"""What ranks the strategies: ``mean``, or a bound of an interval level such as ``lo80``."""
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}"
SAVED_NAME = re.compile(_NAME)
"""A saved model's or alias's name: letters, digits, ``-``, ``_`` and ``.``, not starting with ``.`` or ``-``
(``fullmatch``)."""
SAVED_REF = re.compile(rf"{_NAME}(@{_NAME}|:[1-9][0-9]*)?")
"""A saved model's version: ``NAME`` (the latest), ``NAME@ALIAS`` or ``NAME:VERSION`` (``fullmatch``)."""
SavedName = Annotated[str, msgspec.Meta(pattern=f"^{SAVED_NAME.pattern}$")]
SavedRef = Annotated[str, msgspec.Meta(pattern=f"^{SAVED_REF.pattern}$")]


class BacktestOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A walk-forward selection backtest (``stratcast backtest``): the options beyond the job's own.

    At each of ``cutoffs`` cutoffs, ``every`` periods apart and the last one ``hold`` periods before the panel's
    end, the model is trained on the data before the cutoff only (retrained every ``refit_every`` cutoffs), every
    strategy is forecast and the top strategies by forecast mean are held for the next ``hold`` periods.
    """

    cutoffs: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 12
    every: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 4
    """Periods between cutoffs."""
    refit_every: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 4
    """Retrain at every ``refit_every``-th cutoff (1: at each); the others predict with the last model."""
    hold: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    """Periods each pick is held (None: ``every``, so holdings follow each other without overlap)."""
    top: list[TopPick] = msgspec.field(default_factory=lambda: ["10", "1%"])
    """The pick sizes scored: counts and shares of the strategies."""
    cost: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    """Cost per pick, in the panel's unit (pips), taken once per holding."""
    draws: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1000
    """Random picks drawn per cutoff for the random baseline (its mean and spread)."""

    @property
    def hold_periods(self) -> int:
        """Periods each pick is held: ``hold``, or ``every`` when it is None."""
        return self.every if self.hold is None else self.hold

    def pick_sizes(self, n: int) -> dict[str, int]:
        """Each of :attr:`top` as a number of strategies out of ``n``: ``{"10": 10, "1%": 60}`` for 6,000.

        A share picks at least one strategy.

        Raises:
            ValueError: for a count over ``n`` or a share of 0, naming the pick size and ``n``.
        """
        sizes = {}
        for pick in self.top:
            if pick.endswith("%"):
                share = float(pick[:-1])
                if not 0 < share <= 100:
                    raise ValueError(f"--top {pick}: a share must be above 0% and at most 100%")
                sizes[pick] = max(1, round(n * share / 100))
            elif int(pick) > n:
                raise ValueError(f"--top {pick}: only {n} strategies can be picked; pick at most {n} or a share")
            else:
                sizes[pick] = int(pick)
        return sizes


class JobSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What to run: the options of ``stratcastd run`` (the daemon validates them before queueing)."""

    data: str
    """Long-format parquet or CSV file, as a path on the daemon's machine."""
    model: str = "dlinear"
    mode: Literal["batch", "per-strategy"] = "batch"
    horizon: int | None = None
    """None: the engine's default (52)."""
    input_size: int | None = None
    """None: the engine's default for the horizon."""
    holdout: int = 0
    device: str = "auto"
    """Only ``auto``/``cpu`` make sense through the daemon, which assigns GPUs itself."""
    id_col: str | None = None
    time_col: str | None = None
    target_col: str | None = None
    fill_missing: Literal["error", "zero"] = "error"
    date_format: str | None = None
    """How text dates are written (``%d.%m.%Y``); None: ISO, or day/month order inferred from the values."""
    dayfirst: bool = False
    """Read ambiguous dates such as ``04/01/2016`` day first."""
    sets: list[str] = []
    """``key=value`` training options and model parameters, as ``--set``."""
    backtest: BacktestOptions | None = None
    """A walk-forward selection backtest of the model instead of one run (None: a run)."""
    levels: Annotated[list[IntervalLevel], msgspec.Meta(min_length=0, max_length=16)] = msgspec.field(
        default_factory=lambda: list(DEFAULT_LEVELS)
    )
    """Nominal coverages of the prediction intervals, in percent (``--levels 80,95``)."""
    rank_by: RankBy = RANK_BY_MEAN
    """``mean``: rank by the forecast mean; ``lo80``: by the mean lower bound of the 80% interval (a bound of one of
    :attr:`levels`)."""
    ensemble: Annotated[list[MemberModel], msgspec.Meta(max_length=MAX_MEMBERS)] = []
    """The models of an ensemble, one entry per member, the first :attr:`model` (``--ensemble``): member ``i``
    trains with seed ``seed + i``; the job forecasts their mean. Empty: one model."""
    saved: SavedRef | None = None
    """Score :attr:`data` with this saved model (``NAME``, ``NAME@ALIAS``, ``NAME:VERSION``, resolved when the job
    starts) instead of training: the outputs of a run, no checkpoints. The model, its options and the columns come
    from the saved model; :attr:`levels` and :attr:`rank_by` too (None: a run)."""
    save_as: SavedName | None = None
    """When the run succeeds, save it as the next version of this saved model (a failure to save is a warning)."""
    report_cutoffs: str | None = None
    """With :attr:`backtest`: the backtest objective (``backtest-top-k``, ``backtest-diff``) whose value at each
    finished cutoff the worker reports as a ``cutoff`` event, for a study's Wilcoxon pruner (None: nothing more)."""


MAX_RANKS = 64
"""The most devices one run may span (:attr:`Placement.gpus`)."""


class Placement(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How a run is queued and placed."""

    name: str = ""
    priority: Priority = 0
    """Higher runs first; FIFO within a priority."""
    after: list[Id] = []
    """Run ids that must succeed before this one starts."""
    gpu: int | None = None
    """Pin to this GPU index; None: any."""
    memory_gib: float | None = None
    """Share a GPU, capped at this much memory (opt-in sharing); None: a GPU of its own."""
    hold: bool = False
    """Queue it held: it waits until released."""
    gpus: Annotated[int, msgspec.Meta(ge=1, le=MAX_RANKS)] = 1
    """Devices the run spans (``--gpus-per-run``): above 1, one model trains data-parallel over that many GPUs of
    its own (on a machine without GPUs, that many CPU processes, each taking a CPU slot); the local executor only,
    not with :attr:`gpu` or :attr:`memory_gib`."""


class RunInfo(msgspec.Struct, kw_only=True):
    """A run as clients see it."""

    id: int
    name: str
    state: RunState
    reason: str = ""
    """Why a queued or held run waits, or how a finished run ended."""
    job: JobSpec
    placement: Placement
    created: float
    started: float | None = None
    finished: float | None = None
    device: str | None = None
    """``cuda:N`` or ``cpu`` while or after running."""
    pid: int | None = None
    attempts: int = 0
    """Worker processes started for this run (resumes and automatic restarts included)."""
    exit: str = ""
    """How the last worker ended: ``exit 0``, ``signal SIGSEGV``, ..."""
    checkpoint: str | None = None
    """Newest checkpoint file, when one exists."""
    progress: dict[str, Any] = {}
    """Last progress report: step, max_steps, epoch, train_loss, val_loss, windows_per_s, eta_s, ..."""
    memory: dict[str, Any] = {}
    """Last allocator figures of its worker: allocated, reserved, peak (bytes), oom_count, rss."""
    schedule: int | None = None
    """The schedule that enqueued it."""
    out: str = ""
    """The run's folder on the daemon's machine."""
    study: int | None = None
    """The study this run is a trial of (``stratcast tune``); None: not a trial."""
    trial: int | None = None
    """Its trial's number in the study (Optuna's)."""


class ScheduleInfo(msgspec.Struct, kw_only=True):
    """A cron or interval schedule that enqueues a run, or (with :attr:`study`) starts a study."""

    id: int
    name: str
    cron: str | None = None
    """Five-field crontab expression (minute hour day month weekday)."""
    every_s: int | None = None
    """Interval in seconds (when not cron)."""
    timezone: str = "UTC"
    job: JobSpec
    """The run it enqueues; for a re-tuning schedule, its study's fixed job (``study.job``)."""
    placement: Placement
    paused: bool = False
    next_run: float | None = None
    last_run: float | None = None
    last_run_id: int | None = None
    study: StudySpec | None = None
    """A re-tuning schedule's study: each firing starts it afresh (Optuna name ``NAME-YYYYMMDD-HHMM``) and saves
    its kept best as the next version of ``study.save_as``; None: the schedule enqueues :attr:`job`."""
    last_study_id: int | None = None
    """The study its last firing started (re-tuning schedules)."""


KeepBest = Literal["all-data", "holdout", "none"]
"""What a study keeps of its best trial: ``all-data`` trains the best configuration on all the data (no holdout, no
backtest) into a final run that is saved; ``holdout`` trains it with the trials' holdout (its metrics compare with
theirs) and saves it; ``none`` keeps nothing (``retrain_study`` does it later). With several objectives, the best is
the Pareto-front trial best on the first objective."""

StudyState = Literal["running", "stopped", "finished", "failed"]
"""A daemon study's state: ``running`` asks trials, ``stopped`` asks none and its trials are stopped (checkpointed)
until ``resume_study``, ``finished`` asked every trial (or ran out of time) and told them all, ``failed`` cannot
reach its storage."""
SPACE_FORMATS = ("toml", "json")


class StudySpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An Optuna study the daemon runs (``stratcast tune``): each trial is a child run of :attr:`job`."""

    models: Annotated[list[MemberModel], msgspec.Meta(min_length=1, max_length=MAX_MEMBERS)]
    trials: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 20
    """Trials to ask (invalid configurations, pruned and failed trials count)."""
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Ask no new trial after this many seconds of the study running (None: no limit)."""
    objectives: Annotated[list[str], msgspec.Meta(min_length=1, max_length=8)] = msgspec.field(
        default_factory=lambda: ["holdout-rmse"]
    )
    """Objective names (several: a multi-objective study)."""
    sampler: str | None = None
    """``tpe``, ``nsga2`` or ``random`` (None: tpe for one objective, nsga2 for several)."""
    pruner: str | None = None
    """``median``, ``hyperband``, ``wilcoxon`` or ``none`` (None: median for one objective, none for several)."""
    space: str | None = None
    """The search space override file's text (the client reads the file; a frame's size bounds it); None: the
    catalog's spaces."""
    space_format: Literal["toml", "json"] = "toml"
    storage: str | None = None
    """An RDB URL or a journal file's path on the daemon's machine (None: ``HOME/studies/journal.log``)."""
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")] | None = None
    """The Optuna study name (an existing one of the same directions goes on); None: ``stratcast-study-ID``."""
    parallel: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1
    """Trials queued or running at once, at most (each still waits for a device like any run)."""
    seed: int = 0
    """The sampler's seed."""
    job: JobSpec
    """The trials' fixed job (``model`` is replaced by each trial's; ``sets`` fix settings, ``nhits.x=1`` one
    model's; ``backtest`` holds the backtest's options for a backtest objective)."""
    placement: Placement = msgspec.field(default_factory=Placement)
    """The trials' placement (``name`` is ignored: a trial is named ``study-ID/tN``)."""
    keep: KeepBest = "all-data"
    """What the study keeps when it finishes (:data:`KeepBest`): by default its best configuration trained on all
    the data into a final run, saved as :attr:`save_as`."""
    save_as: SavedName | None = None
    """The saved model the final run becomes a version of (None: the study's Optuna name)."""


def study_ran_s(elapsed_s: float, active_since: float | None, now: float) -> float:
    """Seconds a study has run at ``now``: ``elapsed_s`` before its last resume, plus the time since, while it runs."""
    return elapsed_s + (max(0.0, now - active_since) if active_since is not None else 0.0)


class StudyInfo(msgspec.Struct, kw_only=True):
    """A daemon study as clients see it."""

    id: int
    name: str
    """The Optuna study name in its storage."""
    state: StudyState
    reason: str = ""
    spec: StudySpec
    created: float
    finished: float | None = None
    asked: int = 0
    """Trials asked so far (by this daemon study)."""
    elapsed_s: float = 0.0
    """Seconds the study ran before its last resume (for its timeout)."""
    active_since: float | None = None
    """When it last started running (None while stopped or finished)."""
    final_run: int | None = None
    """The run that trains the best configuration to keep (``keep``, ``retrain_study``; None: none yet)."""


class TrialInfo(msgspec.Struct, kw_only=True):
    """One trial of a study, read from its Optuna storage."""

    number: int
    state: str
    """Optuna's: RUNNING, COMPLETE, PRUNED, FAIL, WAITING."""
    params: dict[str, Any] = {}
    values: list[float] | None = None
    """The objective values of a COMPLETE trial (None for the others: a pruned trial's figure is in its reason)."""
    duration_s: float | None = None
    reason: str = ""
    """Why it was pruned or failed (``oom: ...``, ``killed``, ``crashed: ...``, ``invalid: ...``, ``pruned at ...``)."""
    run: int | None = None
    """Its child run (None: an invalid configuration, never run)."""
    started: float | None = None
    """When it was asked (Unix seconds)."""
    completed: float | None = None
    """When it was told (Unix seconds; None while running)."""


# -- requests ------------------------------------------------------------------------------------------------


class Request(msgspec.Struct, tag_field="type", kw_only=True, forbid_unknown_fields=True):
    """Base of every request: ``id`` is echoed in the reply (clients number their requests)."""

    id: str = ""


class Hello(Request, tag="hello"):
    """Must be first on a connection; the result names the daemon, its session and its event endpoint."""

    protocol: int
    client: str = ""


class Snapshot(Request, tag="snapshot"):
    """Full state (runs, schedules, GPUs, telemetry history) and the event ``seq`` it reflects."""


class Status(Request, tag="status"):
    """Daemon version, session, uptime, queue counts, devices, and the executor with its health.

    The reply's ``executor`` is the ``--executor`` name (``local``); ``executor_health`` is ``ok``, or why the
    executor cannot start runs now (queued runs wait for it, none is failed).
    """


class Submit(Request, tag="submit"):
    """Queue a new run; the result is its :class:`RunInfo`."""

    job: JobSpec
    placement: Placement = msgspec.field(default_factory=Placement)


class ListRuns(Request, tag="list_runs"):
    """Runs, newest first, optionally only some states."""

    states: list[RunState] = []


class RunRequest(Request):
    """A request about one run."""

    run: Id


class ShowRun(RunRequest, tag="show_run"):
    """One run's record, its metrics when finished, and its checkpoints."""


class StopRun(RunRequest, tag="stop_run"):
    """Checkpoint at the next step boundary, then exit; the run becomes ``stopped``. A queued run is held."""


class ResumeRun(RunRequest, tag="resume_run"):
    """Queue a ``stopped`` or ``interrupted`` run again; it continues from its checkpoint."""


class HoldRun(RunRequest, tag="hold_run"):
    """Keep a queued run from starting."""


class ReleaseRun(RunRequest, tag="release_run"):
    """Let a held run start again."""


class KillRun(RunRequest, tag="kill_run"):
    """End a run now (SIGKILL), without a checkpoint."""


class RestartRun(RunRequest, tag="restart_run"):
    """Queue a finished, stopped or killed run again: from its checkpoint, or from scratch."""

    from_scratch: bool = False


class RemoveRun(RunRequest, tag="remove_run"):
    """Forget a run that is not running, and delete its folder."""


class SetPriority(RunRequest, tag="set_priority"):
    """Change a queued run's priority."""

    priority: Priority


class ReadLogs(Request, tag="read_logs"):
    """Bytes of a run's log from ``offset``; the result has ``text`` and the ``offset`` to ask for next."""

    run: Id
    offset: Annotated[int, msgspec.Meta(ge=0)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=1 << 20)] = 65536


class ReadHistory(RunRequest, tag="read_history"):
    """A run's whole training history (progress, allocator figures, memory plans, OOMs, checkpoints).

    Each series is thinned evenly to at most ``points`` samples (the first and last always kept), so a week-long
    run's curves cost the same as a minute's.
    """

    points: Annotated[int, msgspec.Meta(ge=10, le=5000)] = 500


class ReadResults(RunRequest, tag="read_results"):
    """A finished run's metrics (skill table, training summary) and its ``top`` strategies with their forecasts."""

    top: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20


class ExportResults(RunRequest, tag="export_results"):
    """Write a finished run's results to ``path`` on the daemon's machine (absolute; not over an existing file)."""

    path: str
    what: Literal["summary", "forecast"] = "summary"
    """``summary``: one row per strategy; ``forecast``: one row per strategy and step."""
    format: Literal["parquet", "csv"] | None = None
    """None: from the path's suffix (``.csv``, else parquet)."""


class CheckData(Request, tag="check_data"):
    """Check a job's options and data as ``submit`` would, queue nothing, and describe the panel."""

    job: JobSpec


class ListGpus(Request, tag="list_gpus"):
    """GPUs with their latest telemetry and the runs on them."""


class ListModels(Request, tag="list_models"):
    """The model catalog with each model's parameters, defaults and ranges, and the training options."""


class AddSchedule(Request, tag="add_schedule"):
    """Enqueue ``job`` (or start ``study``: exactly one) on a cron expression or every ``every_s`` seconds.

    ``cron`` is read in ``timezone``.
    """

    job: JobSpec | None = None
    study: StudySpec | None = None
    """A study to start at each firing (its ``job`` is the fixed job; ``save_as`` is required)."""
    name: str = ""
    cron: str | None = None
    every_s: int | None = None
    timezone: str = "UTC"
    placement: Placement = msgspec.field(default_factory=Placement)


class ListSchedules(Request, tag="list_schedules"):
    """Every schedule."""


class ScheduleRequest(Request):
    """A request about one schedule."""

    schedule: Id


class RemoveSchedule(ScheduleRequest, tag="remove_schedule"):
    """Delete a schedule (its runs stay)."""


class PauseSchedule(ScheduleRequest, tag="pause_schedule"):
    """Stop a schedule from firing until resumed."""


class ResumeSchedule(ScheduleRequest, tag="resume_schedule"):
    """Let a paused schedule fire again."""


class RunScheduleNow(ScheduleRequest, tag="run_schedule_now"):
    """Enqueue a schedule's run (or start its study) now, outside its timetable."""


class PauseQueue(Request, tag="pause_queue"):
    """Start no new runs until ``resume_queue`` (running runs go on)."""


class ResumeQueue(Request, tag="resume_queue"):
    """Start queued runs again."""


class SaveRun(RunRequest, tag="save_run"):
    """Save a succeeded run as the next version of saved model ``name``; the result names the version."""

    name: SavedName


class ListSaved(Request, tag="list_saved"):
    """The saved models: each one's name, versions, latest version and aliases."""


class SavedRequest(Request):
    """A request about one version of a saved model."""

    ref: SavedRef


class ShowSaved(SavedRequest, tag="show_saved"):
    """A version's manifest (strategies and tensors counted, not listed), checked as for scoring."""


class SetAlias(SavedRequest, tag="set_alias"):
    """Point ``alias`` at the version ``ref`` names; ``remove``: remove ``alias`` of the model ``ref`` names."""

    alias: SavedName
    remove: bool = False


class RemoveSaved(SavedRequest, tag="remove_saved"):
    """Remove a version; one an alias points at only with ``force`` (its aliases go with it)."""

    force: bool = False


class ExportSaved(SavedRequest, tag="export_saved"):
    """Write a version to ``path`` on the daemon's machine (absolute): a plain tar of its manifest and weights."""

    path: str


class ImportSaved(Request, tag="import_saved"):
    """Check an exported tar at ``path`` (absolute, on the daemon's machine) and add it as a new version.

    ``name``: the model to add it to (None: the name it was saved under).
    """

    path: str
    name: SavedName | None = None


class SubmitStudy(Request, tag="submit_study"):
    """Check a study and start it; the result holds its :class:`StudyInfo` (its ``id``).

    The space, objectives, sampler, pruner, storage, the fixed job and its data are checked first; a bad one is
    ``invalid_spec`` naming the field.
    """

    spec: StudySpec


class ListStudies(Request, tag="list_studies"):
    """Every study, newest first."""


class StudyRequest(Request):
    """A request about one study."""

    study: Id


IMPORTANCE_MIN_TRIALS = 5
"""COMPLETE trials a study needs before ``show_study`` gives its parameters' importances."""


class ShowStudy(StudyRequest, tag="show_study"):
    """A study's record, its trials, its best trials' numbers and its parameters' importances.

    The reply: ``study`` (:class:`StudyInfo`), ``trials`` (:class:`TrialInfo`), ``best`` (the best trial's number,
    or the Pareto front's) and ``importances`` (parameter name -> importance for the first objective, summing to 1,
    once enough trials are complete and some parameter varied; else empty).
    """


class StopStudy(StudyRequest, tag="stop_study"):
    """Ask no new trials; running trials are stopped with a checkpoint, queued ones held, until ``resume_study``."""


class ResumeStudy(StudyRequest, tag="resume_study"):
    """Resume a stopped study: its stopped and held trials are queued again and it asks trials again."""


class RetrainStudy(StudyRequest, tag="retrain_study"):
    """Train a study's best configuration (or trial ``trial``'s) into a final run that is saved.

    Replies the final run's :class:`RunInfo`; the study must have a complete trial. The study's ``final_run`` becomes
    the new run.
    """

    keep: Literal["all-data", "holdout"] = "all-data"
    """``all-data``: train on all the data; ``holdout``: with the trials' holdout (:data:`KeepBest`)."""
    save_as: SavedName | None = None
    """The saved model it becomes a version of (None: the study's ``save_as``, else its Optuna name)."""
    trial: Id | None = None
    """The trial whose configuration to train (None: the best; a COMPLETE trial's number otherwise)."""


class Shutdown(Request, tag="shutdown"):
    """Checkpoint and stop running runs, keep the queue, reply, then exit."""


AnyRequest = (
    Hello
    | Snapshot
    | Status
    | Submit
    | ListRuns
    | ShowRun
    | StopRun
    | ResumeRun
    | HoldRun
    | ReleaseRun
    | KillRun
    | RestartRun
    | RemoveRun
    | SetPriority
    | ReadLogs
    | ReadHistory
    | ReadResults
    | ExportResults
    | CheckData
    | ListGpus
    | ListModels
    | AddSchedule
    | ListSchedules
    | RemoveSchedule
    | PauseSchedule
    | ResumeSchedule
    | RunScheduleNow
    | PauseQueue
    | ResumeQueue
    | SaveRun
    | ListSaved
    | ShowSaved
    | SetAlias
    | RemoveSaved
    | ExportSaved
    | ImportSaved
    | SubmitStudy
    | ListStudies
    | ShowStudy
    | StopStudy
    | ResumeStudy
    | RetrainStudy
    | Shutdown
)

# -- replies --------------------------------------------------------------------------------------------


class Reply(msgspec.Struct, tag_field="type", tag="reply", kw_only=True):
    """A request succeeded; ``result`` depends on the request (documented in docs/protocol.md)."""

    id: str
    result: Any = None


class Error(msgspec.Struct, tag_field="type", tag="error", kw_only=True):
    """A request failed; ``code`` is stable, ``message`` says what is wrong and what to do."""

    id: str | None
    code: str
    message: str


_request_decoder = msgspec.json.Decoder(AnyRequest)
_reply_decoder = msgspec.json.Decoder(Reply | Error)
_encoder = msgspec.json.Encoder()


def encode(msg: msgspec.Struct) -> bytes:
    """One JSON frame."""
    return _encoder.encode(msg)


def decode_request(frame: bytes) -> AnyRequest:
    """Parse a control frame into a request.

    Raises:
        ProtocolError: for a frame over :data:`MAX_FRAME`, not JSON, of an unknown type or with bad fields.
    """
    if len(frame) > MAX_FRAME:
        raise ProtocolError(f"request of {len(frame)} bytes is over the {MAX_FRAME}-byte limit", code="too_large")
    try:
        req: AnyRequest = _request_decoder.decode(frame)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"invalid request: {exc}", request_id=_peek_id(frame)) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"request is not valid JSON: {exc}") from None
    except RecursionError:  # msgspec raises it for deep nesting, even inside a field it would skip
        raise ProtocolError("request is nested too deeply") from None
    return req


def decode_reply(frame: bytes) -> Reply | Error:
    """Parse a control reply.

    Raises:
        ProtocolError: for anything that is not a reply or an error.
    """
    try:
        reply: Reply | Error = _reply_decoder.decode(frame)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(f"invalid reply from the daemon: {exc}") from None
    return reply


def to_builtins(obj: Any) -> Any:
    """Structs (nested) as plain dicts and lists, for ``result`` payloads and ``--json`` output."""
    return msgspec.to_builtins(obj)


def convert(obj: Any, kind: type[Any]) -> Any:
    """Plain data from a ``result`` back into a struct such as :class:`RunInfo`.

    Raises:
        ProtocolError: when ``obj`` does not fit ``kind``.
    """
    try:
        return msgspec.convert(obj, kind)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"invalid {kind.__name__}: {exc}") from None


def _peek_id(frame: bytes) -> str | None:
    """The ``id`` of a frame that parsed as JSON but failed validation, when it is a string."""
    try:
        obj = msgspec.json.decode(frame)
    except (msgspec.DecodeError, RecursionError):
        return None
    value = obj.get("id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) and len(value) <= 128 else None
