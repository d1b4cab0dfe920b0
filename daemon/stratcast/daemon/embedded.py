"""``stratcastd demo``: start a daemon of its own, submit the demo job to it, follow it, print the results.

The demo goes through the same path as real use (a daemon serving ``OUT/daemon``, a worker process, events over
ZeroMQ), so the first command a user runs exercises all of it. On a terminal it follows the run in the terminal
UI (``stratcast tui``, started as its own process: the daemon package never imports the TUI); when the UI is
quit before the run ends, and without a terminal, it prints plain progress lines instead. A daemon already
serving that home is reused and left running; one the demo started is shut down at the end (``--keep-daemon``
leaves it up to explore with ``stratcast --home OUT/daemon ...``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from stratcast.daemon.progress import describe
from stratcast.shared.client import Client, DaemonUnavailable, RequestFailed, Subscriber
from stratcast.shared.errors import ExitCode, refusal_exit_code
from stratcast.shared.events import ProgressReported, RunUpdated
from stratcast.shared.paths import MAX_IPC_PATH, Home, resolve_home
from stratcast.shared.protocol import (
    FINAL_STATES,
    JobSpec,
    ReadLogs,
    ShowRun,
    Shutdown,
    StopRun,
    Submit,
    to_builtins,
)
from stratcast.shared.runfiles import Outputs, RunFolder

STARTUP_S = 60.0
PRINT_EVERY_S = 2.0


def run_demo(args: argparse.Namespace, job: JobSpec) -> int:
    """Serve, submit ``job``, follow, print; the exit code says how the run ended."""
    home = demo_home(Path(args.out) / "daemon")
    daemon = None if answers(home) else start_daemon(home)
    try:
        with Client(home) as client:
            run = client.call(Submit(job=job))["run"]
            say = f"daemon: {client.hello.get('daemon')} at {home.control}; run {run['id']} queued"
            print(say, file=_progress(args), flush=True)
            try:
                if _wants_tui(args):
                    open_tui(home, run["id"])
                final = _follow_to_end(client, run["id"], _progress(args))
            except KeyboardInterrupt:
                client.call(StopRun(run=run["id"]))
                print(f"\nstopping run {run['id']} (it checkpoints; `stratcast resume {run['id']}` continues it)")
                return ExitCode.INTERRUPTED
            if final["state"] != "succeeded":
                print(f"run {run['id']} {final['state']}: {final['reason']}", file=sys.stderr)
                print(client.call(ReadLogs(run=run["id"], limit=8192))["text"][-4000:], file=sys.stderr)
                return ExitCode.FAILED
            print_results(RunFolder(Path(final["out"])).out.path, final.get("device"), args.json)
            return ExitCode.OK
    except RequestFailed as exc:
        print(f"stratcastd demo: the daemon refused the demo job: {exc}", file=sys.stderr)
        return refusal_exit_code(exc.code)
    except DaemonUnavailable as exc:
        print(f"stratcastd demo: {exc}", file=sys.stderr)
        return ExitCode.UNAVAILABLE
    finally:
        if daemon is not None and not args.keep_daemon:
            stop_daemon(home, daemon)
        elif daemon is not None:
            print(f"the daemon keeps running (pid {daemon.pid}): `stratcast --home {home.state} status`")


def _wants_tui(args: argparse.Namespace) -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty() and not (args.no_tui or args.json)


def _progress(args: argparse.Namespace) -> TextIO:
    """Where progress lines go: stderr when stdout carries the JSON result."""
    return sys.stderr if args.json else sys.stdout


def open_tui(home: Home, run: int) -> None:
    """Run ``stratcast tui`` on the demo's daemon, opened on ``run``, until the user quits it."""
    cmd = [sys.executable, "-m", "stratcast.tui.cli", "tui", "--connect", home.control, "--run", str(run)]
    subprocess.run(cmd, check=False)


def _follow_to_end(client: Client, run: int, to: TextIO) -> dict[str, Any]:
    """The run's final record, printing progress lines while it is still live."""
    with client.subscribe(idle_timeout_s=30.0) as events:  # before the look, so the ending cannot slip between
        info: dict[str, Any] = client.call(ShowRun(run=run))["run"]
        if info["state"] in FINAL_STATES or info["state"] in ("stopped", "interrupted"):
            return info
        return follow(events, run, to)


def demo_home(state: Path) -> Home:
    """The demo daemon's home; its sockets go to a short temporary folder when ``state`` is deep."""
    home = resolve_home(state)
    if len(str(home.control_socket)) > MAX_IPC_PATH:
        home = resolve_home(state, sockets=tempfile.mkdtemp(prefix="sc-"))
    return home


def start_daemon(home: Home, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``stratcastd serve`` for ``home`` (its log in ``HOME/daemon.log``) and wait until it answers.

    ``env``: the daemon's environment (None: this process's).

    Raises:
        DaemonUnavailable: when it exits or does not answer within :data:`STARTUP_S`.
    """
    home.state.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "stratcast.daemon.cli", "serve", "--home", str(home.state)]
    cmd += ["--sockets", str(home.sockets)]
    with open(home.daemon_log, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DaemonUnavailable(home.control, f"the daemon exited with {proc.returncode}; see {log.name}")
        if answers(home):
            return proc
        time.sleep(0.2)
    proc.kill()
    raise DaemonUnavailable(home.control, f"the daemon did not answer within {STARTUP_S:g} s")


def stop_daemon(home: Home, proc: subprocess.Popen[bytes]) -> None:
    """Ask the daemon to shut down and wait for it (kill it if it hangs)."""
    try:
        with Client(home, timeout_s=5.0) as client:
            client.call(Shutdown())
        proc.wait(timeout=60)
    except (DaemonUnavailable, RequestFailed, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


def answers(home: Home) -> bool:
    """Whether a daemon serves ``home`` and completes the handshake within a second."""
    if not Path(home.control.removeprefix("ipc://")).exists():
        return False
    try:
        with Client(home, timeout_s=1.0):
            return True
    except (DaemonUnavailable, RequestFailed):
        return False


def follow(events: Subscriber, run: int, to: TextIO) -> dict[str, Any]:
    """Print the run's progress to ``to`` every few seconds until it ends; its final record."""
    last_print = 0.0
    while True:
        event = events.recv(timeout_s=1.0)
        if event is None or event.run != run:
            continue
        match event.data:
            case ProgressReported() as progress if time.monotonic() - last_print >= PRINT_EVERY_S:
                last_print = time.monotonic()
                print(describe(progress), file=to, flush=True)
            case RunUpdated(run=info) if info.state in FINAL_STATES or info.state in ("stopped", "interrupted"):
                record: dict[str, Any] = to_builtins(info)
                return record


def print_results(out: Path, device: str | None, as_json: bool) -> None:
    """The top strategies and the skill table (or one JSON object) from a finished run's folder."""
    import pandas as pd

    from stratcast.daemon.cli import print_result

    metrics = json.loads(Outputs(out).metrics.read_text())
    top = pd.read_parquet(Outputs(out).summary).head(10).to_dict("records")
    print_result(out, device, metrics, [{str(k): v for k, v in r.items()} for r in top], as_json)
