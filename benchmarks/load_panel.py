"""Time ``load_panel`` on a 50,000 x 1,000 demo panel (50M rows) written to parquet in a temporary folder.

Run: ``.venv/bin/python benchmarks/load_panel.py [--strategies N] [--weeks T] [--repeats R]``. Prints the time
to generate and write the file, then, side by side, the best of R plain ``pyarrow.parquet.read_table`` calls
(the floor: reading the three columns) and of R ``load_panel`` calls, in seconds, rows per second and CPU
seconds (all threads; steadier than wall time when other work shares the machine).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stratcast.daemon.engine.data.load import load_panel
from stratcast.daemon.engine.data.synthetic import make_strategy_panel


def best_of(repeats: int, work: Callable[[], object]) -> tuple[float, float]:
    """The least wall-clock and the least CPU time (all threads) over ``repeats`` calls of ``work``."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        del result
    return min(walls), min(cpus)


def write_demo(path: Path, strategies: int, weeks: int) -> None:
    began = time.perf_counter()
    frame = make_strategy_panel(strategies, weeks)
    generated = time.perf_counter()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    print(f"generate {generated - began:.2f} s, write {time.perf_counter() - generated:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strategies", type=int, default=50_000)
    parser.add_argument("--weeks", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = args.strategies * args.weeks
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "panel.parquet"
        write_demo(path, args.strategies, args.weeks)
        read = best_of(args.repeats, lambda: pq.read_table(path))
        load = best_of(args.repeats, lambda: load_panel(path))
    print(f"{rows:,} rows, best of {args.repeats} (CPU time too: wall time suffers on a shared machine):")
    print(f"  pq.read_table  {read[0]:6.2f} s  {rows / read[0] / 1e6:6.1f}M rows/s  cpu {read[1]:6.2f} s")
    print(
        f"  load_panel     {load[0]:6.2f} s  {rows / load[0] / 1e6:6.1f}M rows/s  cpu {load[1]:6.2f} s"
        f"  ({load[0] / read[0]:.1f}x the read alone)"
    )


if __name__ == "__main__":
    main()
