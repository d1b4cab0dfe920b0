"""``stratcast``: the command-line client of ``stratcastd``, and a reader of finished run folders.

Each daemon subcommand sends one request per run id (``stratcast.shared.protocol``) and prints a table, or the
raw ``result`` with ``--json`` (a list of them for subcommands that take several ids). With no subcommand it
opens the terminal UI (``stratcast tui``) on a terminal and prints the daemon's status otherwise. Exit codes
(:class:`ExitCode`): 0 done; 1 the daemon refused a request (its message is printed); 2 a bad command line; 3 a
run folder that cannot be read; 69 no daemon answers; 130 interrupted.

It never imports torch: results are read from ``metrics.json`` and ``summary.parquet``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

from stratcast.shared.client import Client, CurveKeys, DaemonClient, DaemonUnavailable, RequestFailed
from stratcast.shared.errors import ExitCode
from stratcast.shared.mirror import follow_events, follow_logs, read_log
from stratcast.shared.paths import resolve_home
from stratcast.shared.protocol import (
    RUN_STATES,
    AddSchedule,
    AnyRequest,
    CheckData,
    ExportResults,
    HoldRun,
    JobSpec,
    KillRun,
    ListGpus,
    ListModels,
    ListRuns,
    ListSchedules,
    PauseQueue,
    PauseSchedule,
    Placement,
    ProtocolError,
    ReadLogs,
    ReleaseRun,
    RemoveRun,
    RemoveSchedule,
    RestartRun,
    ResumeQueue,
    ResumeRun,
    ResumeSchedule,
    RunScheduleNow,
    SetPriority,
    ShowRun,
    Shutdown,
    Status,
    StopRun,
    Submit,
    to_builtins,
)
from stratcast.shared.report import skill_table, top_table
from stratcast.tui import validate
from stratcast.tui.render import RENDER, Watcher

T = TypeVar("T")
MULTI = ("stop", "resume", "hold", "release", "kill", "rm")
"""Subcommands taking several run ids: one request each; ``--json`` prints a list of results."""
RUN_ACTIONS: dict[str, tuple[type[StopRun | ResumeRun | HoldRun | ReleaseRun | KillRun | RemoveRun], str]] = {
    "stop": (StopRun, "checkpoint and stop runs (a queued run is held)"),
    "resume": (ResumeRun, "queue stopped or interrupted runs again, from their checkpoints"),
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
    results = sub.add_parser("results", help="print a finished run's top strategies and skill table (no daemon)")
    results.add_argument("run_dir", type=Path, help="the run's output folder (stratcastd run --out)")
    results.add_argument("--top", type=int, default=10, help="how many strategies to list")
    results.add_argument("--json", action="store_true", help="print JSON")
    results.set_defaults(key="results")
    tui = sub.add_parser(
        "tui", parents=[common], help="open the terminal UI (what `stratcast` alone does on a terminal)"
    )
    tui.add_argument("--run", type=int, metavar="ID", help="open this run's screen first")
    tui.add_argument("--fps", type=_positive_float, default=5.0, help="repaints per second, at most 10 (default 5)")
    tui.set_defaults(key="tui")
    return parser


def _add_connection_options(p: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    timeout = argparse.SUPPRESS if suppress else 10.0
    p.add_argument("--home", metavar="DIR", help="the daemon's home (default: $STRATCAST_HOME, else the XDG folders)")
    p.add_argument("--connect", metavar="ENDPOINT", help="a control endpoint instead of the home's socket")
    p.add_argument("--timeout", type=_positive_float, default=timeout, metavar="S", help="seconds to wait for a reply")
    p.add_argument("--server-key", metavar="FILE", help="the daemon's CURVE certificate (tcp:// endpoints)")
    p.add_argument("--client-key", metavar="FILE", help="this client's secret CURVE certificate (tcp://)")


def _add_run_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    submit = _command(sub, common, "submit", "queue a run (the options of `stratcastd run`)")
    _add_job_options(submit)
    ls = _command(sub, common, "ls", "list runs, newest first")
    ls.add_argument("--state", action="extend", nargs="+", choices=RUN_STATES, default=[], help="only these states")
    _command(sub, common, "show", "one run in full").add_argument("id", type=_run_id)
    for name, (_, summary) in RUN_ACTIONS.items():
        action = _command(sub, common, name, summary)
        action.add_argument("ids", nargs="+", type=_run_id, metavar="ID")
        if name == "kill":
            action.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    restart = _command(sub, common, "restart", "queue a finished, stopped or killed run again")
    restart.add_argument("id", type=_run_id)
    restart.add_argument("--from-scratch", action="store_true", help="ignore the run's checkpoint")
    priority = _command(sub, common, "priority", "change a queued run's priority (higher runs first)")
    priority.add_argument("id", type=_run_id)
    priority.add_argument("priority", type=int)
    logs = _command(sub, common, "logs", "print runs' logs")
    logs.add_argument("ids", nargs="+", type=_run_id, metavar="ID")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until every run has ended")
    logs.add_argument("--offset", type=_non_negative_int, default=0, help="start at this byte of each log")
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
    _add_job_options(add)
    _command(schedule_sub, common, "ls", "list schedules", key="schedule ls")
    for name, (_, summary) in SCHEDULE_ACTIONS.items():
        _command(schedule_sub, common, name, summary, key=f"schedule {name}").add_argument("id", type=_run_id)


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


def _add_job_options(p: argparse.ArgumentParser, *, queue: bool = True) -> None:
    """What to run (``stratcastd run``'s options) and, with ``queue``, how to queue it."""
    job = p.add_argument_group("job")
    job.add_argument("--data", required=True, help="long-format parquet or CSV file (made absolute)")
    job.add_argument("--model", required=True, help="model name (see `stratcast models`)")
    job.add_argument("--mode", choices=("batch", "per-strategy"), default="batch")
    job.add_argument("--horizon", type=_positive_int, help="periods to forecast (default 52)")
    job.add_argument("--input-size", type=_positive_int, help="periods each window sees (default 104)")
    job.add_argument("--holdout", type=_non_negative_int, default=0, help="last periods kept for honest scoring")
    job.add_argument("--id-col", help="strategy id column (default: No. or unique_id)")
    job.add_argument("--time-col", help="time column (default: week, ds, date, time or t)")
    job.add_argument("--target-col", help="value column (default: profit or y)")
    job.add_argument("--fill-missing", choices=("error", "zero"), default="error", help="missing periods")
    job.add_argument("--set", action="append", type=_key_value, default=[], metavar="KEY=VALUE", help="option")
    if not queue:
        return
    place = p.add_argument_group("placement")
    place.add_argument("--name", default="", help="a name for the run (or the schedule)")
    place.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    place.add_argument("--after", action="append", type=_run_id, default=[], metavar="ID", help="wait for this run")
    place.add_argument("--gpu", type=_non_negative_int, metavar="N", help="pin to this GPU index")
    place.add_argument("--memory-gib", type=_positive_float, metavar="X", help="share a GPU, capped at X GiB")
    place.add_argument("--hold", action="store_true", help="queue it held, until `stratcast release`")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text}")
    return value


_run_id = _non_negative_int


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _key_value(text: str) -> str:
    if "=" not in text or text.startswith("="):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
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
    return [REQUESTS[key](args)]


def job_spec(args: argparse.Namespace) -> JobSpec:
    """The job of ``submit``, ``check`` and ``schedule add``; the data path made absolute (see :func:`absolute`)."""
    return JobSpec(
        data=absolute(args.data),
        model=args.model,
        mode=args.mode,
        horizon=args.horizon,
        input_size=args.input_size,
        holdout=args.holdout,
        id_col=args.id_col,
        time_col=args.time_col,
        target_col=args.target_col,
        fill_missing=args.fill_missing,
        sets=list(args.set),
    )


def absolute(path: str) -> str:
    """``path`` with ``~`` expanded, made absolute: the daemon has another working folder."""
    return os.path.abspath(os.path.expanduser(path))


def placement(args: argparse.Namespace, *, name: str = "") -> Placement:
    """How ``submit`` and ``schedule add`` queue their runs."""
    return Placement(
        name=name,
        priority=args.priority,
        after=list(args.after),
        gpu=args.gpu,
        memory_gib=args.memory_gib,
        hold=args.hold,
    )


def _add_schedule(args: argparse.Namespace) -> AddSchedule:
    return AddSchedule(
        job=job_spec(args),
        name=args.name,
        cron=args.cron,
        every_s=args.every,
        timezone=args.tz,
        placement=placement(args),
    )


REQUESTS: dict[str, Callable[[argparse.Namespace], AnyRequest]] = {
    "submit": lambda a: Submit(job=job_spec(a), placement=placement(a, name=a.name)),
    "ls": lambda a: ListRuns(states=list(a.state)),
    "show": lambda a: ShowRun(run=a.id),
    "restart": lambda a: RestartRun(run=a.id, from_scratch=a.from_scratch),
    "export": lambda a: ExportResults(run=a.id, path=absolute(a.path), what=a.what, format=a.format),
    "check": lambda a: CheckData(job=job_spec(a)),
    "priority": lambda a: SetPriority(run=a.id, priority=a.priority),
    "gpus": lambda a: ListGpus(),
    "models": lambda a: ListModels(),
    "status": lambda a: Status(),
    "queue pause": lambda a: PauseQueue(),
    "queue resume": lambda a: ResumeQueue(),
    "shutdown": lambda a: Shutdown(),
    "schedule add": _add_schedule,
    "schedule ls": lambda a: ListSchedules(),
}


# -- running a command ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, client: DaemonClient | None = None) -> int:
    """Entry point of ``stratcast``; ``client`` replaces the connection (tests)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.key == "results":
        return show_results(args)
    curve = _curve_keys(args, parser)
    if args.key == "tui" or (args.command is None and client is None and sys.stdout.isatty()):
        from stratcast.tui.launch import launch

        return launch(args, curve)
    if args.key == "kill" and not _confirm_kill(args.ids, args.yes):
        print("nothing killed", file=sys.stderr)
        return ExitCode.FAILED
    try:
        if client is not None:
            return run_command(client, args)
        endpoint: str | None = args.connect
        home = None if endpoint else resolve_home(args.home)
        with Client(home, endpoint=endpoint, timeout_s=args.timeout, curve=curve) as real:
            return run_command(real, args)
    except DaemonUnavailable as exc:
        print(f"stratcast: {exc}", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    except (RequestFailed, ProtocolError) as exc:
        print(f"stratcast: error: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `stratcast show --json | head`: the reader left; no traceback at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILED


def run_command(client: DaemonClient, args: argparse.Namespace) -> int:
    """Send the command's requests, print what comes back; 1 when the daemon refused any of them."""
    if args.key == "logs":
        return _logs(client, args)
    if args.key == "watch":
        return _watch(client, args)
    results: list[Any] = []
    failed = False
    for request in build_requests(args):
        try:
            result = client.call(request)
        except RequestFailed as exc:
            print(f"stratcast: error: {exc.message}", file=sys.stderr)
            failed = True
            continue
        results.append(result)
        if not args.json:
            print(RENDER[args.key](result))
    if args.json:
        _print_json(results if args.key in MULTI else results[0] if results else None)
    return ExitCode.FAILED if failed else ExitCode.OK


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _confirm_kill(ids: Sequence[int], yes: bool) -> bool:
    """Ask on a terminal; scripts (no TTY) and ``--yes`` go ahead."""
    if yes or not sys.stdin.isatty():
        return True
    runs = ", ".join(map(str, ids))
    try:
        answer = input(f"kill run{'s' if len(ids) > 1 else ''} {runs} now, without a checkpoint? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in {"y", "yes"}


def _curve_keys(args: argparse.Namespace, parser: argparse.ArgumentParser) -> CurveKeys | None:
    """CURVE keys from ZeroMQ certificate files (``zmq.auth.create_certificates``), for ``tcp://``."""
    if not args.server_key and not args.client_key:
        return None
    if not (args.server_key and args.client_key):
        parser.error("--server-key and --client-key go together")
    import zmq.auth

    try:
        server_public, _ = zmq.auth.load_certificate(args.server_key)
        public, secret = zmq.auth.load_certificate(args.client_key)
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read a CURVE certificate: {exc}")
    if secret is None:
        parser.error(f"{args.client_key} holds no secret key (use the .key_secret file)")
    return CurveKeys(server_public=server_public, public=public, secret=secret)


# -- logs and watch ------------------------------------------------------------------------------------------


def _logs(client: DaemonClient, args: argparse.Namespace) -> int:
    """Print logs to their current ends, or follow them (``-f``) until every run has ended."""
    if args.json and not args.follow:
        _print_json([client.call(request) for request in build_requests(args)])
        return ExitCode.OK
    chunks = follow_logs(client, args.ids, offset=args.offset) if args.follow else _read_logs(client, args)
    writer = LogWriter(sys.stdout, prefix=len(set(args.ids)) > 1)
    try:
        for run, text in chunks:
            if args.json:
                print(json.dumps({"run": run, "text": text}), flush=True)
            else:
                writer.write(run, text)
    finally:
        writer.close()
    return ExitCode.OK


def _read_logs(client: DaemonClient, args: argparse.Namespace) -> Iterator[tuple[int, str]]:
    for run in args.ids:
        for text, _ in read_log(client, run, args.offset):
            yield run, text


class LogWriter:
    """Writes log text as it comes; with ``prefix``, whole lines only, each led by its run's id."""

    def __init__(self, stream: TextIO, *, prefix: bool) -> None:
        self.stream, self.prefix = stream, prefix
        self.partial: dict[int, str] = {}

    def write(self, run: int, text: str) -> None:
        """Write ``text`` of ``run``'s log (an unfinished last line waits for the rest, when prefixing)."""
        if not self.prefix:
            self.stream.write(text)
        else:
            *lines, self.partial[run] = (self.partial.get(run, "") + text).split("\n")
            self.stream.writelines(f"{run} | {line}\n" for line in lines)
        self.stream.flush()

    def close(self) -> None:
        """Write unfinished last lines."""
        self.stream.writelines(f"{run} | {rest}\n" for run, rest in self.partial.items() if rest)
        self.partial.clear()
        self.stream.flush()


def _watch(client: DaemonClient, args: argparse.Namespace) -> int:
    """Print run state changes, progress, OOMs and notices until interrupted or the daemon shuts down."""
    watcher = Watcher()
    for event in follow_events(client, watcher.mirror):
        if not args.json:
            for line in watcher.lines(event):
                print(line, flush=True)
        elif event is not None and event.topic != "heartbeat":
            print(json.dumps(to_builtins(event)), flush=True)
        if watcher.mirror.shutting_down:
            break
    return ExitCode.OK


# -- finished run folders ------------------------------------------------------------------------------------


def show_results(args: argparse.Namespace) -> int:
    """``results``: a finished run folder's top strategies and skill table."""
    try:
        metrics, top = read_results(args.run_dir, args.top)
    except (OSError, ValueError, KeyError) as exc:
        print(f"stratcast: error: {args.run_dir} is not a finished run folder: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if args.json:
        print(json.dumps({"metrics": metrics, "top": top}, indent=2, default=str))
    else:
        print(top_table(top, args.top))
        if "errors" in metrics:
            print()
            print(skill_table(metrics))
            for line in metrics.get("verdict", []):
                print(f"- {line}")
    return ExitCode.OK


def read_results(run_dir: Path, limit: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``metrics.json`` and the first ``limit`` rows of ``summary.parquet`` by rank."""
    import pyarrow.parquet as pq

    metrics = json.loads((run_dir / "metrics.json").read_text())
    summary = pq.read_table(run_dir / "summary.parquet").to_pylist()
    summary.sort(key=lambda r: r["rank"])
    return metrics, summary[:limit]


if __name__ == "__main__":
    sys.exit(main())
