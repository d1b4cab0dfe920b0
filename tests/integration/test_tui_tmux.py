"""The real TUI in tmux against a real daemon: start a run, see progress, stop it, resume it, see it finish.

Each test starts ``stratcast tui`` in a private tmux server (``tmux -L sc-test-PID``, no config, no status bar, a
120x36 window), presses keys with ``send-keys`` and reads the screen with ``capture-pane``. The run is queued
through the new-run form (``n``), its fields found by the hint line that names the focused one. The daemon is a
real ``stratcastd serve`` subprocess (CPU, one slot) with torch on one thread: a tiny model on two threads of a
loaded 2-core machine ran 50x slower than on one. Failures print the pane as it last was.
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
STEPS = 6000
"""Training steps of the run: 3-10 s on one core, long enough to stop it mid-way after its first progress."""
SETS = {"max_steps": STEPS, "batch_size": 32, "val_size": 0}
"""The job's training options (an N-HiTS of width 16, horizon 4 and input size 8 on 8 strategies x 50 periods)."""
HINTS = {
    "max_steps": "optimizer steps at most",
    "batch_size": "windows per optimizer step",
    "val_size": "last periods held for validation",
}
"""How the form's hint line begins when each training option has the focus (the daemon's help texts)."""
SIZE = (120, 36)
EXITED = re.compile(r"^\[stratcast tui exited (\d+)\]$", re.MULTILINE)


class TmuxTui:
    """``stratcast tui`` in a tmux server of its own; the server is killed by :meth:`close`."""

    def __init__(self) -> None:
        self.socket = f"sc-test-{os.getpid()}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE", "STRATCAST_HOME")}

    def tmux(self, *args: str) -> str:
        cmd = ["tmux", "-L", self.socket, "-f", "/dev/null", *args]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=True, timeout=20).stdout

    def start(self, home: Path, *extra: str) -> TmuxTui:
        """Open the TUI on ``home``; a shell around it prints its exit status, and the pane stays to show it.

        (tmux's own ``pane_dead_status`` is not to be relied on: tmux 3.3 left the exited TUI a zombie at times.)
        """
        width, height = SIZE
        tui = [sys.executable, "-m", "stratcast.tui.cli", "tui", "--home", str(home), *extra]
        term = ["env", "TERM=xterm-256color", f"COLUMNS={width}", f"LINES={height}"]
        command = f'{shlex.join(term + tui)}; echo "[stratcast tui exited $?]"'
        # start-server first so the options hold before the TUI can exit
        self.tmux(
            *("start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";"),
            *("set-option", "-g", "status", "off", ";", "set-option", "-g", "default-shell", "/bin/sh", ";"),
            *("new-session", "-d", "-s", "tui", "-x", str(width), "-y", str(height), command),
        )
        return self

    def screen(self, *, history: bool = False) -> str:
        """What the pane shows now (with ``history``, the lines scrolled off the top too)."""
        return self.tmux("capture-pane", "-p", "-t", "tui", *(("-S", "-") if history else ()))

    def press(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "tui", *keys)

    def exit_status(self) -> int | None:
        """The TUI's exit status once it has exited, else None."""
        exited = EXITED.search(self.screen(history=True))
        return int(exited[1]) if exited else None

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "tui", "-l", text)

    def wait(self, check: Callable[[str], object], what: str, timeout: float = WAIT_S, *, fail: bool = True) -> str:
        """Poll the screen until ``check`` holds; the screen it held on (the last one when not ``fail``).

        Raises:
            AssertionError: at the timeout (when ``fail``), or at once when the TUI has exited.
        """
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if self.exit_status() is not None:
                raise AssertionError(
                    f"the TUI exited, waiting for: {what}\n--- the pane ---\n{self.screen(history=True)}"
                )
            if time.monotonic() > deadline:
                if not fail:
                    return screen
                raise AssertionError(f"not on screen after {timeout:.0f}s: {what}\n--- the pane ---\n{screen}")
            time.sleep(0.1)

    def tab_to(self, hint: str, presses: int = 40) -> None:
        """Press Tab until the form's hint line (the focused field's help) starts with ``hint``.

        Keys are handled in order but late on a loaded machine, so each Tab waits for the hint to change (two
        neighbours may share one: then it goes on after a while).
        """
        screen = self.screen()
        for _ in range(presses):
            if form_hint(screen).startswith(hint):
                return
            before = form_hint(screen)
            self.press("Tab")
            screen = self.wait(lambda s: form_hint(s) != before, "", timeout=2.0, fail=False)  # noqa: B023
        raise AssertionError(f"no field with the hint {hint!r} in {presses} tabs\n--- the pane ---\n{screen}")

    def settle(self, timeout: float = 3.0) -> str:
        """Wait until the screen has not changed for 0.3 s (a scroll in flight), at most ``timeout``; the screen."""
        screen, deadline = self.screen(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.3)
            screen, before = self.screen(), screen
            if screen == before:
                break
        return screen

    def repaint(self) -> str:
        """Make the TUI paint the whole screen again (a resize and back); the screen after it."""
        width, height = SIZE
        self.tmux("resize-window", "-t", "tui", "-x", str(width), "-y", str(height - 1))
        self.settle()
        self.tmux("resize-window", "-t", "tui", "-x", str(width), "-y", str(height))
        return self.settle()

    def wait_exit(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while (status := self.exit_status()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the TUI did not exit in {timeout:.0f}s\n--- the pane ---\n{self.screen()}")
            time.sleep(0.1)
        return status

    def close(self) -> None:
        """Kill the server and remove its socket (tmux 3.3 leaves it behind)."""
        try:
            path = self.tmux("display-message", "-p", "#{socket_path}").strip()
        except subprocess.CalledProcessError:  # no server
            return
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], env=self.env, capture_output=True, timeout=20)
        Path(path).unlink(missing_ok=True)


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


def form_hint(screen: str) -> str:
    """The new-run form's hint line, above the footer: the focused field's help."""
    lines = screen.rstrip("\n").splitlines()
    return lines[-2].strip() if len(lines) >= 2 else ""


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
    """Queue the job with the CLI; its run id."""
    job = ["--data", str(panel), "--model", "dlinear", "--horizon", "4", "--input-size", "8"]
    out = stratcast("submit", "--home", str(home), "--json", *job, *[f"--set={k}={v}" for k, v in SETS.items()], *extra)
    return int(json.loads(out)["run"]["id"])


def submit_with_the_form(tui: TmuxTui, panel: Path) -> None:
    """Queue the job through the new-run form (``n``): N-HiTS (the demo's model) is its default; fields by help."""
    tui.press("n")
    tui.wait(lambda s: "training options (" in s and "n_pool_kernel" in s, "the form with the daemon's models")
    tui.type(str(panel))  # the data file has the focus
    tui.wait(lambda s: str(panel) in s, "the data file typed")
    # N-HiTS at its default width (512, 512) is slow for 6000 steps on a loaded 2-core machine: a narrow one
    fill_in(tui, "widths of each block's hidden layers", "mlp_units", "16,16")
    fill_in(tui, "periods to forecast", "horizon", "4", clear=False)
    fill_in(tui, "periods each window sees", "input size", "8", clear=False)
    device = "auto: a GPU when"
    tui.tab_to(device)  # the training options' title is next
    tui.press("Tab")
    tui.wait(lambda s: not form_hint(s).startswith(device), "the training options' title focused")
    tui.press("Enter")
    tui.wait(lambda s: "max_steps" in s, "the training options shown")
    for name, value in SETS.items():
        fill_in(tui, HINTS[name], name, str(value))
    tui.press("C-s")


SCROLLBAR = "▁▂▃▄▅▆▇█"
"""Glyphs of a scrollbar's thumb, drawn at the right end of whichever row it passes."""


def fill_in(tui: TmuxTui, hint: str, label: str, value: str, *, clear: bool = True) -> None:
    """Focus the field with this hint, replace its text, and see it on screen (so every key was handled).

    Two Textual hazards are stepped around (seen now and then on a loaded 2-core machine): a binding's action
    (``ctrl+u`` clears an input) can run after printable keys sent just behind it, clearing them too; and, after
    the training options are shown, a focused input can paint its text one or two rows above its place (over the
    options' title or the device field) while its own row keeps the old text, until the whole screen is painted
    again. So it clears, sees the field cleared, types, and when the value does not show, repaints the screen to
    look again, then tries again. Without ``clear`` (an empty input, showing its placeholder) it only types.
    """
    tui.tab_to(hint)
    cell = re.compile(rf"^ *{re.escape(label)}(?: +(.*?))? *[{SCROLLBAR}]* *$", re.MULTILINE)

    def shown(screen: str) -> str | None:
        found = cell.search(screen)
        return found[1] or "" if found else None

    for attempt in range(3):
        before = shown(tui.settle())
        if clear or attempt:
            tui.press("End", "C-u")
            tui.wait(lambda s: shown(s) != before, f"{label} cleared", timeout=2.0, fail=False)  # noqa: B023
        tui.type(value)
        screen = tui.wait(lambda s: shown(s) == value, f"{label} {value} in the form", timeout=3.0, fail=False)
        if shown(screen) == value or shown(tui.repaint()) == value:
            return
    raise AssertionError(f"could not set {label} to {value}\n--- the pane ---\n{tui.screen()}")


def test_start_a_run_see_progress_stop_it_resume_it_and_see_it_finish(daemon, tui, short_home):
    tui.start(short_home)
    tui.wait(status_line("● live"), "the status line saying live")
    submit_with_the_form(tui, write_small_panel(short_home / "panel.parquet"))
    tui.wait(lambda s: runs_table(s), "a run in the runs table")
    (run,) = runs_table(tui.screen())
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
    assert (info["job"]["model"], info["job"]["horizon"], info["job"]["input_size"]) == ("nhits", 4, 8)
    assert {f"{k}={v}" for k, v in SETS.items()} <= set(info["job"]["sets"]), info["job"]  # as typed in the form
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
    screen = tui.screen(history=True)
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
