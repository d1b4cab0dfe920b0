"""BrailleChart against Textual's Sparkline: three live charts of 600 points at a 10 Hz target, side by side.

An app of 120x40 cells shows three widgets, 12 rows each, fed by three random walks kept in 600-point ring
buffers; a timer appends one sample to each and hands the widgets their data ``--hz`` times a second, for
``--seconds`` after a 1 s warm-up. Measured inside the app's process over that window: ticks/s (timer callbacks
that ran: Textual skips the ticks a busy loop misses), frames/s (repaints of each widget, counted as
``render_line(0)`` calls; the slowest of the three), and CPU % (``process_time`` over wall time; one core = 100%).

Each app runs in a fresh interpreter, by default on a pseudo-terminal of 120x40 that this script drains, so the
figures include Textual encoding each frame to escape codes and writing it, as in a real terminal (KB/s: what the
app wrote, start-up screen included). ``--headless`` uses Textual's headless driver instead: frames are composed
but never encoded or written. The two kinds alternate, ``--repeats`` times each.

    .venv/bin/python benchmarks/tui_chart.py [--seconds 10] [--hz 10] [--points 600] [--repeats 2] [--headless]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import random
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections import deque
from pathlib import Path

from textual.app import App, ComposeResult
from textual.strip import Strip
from textual.widgets import Sparkline

from stratcast.tui.widgets.chart import BrailleChart

SIZE = (120, 40)
WARMUP_S = 1.0
KINDS = ("braille", "sparkline")
LABELS = {"braille": "3 x BrailleChart", "sparkline": "3 x textual Sparkline"}


class CountingChart(BrailleChart):
    """A BrailleChart counting its repaints."""

    frames = 0

    def render_line(self, y: int) -> Strip:  # noqa: D102
        self.frames += y == 0
        return super().render_line(y)


class CountingSparkline(Sparkline):
    """A Sparkline counting its repaints."""

    frames = 0

    def render_line(self, y: int) -> Strip:  # noqa: D102
        self.frames += y == 0
        return super().render_line(y)


class Bench(App[dict[str, float]]):
    """Three widgets of one kind fed at ``--hz``; exits with its figures over the measured window."""

    CSS = "CountingChart, CountingSparkline { height: 12; margin-bottom: 1; }"

    def __init__(self, kind: str, args: argparse.Namespace) -> None:
        super().__init__()
        self.kind, self.args = kind, args
        rng = random.Random(0)
        self.rng = rng
        self.walks = [deque(_walk(rng, args.points), maxlen=args.points) for _ in range(3)]
        self.ticks = 0
        self.t0 = self.c0 = 0.0

    def compose(self) -> ComposeResult:  # noqa: D102
        for _ in range(3):
            yield CountingChart() if self.kind == "braille" else CountingSparkline()

    def on_mount(self) -> None:  # noqa: D102
        self.push()
        self.set_interval(1 / self.args.hz, self.tick)
        self.set_timer(WARMUP_S, self.start)
        self.set_timer(WARMUP_S + self.args.seconds, self.stop)

    def tick(self) -> None:
        """One new sample per walk, handed to the widgets."""
        self.ticks += 1
        for walk in self.walks:
            walk.append(walk[-1] + self.rng.gauss(0, 1))
        self.push()

    def push(self) -> None:
        """Give each widget its walk: BrailleChart copies the ring buffer, Sparkline gets a list."""
        for widget, walk in zip(self.widgets(), self.walks, strict=True):
            if isinstance(widget, CountingChart):
                widget.set_series("walk", walk, style="cyan")
            else:
                widget.data = list(walk)

    def widgets(self) -> list[CountingChart | CountingSparkline]:
        """The three widgets."""
        return list(self.query(CountingChart)) + list(self.query(CountingSparkline))

    def start(self) -> None:
        """Start the measured window: counters to zero."""
        self.ticks = 0
        for w in self.widgets():
            w.frames = 0
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        """End the window and exit with ticks/s, frames/s and the CPU share."""
        wall, cpu = time.perf_counter() - self.t0, time.process_time() - self.c0
        frames = min(w.frames for w in self.widgets())
        self.exit({"ticks_per_s": self.ticks / wall, "frames_per_s": frames / wall, "cpu": cpu / wall})


def _walk(rng: random.Random, n: int) -> list[float]:
    out = [0.0]
    for _ in range(n - 1):
        out.append(out[-1] + rng.gauss(0, 1))
    return out


def child(args: argparse.Namespace) -> None:
    result = Bench(args.child, args).run(headless=args.headless, size=SIZE if args.headless else None)
    Path(args.result).write_text(json.dumps(result))


def run_one(kind: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--child", kind, "--result", str(result)]
        cmd += ["--seconds", str(args.seconds), "--hz", str(args.hz), "--points", str(args.points)]
        if args.headless:
            subprocess.run([*cmd, "--headless"], check=True)
            written, tail = 0, b""
        else:
            written, tail = _run_on_pty(cmd)
        if not result.exists():
            raise SystemExit(f"{kind} wrote no result; its terminal ended with:\n{tail.decode(errors='replace')}")
        out: dict[str, float] = json.loads(result.read_text())
        out["kb_per_s"] = written / 1024 / (WARMUP_S + args.seconds)
        return out


def _run_on_pty(cmd: list[str]) -> tuple[int, bytes]:
    """Run ``cmd`` on a new 120x40 pseudo-terminal, draining what it writes; (bytes written, their last 4 KB)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    written, tail = 0, b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            written, tail = written + len(data), (tail + data)[-4096:]
        elif proc.poll() is not None:
            break
    proc.wait()
    os.close(master)
    return written, tail


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="measured window, after a 1 s warm-up")
    ap.add_argument("--hz", type=float, default=10.0, help="target updates per second")
    ap.add_argument("--points", type=int, default=600, help="points per series")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each kind, alternating")
    ap.add_argument("--headless", action="store_true", help="Textual's headless driver instead of a pty")
    ap.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    driver = "headless driver" if args.headless else "pseudo-terminal"
    print(f"{SIZE[0]}x{SIZE[1]} on a {driver}, 3 series of {args.points} points, {args.hz:g} Hz target, ", end="")
    print(f"{args.seconds:g} s measured per run, {os.cpu_count()} CPUs\n")
    print("| widgets | run | ticks/s | frames/s | CPU % | KB/s written |")
    print("|---|---|---|---|---|---|")
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    for i in range(args.repeats):
        for kind in KINDS:
            r = run_one(kind, args)
            runs[kind].append(r)
            print(
                f"| {LABELS[kind]} | {i + 1} | {r['ticks_per_s']:.1f} | {r['frames_per_s']:.1f} "
                f"| {100 * r['cpu']:.1f} | {r['kb_per_s']:.0f} |",
                flush=True,
            )
    cpu = {kind: statistics.median(r["cpu"] for r in runs[kind]) for kind in KINDS}
    fps = {kind: statistics.median(r["frames_per_s"] for r in runs[kind]) for kind in KINDS}
    print(f"\nmedian CPU: BrailleChart {100 * cpu['braille']:.1f}%, Sparkline {100 * cpu['sparkline']:.1f}%", end="")
    print(f" (ratio {cpu['braille'] / cpu['sparkline']:.2f}); median frames/s {fps['braille']:.1f} vs ", end="")
    print(f"{fps['sparkline']:.1f}")


if __name__ == "__main__":
    main()
