"""A study's throughput on 1 against 2 Ray workers: the same 20-trial study through a daemon with the Ray executor.

For each worker count W (``--workers 1,2``) a fresh ``stratcastd serve --executor ray --ray-address local
--cpu-slots W`` starts its own Ray instance with W CPUs (its session folder and the shared run folders in a
temporary home), and one study is submitted to it with ``parallel=W``: each trial is a Ray task (``num_cpus=1``) that
runs the stratcast worker, its events relayed to the daemon. Every trial's torch gets one thread
(``OMP_NUM_THREADS=1`` in the daemon's environment, which its Ray workers inherit), so W workers are W cores: on a
2-core machine the pair measures what the second worker adds, after the daemon's and Ray's own costs.

The studies are the same: same seed, same fixed job, the catalog's space of ``--model``, ``pruner=none`` (every
trial trains its whole budget; a pruned trial would make the pair's work differ) and ``keep=none`` (no final run).
The first trials (TPE's random start-up) draw the same configurations; later draws depend on which trials had
finished when each was asked, so the two studies' work is alike, not identical. The table gives each study's wall
time from submit to its state ``finished``, the trials by state, trials per hour, the mean trial run's time as the
daemon recorded it (start to end of its task), the slots busy (the runs' summed time over the wall time: W when
the workers never wait for the daemon or Ray), and the ratio of each study's throughput to the first one's. A
throughput ratio above W comes from cheaper trials drawn, which the mean run time shows.

Without ``--data`` a generated panel of the EURUSD panel's shape is used. Nothing is written into the repository.

    .venv/bin/python benchmarks/ray_workers.py [--data PATH] [--trials 20] [--workers 1,2] [--model nhits]
        [--set max_steps=100 ...] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.shared.client import Client
from stratcast.shared.paths import resolve_home
from stratcast.shared.protocol import JobSpec, ListRuns, ShowStudy, Shutdown, Status, StudySpec, SubmitStudy

HEALTHY_S = 180.0
"""How long a fresh daemon's Ray instance may take to answer."""


@dataclass
class StudyFigures:
    """One study's measured figures."""

    workers: int
    wall_s: float
    states: dict[str, int]
    run_s: list[float]
    best: float | None

    @property
    def done(self) -> int:
        """Trials that ended, in any state."""
        return sum(self.states.values())

    @property
    def per_hour(self) -> float:
        """Ended trials per hour of the study's wall time."""
        return 3600.0 * self.done / self.wall_s


def main() -> None:
    args = parse_args()
    root = Path(tempfile.mkdtemp(prefix="sc-rw-"))  # short: Ray's socket paths must fit in 107 bytes
    try:
        data = panel(root, args)
        sets = list(args.set or ["max_steps=100", "val_check_steps=50"])
        job = JobSpec(
            data=data, model=args.model, horizon=args.horizon, input_size=args.input_size, holdout=args.horizon,
            device="cpu", sets=sets,
        )  # fmt: skip
        print(f"panel {data}; {args.trials} trials of {args.model}, {' '.join(sets)}; pruner none, keep none")
        figures = []
        for workers in args.workers:
            figures.append(one_study(root / f"w{workers}", job, workers, args))
            print(row(figures[-1], figures[0]), flush=True)
        print()
        print(header())
        for f in figures:
            print(row(f, figures[0]))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def one_study(home: Path, job: JobSpec, workers: int, args: argparse.Namespace) -> StudyFigures:
    """Start a Ray-executor daemon with ``workers`` CPUs on ``home``, run the study through it, shut it down."""
    home.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("STRATCAST_HOME", None)
    cmd = [
        sys.executable, "-m", "stratcast.daemon.cli", "serve", "--home", str(home), "--detach",
        "--executor", "ray", "--ray-address", "local", "--cpu-slots", str(workers),
        "--ray-temp-dir", str(home / "r"), "--shared-dir", str(home / "shared"),
    ]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    with Client(resolve_home(home), timeout_s=60.0) as client:
        try:
            wait_healthy(client)
            spec = StudySpec(
                models=[args.model], trials=args.trials, pruner="none", keep="none", parallel=workers,
                seed=args.seed, job=job, name=f"ray-workers-{workers}",
            )  # fmt: skip
            began = time.monotonic()
            study = client.call(SubmitStudy(spec=spec))["study"]["id"]
            while True:
                shown = client.call(ShowStudy(study=study))
                if shown["study"]["state"] in ("finished", "failed", "stopped"):
                    break
                time.sleep(1.0)
            wall = time.monotonic() - began
            return figures_of(client, shown, study, workers, wall)
        finally:
            client.call(Shutdown())
            wait_gone(home)


def wait_healthy(client: Client) -> None:
    deadline = time.monotonic() + HEALTHY_S
    health = "?"
    while time.monotonic() < deadline:
        health = client.call(Status())["executor_health"]
        if health == "ok":
            return
        time.sleep(0.5)
    raise SystemExit(f"the daemon's Ray instance did not become healthy in {HEALTHY_S:.0f} s: {health}")


def wait_gone(home: Path, timeout: float = 120.0) -> None:
    """Wait until no process (the daemon, its Ray instance) names ``home`` on its command line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(str(home) in " ".join(p.info["cmdline"] or ()) for p in psutil.process_iter(["cmdline"])):
            return
        time.sleep(0.5)
    print(f"warning: processes of {home} still run after {timeout:.0f} s", file=sys.stderr)


def figures_of(client: Client, shown: dict[str, Any], study: int, workers: int, wall: float) -> StudyFigures:
    states: dict[str, int] = {}
    values = []
    for t in shown["trials"]:
        states[t["state"]] = states.get(t["state"], 0) + 1
        if t.get("values"):
            values.append(t["values"][0])
    runs = [r for r in client.call(ListRuns())["runs"] if r["study"] == study]
    run_s = [r["finished"] - r["started"] for r in runs if r.get("started") and r.get("finished")]
    return StudyFigures(workers, wall, states, run_s, min(values) if values else None)


def header() -> str:
    return (
        f"{'workers':>7}  {'wall':>8}  {'trials':<24}  {'per hour':>8}  {'mean run':>8}  {'slots busy':>10}  "
        f"{'best':>7}  {'throughput vs first':>19}"
    )


def row(f: StudyFigures, first: StudyFigures) -> str:
    states = " ".join(f"{k} {v}" for k, v in sorted(f.states.items()))
    mean = f"{statistics.fmean(f.run_s):7.1f}s" if f.run_s else "       -"
    busy = sum(f.run_s) / f.wall_s  # trial runs running at once, on average: W when the workers never wait
    best = f"{f.best:7.4f}" if f.best is not None else "      -"
    return (
        f"{f.workers:>7}  {f.wall_s:7.1f}s  {states:<24}  {f.per_hour:8.1f}  {mean}  {busy:10.2f}  {best}  "
        f"{f.per_hour / first.per_hour:18.2f}x"
    )


def panel(root: Path, args: argparse.Namespace) -> str:
    if args.data:
        return str(Path(args.data).resolve())
    path = root / "panel.parquet"
    make_strategy_panel(args.strategies, args.weeks, seed=0).to_parquet(path, index=False)
    return str(path)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="long-format panel (No., week, profit); default: a generated one")
    p.add_argument("--strategies", type=int, default=6000, help="generated panel's strategies")
    p.add_argument("--weeks", type=int, default=208, help="generated panel's weeks")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts, one study each")
    p.add_argument("--model", default="nhits")
    p.add_argument("--input-size", type=int, default=52)
    p.add_argument("--horizon", type=int, default=13)
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed (all studies)")
    p.add_argument("--set", action="append", help="fixed training option (default max_steps=100, val_check_steps=50)")
    p.add_argument("--quick", action="store_true", help="300 strategies x 120 weeks, 4 trials of 10 steps")
    args = p.parse_args()
    args.workers = [int(w) for w in args.workers.split(",")]
    if args.quick:
        args.strategies, args.weeks, args.trials = 300, 120, 4
        args.set = args.set or ["max_steps=10", "val_check_steps=5"]
    return args


if __name__ == "__main__":
    main()
