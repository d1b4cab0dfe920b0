"""The combination with the baselines against the raw model: one trained model, both forecasts, side by side.

Run from the repository root (``benchmarks`` is read as a namespace package, for M4's scoring code)::

    .venv/bin/python -m benchmarks.combine eurusd --data ../shared/data/strategies/eurusd_2016_2019_weekly.parquet
    .venv/bin/python -m benchmarks.combine noise
    .venv/bin/python -m benchmarks.combine m4 --frequency weekly --model nbeats --input-size 52

``eurusd`` and ``noise`` train the job's model (default ``nhits``, input 52, horizon 52, holdout 52, the job's
default steps) exactly as ``stratcastd run`` does, then score on the holdout, from the same origins: the combined
forecast (the default), the raw model, the zero forecast and the trailing mean: RMSE (and its ratio to the better
baseline's), the realized mean profit per period of the top 10 and top 1% picks, and the fitted weights. ``noise``
does so on a generated panel without signal (heavy-tailed noise, half the weeks 0, a scale per strategy).
``m4`` trains on an M4 training file (no holdout: M4's test period is the holdout), forecasts the test period with
the raw model and with the combination, and scores both as M4 does (sMAPE, MASE, OWA against Naive2).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks.m4 import FREQUENCIES, check_naive2, load, mase_scales, score
from stratcast.daemon.engine.evaluation.holdout import evaluate_holdout
from stratcast.daemon.engine.memory.device import resolve_device
from stratcast.daemon.engine.prediction.combine import CombinedForecaster, fit_checked, split_origins
from stratcast.daemon.engine.run.build import Forecaster, Prepared, forecaster, make_model, make_trainer, prepare
from stratcast.daemon.engine.run.combining import job_forecaster, trailing_fn, validation_stats
from stratcast.daemon.engine.run.outputs import forecast_future
from stratcast.daemon.engine.spec.runspec import RunSpec, build_spec

REPO = Path(__file__).resolve().parents[1]
SHOWN = ("model", "model_raw", "zero", "trailing_mean")
LABELS = {"model": "combined (default)", "model_raw": "raw model", "zero": "zero", "trailing_mean": "trailing mean"}


def train(spec: RunSpec) -> tuple[RunSpec, Prepared, Forecaster, float]:
    """Train ``spec``'s model as a job does; (spec chosen from the data, prepared panel, raw forecaster, seconds)."""
    torch.manual_seed(spec.train.seed)
    prep = prepare(spec, resolve_device(spec.device), print)
    spec = prep.spec
    model = make_model(spec, prep.panel.n_series)
    trainer = make_trainer(spec, model, prep, None, None)
    began = time.perf_counter()
    fit = trainer.fit()
    seconds = time.perf_counter() - began
    print(f"trained to step {fit.steps} in {seconds:.0f}s (best step {fit.best_step})", flush=True)
    return spec, prep, forecaster(spec, trainer.model, prep), seconds


def holdout(args: argparse.Namespace, data: str) -> dict[str, Any]:
    """Train on ``data``, score the combined and the raw forecast on the holdout, print the table."""
    spec = build_spec(
        data=data,
        model=args.model,
        out="-",
        device=args.device,
        horizon=args.horizon,
        input_size=args.input_size,
        holdout=args.holdout,
        fill_missing="zero",
        sets=args.set,
    )
    spec, prep, base, _ = train(spec)
    began = time.perf_counter()
    combined = job_forecaster(spec, base, prep, print)
    print(f"combination fitted in {time.perf_counter() - began:.1f}s")
    metrics, _ = evaluate_holdout(spec, prep, combined)
    print_holdout(metrics)
    if args.shrinks:
        compare_shrinks(args.shrinks, spec, prep, base)
    return metrics


def compare_shrinks(shrinks: list[float], spec: RunSpec, prep: Prepared, base: Forecaster) -> None:
    """The holdout RMSE and picks of the combination refitted with each prior strength across steps."""
    halves = split_origins(validation_stats(spec, base, prep))
    print("\n| shrink across steps | RMSE vs zero | top 10 | top 1% | mean weights model/trailing/zero |")
    print("|---|---|---|---|---|")
    for shrink in shrinks:
        combo = fit_checked(*halves, shrink)
        metrics, _ = evaluate_holdout(spec, prep, CombinedForecaster(base, combo, trailing_fn(spec, prep)))
        rmse, picks = metrics["errors"]["model"]["rmse"] / metrics["errors"]["zero"]["rmse"], metrics["ranking"]
        mean = combo.to_dict()["mean"]
        print(
            f"| {shrink:g} | {rmse:.4f}x | {picks['picks']['model']['top10']:+.3f} | "
            f"{picks['picks']['model']['top1pct']:+.3f} | "
            f"{mean['model']:.3f}/{mean['trailing_mean']:.3f}/{mean['zero']:.3f} |"
        )


def print_holdout(metrics: dict[str, Any]) -> None:
    """RMSE and its ratios, top-k realized means, and the weights, as a markdown table."""
    errors, picks, ranking = metrics["errors"], metrics["ranking"]["picks"], metrics["ranking"]
    better = min(errors["zero"]["rmse"], errors["trailing_mean"]["rmse"])
    k = ranking["k"]
    print(f"\n| forecast | RMSE | vs zero | vs better baseline | top {k['top10']} | top 1% ({k['top1pct']}) |")
    print("|---|---|---|---|---|---|")
    for name in SHOWN:
        rmse = errors[name]["rmse"]
        top = picks.get(name, {})
        print(
            f"| {LABELS[name]} | {rmse:.4g} | {rmse / errors['zero']['rmse']:.4f}x | {rmse / better:.4f}x | "
            f"{top.get('top10', float('nan')):+.3f} | {top.get('top1pct', float('nan')):+.3f} |"
        )
    print(f"average strategy {ranking['universe_mean']:+.3f}; best possible top 1% {picks['oracle']['top1pct']:+.3f}")
    combo = metrics["combination"]
    weights = combo["weights"]
    every = [0, 12, 25, 38, len(weights["model"]) - 1]
    steps = ", ".join(
        f"step {i + 1}: {weights['model'][i]:.2f}/{weights['trailing_mean'][i]:.2f}/{weights['zero'][i]:.2f}"
        for i in sorted(set(min(i, len(weights["model"]) - 1) for i in every))
    )
    mean = combo["mean"]
    print(
        f"weights model/trailing/zero: mean {mean['model']:.3f}/{mean['trailing_mean']:.3f}/{mean['zero']:.3f}; "
        f"{steps}; no signal: {combo['no_signal']}"
    )
    for line in metrics["verdict"]:
        print(f"- {line}")


def noise_panel(n: int, t: int, seed: int) -> pd.DataFrame:
    """Strategies of pure noise: half the weeks without a trade, heavy tails (t, 4 dof), a log-normal scale each."""
    rng = np.random.default_rng(seed)
    scale = rng.lognormal(0, 0.5, size=(n, 1))
    values = rng.standard_t(4, size=(n, t)) * scale * (rng.random((n, t)) < 0.5)
    weeks = pd.date_range("2016-01-04", periods=t, freq="W-MON")
    return pd.DataFrame({"No.": np.repeat(np.arange(n), t), "week": np.tile(weeks, n), "profit": values.ravel()})


def noise(args: argparse.Namespace) -> None:
    """The holdout table on a generated panel without signal."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "noise.parquet"
        noise_panel(args.strategies, args.weeks, args.seed).to_parquet(path, index=False)
        print(f"noise panel: {args.strategies} strategies x {args.weeks} weeks, seed {args.seed}")
        holdout(args, str(path))


def m4(args: argparse.Namespace) -> None:
    """Train on an M4 training file; score the raw and the combined forecast of its test period."""
    freq = FREQUENCIES[args.frequency]
    data_dir = args.data_dir
    spec = build_spec(
        data=str(data_dir / f"m4_{freq.key}_train.parquet"),
        model=args.model,
        out="-",
        device=args.device,
        horizon=freq.horizon,
        input_size=args.input_size,
        sets=args.set,
    )
    spec, prep, base, seconds = train(spec)
    combined = job_forecaster(spec, base, prep, print)
    ids, series, test = load(data_dir, freq)
    naive2 = check_naive2(data_dir, freq, ids, series, test)
    order = pd.Index([str(i) for i in prep.panel.ids]).get_indexer(pd.Index(ids))  # panel row of each M4 series
    if (order < 0).any():
        raise SystemExit("the run dropped M4 series (too short): lower --input-size")
    scales = mase_scales(series, freq.season)
    print(f"\nM4 {freq.key}, {args.model}, input {spec.train.input_size}, {seconds:.0f}s of training")
    print("| forecast | sMAPE | MASE | OWA |\n|---|---|---|---|")
    for label, fn in (("raw model", base), ("combined (default)", combined)):
        fc = forecast_future(spec, prep, fn).cpu().double().numpy()[order]
        got = score(test, fc, scales, (naive2.smape, naive2.mase))
        print(f"| {label} | {got.smape:.3f} | {got.mase:.3f} | {got.owa:.3f} |")


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("eurusd", "noise", "m4"))
    parser.add_argument("--data", default=str(REPO / ".." / "shared/data/strategies/eurusd_2016_2019_weekly.parquet"))
    parser.add_argument("--data-dir", type=Path, default=REPO / ".." / "shared" / "data" / "m4")
    parser.add_argument("--frequency", choices=list(FREQUENCIES), default="weekly")
    parser.add_argument("--model", default="nhits")
    parser.add_argument("--input-size", type=int, default=52)
    parser.add_argument("--horizon", type=int, default=52)
    parser.add_argument("--holdout", type=int, default=52)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE training or model options")
    parser.add_argument("--strategies", type=int, default=2000, help="noise: strategies")
    parser.add_argument("--weeks", type=int, default=208, help="noise: weeks")
    parser.add_argument("--seed", type=int, default=0, help="noise: the panel's seed")
    parser.add_argument(
        "--shrinks", type=float, nargs="*", default=[], help="also score the fit with these SHRINK values"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    return parser.parse_args()


def main() -> None:
    """Run the chosen comparison."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    if args.what == "eurusd":
        holdout(args, args.data)
    elif args.what == "noise":
        noise(args)
    else:
        m4(args)
    print(f"\ntotal {time.perf_counter() - began:.0f}s, torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
