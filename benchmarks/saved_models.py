"""A saved model's costs: save a run, load the version, score a panel of thousands of strategies without retraining.

Trains a short run (default nhits, 20 steps) on a synthetic panel (default 6,000 strategies x 208 weeks), saves it
into a temporary home, loads it (digest, manifest, weights) and scores the same panel, then prints each time, the
version's file sizes and the largest difference between the run's forecast and the scored one (0 up to float
rounding: scoring is the run's own forecast).

    .venv/bin/python benchmarks/saved_models.py [--strategies 6000] [--weeks 208] [--model nhits]
        [--set max_steps=20 ...] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.memory.device import tune_cpu_allocator
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.saved.score import score
from stratcast.daemon.engine.saved.versions import load_saved, save_run
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.shared.runfiles import Outputs


def main() -> None:
    """Train, save, load and score; print the times."""
    args = parse_args()
    tune_cpu_allocator()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "panel.parquet"
        make_strategy_panel(args.strategies, args.weeks, seed=0).to_parquet(data, index=False)
        spec = build_spec(
            data=str(data), model=args.model, out=str(root / "run"), device=args.device, horizon=args.horizon,
            input_size=args.input_size, holdout=args.horizon, sets=["max_steps=20", *args.set],
        )  # fmt: skip
        t = time.perf_counter()
        run_job(spec, log=lambda line: None)
        train = time.perf_counter() - t
        t = time.perf_counter()
        version = save_run(root / "home", root / "run", "bench")
        saving = time.perf_counter() - t
        t = time.perf_counter()
        saved = load_saved(root / "home", "bench")
        loading = time.perf_counter() - t
        t = time.perf_counter()
        score(saved, data, root / "scored", device=args.device, log=lambda line: None)
        scoring = time.perf_counter() - t
        run_fc = pd.read_parquet(Outputs(root / "run").forecast)["forecast"].to_numpy()
        scored_fc = pd.read_parquet(Outputs(root / "scored").forecast)["forecast"].to_numpy()
        sizes = {p.name: p.stat().st_size for p in version.path.iterdir()}
    print(f"panel: {args.strategies} strategies x {args.weeks} weeks, {args.model}, device {args.device}")
    print(f"run (train, calibrate, write): {train:.2f}s")
    print(f"save: {saving:.3f}s  ({', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in sorted(sizes.items()))})")
    print(f"load: {loading:.3f}s")
    print(f"score (read the panel, forecast, bands, write): {scoring:.2f}s")
    print(f"largest |run - scored| forecast: {float(np.abs(run_fc - scored_fc).max()):.3g}")


def parse_args() -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategies", type=int, default=6000)
    p.add_argument("--weeks", type=int, default=208)
    p.add_argument("--model", default="nhits")
    p.add_argument("--input-size", type=int, default=52)
    p.add_argument("--horizon", type=int, default=13)
    p.add_argument("--set", action="append", default=[], help="training or model option key=value")
    p.add_argument("--device", default="cpu")
    return p.parse_args()


if __name__ == "__main__":
    main()
