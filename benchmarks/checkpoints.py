"""Checkpoints: what one costs against training time, and how long a stop and a resume take through the daemon.

1. **Cost.** A real training checkpoint of each model (the trainer after a few steps on a generated panel, the
   state ``run_job`` writes: ``checkpoint_state`` + ``checkpoint.save_rotating``, fsync and sha256 included):
   its size, the median of ``--saves`` saves (the state gathered and written), the median of ``latest_checkpoint``
   (find, verify the digest, load ``weights_only``), and the share of training time a save takes at the default
   interval (``checkpoint_every_s`` = 300 s) and at a tight one (30 s). Then the measured slowdown: the same
   training with a checkpoint every ``--every`` steps and with none, ``--repeats`` pairs alternating in order.
2. **Stop and resume through a real daemon.** A ``stratcastd serve`` subprocess; a long run of each model (default
   options: no timed checkpoint before the stop) is submitted and followed through events; past
   ``--steps-before-stop`` steps, ``StopRun``: the time from the request to the ``run`` event saying ``stopped``
   (the worker has saved its checkpoint and exited, so its memory is freed). Then ``ResumeRun``: the time from the
   request to the ``run`` event of attempt 2 (the new worker spawned) and to that attempt's first ``progress``
   event (the worker reports every 10 steps, at most 5 per second). The resume is broken down by parts measured
   apart: a fresh interpreter importing torch and the engine, loading and preparing the panel, finding and
   verifying the checkpoint, loading it into the trainer, and 10 training steps.

CPU only; the figures that matter are the shares and ratios measured side by side in this one run.

    .venv/bin/python benchmarks/checkpoints.py [--model nhits,dlinear] [--strategies 2000] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from stratcast.daemon.embedded import start_daemon, stop_daemon
from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.run.build import Prepared, make_model, make_trainer, prepare
from stratcast.daemon.engine.run.checkpoints import TRAIN_KIND, Checkpointer, checkpoint_state
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.daemon.engine.training.checkpoint import latest_checkpoint, load_checkpoint, save_rotating
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.shared.client import Client, Subscriber
from stratcast.shared.events import Event, ProgressReported, RunUpdated
from stratcast.shared.paths import resolve_home
from stratcast.shared.protocol import JobSpec, KillRun, ResumeRun, ShowRun, StopRun, Submit
from stratcast.shared.runfiles import RunFolder

WEEKS = 208
DEFAULT_INTERVAL_S = 300.0
"""``TrainConfig.checkpoint_every_s``'s default."""
TIGHT_INTERVAL_S = 30.0
TARGET_SHARE = 0.02
"""The issue's target: checkpoints cost at most 2% of training time at the default interval."""
WAIT_S = 180.0
MIB = 1 << 20


def main() -> None:
    args = parse_args()
    root = Path(tempfile.mkdtemp(prefix="sc-"))  # short: unix socket paths are capped near 100 bytes
    try:
        bench(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="nhits,dlinear", help="comma-separated models (default nhits,dlinear)")
    p.add_argument("--strategies", type=int, default=2000, help=f"strategies in the panel (x {WEEKS} weeks)")
    p.add_argument("--repeats", type=int, default=3, help="slowdown pairs and stop/resume cycles (default 3)")
    p.add_argument("--saves", type=int, default=7, help="timed saves and loads per model (default 7)")
    p.add_argument("--steps", type=int, default=100, help="least training steps of a slowdown run (default 100)")
    p.add_argument("--run-s", type=float, default=5.0, help="least seconds of a slowdown run (default 5)")
    p.add_argument("--every", type=int, default=10, help="checkpoint every this many steps in the slowdown runs")
    p.add_argument("--steps-before-stop", type=int, default=30, help="progress step a run reaches before the stop")
    p.add_argument("--quick", action="store_true", help="tiny everything: a smoke run")
    args = p.parse_args()
    args.models = [m.strip() for m in args.model.split(",") if m.strip()]
    if args.quick:
        args.strategies, args.repeats, args.saves, args.steps, args.every, args.run_s = 200, 1, 3, 20, 5, 0.5
        args.steps_before_stop = 10
    return args


def bench(args: argparse.Namespace, root: Path) -> None:
    panel = root / "panel.parquet"
    make_strategy_panel(args.strategies, WEEKS, seed=0).to_parquet(panel, index=False)
    print(f"{args.strategies:,} strategies x {WEEKS} weeks, cpu, torch threads {torch.get_num_threads()}, ", end="")
    print(f"cores {os.cpu_count()}, models {', '.join(args.models)}")
    costs = [cost(args, model, str(panel), root / f"cost-{model}") for model in args.models]
    report_cost(args, costs)
    with running_daemon(root / "d") as client, client.subscribe(idle_timeout_s=60.0) as events:
        cycles = {
            m: [stop_resume(args, client, events, m, str(panel)) for _ in range(args.repeats)] for m in args.models
        }
    parts = {model: resume_parts(model, str(panel), root, c[-1].checkpoints) for model, c in cycles.items()}
    report_daemon(args, cycles, parts, [interpreter_exit_s() for _ in range(args.repeats)])


# -- part 1: the cost of a checkpoint ------------------------------------------------------------------------


@dataclass
class Cost:
    """One model's checkpoint figures."""

    model: str
    size_mib: float
    save_s: float
    load_s: float
    step_s: float
    steps: int
    with_s: list[float]
    without_s: list[float]


def make_spec(model: str, panel: str, out: Path, steps: int, every: int = 0) -> RunSpec:
    train = TrainConfig(max_steps=steps, val_size=0, checkpoint_every_steps=every, checkpoint_every_s=0.0)
    return RunSpec(data=panel, model=model, out=str(out), device="cpu", train=train)


def build(spec: RunSpec) -> tuple[Prepared, Trainer]:
    torch.manual_seed(spec.train.seed)
    prep = prepare(spec, torch.device("cpu"), lambda _: None)
    model = make_model(spec, prep.panel.n_series)
    return prep, make_trainer(spec, model, prep, None, None)


def cost(args: argparse.Namespace, model: str, panel: str, out: Path) -> Cost:
    """Size, save and load times of a real checkpoint, and training with and without checkpoints."""
    spec = make_spec(model, panel, out, 20)
    prep, trainer = build(spec)
    warm = trainer.fit()  # the optimizer holds its moments from here on, as in every checkpoint after step 1
    directory = RunFolder(out).checkpoints
    saves, loads = [], []
    for i in range(args.saves):
        t0 = time.perf_counter()
        path = save_rotating(directory, trainer.step + i, checkpoint_state(spec, trainer, prep, TRAIN_KIND))
        saves.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert latest_checkpoint(directory) == path
        loads.append(time.perf_counter() - t0)
    size = path.stat().st_size / MIB
    steps = max(args.steps, round(args.run_s * warm.steps / warm.seconds))  # fast models: more steps
    with_s, without_s = slowdown(args, model, panel, out, steps)
    step_s = statistics.median(without_s) / steps
    return Cost(model, size, statistics.median(saves), statistics.median(loads), step_s, steps, with_s, without_s)


def slowdown(
    args: argparse.Namespace, model: str, panel: str, out: Path, steps: int
) -> tuple[list[float], list[float]]:
    """Training seconds with a checkpoint every ``--every`` steps and with none, pairs alternating in order."""
    with_s: list[float] = []
    without_s: list[float] = []
    for i in range(args.repeats):
        for every in (args.every, 0) if i % 2 == 0 else (0, args.every):
            spec = make_spec(model, panel, out / f"run{i}-{every}", steps, every)
            prep, trainer = build(spec)
            saver = Checkpointer(spec, prep, RunFolder(Path(spec.out)).checkpoints, None)
            trainer.on_step = saver.maybe_save
            (with_s if every else without_s).append(trainer.fit().seconds)
    return with_s, without_s


def report_cost(args: argparse.Namespace, costs: list[Cost]) -> None:
    print(f"\n1. Checkpoint cost: median of {args.saves} saves/loads; slowdown median of {args.repeats} pair(s)")
    head = ["model", "size MiB", "save s", "load+verify s", "step s", "share @300 s", "share @30 s", "steps"]
    head += [f"train s, ckpt/{args.every} steps", "train s, none", "slowdown"]
    print("| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|")
    for c in costs:
        w, n = statistics.median(c.with_s), statistics.median(c.without_s)
        row = [c.model, f"{c.size_mib:.2f}", f"{c.save_s:.3f}", f"{c.load_s:.3f}", f"{c.step_s:.3f}"]
        row += [f"{c.save_s / DEFAULT_INTERVAL_S:.3%}", f"{c.save_s / TIGHT_INTERVAL_S:.3%}", f"{c.steps:,}"]
        row += [f"{w:.2f}", f"{n:.2f}", f"{w / n - 1:+.1%}"]
        print("| " + " | ".join(row) + " |")
    worst = max(c.save_s / DEFAULT_INTERVAL_S for c in costs)
    verdict = "meets" if worst <= TARGET_SHARE else "misses"
    print(f"worst share at the default interval {worst:.3%}: {verdict} the <= {TARGET_SHARE:.0%} target")
    for c in costs:
        per_save = (statistics.median(c.with_s) - statistics.median(c.without_s)) / (c.steps // args.every)
        print(f"  {c.model}: slowdown per checkpoint {per_save:.3f} s (isolated save {c.save_s:.3f} s)")


# -- part 2: stop and resume through the daemon --------------------------------------------------------------


@dataclass
class Cycle:
    """One stop/resume of a run, times from the request."""

    stop_s: float
    """StopRun sent -> ``run`` event ``stopped``."""
    saved_s: float
    """StopRun sent -> ``run`` event naming the stop's checkpoint (the worker's ``stopped`` report)."""
    spawn_s: float
    """ResumeRun sent -> ``run`` event of attempt 2."""
    first_progress_s: float
    """ResumeRun sent -> the first ``progress`` event of attempt 2."""
    stop_step: int
    first_step: int
    worker_gone: bool
    checkpoints: Path


@contextmanager
def running_daemon(home: Path) -> Iterator[Client]:
    """A ``stratcastd serve`` on ``home`` and a connected client; shut down and waited for at the end."""
    where = resolve_home(home)
    proc = start_daemon(where, {k: v for k, v in os.environ.items() if k != "STRATCAST_HOME"})
    client = Client(where, timeout_s=120.0)
    try:
        client.connect()
        yield client
    finally:
        client.close()
        stop_daemon(where, proc)


def wait_event(events: Subscriber, match: Callable[[Event], bool], what: str) -> float:
    """Receive events until one matches; the ``perf_counter`` time it arrived."""
    return wait_data(events, match, what)[0]


def wait_data(events: Subscriber, match: Callable[[Event], bool], what: str) -> tuple[float, Event]:
    """Receive events until one matches; the ``perf_counter`` time it arrived and the event."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        event = events.recv(timeout_s=1.0)
        if event is not None and match(event):
            return time.perf_counter(), event
    sys.exit(f"no event: {what} in {WAIT_S:.0f} s")


def run_is(run: int, **fields: object) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        if not isinstance(event.data, RunUpdated) or event.data.run.id != run:
            return False
        return all(getattr(event.data.run, k) == v for k, v in fields.items())

    return match


def progress_of(run: int, at_least: int = 0) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        return isinstance(event.data, ProgressReported) and event.run == run and event.data.step >= at_least

    return match


def stop_resume(args: argparse.Namespace, client: Client, events: Subscriber, model: str, panel: str) -> Cycle:
    """Submit a long run of ``model``, stop it past some steps, resume it, and time both; kill it at the end."""
    job = JobSpec(data=panel, model=model, device="cpu", sets=["max_steps=10000000", "val_size=0"])
    run = int(client.call(Submit(job=job))["run"]["id"])
    wait_event(events, progress_of(run, args.steps_before_stop), f"run {run} past step {args.steps_before_stop}")
    before = client.call(ShowRun(run=run))["run"]
    pid = int(before["pid"])
    t0 = time.perf_counter()
    client.call(StopRun(run=run))
    saved_s, stop_s = stopped_times(events, run, before.get("checkpoint"), t0)
    gone = not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    shown = client.call(ShowRun(run=run))
    stop_step = int(shown["run"]["progress"]["step"])
    t0 = time.perf_counter()
    client.call(ResumeRun(run=run))
    spawn_s = wait_event(events, run_is(run, attempts=2), f"run {run} attempt 2") - t0
    first_at, first = wait_data(events, progress_of(run), f"progress of run {run} attempt 2")
    assert isinstance(first.data, ProgressReported)
    first_s, first_step = first_at - t0, first.data.step
    client.call(KillRun(run=run))
    wait_event(events, run_is(run, state="killed"), f"run {run} killed")
    directory = Path(shown["checkpoints"][-1]).parent
    print(f"  {model} run {run}: stop {stop_s:.2f} s (saved {saved_s:.2f} s) at step {stop_step}, ", end="")
    print(f"worker gone {gone}; ", end="")
    print(f"resume: spawned {spawn_s:.2f} s, first progress {first_s:.2f} s (step {first_step})", flush=True)
    return Cycle(stop_s, saved_s, spawn_s, first_s, stop_step, first_step, gone, directory)


def stopped_times(events: Subscriber, run: int, checkpoint: object, t0: float) -> tuple[float, float]:
    """Seconds from ``t0`` to the ``run`` event naming the stop's checkpoint, and to the one saying ``stopped``."""
    saved = math.nan
    while True:
        at, event = wait_data(events, run_is(run), f"run {run} stopped")
        assert isinstance(event.data, RunUpdated)
        info = event.data.run
        if math.isnan(saved) and info.checkpoint not in (None, checkpoint):
            saved = at - t0  # the worker's "stopped" event: checkpoint on disk, the process about to exit
        if info.state == "stopped":
            return saved, at - t0


def resume_parts(model: str, panel: str, root: Path, checkpoints: Path) -> dict[str, float]:
    """The resume's parts measured apart, from the checkpoint of the last cycle (a copy: the daemon owns it)."""
    directory = root / f"parts-{model}"
    shutil.copytree(checkpoints, directory)
    code = "import time, torch, stratcast.daemon.engine.run.job, stratcast.daemon.worker; print(time.time())"
    t0 = time.time()
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    startup = float(done.stdout) - t0  # to the imports done, not to the exit
    spec = make_spec(model, panel, root / f"parts-out-{model}", 10_000_000)
    t0 = time.perf_counter()
    _, trainer = build(spec)
    data = time.perf_counter() - t0
    t0 = time.perf_counter()
    path = latest_checkpoint(directory)
    assert path is not None
    verify = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer.load_state_dict(load_checkpoint(path)["trainer"])
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(10):
        trainer.train_step()
    steps = time.perf_counter() - t0
    return {"interpreter + imports": startup, "panel + model": data, "find + verify": verify, "load": load,
            "10 steps": steps}  # fmt: skip


EXIT_PROBE = """
import time, torch, stratcast.daemon.engine.run.job, stratcast.daemon.worker
x = torch.randn(1000, 1000, requires_grad=True)
(x @ x).sum().backward()
print(time.time(), flush=True)
"""


def interpreter_exit_s() -> float:
    """Seconds from a worker-like process's last line (torch imported and used) to its exit, as a parent sees it."""
    proc = subprocess.Popen([sys.executable, "-c", EXIT_PROBE], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    last = float(proc.stdout.readline())
    proc.wait()
    return time.time() - last


def report_daemon(
    args: argparse.Namespace, cycles: dict[str, list[Cycle]], parts: dict[str, dict[str, float]], exits: list[float]
) -> None:
    print(f"\n2. Stop and resume through the daemon: median of {args.repeats} cycle(s), seconds from the request")
    head = ["model", "stop -> checkpoint saved", "stop -> stopped (worker exited)", "resume -> attempt 2 spawned"]
    head += ["resume -> first progress"]
    print("| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|")
    for model, cs in cycles.items():
        row = [statistics.median(f(c) for c in cs) for f in (_saved, _stop, _spawn, _first)]
        print(f"| {model} | " + " | ".join(f"{x:.2f}" for x in row) + " |")
    print(f"  an interpreter with torch imported takes {statistics.median(exits):.2f} s to exit (measured apart)")
    for model, cs in cycles.items():
        print(f"  {model}: worker process gone at the stopped event every time: {all(c.worker_gone for c in cs)}")
        if not all(c.worker_gone for c in cs):
            print(f"  {model}: a worker was still alive at the stopped event")
        resumed_right = all(c.stop_step < c.first_step <= c.stop_step + 10 for c in cs)
        print(f"  {model}: continued from the stop's checkpoint step every time: {resumed_right}")
    names = list(next(iter(parts.values())))
    print("\nResume parts measured apart (seconds, one each; the worker does them in this order)")
    print("| model | " + " | ".join(names) + " | sum |\n" + "|---" * (len(names) + 2) + "|")
    for model, p in parts.items():
        print(f"| {model} | " + " | ".join(f"{p[n]:.2f}" for n in names) + f" | {sum(p.values()):.2f} |")


def _stop(c: Cycle) -> float:
    return c.stop_s


def _saved(c: Cycle) -> float:
    return c.saved_s


def _spawn(c: Cycle) -> float:
    return c.spawn_s


def _first(c: Cycle) -> float:
    return c.first_progress_s


if __name__ == "__main__":
    main()
