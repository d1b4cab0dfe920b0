"""The real TUI in tmux against a real daemon: start a run, see progress, stop it, resume it, see it finish.

Each test starts ``stratcast tui`` in a private tmux server (``tmux -L sc-test-PID``, no config, no status bar, a
120x36 window), presses keys with ``send-keys`` and reads the screen with ``capture-pane``. The daemon is a real
``stratcastd serve`` subprocess (CPU, one slot) with torch on one thread: a tiny model on two threads of a loaded
2-core machine runs 30x slower than on one. Failures print the pane as it last was.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon.engine.small_jobs import write_small_panel
from tests.integration.daemon_process import DaemonProcess

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

WAIT_S = 60.0
"""Longest wait for anything to show on screen (a loaded 2-core machine imports torch in 5-10 s)."""
STEPS = 10_000
"""Training steps of the run: 5-10 s on one core, long enough to stop it mid-way after its first progress."""
SIZE = (120, 36)


class TmuxTui:
    """``stratcast tui`` in a tmux server of its own; the server is killed by :meth:`close`."""

    def __init__(self) -> None:
        self.socket = f"sc-test-{os.getpid()}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE", "STRATCAST_HOME")}

    def tmux(self, *args: str) -> str:
        cmd = ["tmux", "-L", self.socket, "-f", "/dev/null", *args]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=True, timeout=20).stdout

    def start(self, home: Path, *extra: str) -> TmuxTui:
        """Open the TUI on ``home``; the pane stays after the TUI exits, to read its exit status."""
        width, height = SIZE
        tui = [sys.executable, "-m", "stratcast.tui.cli", "tui", "--home", str(home), *extra]
        term = ["env", "TERM=xterm-256color", f"COLUMNS={width}", f"LINES={height}"]
        # start-server first so the options hold before the TUI can exit
        self.tmux(
            *("start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";"),
            *("set-option", "-g", "status", "off", ";"),
            *("new-session", "-d", "-s", "tui", "-x", str(width), "-y", str(height), shlex.join(term + tui)),
        )
        return self

    def screen(self, *, history: bool = False) -> str:
        """What the pane shows now (with ``history``, the lines scrolled off the top too)."""
        return self.tmux("capture-pane", "-p", "-t", "tui", *(("-S", "-") if history else ()))

    def press(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "tui", *keys)

    def exit_status(self) -> int | None:
        """The TUI's exit status once it has exited, else None."""
        dead, status = self.tmux("display-message", "-p", "-t", "tui", "#{pane_dead}:#{pane_dead_status}").split(":")
        return int(status) if dead == "1" and status.strip().isdigit() else None  # the status comes just after

    def wait(self, check: Callable[[str], object], what: str, timeout: float = WAIT_S) -> str:
        """Poll the screen until ``check`` holds; the screen it held on."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"not on screen after {timeout:.0f}s: {what}\n--- the pane ---\n{screen}")
            time.sleep(0.2)

    def wait_exit(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while (status := self.exit_status()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the TUI did not exit in {timeout:.0f}s\n--- the pane ---\n{self.screen()}")
            time.sleep(0.1)
        return status

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True, check=False, timeout=20
        )


def runs_table(screen: str) -> dict[int, dict[str, str]]:
    """The runs table on screen: each run's cells by column header (cells are at least two spaces apart)."""
    lines = screen.splitlines()
    top = next((i for i, line in enumerate(lines) if line.split()[:2] == ["ID", "Name"]), None)
    if top is None:
        return {}
    headers = lines[top].split()
    rows = {}
    for line in lines[top + 1 :]:
        cells = re.split(r" {2,}", line.strip())
        if len(cells) == len(headers) and cells[0].isdigit():
            rows[int(cells[0])] = dict(zip(headers, cells, strict=True))
    return rows


def row(run: int, state: str, **cells: str) -> Callable[[str], bool]:
    """A check that run ``run``'s row shows ``state`` and ``cells`` (header: a regex matching the whole cell)."""

    def check(screen: str) -> bool:
        shown = runs_table(screen).get(run)
        return (
            shown is not None
            and shown["State"].split()[0] == state
            and all(re.fullmatch(want, shown[header]) for header, want in cells.items())
        )

    return check


def status_line(text: str) -> Callable[[str], bool]:
    """A check that the first line of the screen (the main screen's status line) contains ``text``."""
    return lambda screen: text in screen.splitlines()[0] if screen.strip() else False


def stratcast(*args: str) -> str:
    """Run the ``stratcast`` CLI; its stdout."""
    cmd = [sys.executable, "-m", "stratcast.tui.cli", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{shlex.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A home with a short path: unix socket paths are capped near 100 bytes, pytest's tmp paths run long."""
    home = Path(tempfile.mkdtemp(prefix="sc-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def daemon(short_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaemonProcess]:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the daemon's workers inherit it
    d = DaemonProcess(short_home, "--cpu-slots", "1").start()
    yield d
    d.stop()


@pytest.fixture
def tui() -> Iterator[TmuxTui]:
    t = TmuxTui()
    yield t
    t.close()


def submit(home: Path, panel: Path, *extra: str) -> int:
    """Queue the tiny MLP run with the CLI; its id."""
    sets = [f"max_steps={STEPS}", "batch_size=32", "val_size=0", "hidden_size=16", "num_layers=2"]
    job = ["--data", str(panel), "--model", "mlp", "--horizon", "4", "--input-size", "8", "--name", "tmux"]
    out = stratcast("submit", "--home", str(home), "--json", *job, *[f"--set={s}" for s in sets], *extra)
    return int(json.loads(out)["run"]["id"])


def test_start_a_run_see_progress_stop_it_resume_it_and_see_it_finish(daemon, tui, short_home):
    tui.start(short_home)
    tui.wait(status_line("● live"), "the status line saying live")
    run = submit(short_home, write_small_panel(short_home / "panel.parquet"))
    running = tui.wait(row(run, "running", **{"%": r"\d+", "Step": r"\d+"}), "the run running with a % and a step")
    assert "1 running" in running.splitlines()[0]

    tui.press("s")
    stopped = runs_table(tui.wait(row(run, "stopped"), "the run stopped"))[run]
    assert 0 < int(stopped["Step"]) < STEPS, f"stopped mid-way: {stopped}"

    tui.press("r")
    tui.wait(row(run, "running"), "the run running again")
    tui.wait(row(run, "succeeded", **{"%": "100", "Step": str(STEPS)}), "the run succeeded at 100%")

    shown = json.loads(stratcast("show", "--home", str(short_home), str(run), "--json"))
    info, events = shown["run"], shown["events"]
    assert (info["state"], info["attempts"], info["progress"]["step"]) == ("succeeded", 2, STEPS)
    kinds = [e["kind"] for e in events]
    assert kinds.count("started") == 2 and "resumed" in kinds, kinds
    saved = [e["data"]["step"] for e in events[: kinds.index("resumed")] if e["kind"] == "checkpoint"]
    assert saved and 0 < saved[-1] < STEPS, events
    log = stratcast("logs", "--home", str(short_home), str(run))
    assert f"at step {saved[-1]}/{STEPS}" in log and "resumed from" in log, log  # not from step 0

    tui.press("q")
    assert tui.wait_exit() == 0


def test_with_no_daemon_the_tui_exits_69_and_says_how_to_start_one(tui, short_home):
    tui.start(short_home)
    assert tui.wait_exit() == 69
    screen = tui.screen(history=True)  # tmux's "Pane is dead" line can scroll the first line off
    assert "no stratcast daemon answers" in screen, screen
    assert f"stratcastd serve --home {short_home}" in screen, screen


def test_the_tui_reconnects_to_a_restarted_daemon_and_keeps_the_runs(daemon, tui, short_home):
    run = submit(short_home, write_small_panel(short_home / "panel.parquet"), "--hold")
    tui.start(short_home)
    tui.wait(lambda s: status_line("● live")(s) and row(run, "held")(s), "the held run, live")

    daemon.kill9()
    screen = tui.wait(status_line("reconnecting"), "the status line saying reconnecting")
    assert row(run, "held")(screen), f"the runs stay on screen while the daemon is away\n{screen}"

    daemon.start()
    screen = tui.wait(status_line("● live"), "the status line saying live again")
    assert row(run, "held")(screen), f"the runs are listed after reconnecting\n{screen}"
