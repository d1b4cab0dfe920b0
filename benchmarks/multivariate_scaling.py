"""Time and peak memory of the multivariate models (SOFTS, neural VAR, MTGNN, StemGNN, itransformer-x) by series.

Each model at its default config is built for windows of ``S`` series (the neural VAR with a panel of ``S``
series, one row of loadings each) and measured twice, each measurement in a fresh process so that one's peak does
not hide the next's:

* train: one AdamW step (forward, backward, update) on ``--batch`` windows of ``S`` series; the second of two steps
  is timed (the first allocates the optimizer's state), the peak covers both;
* predict: the engine's full-panel prediction (``predict_series``: every one of ``S`` series in one window, no
  gradients), timed on its second call.

Peak memory on a CPU is the process's peak resident set (``ru_maxrss``) above what it held once the model and
data were built; on CUDA it is ``torch.cuda.max_memory_allocated``. Time is wall and CPU seconds (on a shared CPU
the CPU seconds of one thread are the steadier figure). SOFTS and the neural VAR are ``O(S)``: the ``us/series``
columns (CPU time per series) should stay about flat as ``S`` grows, where a model with an ``S x S`` map grows them
with the series of a window (``itransformer-x``'s attention, flat again past its windows of 500). A training step
of ``B`` windows costs about ``B`` times the ``--batch 1`` figures (SOFTS and the neural VAR train on
as many as hold about 24,000 series-windows, 4 at 6,000 series; the others on 8).

    .venv/bin/python benchmarks/multivariate_scaling.py [--series 500 2000 6000 20000] [--models softs neuralvar]
        [--batch 1] [--input-size 104] [--horizon 52] [--outputs 1] [--device cpu] [--save FILE]

A model that trains on a subset of series per window (its catalog ``series_per_window``: MTGNN, StemGNN,
itransformer-x) is measured as the engine runs it: a training step reads one window of that many series drawn from
the ``S``, and prediction covers all ``S`` in windows of that size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from stratcast.daemon.engine.prediction.forecast import predict_series
from stratcast.daemon.zoo.catalog import build_model, get_entry, make_config

MIB = 2**20
PHASES = ("train", "predict")


def main() -> None:
    """Measure every model, number of series and phase in a child process; print the table."""
    args = parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    print(
        f"one window per step and per prediction: batch {args.batch}, L={args.input_size}, H={args.horizon}, ", end=""
    )
    print(f"O={args.outputs}, device {args.device}, {args.threads} thread(s), default configs; wall and CPU seconds")
    header = f"{'model':<14} {'S':>6} {'params':>8} | {'train s':>8} {'cpu s':>7} {'us/series':>9} {'MiB':>6}"
    print(header + f" | {'predict s':>9} {'cpu s':>7} {'us/series':>9} {'MiB':>6}")
    rows = []
    for name in args.models:
        for s in args.series:
            row = {phase: child(args, name, s, phase) for phase in PHASES}
            rows.append({"model": name, "series": s, "window": min(s, window_series(name) or s), **row})
            if args.save:
                settings = {k: getattr(args, k) for k in ("batch", "input_size", "horizon", "device", "threads")}
                args.save.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")
            cells = [f"{name:<14} {s:>6} {row['train']['params']:>8,}"]
            for phase, width in zip(PHASES, (8, 9), strict=True):
                r = row[phase]
                per_series = 1e6 * r["cpu"] / (s * (args.batch if phase == "train" else 1))
                cells.append(f"{r['seconds']:>{width}.3f} {r['cpu']:>7.3f} {per_series:>9.1f} {r['peak_mib']:>6.0f}")
            print(" | ".join(cells), flush=True)


def window_series(name: str) -> int:
    """The series per window the model trains on by default (its catalog ``series_per_window``; 0: all of them)."""
    return int(get_entry(name).train_defaults.get("series_per_window", 0))


def child(args: argparse.Namespace, name: str, series: int, phase: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its result."""
    command = [sys.executable, __file__, "--child", "--models", name, "--series", str(series), "--phase", phase]
    command += ["--batch", str(args.batch), "--input-size", str(args.input_size), "--horizon", str(args.horizon)]
    command += ["--outputs", str(args.outputs), "--device", args.device, "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One model, one number of series, one phase: seconds and peak MiB (see the module docstring)."""
    name, s, dev = args.models[0], args.series[0], torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    caps = get_entry(name).capabilities
    config = make_config(name)
    model = build_model(
        name, config, input_size=args.input_size, horizon=args.horizon, n_outputs=args.outputs, n_series=s
    ).to(dev)
    b = args.batch if args.phase == "train" else 1
    window = min(s, window_series(name) or s)
    if args.phase == "train":  # one window of `window` series drawn from the panel's s, as the engine trains
        x = torch.randn(b, window, args.input_size, device=dev)
        ids = torch.stack([torch.randperm(s, device=dev)[:window] for _ in range(b)])
    else:  # every one of the s series, `window` per window
        x = torch.randn(1, s, args.input_size, device=dev)
        ids = torch.arange(s, device=dev)[None]
    x = x * (torch.rand_like(x) < 0.6)  # weekly profits: many weeks exactly 0
    side = {"ids": ids} if caps.per_series else {}
    run = train_step(model, x, side, args) if args.phase == "train" else predict_step(model, x[0], side, window)
    base = memory_mark(dev)
    run()  # warm-up: the optimizer's state, the allocator's first blocks
    sync(dev)
    start, cpu = time.perf_counter(), time.process_time()
    run()
    sync(dev)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = peak_bytes(dev) - base
    params = sum(p.numel() for p in model.parameters())
    return {"seconds": seconds, "cpu": cpu, "peak_mib": peak / MIB, "params": params}


def train_step(model: torch.nn.Module, x: torch.Tensor, side: dict[str, torch.Tensor], args: argparse.Namespace) -> Any:
    """A closure running one AdamW step on ``x`` [B, S, L] against random targets."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    y = torch.randn(*x.shape[:2], args.horizon, args.outputs, device=x.device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = (model(x, **side) - y).square().mean()
        loss.backward()
        optimizer.step()

    return step


def predict_step(model: torch.nn.Module, x: torch.Tensor, side: dict[str, torch.Tensor], window: int) -> Any:
    """A closure running the engine's prediction over all ``S`` series of ``x`` [S, L], ``window`` per window."""
    flat = {k: v[0] for k, v in side.items()}  # [1, S] -> [S]: one window per series, as the engine passes them

    def step() -> None:
        predict_series(model, x, series=window, side=flat, precision="fp32")

    return step


def memory_mark(dev: torch.device) -> int:
    """What the process holds before the measured calls (CUDA: allocated bytes, its peak reset; CPU: peak RSS)."""
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        return torch.cuda.memory_allocated(dev)
    return peak_bytes(dev)


def peak_bytes(dev: torch.device) -> int:
    """The peak so far: CUDA's allocated bytes since :func:`memory_mark`, or the process's peak resident set."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def sync(dev: torch.device) -> None:
    """Wait for queued CUDA work before reading the clock."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def parse_args() -> argparse.Namespace:
    """Command-line options (``--child`` and ``--phase`` are for the child processes)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, nargs="+", default=[500, 2000, 6000, 20000])
    p.add_argument("--models", nargs="+", default=["softs", "neuralvar", "mtgnn", "stemgnn", "itransformer-x"])
    p.add_argument("--batch", type=int, default=1, help="windows per training step")
    p.add_argument("--input-size", type=int, default=104)
    p.add_argument("--horizon", type=int, default=52)
    p.add_argument("--outputs", type=int, default=1, help="outputs per step (the head's n_params)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (1: steady figures on a shared CPU)")
    p.add_argument(
        "--save", type=Path, help="also write the rows as JSON here (benchmarks/zoo.py puts them in the docs)"
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--phase", choices=PHASES, default="train", help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    main()
