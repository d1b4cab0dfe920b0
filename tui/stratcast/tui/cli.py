"""``stratcast``: the client. For now it reads a finished run's folder; the daemon client and TUI build on it.

It never imports torch: results are read from ``metrics.json`` and ``summary.parquet``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stratcast.shared.errors import ExitCode
from stratcast.shared.report import skill_table, top_table


def build_parser() -> argparse.ArgumentParser:
    """The ``stratcast`` command line."""
    parser = argparse.ArgumentParser(prog="stratcast", description="Inspect stratcast runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("results", help="print a finished run's top strategies and skill table")
    show.add_argument("run_dir", type=Path, help="the run's output folder (stratcastd run --out)")
    show.add_argument("--top", type=int, default=10, help="how many strategies to list")
    show.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stratcast``."""
    args = build_parser().parse_args(argv)
    try:
        metrics, top = read_results(args.run_dir, args.top)
    except (OSError, ValueError, KeyError) as exc:
        print(f"stratcast: error: {args.run_dir} is not a finished run folder: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if args.json:
        print(json.dumps({"metrics": metrics, "top": top}, indent=2, default=str))
    else:
        print(top_table(top, args.top))
        if "errors" in metrics:
            print()
            print(skill_table(metrics))
            for line in metrics.get("verdict", []):
                print(f"- {line}")
    return ExitCode.OK


def read_results(run_dir: Path, limit: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``metrics.json`` and the first ``limit`` rows of ``summary.parquet`` by rank."""
    import pyarrow.parquet as pq

    metrics = json.loads((run_dir / "metrics.json").read_text())
    summary = pq.read_table(run_dir / "summary.parquet").to_pylist()
    summary.sort(key=lambda r: r["rank"])
    return metrics, summary[:limit]


if __name__ == "__main__":
    sys.exit(main())
