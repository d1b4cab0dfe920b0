"""The walk-forward backtest's cost: trainings, total time and time per cutoff, against one run of the same spec.

A backtest with ``--cutoffs N --refit-every R`` trains ``ceil(N / R)`` models and predicts each block's cutoffs in
one batched pass, so it should cost about ``ceil(N / R)`` single runs' training plus the preparation of every
cutoff's panel. This runs the backtest and then one ``run`` of the same spec (no holdout) in the same process,
side by side, and prints both and their ratio, then the coverage of the model's bands over the cutoffs (each
calibrated on the earlier cutoffs' realized residuals).

    .venv/bin/python benchmarks/backtest.py [--data PATH] [--model nhits] [--input-size 52] [--horizon 4]
        [--cutoffs 52] [--every 1] [--refit-every 4] [--hold 1] [--set max_steps=100 ...] [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from stratcast.daemon.engine.backtest.job import run_backtest
from stratcast.daemon.engine.memory.device import tune_cpu_allocator
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.shared.backtest_report import interval_lines
from stratcast.shared.protocol import BacktestOptions

EURUSD = Path(__file__).resolve().parents[2] / "shared" / "data" / "strategies" / "eurusd_2016_2019_weekly.parquet"
"""The team folder's EURUSD report, beside the checkout (``../shared``)."""


def main() -> None:
    """Time the backtest and the single run; print the figures and the ratio."""
    args = parse_args()
    tune_cpu_allocator()
    options = BacktestOptions(
        cutoffs=args.cutoffs, every=args.every, refit_every=args.refit_every, hold=args.hold, top=["10", "1%"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        spec = build_spec(
            data=args.data,
            model=args.model,
            out=str(Path(tmp) / "backtest"),
            device=args.device,
            horizon=args.horizon,
            input_size=args.input_size,
            sets=args.set,
        )
        t = time.perf_counter()
        result = run_backtest(spec, options, log=lambda line: None, plan_cache=None)
        backtest_s = time.perf_counter() - t
        single = build_spec(
            data=args.data,
            model=args.model,
            out=str(Path(tmp) / "run"),
            device=args.device,
            horizon=args.horizon,
            input_size=args.input_size,
            sets=args.set,
        )
        t = time.perf_counter()
        run = run_job(single, log=lambda line: None, plan_cache=None)
        run_s = time.perf_counter() - t
    info = result.metrics["run"]
    trainings = info["trainings"]
    print(f"backtest: {args.model}, {args.cutoffs} cutoffs every {args.every}, refit every {args.refit_every}, ")
    print(f"  hold {args.hold}, input {args.input_size}, horizon {args.horizon}, --set {' '.join(args.set)}")
    expected = math.ceil(args.cutoffs / args.refit_every)
    print(f"trainings: {trainings} (ceil({args.cutoffs}/{args.refit_every}) = {expected})")
    print(f"backtest total: {backtest_s:.1f} s, of which training {info['train_seconds']:.1f} s")
    print(f"time per cutoff: {backtest_s / args.cutoffs:.2f} s")
    print(f"one run of the same spec: {run_s:.1f} s (training {run.fit.train_seconds:.1f} s)")
    print(f"ratio backtest / run: {backtest_s / run_s:.1f}x ({backtest_s / run_s / trainings:.2f}x per training)")
    print("\n".join(interval_lines(result.metrics["backtest"].get("intervals") or {})))


def parse_args() -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=EURUSD)
    p.add_argument("--model", default="nhits")
    p.add_argument("--input-size", type=int, default=52)
    p.add_argument("--horizon", type=int, default=4)
    p.add_argument("--cutoffs", type=int, default=52)
    p.add_argument("--every", type=int, default=1)
    p.add_argument("--refit-every", type=int, default=4)
    p.add_argument("--hold", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[], help="key=value training option or model parameter")
    return p.parse_args()


if __name__ == "__main__":
    main()
