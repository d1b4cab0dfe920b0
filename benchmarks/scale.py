"""A 50,000-strategy x 1,000-week panel through batch mode and the backtest: time and peak memory of each phase.

Generates the panel (``make_strategy_panel``: zero-heavy weekly profits) into a temporary parquet file, then runs
each phase in a process of its own, so that each phase's peak resident memory is its own (``ru_maxrss`` of that
process):

* ``load``: ``load_panel`` (read, validate, the dense ``[N, T]`` array);
* ``run``: one batch-mode run (``run_job``: preparation, training for ``--set max_steps``, the combination,
  interval calibration, holdout evaluation, the future forecast and its outputs);
* ``backtest``: the walk-forward backtest of the same spec (``--cutoffs`` every ``--every``, refit every
  ``--refit-every``).

For each it prints wall seconds, CPU seconds, peak RSS and, for the run and the backtest, their own training
seconds; the projection of these figures onto an 8-GPU server and a 4-node cluster is in docs/benchmarks.md. Nothing
is written into the repository.

    .venv/bin/python benchmarks/scale.py [--strategies 50000] [--weeks 1000] [--model dlinear] [--input-size 104]
        [--horizon 13] [--cutoffs 8] [--every 13] [--refit-every 4] [--set max_steps=200 ...]
        [--phases load,run,backtest]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

PHASES = ("load", "run", "backtest")


def phase(name: str, args: argparse.Namespace, data: Path, out: Path, results: Any) -> None:
    """Run one phase in this (child) process; put (name, wall s, CPU s, peak RSS bytes, training s) on ``results``."""
    from stratcast.daemon.engine.backtest.job import run_backtest
    from stratcast.daemon.engine.data.load import load_panel
    from stratcast.daemon.engine.memory.device import tune_cpu_allocator
    from stratcast.daemon.engine.run.job import run_job
    from stratcast.daemon.engine.spec.runspec import build_spec
    from stratcast.shared.protocol import BacktestOptions

    tune_cpu_allocator()
    began = time.perf_counter()

    def log(line: str) -> None:
        if args.verbose:  # with the time and the RSS so far, to see which step holds the memory
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(f"  [{name} {time.perf_counter() - began:6.1f}s peak {rss:5.1f} GiB] {line}", flush=True)

    spec = build_spec(
        data=str(data), model=args.model, out=str(out / name), device=args.device, horizon=args.horizon,
        input_size=args.input_size, holdout=args.horizon, sets=args.set,
    )  # fmt: skip
    wall, cpu = time.perf_counter(), time.process_time()
    train = 0.0
    if name == "load":
        load_panel(spec.data)
    elif name == "run":
        train = run_job(spec, log=log, plan_cache=None).fit.train_seconds
    else:
        options = BacktestOptions(
            cutoffs=args.cutoffs, every=args.every, refit_every=args.refit_every, top=["100", "1%"]
        )
        result = run_backtest(spec, options, log=log, plan_cache=None)
        train = float(result.metrics["run"]["train_seconds"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    results.put((name, time.perf_counter() - wall, time.process_time() - cpu, peak, train))


def main() -> None:
    """Write the panel, run the phases asked for one process each, print the table."""
    from stratcast.daemon.engine.data.synthetic import make_strategy_panel

    args = parse_args()
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if unknown := set(phases) - set(PHASES):
        raise SystemExit(f"--phases: {', '.join(sorted(unknown))} not among {', '.join(PHASES)}")
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "panel.parquet"
        t = time.perf_counter()
        make_strategy_panel(args.strategies, args.weeks, seed=0).to_parquet(data, index=False)
        print(
            f"panel: {args.strategies:,} strategies x {args.weeks:,} weeks, written in {time.perf_counter() - t:.1f} s"
        )
        print(f"model {args.model}, input {args.input_size}, horizon {args.horizon}, --set {' '.join(args.set)}")
        print(f"backtest: {args.cutoffs} cutoffs every {args.every}, refit every {args.refit_every}\n")
        print("| phase | wall s | CPU s | peak RSS GiB | training s |")
        print("|---|--:|--:|--:|--:|")
        for name in phases:
            results = ctx.Queue()
            child = ctx.Process(target=phase, args=(name, args, data, Path(tmp), results))
            child.start()
            child.join()
            if child.exitcode != 0:
                print(f"| {name} | failed (exit code {child.exitcode}) | | | |")
                continue
            _, wall, cpu, peak, train = results.get()
            print(f"| {name} | {wall:.1f} | {cpu:.1f} | {peak / 2**30:.2f} | {train:.1f} |", flush=True)


def parse_args() -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategies", type=int, default=50_000)
    p.add_argument("--weeks", type=int, default=1_000)
    p.add_argument("--model", default="dlinear")
    p.add_argument("--input-size", type=int, default=104)
    p.add_argument("--horizon", type=int, default=13)
    p.add_argument("--cutoffs", type=int, default=8)
    p.add_argument("--every", type=int, default=13)
    p.add_argument("--refit-every", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[], help="key=value training option or model parameter")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}")
    p.add_argument("--verbose", action="store_true", help="print each phase's log lines with the time and peak RSS")
    args = p.parse_args()
    args.set = args.set or ["max_steps=200"]
    return args


if __name__ == "__main__":
    main()
