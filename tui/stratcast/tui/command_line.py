"""The ``stratcast`` command line: its parser, and the daemon requests a parsed command line sends.

:func:`build_parser` declares every subcommand and option; :func:`build_requests` turns the parsed arguments into
``stratcast.shared.protocol`` requests, one per run id for subcommands that take several. Nothing here talks to
the daemon or prints: ``stratcast.tui.cli`` sends the requests and prints the results.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import msgspec

from stratcast.shared.cli import (
    add_completion_command,
    add_version,
    non_negative_int,
    positive_float,
    positive_int,
    saved_name,
    whole_number,
)
from stratcast.shared.jobargs import (
    DAEMON_DEVICES,
    KEEP_CHOICES,
    absolute,
    add_backtest_options,
    add_job_options,
    add_study_options,
    backtest_from_args,
    job_from_args,
)
from stratcast.shared.protocol import (
    DEFAULT_MODEL,
    MAX_RANKS,
    RUN_STATES,
    SAVED_REF,
    AddSchedule,
    AnyRequest,
    CheckData,
    ExportResults,
    ExportSaved,
    HoldRun,
    ImportSaved,
    JobSpec,
    KillRun,
    ListGpus,
    ListModels,
    ListRuns,
    ListSaved,
    ListSchedules,
    ListStudies,
    PauseQueue,
    PauseSchedule,
    Placement,
    ReadLogs,
    ReadResults,
    ReleaseRun,
    RemoveRun,
    RemoveSaved,
    RemoveSchedule,
    RestartRun,
    ResumeQueue,
    ResumeRun,
    ResumeSchedule,
    ResumeStudy,
    RetrainStudy,
    RunScheduleNow,
    SaveRun,
    SetAlias,
    SetPriority,
    ShowRun,
    ShowSaved,
    ShowStudy,
    Shutdown,
    Status,
    StopRun,
    StopStudy,
    StudySpec,
    Submit,
    SubmitStudy,
)
from stratcast.tui import validate

T = TypeVar("T")
RUN_ACTIONS: dict[str, tuple[type[StopRun | ResumeRun | HoldRun | ReleaseRun | KillRun | RemoveRun], str]] = {
    "stop": (StopRun, "checkpoint and stop runs (a queued run is held)"),
    "resume": (ResumeRun, "queue stopped, interrupted or held runs again, from their checkpoints"),
    "hold": (HoldRun, "keep queued runs from starting"),
    "release": (ReleaseRun, "let held runs start"),
    "kill": (KillRun, "end runs now, without a checkpoint"),
    "rm": (RemoveRun, "forget runs that are not running and delete their folders"),
}
SCHEDULE_ACTIONS: dict[str, tuple[type[RemoveSchedule | PauseSchedule | ResumeSchedule | RunScheduleNow], str]] = {
    "rm": (RemoveSchedule, "delete a schedule (its runs stay)"),
    "pause": (PauseSchedule, "stop a schedule from firing"),
    "resume": (ResumeSchedule, "let a paused schedule fire again"),
    "run-now": (RunScheduleNow, "enqueue a schedule's run now"),
}


# -- the command line ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``stratcast`` command line."""
    parser = argparse.ArgumentParser(prog="stratcast", description="Queue, inspect and follow stratcastd runs.")
    add_version(parser)
    _add_connection_options(parser)
    parser.set_defaults(key="status", json=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Connection options after the subcommand too; SUPPRESS keeps a value given before it.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _add_connection_options(common, suppress=True)
    common.add_argument("--json", action="store_true", default=False, help="print the daemon's raw result as JSON")
    _add_run_commands(sub, common)
    _add_daemon_commands(sub, common)
    _add_schedule_commands(sub, common)
    _add_saved_commands(sub, common)
    study_common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _add_connection_options(study_common, suppress=True, timeout=False)  # tune's --timeout is the study's
    study_common.add_argument("--json", action="store_true", default=False, help="print the daemon's raw result")
    _add_study_commands(sub, common, study_common)
    results = sub.add_parser("results", help="print a finished run's top strategies and skill table", parents=[common])
    results.add_argument("run", type=_run_or_folder, metavar="ID|DIR", help="a run id, or a run's output folder")
    results.add_argument("--top", type=positive_int, default=10, help="how many strategies to list")
    results.set_defaults(key="results")
    tui = sub.add_parser(
        "tui", parents=[common], help="open the terminal UI (what `stratcast` alone does on a terminal)"
    )
    tui.add_argument("--run", type=non_negative_int, metavar="ID", help="open this run's screen first")
    tui.add_argument("--fps", type=positive_float, default=5.0, help="repaints per second, at most 10 (default 5)")
    tui.set_defaults(key="tui")
    add_completion_command(sub, parser.prog)
    return parser


def _add_connection_options(p: argparse.ArgumentParser, *, suppress: bool = False, timeout: bool = True) -> None:
    p.add_argument("--home", metavar="DIR", help="the daemon's home (default: $STRATCAST_HOME, else the XDG folders)")
    p.add_argument("--connect", metavar="ENDPOINT", help="a control endpoint instead of the home's socket")
    if timeout:
        default = argparse.SUPPRESS if suppress else 10.0
        p.add_argument(
            "--timeout", type=positive_float, default=default, metavar="S", help="seconds to wait for a reply"
        )
    p.add_argument("--server-key", metavar="FILE", help="the daemon's CURVE certificate (tcp:// endpoints)")
    p.add_argument("--client-key", metavar="FILE", help="this client's secret CURVE certificate (tcp://)")


def _add_run_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    submit = _command(sub, common, "submit", "queue a run (the options of `stratcastd run`)")
    _add_job_options(submit)
    _add_save_as(submit)
    backtest = _command(
        sub,
        common,
        "backtest",
        "queue a walk-forward backtest: train before each cutoff, hold the top strategies by forecast, score their "
        "realized profit against the trailing mean, last value, random and all strategies",
    )
    _add_job_options(backtest, held="--held")
    add_backtest_options(backtest.add_argument_group("backtest"))
    ls = _command(sub, common, "ls", "list runs, newest first")
    ls.add_argument("--state", action="extend", nargs="+", choices=RUN_STATES, default=[], help="only these states")
    _command(sub, common, "show", "one run in full").add_argument("id", type=_run_id)
    for name, (_, summary) in RUN_ACTIONS.items():
        action = _command(sub, common, name, summary)
        action.add_argument("ids", nargs="+", type=_run_id, metavar="ID")
        if name == "kill":
            action.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
        if name == "stop":
            action.add_argument(
                "--no-wait", action="store_true", help="return at once instead of when the runs have checkpointed"
            )
    restart = _command(sub, common, "restart", "queue a finished, stopped or killed run again")
    restart.add_argument("id", type=_run_id)
    restart.add_argument("--from-scratch", action="store_true", help="ignore the run's checkpoint")
    priority = _command(sub, common, "priority", "change a queued run's priority (higher runs first)")
    priority.add_argument("id", type=_run_id)
    priority.add_argument("priority", type=whole_number)
    logs = _command(sub, common, "logs", "print runs' logs")
    logs.add_argument("ids", nargs="+", type=_run_id, metavar="ID")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until every run has ended")
    logs.add_argument("--offset", type=non_negative_int, default=0, help="start at this byte of each log")
    export = _command(sub, common, "export", "write a finished run's results to a new file on the daemon's machine")
    export.add_argument("id", type=_run_id)
    export.add_argument("path", help="the file to write (made absolute; it must not exist)")
    export.add_argument("--what", choices=("summary", "forecast"), default="summary", help="which table")
    export.add_argument("--format", choices=("parquet", "csv"), help="default: csv for a .csv name, else parquet")
    _add_job_options(
        _command(sub, common, "check", "check a job and its data as submit would, queue nothing"), queue=False
    )


def _add_daemon_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    _command(sub, common, "gpus", "GPUs with their memory, load and runs")
    _command(sub, common, "models", "the models with their parameters, defaults and ranges")
    _command(sub, common, "status", "the daemon's version, uptime and queue")
    queue = _command(sub, common, "queue", "pause or resume starting queued runs")
    queue_sub = queue.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, summary in (("pause", "start no new runs"), ("resume", "start queued runs again")):
        _command(queue_sub, common, action, summary, key=f"queue {action}")
    _command(sub, common, "shutdown", "checkpoint running runs, keep the queue, and stop the daemon")
    _command(sub, common, "watch", "print run state changes and progress until interrupted")


def _add_schedule_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    schedule = sub.add_parser("schedule", help="runs on a timetable")
    schedule_sub = schedule.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = _command(schedule_sub, common, "add", "enqueue a run on a cron expression or an interval", key="schedule add")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", type=_cron, metavar="EXPR", help="five crontab fields: minute hour day month weekday")
    when.add_argument("--every", type=_duration, metavar="DURATION", help="an interval such as 30m, 6h, 7d, 1h30m")
    add.add_argument("--tz", default="UTC", metavar="ZONE", help="time zone of --cron (default UTC)")
    _add_job_options(add, saved=True)
    add.add_argument(
        "--saved",
        type=_saved_ref,
        metavar="REF",
        help="score --data with this saved model instead of training (NAME@champion: the version the alias points "
        "at when each run starts)",
    )
    _add_save_as(add, "when a run succeeds (with --tune: a firing's best), save it as the next version of NAME")
    add.add_argument(
        "--tune",
        action="store_true",
        help="re-tune: each firing starts a study of --model a,b on --data as it is then, named --study (else "
        "--name) and the firing's -YYYYMMDD-HHMM, and saves its best as the next version of --save-as (required)",
    )
    _add_retuning_options(add.add_argument_group("re-tuning (with --tune)"))
    _command(schedule_sub, common, "ls", "list schedules", key="schedule ls")
    for name, (_, summary) in SCHEDULE_ACTIONS.items():
        _command(schedule_sub, common, name, summary, key=f"schedule {name}").add_argument("id", type=_run_id)


RETUNE_BACKTEST = "backtest-"
"""The prefix of ``schedule add --tune``'s backtest options."""


def _add_retuning_options(p: argparse._ActionsContainer) -> None:
    """``schedule add --tune``'s study options, and the backtest's for a backtest objective.

    ``tune``'s options, with ``--study-timeout`` and no ``--save-as`` of their own; the backtest's as
    ``--backtest-cutoffs``, ``--backtest-every``... (``schedule add`` has an ``--every`` and a ``--hold`` of its own).
    """
    add_study_options(p, timeout_dest="study_timeout", daemon=True, timeout_flag="--study-timeout", save_as=False)
    add_backtest_options(p, prefix=RETUNE_BACKTEST)


def retuning_options_given(args: argparse.Namespace) -> list[str]:
    """The re-tuning options ``schedule add`` got with values of their own (they need ``--tune``)."""
    probe = argparse.ArgumentParser(add_help=False)
    _add_retuning_options(probe)
    flags = {a.dest: a.option_strings[0] for a in probe._actions}
    return [flags[dest] for dest, default in vars(probe.parse_args([])).items() if getattr(args, dest) != default]


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    name: str,
    summary: str,
    *,
    key: str | None = None,
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=summary, description=summary, parents=[common])
    p.set_defaults(key=key or name)
    return p


def _add_saved_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    save = _command(sub, common, "save", "save a succeeded run as the next version of a saved model")
    save.add_argument("id", type=_run_id)
    save.add_argument("name", type=saved_name, metavar="NAME")
    forecast = _command(
        sub, common, "forecast", "queue a job that scores new data with a saved model, without retraining"
    )
    forecast.add_argument("--saved", required=True, type=_saved_ref, metavar="REF", help=SAVED_REF_HELP)
    forecast.add_argument("--data", required=True, help="the new long-format parquet or CSV file (made absolute)")
    forecast.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="once it succeeded, copy its outputs into DIR (waits; the daemon's run folder must be readable here)",
    )
    forecast.add_argument("--wait", action="store_true", help="wait until it ends, then print its top strategies")
    forecast.add_argument("--top", type=positive_int, default=10, help="with --wait: how many strategies to list")
    forecast.add_argument("--device", choices=DAEMON_DEVICES, default="auto", help="auto, or cpu (GPUs: --gpu N)")
    _add_placement(forecast)
    saved = sub.add_parser("saved", help="saved models: list, show, alias, remove, export, import")
    saved_sub = saved.add_subparsers(dest="action", metavar="ACTION", required=True)
    _command(saved_sub, common, "ls", "list the saved models, their versions and aliases", key="saved ls")
    show = _command(saved_sub, common, "show", "a version's manifest (checked)", key="saved show")
    show.add_argument("ref", type=_saved_ref, metavar="REF", help=SAVED_REF_HELP)
    alias = _command(
        saved_sub, common, "alias", "point ALIAS at the version REF names (--remove: remove it)", key="saved alias"
    )
    alias.add_argument("ref", type=_saved_ref, metavar="REF", help=f"{SAVED_REF_HELP}; with --remove: NAME")
    alias.add_argument("alias", type=saved_name, metavar="ALIAS", help="champion, challenger, ...")
    alias.add_argument("--remove", action="store_true", help="remove ALIAS of the model NAME")
    rm = _command(saved_sub, common, "rm", "remove a version", key="saved rm")
    rm.add_argument("ref", type=_saved_ref, metavar="REF", help=SAVED_REF_HELP)
    rm.add_argument("--force", action="store_true", help="also when an alias points at it (the alias goes too)")
    export = _command(
        saved_sub, common, "export", "write a version to a new .tar on the daemon's machine", key="saved export"
    )
    export.add_argument("ref", type=_saved_ref, metavar="REF", help=SAVED_REF_HELP)
    export.add_argument("path", metavar="FILE", help="the file to write (made absolute; it must not exist)")
    imp = _command(
        saved_sub, common, "import", "check an exported .tar and add it as a new version", key="saved import"
    )
    imp.add_argument("path", metavar="FILE", help="the exported file on the daemon's machine (made absolute)")
    imp.add_argument("--name", type=saved_name, help="the model to add it to (default: the name it was saved under)")


SAVED_REF_HELP = "NAME (its latest version), NAME@ALIAS or NAME:VERSION"
STUDY_ACTIONS: dict[str, type[StopStudy | ResumeStudy | RetrainStudy]] = {
    "stop": StopStudy,
    "resume": ResumeStudy,
    "retrain": RetrainStudy,
}


def _add_study_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    tune_common: argparse.ArgumentParser,
) -> None:
    summary = (
        "start an Optuna study in the daemon: each trial is a run of the job with drawn settings (--model a,b "
        "searches several models); `--timeout` after the command is the study's, before it the reply's"
    )
    tune = _command(sub, tune_common, "tune", summary)
    _add_job_options(tune, held="--held")
    add_study_options(tune.add_argument_group("study"), timeout_dest="study_timeout", daemon=True)
    add_backtest_options(tune.add_argument_group("backtest (for a backtest objective)"))
    _command(sub, common, "studies", "list the studies, newest first")
    show = _command(
        sub,
        common,
        "study",
        "a study's trials and its best; `study stop|resume ID` stops or resumes it, `study retrain ID` trains its "
        "best (or --trial N's) configuration into a final run saved as a model",
    )
    show.add_argument(
        "words", nargs="+", metavar="[stop|resume|retrain] ID", help="a study id, after stop, resume or retrain to act"
    )
    retrain = show.add_argument_group("retrain")
    retrain.add_argument("--trial", type=non_negative_int, help="the COMPLETE trial to train (default: the best)")
    retrain.add_argument(
        "--keep",
        choices=[k for k in KEEP_CHOICES if k != "none"],
        help="all-data (default): train on all the data; holdout: with the trials' holdout",
    )
    retrain.add_argument(
        "--save-as", type=saved_name, metavar="NAME", help="the saved model (default: the study's --save-as, or name)"
    )


def _add_save_as(
    p: argparse.ArgumentParser, help: str = "when the run succeeds, save it as the next version of this saved model"
) -> None:
    p.add_argument("--save-as", type=saved_name, metavar="NAME", help=help)


def _add_job_options(
    p: argparse.ArgumentParser, *, queue: bool = True, held: str = "--hold", saved: bool = False
) -> None:
    """What to run (``stratcastd run``'s options) and, with ``queue``, how to queue it.

    ``held`` names the option that queues the run held (``backtest`` calls it ``--held``: its ``--hold`` is the
    holding period). ``saved``: ``--saved`` stands in for ``--model`` (the command adds it).
    """
    job = p.add_argument_group("job")  # a data check needs a model only for the periods a series needs
    add_job_options(
        job,
        program="stratcast",
        model=None if queue else DEFAULT_MODEL,
        placed=True,
        model_unless="--saved" if saved else None,
    )
    if not queue:
        return
    _add_placement(p, held)


def _add_placement(p: argparse.ArgumentParser, held: str = "--hold") -> None:
    place = p.add_argument_group("placement")
    place.add_argument("--name", default="", help="a name for the run (or the schedule)")
    place.add_argument("--priority", type=whole_number, default=0, help="higher runs first (default 0)")
    place.add_argument(
        "--after",
        action="extend",
        type=_run_ids,
        default=[],
        metavar="ID",
        help="start only once this run succeeded; several: --after 3,4 or --after 3 --after 4 (a failed, killed or "
        "removed one holds this run)",
    )
    place.add_argument("--gpu", type=non_negative_int, metavar="N", help="pin to this GPU index")
    place.add_argument("--memory-gib", type=positive_float, metavar="X", help="share a GPU, capped at X GiB")
    place.add_argument(
        "--gpus-per-run",
        type=_ranks,
        default=1,
        metavar="N",
        help="train one model data-parallel over N GPUs of its own (N CPU processes on a machine without GPUs); "
        "batch mode, local executor",
    )
    place.add_argument(held, dest="held", action="store_true", help="queue it held, until `stratcast release`")


_run_id = non_negative_int


def _ranks(text: str) -> int:
    """``--gpus-per-run``: 1 to :data:`MAX_RANKS`."""
    n = whole_number(text)
    if not 1 <= n <= MAX_RANKS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_RANKS} devices, got {n}")
    return n


def _run_or_folder(text: str) -> int | Path:
    """``results``' argument: digits are a run id (``./7`` names a folder called 7), anything else a folder."""
    return int(text) if text.isdigit() else Path(text)


def _run_ids(text: str) -> list[int]:
    """``3`` or ``3,4``: one or more run ids."""
    try:
        return [_run_id(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected run ids such as 3 or 3,4, got {text!r}") from None


def _saved_ref(text: str) -> str:
    """``NAME``, ``NAME@ALIAS`` or ``NAME:VERSION``."""
    if not SAVED_REF.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a saved model reference: {SAVED_REF_HELP}")
    return text


def _duration(text: str) -> int:
    """``30m``, ``6h``, ``7d``, ``1h30m``, ``90s``, ``2w`` as seconds."""
    return _argument(validate.duration_seconds, text)


def _cron(text: str) -> str:
    return _argument(validate.cron_expression, text)


def _argument(check: Callable[[str], T], text: str) -> T:
    """``check(text)``, its ValueError made an argparse error (argparse would hide the message)."""
    try:
        return check(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- requests ------------------------------------------------------------------------------------------------


def build_requests(args: argparse.Namespace) -> list[AnyRequest]:
    """The requests a parsed command line sends, in order."""
    key: str = args.key
    if key in RUN_ACTIONS:
        kind = RUN_ACTIONS[key][0]
        return [kind(run=run) for run in args.ids]
    if key.startswith("schedule ") and key.removeprefix("schedule ") in SCHEDULE_ACTIONS:
        schedule_kind = SCHEDULE_ACTIONS[key.removeprefix("schedule ")][0]
        return [schedule_kind(schedule=args.id)]
    if key == "logs":
        return [ReadLogs(run=run, offset=args.offset) for run in args.ids]
    if key == "study":
        return [_study_request(args)]
    return [REQUESTS[key](args)]


def placement(args: argparse.Namespace, *, name: str = "") -> Placement:
    """How ``submit``, ``backtest`` and ``schedule add`` queue their runs."""
    return Placement(
        name=name,
        priority=args.priority,
        after=list(dict.fromkeys(args.after)),  # one id given twice is one dependency
        gpu=args.gpu,
        memory_gib=args.memory_gib,
        hold=args.held,
        gpus=args.gpus_per_run,
    )


def backtest_job(args: argparse.Namespace) -> JobSpec:
    """The job ``stratcast backtest`` queues: the job options, with the backtest's own."""
    return msgspec.structs.replace(job_from_args(args), backtest=backtest_from_args(args))


def scoring_job(data: str, saved: str, device: str = "auto") -> JobSpec:
    """The job ``forecast`` queues (and the TUI's saved models screen): score ``data`` with ``saved``, no training."""
    return JobSpec(data=data, saved=saved, device=device)


def _forecast(args: argparse.Namespace) -> Submit:
    """``forecast``: a scoring job of the saved model on the new data."""
    job = scoring_job(absolute(args.data), args.saved, args.device)
    return Submit(job=job, placement=placement(args, name=args.name))


def tune_request(args: argparse.Namespace) -> SubmitStudy:
    """``tune``: the study, its space file read here (the daemon gets its text), its fixed job.

    Raises:
        ValueError: when the space file cannot be read.
    """
    return SubmitStudy(spec=study_spec(args))


def study_spec(args: argparse.Namespace, *, backtest_prefix: str = "") -> StudySpec:
    """The study of ``tune`` and ``schedule add --tune``: its space file read here, its fixed job.

    ``backtest_prefix``: the prefix of the backtest's options in ``args`` (``schedule add``'s: ``backtest-``).

    Raises:
        ValueError: when the space file cannot be read.
    """
    models = [m.strip().lower() for m in args.model.split(",") if m.strip()]
    objectives = [o.strip() for o in args.objective.split(",") if o.strip()]
    space: str | None = None
    fmt: Literal["toml", "json"] = "toml"
    if args.space is not None:
        try:
            space, fmt = validate.space_file(args.space)
        except ValueError as exc:
            raise ValueError(f"--space {exc}") from None
    model = models[0] if models else args.model
    job = msgspec.structs.replace(job_from_args(args), model=model, save_as=None)  # --save-as: the kept best's
    if any(o.startswith("backtest") for o in objectives):
        job = msgspec.structs.replace(job, backtest=backtest_from_args(args, backtest_prefix))
    return StudySpec(
        models=models,
        trials=args.trials,
        timeout_s=args.study_timeout,
        objectives=objectives,
        sampler=args.sampler,
        pruner=args.pruner,
        space=space,
        space_format=fmt,
        storage=args.storage if args.storage is None or "://" in args.storage else absolute(args.storage),
        name=args.study,
        parallel=args.parallel,
        seed=args.seed,
        keep=args.keep,
        save_as=args.save_as,
        job=job,
        placement=placement(args),
    )


def _study_request(args: argparse.Namespace) -> ShowStudy | StopStudy | ResumeStudy | RetrainStudy:
    """``study ID``, ``study stop ID``, ``study resume ID``, ``study retrain ID [--trial N] [--keep K] [--save-as]``.

    Raises:
        ValueError: for another action, a missing id, or retrain's options given to another action.
    """
    *action, last = args.words
    try:
        study = _run_id(last)
    except (ValueError, argparse.ArgumentTypeError):
        raise ValueError(f"study: expected a study id, got {last!r}") from None
    options = {k: getattr(args, k) for k in ("trial", "keep", "save_as") if getattr(args, k) is not None}
    if action == ["retrain"]:
        return RetrainStudy(study=study, **options)
    if options:
        given = ", ".join("--" + k.replace("_", "-") for k in options)
        raise ValueError(f"study: {given} go with `study retrain ID`")
    if not action:
        return ShowStudy(study=study)
    if len(action) != 1 or action[0] not in STUDY_ACTIONS:
        raise ValueError(f"study: expected `study ID` or `study stop|resume|retrain ID`, got {' '.join(args.words)!r}")
    return STUDY_ACTIONS[action[0]](study=study)


def _alias(args: argparse.Namespace) -> SetAlias:
    return SetAlias(ref=args.ref, alias=args.alias, remove=args.remove)


def _add_schedule(args: argparse.Namespace) -> AddSchedule:
    """``schedule add``: a schedule of runs, or with ``--tune`` one that starts a study (:func:`study_spec`)."""
    if args.tune:
        study = study_spec(args, backtest_prefix=RETUNE_BACKTEST)
        return AddSchedule(study=study, name=args.name, cron=args.cron, every_s=args.every, timezone=args.tz)
    return AddSchedule(
        job=job_from_args(args),
        name=args.name,
        cron=args.cron,
        every_s=args.every,
        timezone=args.tz,
        placement=placement(args),
    )


REQUESTS: dict[str, Callable[[argparse.Namespace], AnyRequest]] = {
    "submit": lambda a: Submit(job=job_from_args(a), placement=placement(a, name=a.name)),
    "backtest": lambda a: Submit(job=backtest_job(a), placement=placement(a, name=a.name)),
    "ls": lambda a: ListRuns(states=list(a.state)),
    "show": lambda a: ShowRun(run=a.id),
    "restart": lambda a: RestartRun(run=a.id, from_scratch=a.from_scratch),
    "export": lambda a: ExportResults(run=a.id, path=absolute(a.path), what=a.what, format=a.format),
    "check": lambda a: CheckData(job=job_from_args(a)),
    "priority": lambda a: SetPriority(run=a.id, priority=a.priority),
    "gpus": lambda a: ListGpus(),
    "models": lambda a: ListModels(),
    "results": lambda a: ReadResults(run=a.run, top=a.top),
    "status": lambda a: Status(),
    "queue pause": lambda a: PauseQueue(),
    "queue resume": lambda a: ResumeQueue(),
    "shutdown": lambda a: Shutdown(),
    "schedule add": _add_schedule,
    "schedule ls": lambda a: ListSchedules(),
    "save": lambda a: SaveRun(run=a.id, name=a.name),
    "forecast": _forecast,
    "saved ls": lambda a: ListSaved(),
    "saved show": lambda a: ShowSaved(ref=a.ref),
    "saved alias": _alias,
    "saved rm": lambda a: RemoveSaved(ref=a.ref, force=a.force),
    "saved export": lambda a: ExportSaved(ref=a.ref, path=absolute(a.path)),
    "saved import": lambda a: ImportSaved(path=absolute(a.path), name=a.name),
    "tune": tune_request,
    "studies": lambda a: ListStudies(),
}
