"""The zoo's leaderboard: every catalog model trained with its defaults under one protocol; writes docs/models.md.

Run from the repository root (``benchmarks`` is read as a namespace package, for M4's scoring code)::

    .venv/bin/python -m benchmarks.zoo                    # every model not measured yet, then docs/models.md
    .venv/bin/python -m benchmarks.zoo --quick            # a smoke pass: 20 steps each, nothing written to docs
    .venv/bin/python -m benchmarks.zoo --models nhits,tft --redo   # measure these again
    .venv/bin/python -m benchmarks.zoo --write-only       # docs/models.md from the results saved so far

The protocol, the same for every model (one seed; the engine's job exactly as ``stratcastd run`` and
``stratcastd backtest`` run it, so every model meets the same windows, scaler, validation split, early stopping,
combination and intervals; only the model's catalog ``train_defaults`` differ, as they do for a user):

1. **M4 Weekly**: the 359 training series (each ending on one calendar week), horizon 13, input 52, windows padded
   at the start of short series, no holdout, ``combine=none`` (the model's own forecast), scored on M4's test
   period with M4's sMAPE, MASE and OWA against the official Naive2 (checked against the published figures).
2. **EURUSD** (``../shared/data/strategies``, 6,000 strategies x 208 weeks): horizon 52, input 52, the last 52 weeks
   held out: RMSE of the raw model and of the default forecast (the combination with the baselines) against the
   zero forecast and the trailing mean, coverage of the 80% and 95% intervals on the holdout, training time and
   the process's peak memory.
3. **EURUSD walk-forward backtest**: 12 cutoffs 4 weeks apart (retrained every 4), horizon 13, input 52, each
   pick held 4 weeks: the realized profit per week of the top 1% picks of the model (raw, and the default
   forecast) against the trailing mean's, with the backtest's verdict on the default forecast's difference.

Each part of each model runs in a process of its own (its peak memory is its own; a failure is recorded and the
board goes on) and is saved to the results file as soon as it finishes, keyed by model, part and device: a rerun
measures only what is missing (``--redo`` measures again). Peak memory is the process's peak resident set on the
CPU and ``torch.cuda.max_memory_allocated`` on a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
EURUSD = DATA / "strategies" / "eurusd_2016_2019_weekly.parquet"
RESULTS = REPO / "benchmarks" / "zoo_results.json"
QUICK_RESULTS = Path(tempfile.gettempdir()) / "stratcast_zoo_quick.json"
DOC = REPO / "docs" / "models.md"
SCALING = REPO / "benchmarks" / "multivariate_scaling.json"
"""What ``benchmarks/multivariate_scaling.py --save`` measured: the multivariate models against the series."""
PARTS = ("m4", "eurusd", "backtest")
PROTOCOL = 1
"""Bump when the protocol below changes: results of another protocol are measured again."""
M4_HORIZON, INPUT = 13, 52
EURUSD_HORIZON = 52
BACKTEST = {"cutoffs": 12, "every": 4, "refit_every": 4, "horizon": 13}
QUICK_SETS = ("max_steps=20", "val_check_steps=10")


# -- one part of one model, in its own process --------------------------------------------------------------------


def run_part(part: str, model: str, device: str, quick: bool) -> dict[str, Any]:
    """Measure ``part`` of ``model``; the figures as plain data."""
    from stratcast.daemon.engine.memory.device import tune_cpu_allocator

    tune_cpu_allocator()
    sets = list(QUICK_SETS if quick else ())
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        if part == "m4":
            out = m4_part(model, device, sets, Path(tmp))
        elif part == "eurusd":
            out = eurusd_part(model, device, sets, Path(tmp))
        else:
            out = backtest_part(model, device, sets, Path(tmp))
    out["seconds"] = time.perf_counter() - began
    out["peak_mib"] = peak_mib(device)
    import torch

    out["threads"] = torch.get_num_threads()  # the CPU's training time depends on it
    return out


def peak_mib(device: str) -> float:
    """The process's peak memory in MiB: resident set on the CPU, allocated tensors on a CUDA device."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def m4_part(model: str, device: str, sets: list[str], tmp: Path) -> dict[str, Any]:
    """Train on M4 Weekly's training series, forecast the test period, score it as M4 does."""
    import numpy as np
    import pandas as pd

    from benchmarks.m4 import FREQUENCIES, check_naive2, load, mase_scales, score
    from stratcast.daemon.engine.run.job import run_job
    from stratcast.daemon.engine.spec.runspec import build_spec
    from stratcast.shared.runfiles import Outputs

    freq = FREQUENCIES["weekly"]
    ids, series, test = load(DATA / "m4", freq)
    naive2 = check_naive2(DATA / "m4", freq, ids, series, test)
    end = pd.Timestamp("2020-12-28")  # a Monday: every series ends on the same week
    frame = pd.concat(
        pd.DataFrame({"unique_id": uid, "ds": end - pd.to_timedelta(7 * np.arange(len(y))[::-1], "D"), "y": y})
        for uid, y in zip(ids, series, strict=True)
    )
    path = tmp / "m4_weekly.parquet"
    frame.to_parquet(path, index=False)
    spec = build_spec(
        data=str(path),
        model=model,
        out=str(tmp / "m4"),
        device=device,
        horizon=M4_HORIZON,
        input_size=INPUT,
        holdout=0,
        sets=["pad_start=true", "combine=none", *sets],
    )
    result = run_job(spec, log=lambda line: None)
    wide = pd.read_parquet(Outputs(result.out_dir).forecast).pivot(index="strategy", columns="step", values="forecast")
    forecast = wide.reindex(index=ids, columns=range(1, M4_HORIZON + 1)).to_numpy(np.float64)
    if np.isnan(forecast).any():
        raise RuntimeError("the forecast does not cover every M4 Weekly series and step")
    got = score(test, forecast, mase_scales(series, freq.season), (naive2.smape, naive2.mase))
    run = result.metrics["run"]
    return {"smape": got.smape, "mase": got.mase, "owa": got.owa, "train_seconds": run["train_seconds"]}


def eurusd_part(model: str, device: str, sets: list[str], tmp: Path) -> dict[str, Any]:
    """Train on EURUSD without its last 52 weeks; errors, picks and interval coverage on them."""
    from stratcast.daemon.engine.run.job import run_job
    from stratcast.daemon.engine.spec.runspec import build_spec

    spec = build_spec(
        data=str(EURUSD),
        model=model,
        out=str(tmp / "eurusd"),
        device=device,
        horizon=EURUSD_HORIZON,
        input_size=INPUT,
        holdout=EURUSD_HORIZON,
        sets=sets,
    )
    metrics = run_job(spec, log=lambda line: None).metrics
    errors = metrics["errors"]
    levels = metrics.get("intervals", {}).get("levels", {})
    run = metrics["run"]
    return {
        "rmse": {name: errors[name]["rmse"] for name in ("model", "model_raw", "zero", "trailing_mean")},
        "picks_top1pct": {name: v["top1pct"] for name, v in metrics["ranking"]["picks"].items()},
        "universe_mean": metrics["ranking"]["universe_mean"],
        "coverage": {level: levels[level]["coverage"] for level in levels},
        "train_seconds": run["train_seconds"],
        "steps": run["steps"],
        "stopped_early": run["stopped_early"],
    }


def backtest_part(model: str, device: str, sets: list[str], tmp: Path) -> dict[str, Any]:
    """The walk-forward selection backtest on EURUSD: the top 1% picks' realized profit and the verdict."""
    from stratcast.daemon.engine.backtest.job import run_backtest
    from stratcast.daemon.engine.spec.runspec import build_spec
    from stratcast.shared.protocol import BacktestOptions

    options = BacktestOptions(
        cutoffs=BACKTEST["cutoffs"], every=BACKTEST["every"], refit_every=BACKTEST["refit_every"], top=["1%"]
    )
    spec = build_spec(
        data=str(EURUSD),
        model=model,
        out=str(tmp / "backtest"),
        device=device,
        horizon=BACKTEST["horizon"],
        input_size=INPUT,
        sets=sets,
    )
    result = run_backtest(spec, options, log=lambda line: None, plan_cache=None)
    report = result.metrics["backtest"]
    size = report["sizes"]["1%"]
    levels = (report.get("intervals") or {}).get("levels", {})
    return {
        "k": size["k"],
        "mean": {name: m["mean"] for name, m in size["methods"].items()},
        "difference": size["difference"],
        "coverage": {level: levels[level]["coverage"] for level in levels},
        "train_seconds": result.metrics["run"]["train_seconds"],
    }


# -- the board ----------------------------------------------------------------------------------------------------


def key(model: str, part: str, device: str, quick: bool) -> str:
    """The results file's key of one measurement."""
    return f"{model}/{part}/{device}" + ("/quick" if quick else "")


def load_results(path: Path) -> dict[str, Any]:
    """The results saved so far (empty when there is no file)."""
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(path: Path, results: Mapping[str, Any]) -> None:
    """Write the results file atomically (a stopped board loses at most the part it was measuring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def measure(args: argparse.Namespace, models: Sequence[str]) -> dict[str, Any]:
    """Measure every missing (or ``--redo``) part of ``models``, each in a process of its own."""
    results = load_results(args.results)
    for model in models:
        for part in args.parts:
            k = key(model, part, args.device, args.quick)
            done = results.get(k)
            if done and done.get("protocol") == PROTOCOL and not args.redo and "error" not in done:
                continue
            began = time.perf_counter()
            command = [sys.executable, "-m", "benchmarks.zoo", "--one", part, "--models", model]
            command += ["--device", args.device] + (["--quick"] if args.quick else [])
            entry: dict[str, Any]
            try:
                proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                entry = {"error": f"timed out after {args.timeout:.0f} s (--timeout)"}
            else:
                entry = part_entry(proc)
            entry |= {"protocol": PROTOCOL, "measured": datetime.date.today().isoformat()}
            results[k] = entry
            save_results(args.results, results)
            status = "failed: " + entry["error"] if "error" in entry else summary_line(part, entry)
            print(f"{model:>14} {part:>8}  {time.perf_counter() - began:6.0f}s  {status}", flush=True)
    return results


def part_entry(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """A finished part's figures (the last line it printed), or its error (the last lines of what it wrote)."""
    if proc.returncode == 0:
        figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return figures
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " / ".join(tail)[-400:]}


def summary_line(part: str, r: Mapping[str, Any]) -> str:
    """One progress line for a finished part."""
    if part == "m4":
        return f"sMAPE {r['smape']:.3f} OWA {r['owa']:.3f}"
    if part == "eurusd":
        rmse = r["rmse"]
        return f"RMSE raw/zero {rmse['model_raw'] / rmse['zero']:.3f}, default/zero {rmse['model'] / rmse['zero']:.3f}"
    mean = r["mean"]
    return f"top 1% {mean['model']:+.2f} (raw {mean['model_raw']:+.2f}) vs trailing {mean['trailing_mean']:+.2f}"


# -- docs/models.md -----------------------------------------------------------------------------------------------


def ratio_cell(value: float, baseline: float) -> str:
    """``value / baseline`` to three decimals, with LOSES when the model is worse than the baseline."""
    r = value / baseline
    return f"{r:.3f}" + (" LOSES" if r > 1 else "")


def pick_cell(model: float, trailing: float) -> str:
    """A pick's realized mean per week, with LOSES when it is below the trailing mean's picks."""
    return f"{model:+.2f}" + (" LOSES" if model < trailing else "")


def board_rows(results: Mapping[str, Any], models: Iterable[str], device: str) -> list[list[str]]:
    """One leaderboard row per model: its figures, or why they are missing."""
    rows = []
    for model in models:
        m4 = results.get(key(model, "m4", device, False)) or {}
        eu = results.get(key(model, "eurusd", device, False)) or {}
        bt = results.get(key(model, "backtest", device, False)) or {}
        cells = [model]
        # OWA is already relative to Naive2: above 1 it loses
        cells += [f"{m4['smape']:.3f}", ratio_cell(m4["owa"], 1.0)] if "owa" in m4 else [missing(m4)] * 2
        if "rmse" in eu:
            rmse = eu["rmse"]
            cells += [ratio_cell(rmse["model_raw"], rmse["zero"]), ratio_cell(rmse["model_raw"], rmse["trailing_mean"])]
            cells += [ratio_cell(rmse["model"], min(rmse["zero"], rmse["trailing_mean"]))]
            cov = eu["coverage"]
            cells += [f"{100 * cov['80']:.1f} / {100 * cov['95']:.1f}" if {"80", "95"} <= set(cov) else "-"]
        else:
            cells += [missing(eu)] * 4
        if "mean" in bt:
            mean, diff = bt["mean"], bt["difference"]
            cells += [
                pick_cell(mean["model_raw"], mean["trailing_mean"]),
                pick_cell(mean["model"], mean["trailing_mean"]),
                f"{mean['trailing_mean']:+.2f}",
                f"{diff['mean']:+.2f} [{diff['lo']:+.2f}, {diff['hi']:+.2f}] {diff['verdict']}",
            ]
        else:
            cells += [missing(bt)] * 4
        train = [p["train_seconds"] for p in (m4, eu) if "train_seconds" in p]
        cells += [f"{eu['train_seconds']:.0f}" if "train_seconds" in eu else "-"]
        cells += [f"{max(p['peak_mib'] for p in (m4, eu, bt) if 'peak_mib' in p):,.0f}" if train else "-"]
        rows.append(cells)
    return rows


def missing(entry: Mapping[str, Any]) -> str:
    """The cell of a part not measured, or failed."""
    if "error" not in entry:
        return "not measured"
    return "timed out" if str(entry["error"]).startswith("timed out") else "failed"


HEADER = [
    "model",
    "M4 W sMAPE",
    "M4 W OWA",
    "RMSE raw / zero",
    "RMSE raw / trailing",
    "RMSE default / better baseline",
    "cover 80 / 95 %",
    "top 1% raw",
    "top 1% default",
    "top 1% trailing",
    "default - trailing [95% CI] verdict",
    "train s",
    "peak MiB",
]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def write_doc(results: Mapping[str, Any], path: Path, devices: Sequence[str]) -> None:
    """docs/models.md: the leaderboard per device, the reference rows, the failures, each model's paper."""
    from stratcast.daemon.zoo.catalog import CATALOG

    models = list(CATALOG)
    lines = [
        "# The model zoo and its leaderboard",
        "",
        "Generated by `.venv/bin/python -m benchmarks.zoo` (the protocol is in its docstring): every catalog model",
        "trained with its defaults, one seed, through the engine's own job and backtest. A model that loses to a",
        "naive forecast says LOSES. Rerun it to measure models not measured yet; `--redo` to measure again.",
        "",
        "Columns: M4 Weekly sMAPE and OWA (M4's formulas on the raw test file; OWA < 1 beats Naive2); on the",
        "EURUSD strategy panel (last 52 weeks held out) the raw model's RMSE over the zero forecast's and the",
        "trailing mean's, the default forecast's (the combination with the baselines) over the better baseline's,",
        "and the holdout coverage of the 80% and 95% intervals; in the walk-forward backtest (12 cutoffs) the",
        "realized profit in pips per week of the top 1% picks (60 strategies) of the raw model, of the default",
        "forecast and of the trailing mean, and the default's difference to the trailing mean's with its 95%",
        "block-bootstrap interval and verdict; the EURUSD training time (s) and the largest peak memory of the",
        "three parts (MiB: resident set on a CPU, allocated tensors on a GPU).",
        "",
        "The scaler is chosen from the data, as for a user: on M4 Weekly (level series) `revin` for every model,",
        "the models with their own loss (DeepAR, MQ-RNN, DeepNPTS, diffusion) included since 2026-12-07 (before,",
        "they trained under `robust`: DeepAR's OWA was 3.145 there, 0.977 under `revin`); on EURUSD `robust`.",
        "SOFTS's and the neural VAR's windows hold every series; the panel chooses how many a step takes (about",
        "24,000 series-windows, 1 to 32 windows): 4 on EURUSD, where a neural VAR step at 32 took about 10 s of",
        "one core, 32 on M4 Weekly's 359 series, where 4 cost accuracy (OWA at 4: SOFTS 0.863, neural VAR 0.942).",
        "",
    ]
    for device in devices:
        measured = [m for m in models if any(key(m, p, device, False) in results for p in PARTS)]
        if not measured:
            continue
        dates = sorted({v["measured"] for k, v in results.items() if k.endswith(f"/{device}") and "measured" in v})
        lines += [f"## Leaderboard on {device_label(device)}", ""]
        if dates:
            lines += [f"Measured {dates[0]} to {dates[-1]}. Models not measured yet say so.", ""]
        lines += [*table(HEADER, board_rows(results, models, device)), ""]
        failures = [(k, v["error"]) for k, v in results.items() if k.endswith(f"/{device}") and "error" in v]
        if failures:
            lines += ["Failures (the error's last lines):", ""]
            lines += [f"- `{k}`: {err}" for k, err in failures] + [""]
    lines += scaling_section(SCALING)
    lines += ["## Reference rows (published, M4 Weekly)", ""]
    lines += [
        *table(
            ["method", "sMAPE", "OWA"],
            [
                ["Naive2", "9.161", "1.000"],
                ["M4 winner (Smyl ES-RNN)", "7.817", "0.851"],
                ["M4 best on Weekly", "6.582", "0.739"],
            ],
        ),
        "",
    ]
    lines += ["## The models", ""]
    lines += table(
        ["model", "what it is", "good for", "paper", "capabilities"],
        [
            [e.name, e.summary, e.good_for, e.paper, capability_words(e.capabilities.to_dict())]
            for e in CATALOG.values()
        ],
    )
    path.write_text("\n".join(lines) + "\n")


def scaling_section(path: Path) -> list[str]:
    """The multivariate models' time and peak memory against the panel's series, from ``path`` (none: no section)."""
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    s = saved["settings"]
    rows = [
        [
            r["model"],
            f"{r['series']:,}",
            f"{r['window']:,}",
            f"{r['train']['params']:,}",
            f"{r['train']['cpu']:.3f}",
            f"{r['train']['peak_mib']:,.0f}",
            f"{r['predict']['cpu']:.3f}",
            f"{r['predict']['peak_mib']:,.0f}",
        ]
        for r in saved["rows"]
    ]
    header = [
        "model",
        "series N",
        "per window",
        "params",
        "train step CPU s",
        "train MiB",
        "predict CPU s",
        "predict MiB",
    ]
    return [
        "## Multivariate models against the number of strategies",
        "",
        f"`benchmarks/multivariate_scaling.py --save benchmarks/multivariate_scaling.json` on {s['device']} "
        f"({s['threads']} thread), default configs, input {s['input_size']}, horizon {s['horizon']}, "
        f"{s['batch']} window per training step (a step of B windows costs about B times as much). A training step",
        "reads one window (all N series, or the model's `series_per_window`); prediction covers all N series. Peak",
        "memory is the resident set above what the process held before the measured calls (MiB).",
        "",
        *table(header, rows),
        "",
    ]


def device_label(device: str) -> str:
    """The machine a device name stands for in the doc's headings."""
    return "the CPU (2 cores, the development machine)" if device == "cpu" else f"the GPU ({device})"


def capability_words(caps: Mapping[str, bool]) -> str:
    """The capabilities a model declares, in words."""
    words = [name.replace("_", "-") for name, on in caps.items() if on and name != "stackable"]
    return ", ".join(([] if caps.get("stackable") else ["not stackable"]) + words) or "univariate, stackable"


# -- command line -------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="all", help="all, or names separated by commas")
    p.add_argument("--parts", default=",".join(PARTS), help="which parts: m4,eurusd,backtest")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="20 steps per model: a smoke pass; docs are not written")
    p.add_argument("--redo", action="store_true", help="measure again what the results file already holds")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--doc", type=Path, default=DOC)
    p.add_argument("--write-only", action="store_true", help="write docs/models.md from the saved results")
    p.add_argument("--timeout", type=float, default=3 * 3600, help="seconds one part may take")
    p.add_argument("--one", choices=PARTS, help=argparse.SUPPRESS)  # internal: measure one part, print JSON
    args = p.parse_args(argv)
    args.parts = args.parts.split(",")
    if args.quick and args.results == RESULTS:
        args.results = QUICK_RESULTS
    if unknown := set(args.parts) - set(PARTS):
        p.error(f"--parts: unknown {', '.join(sorted(unknown))} (choose from {', '.join(PARTS)})")
    return args


def chosen_models(spec: str) -> list[str]:
    """The catalog models ``--models`` names, in catalog order."""
    from stratcast.daemon.zoo.catalog import CATALOG

    if spec == "all":
        return list(CATALOG)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if unknown := [n for n in names if n not in CATALOG]:
        raise SystemExit(f"--models: no model {', '.join(unknown)} (see `stratcastd models`)")
    return names


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.one:
        (model,) = chosen_models(args.models)
        print(json.dumps(run_part(args.one, model, args.device, args.quick), default=float))
        return
    models = chosen_models(args.models)
    results = measure(args, models) if not args.write_only else load_results(args.results)
    if args.quick:
        print("quick pass: docs/models.md left as it is")
        return
    devices = sorted({k.split("/")[2] for k in results if not k.endswith("/quick")} or {args.device})
    write_doc(results, args.doc, devices)
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
