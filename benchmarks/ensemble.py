"""An ensemble of seeds (or models) against its members: does averaging before the combination help?

Run from the repository root::

    .venv/bin/python -m benchmarks.ensemble --model nhits --ensemble 3 --set max_steps=300

(``--data`` defaults to the EURUSD report beside the checkout, ``../shared/data/strategies``.)

It runs the job exactly as ``stratcastd run --ensemble`` does (members trained in turn, their mean combined with
the baselines on validation) into a temporary folder, then prints the holdout table from its ``metrics.json``: each
member alone, the raw ensemble (the members' mean), the combined ensemble (the job's forecast), the zero forecast
and the trailing mean: RMSE, its ratio to the zero forecast's, and the realized mean profit per period of the top
10 and top 1% picks.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from stratcast.daemon.engine.evaluation.skill import MEMBER_PREFIX
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.shared.cli import ensemble_option
from stratcast.shared.jobargs import ensemble_members

REPO = Path(__file__).resolve().parents[1]
LABELS = {
    "model": "ensemble, combined (the job's forecast)",
    "model_raw": "ensemble, raw (members' mean)",
    "zero": "zero",
    "trailing_mean": "trailing mean",
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the ensemble job into a temporary folder; its ``metrics.json`` content."""
    members = ensemble_members(ensemble_option(args.ensemble), args.model)
    with tempfile.TemporaryDirectory() as out:
        spec = build_spec(
            data=args.data,
            model=members[0],
            out=out,
            device=args.device,
            horizon=args.horizon,
            input_size=args.input_size,
            holdout=args.holdout,
            fill_missing="zero",
            sets=args.set,
            ensemble=members,
        )
        began = time.perf_counter()
        result = run_job(spec, log=print)
        print(f"job finished in {time.perf_counter() - began:.0f}s")
        return result.metrics


def print_table(metrics: dict[str, Any]) -> None:
    """The holdout table as markdown: members first, then the ensemble and the baselines."""
    errors, ranking = metrics["errors"], metrics["ranking"]
    picks, k, zero = ranking["picks"], ranking["k"], errors["zero"]["rmse"]
    names = [n for n in errors if n.startswith(MEMBER_PREFIX)] + [n for n in LABELS if n in errors]
    print(f"\n| forecast | RMSE | vs zero | top {k['top10']} | top 1% ({k['top1pct']}) |")
    print("|---|---|---|---|---|")
    for name in names:
        rmse, top = errors[name]["rmse"], picks.get(name, {})
        print(
            f"| {LABELS.get(name, name)} | {rmse:.4g} | {rmse / zero:.4f}x | "
            f"{top.get('top10', float('nan')):+.3f} | {top.get('top1pct', float('nan')):+.3f} |"
        )
    print(f"average strategy {ranking['universe_mean']:+.3f}; best possible top 1% {picks['oracle']['top1pct']:+.3f}")
    for m in metrics["ensemble"]["members"]:
        print(f"{m['label']}: seed {m['seed']}, {m['steps']} steps (best {m['best_step']}), {m['train_seconds']:.0f}s")
    mean = metrics["combination"].get("mean")
    if mean:
        print(f"weights model/trailing/zero: mean {mean['model']:.3f}/{mean['trailing_mean']:.3f}/{mean['zero']:.3f}")
    for line in metrics["verdict"]:
        print(f"- {line}")


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / ".." / "shared/data/strategies/eurusd_2016_2019_weekly.parquet"))
    parser.add_argument("--model", default="nhits")
    parser.add_argument("--ensemble", default="3", help="N seeds of --model, or models such as nhits,dlinear")
    parser.add_argument("--input-size", type=int, default=52)
    parser.add_argument("--horizon", type=int, default=52)
    parser.add_argument("--holdout", type=int, default=52)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE training options")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    return parser.parse_args()


def main() -> None:
    """Run the ensemble and print the table."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print_table(run(args))


if __name__ == "__main__":
    main()
