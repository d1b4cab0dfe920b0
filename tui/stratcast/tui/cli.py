"""``stratcast``: the command-line client of ``stratcastd``, and a reader of finished run folders.

Each daemon subcommand sends one request per run id (built by ``stratcast.tui.command_line``, which also holds
the parser) and prints a table, or the raw ``result`` with ``--json`` (a list of them for subcommands that take
several ids). With no subcommand it opens the terminal UI (``stratcast tui``) on a terminal and prints the
daemon's status otherwise. Exit codes (:class:`ExitCode`, the README's table): 0 done; 1 the daemon refused a
request (its message is printed); 2 a bad command line; 3 the daemon refused the job or its data as invalid, or a
run folder without results; 69 no daemon answers; 130 interrupted.

It never imports torch: results are read from ``metrics.json`` and ``summary.parquet``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from stratcast.shared.backtest_report import backtest_text
from stratcast.shared.cli import completion_script
from stratcast.shared.client import Client, CurveKeys, DaemonClient, DaemonUnavailable, RequestFailed
from stratcast.shared.errors import ExitCode, refusal_exit_code
from stratcast.shared.events import HeartbeatSent, RunUpdated
from stratcast.shared.mirror import follow_events, follow_logs, read_log
from stratcast.shared.paths import resolve_home
from stratcast.shared.protocol import (
    FINAL_STATES,
    ProtocolError,
    ReadResults,
    RunInfo,
    ShowRun,
    convert,
    to_builtins,
)
from stratcast.shared.report import results_text
from stratcast.shared.runfiles import METRICS, Outputs, RunFolder
from stratcast.tui.command_line import build_parser, build_requests, retuning_options_given
from stratcast.tui.render import RENDER, Watcher, run_line, runs_phrase

MULTI = ("stop", "resume", "hold", "release", "kill", "rm")
"""Subcommands taking several run ids: one request each; ``--json`` prints a list of results."""


# -- running a command ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, client: DaemonClient | None = None) -> int:
    """Entry point of ``stratcast``; ``client`` replaces the connection (tests)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.key == "completion":
        print(completion_script(parser, args.shell), end="")
        return ExitCode.OK
    if args.key == "results" and isinstance(args.run, Path):
        return show_results(args)
    if args.key == "schedule add":
        _check_schedule_add(parser, args)
    if args.key in ("tune", "study") or (args.key == "schedule add" and args.tune):
        try:  # a space file that cannot be read, `study` words that are not an action and an id
            build_requests(args)
        except ValueError as exc:
            parser.error(str(exc))
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
        return refusal_exit_code(exc.code)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `stratcast show --json | head`: the reader left; no traceback at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.FAILED


def _check_schedule_add(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``schedule add``: a model to train, a saved model to score, or models to re-tune (``--tune``).

    Re-tuning options without ``--tune`` are refused rather than ignored.
    """
    if args.tune:
        if args.saved is not None or args.model is None:
            parser.error("--tune tunes --model NAME[,NAME...]; it does not score with --saved")
        return
    if (args.saved is None) == (args.model is None):
        parser.error("give --model to train, or --saved REF to score with a saved model (not both)")
    given = retuning_options_given(args)
    if given:
        parser.error(f"{', '.join(given)} go with --tune (a schedule that re-tunes)")


def run_command(client: DaemonClient, args: argparse.Namespace) -> int:
    """Send the command's requests, print what comes back; the code of a refusal when there was one."""
    if args.key == "logs":
        return _logs(client, args)
    if args.key == "watch":
        return _watch(client, args)
    if args.key == "forecast":
        return _forecast(client, args)
    results: list[Any] = []
    code = ExitCode.OK
    for request in build_requests(args):
        try:
            result = client.call(request)
        except RequestFailed as exc:
            print(f"stratcast: error: {exc.message}", file=sys.stderr)
            code = refusal_exit_code(exc.code)
            continue
        results.append(result)
        if not args.json:
            print(RENDER[args.key](result) if args.key != "results" else _results(result, args.top))
    if args.key == "stop" and not args.no_wait:
        await_stopped(client, [r["run"]["id"] for r in results if r["run"]["state"] == "running"], quiet=args.json)
    if args.json:
        _print_json(results if args.key in MULTI else results[0] if results else None)
    return code


def _forecast(client: DaemonClient, args: argparse.Namespace) -> int:
    """``forecast``: queue the scoring job; with ``--wait`` or ``--out``, follow it and print its results."""
    run = convert(client.call(build_requests(args)[0])["run"], RunInfo)
    if not (args.wait or args.out):
        if args.json:
            _print_json({"run": to_builtins(run)})
        else:
            print(run_line({"run": to_builtins(run)}))
            print(f"`stratcast results {run.id}` once it succeeded")
        return ExitCode.OK
    if not args.json:
        print(run_line({"run": to_builtins(run)}), flush=True)
    run = await_final(client, run.id)
    if run.state != "succeeded":
        print(f"stratcast: error: {run_line({'run': to_builtins(run)})}", file=sys.stderr)
        return ExitCode.BAD_INPUT if run.reason.startswith("bad input") else ExitCode.FAILED
    result = client.call(ReadResults(run=run.id, top=args.top))
    copied = None
    if args.out:
        try:
            copied = copy_outputs(Path(run.out), args.out)
        except OSError as exc:
            print(f"stratcast: error: cannot copy run {run.id}'s outputs to {args.out}: {exc}", file=sys.stderr)
            return ExitCode.FAILED
    if args.json:
        _print_json({"run": to_builtins(run), "results": result, "copied_to": copied})
    else:
        print(_results(result, args.top))
        if copied:
            print(f"outputs copied to {copied}")
    return ExitCode.OK


def await_final(client: DaemonClient, run: int, poll_s: float = 0.25) -> RunInfo:
    """Wait until ``run`` has finished (a final state, or stopped), and return it."""
    while True:
        info: RunInfo = convert(client.call(ShowRun(run=run))["run"], RunInfo)
        if info.state in FINAL_STATES or info.state == "stopped":
            return info
        time.sleep(poll_s)


def copy_outputs(run_dir: Path, dest: Path) -> str:
    """Copy the outputs of the run folder ``run_dir`` (as the daemon names it) into ``dest``; the folder written.

    Raises:
        OSError: when the daemon's run folder is not readable from here or ``dest`` cannot be written.
    """
    src = RunFolder(run_dir).out.path
    if not Outputs(src).metrics.is_file():
        raise FileNotFoundError(f"{src} is not readable here (is the daemon on another machine?)")
    shutil.copytree(src, dest, dirs_exist_ok=True)
    return str(dest.resolve())


def await_stopped(client: DaemonClient, ids: Sequence[int], *, quiet: bool = False) -> None:
    """Wait until each of ``ids`` has left ``running`` (a stop checkpoints at the next step), saying how it ended.

    So ``stratcast stop 1 && stratcast resume 1`` works as written: the resume finds the run stopped.
    """
    waiting = set(ids)
    if not waiting:
        return
    if not quiet:
        print(
            f"waiting for {runs_phrase(sorted(waiting))} to checkpoint and stop (--no-wait returns at once)", flush=True
        )
    source = client.subscribe()
    try:  # look after subscribing: a run that stopped in between is seen here, one that stops later as an event
        for run in sorted(waiting):
            _settle(waiting, convert(client.call(ShowRun(run=run))["run"], RunInfo), quiet)
        while waiting:
            event = source.recv(timeout_s=1.0)
            if event is not None and isinstance(event.data, RunUpdated):
                _settle(waiting, event.data.run, quiet)
    finally:
        source.close()


def _settle(waiting: set[int], run: RunInfo, quiet: bool) -> None:
    """Drop ``run`` from ``waiting`` once it is no longer running, printing its line."""
    if run.id in waiting and run.state != "running":
        waiting.discard(run.id)
        if not quiet:
            print(run_line({"run": to_builtins(run)}), flush=True)


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
        elif event is not None and not isinstance(event.data, HeartbeatSent):
            print(json.dumps(to_builtins(event)), flush=True)
        if watcher.mirror.shutting_down:
            break
    return ExitCode.OK


# -- finished run folders ------------------------------------------------------------------------------------


def show_results(args: argparse.Namespace) -> int:
    """``results DIR``: a finished run folder's top strategies and skill table."""
    folder: Path = args.run
    if not folder.is_dir():
        print(f"stratcast: error: {folder}: no such folder (give a run's output folder, or its id)", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if Outputs(folder).backtest_table.is_file():
        return show_backtest(args)
    if not Outputs(folder).metrics.is_file():  # a run that has not succeeded: as the daemon says of its id
        print(
            f"stratcast: error: {folder} has no results: no {METRICS} in it (a run writes its results when it "
            "succeeds; `stratcast results ID` asks the daemon for a run's)",
            file=sys.stderr,
        )
        return ExitCode.FAILED
    try:
        metrics, top = read_results(folder, args.top)
    except (OSError, ValueError, KeyError) as exc:
        print(f"stratcast: error: {folder} holds unreadable results ({type(exc).__name__}: {exc})", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if args.json:
        _print_json({"metrics": metrics, "top": top})
    else:
        print(results_text(metrics, top, args.top, where=str(folder)))
    return ExitCode.OK


def show_backtest(args: argparse.Namespace) -> int:
    """``results DIR`` of a backtest: its ``backtest.json`` as the table, or as JSON with ``--json``."""
    path = Outputs(args.run).backtest_table
    try:
        table = json.loads(path.read_text())
        text = backtest_text(table)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"stratcast: error: {path} is unreadable ({type(exc).__name__}: {exc})", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if args.json:
        _print_json({"backtest": table})
    else:
        print(text)
    return ExitCode.OK


def _results(result: dict[str, Any], limit: int) -> str:
    """The daemon's ``read_results`` reply, as ``results DIR`` prints a folder (a backtest's: its table)."""
    if "backtest" in result:
        return backtest_text(result["backtest"])
    return results_text(result["metrics"], result["top"], limit, where=str(result.get("out", "")))


def read_results(run_dir: Path, limit: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``metrics.json`` and the first ``limit`` rows of ``summary.parquet`` by rank."""
    import pyarrow.parquet as pq

    metrics = json.loads(Outputs(run_dir).metrics.read_text())
    summary = pq.read_table(Outputs(run_dir).summary).to_pylist()
    summary.sort(key=lambda r: r["rank"])
    return metrics, summary[:limit]


if __name__ == "__main__":
    sys.exit(main())
