"""The conformal calibration's time at the EURUSD job's size: the ACI walk in NumPy against the same in torch.

A job calibrates its intervals on every validation origin, then again with the holdout's (6,000 strategies x 103
origins x 52 steps at the EURUSD defaults); the ACI walk takes one finite-sample quantile of the growing prefix
of scores per origin, step and level: about 10,000 k-th smallest values of up to 600,000 scores. This times
:func:`~stratcast.daemon.engine.evaluation.conformal.calibrate` on synthetic residuals of that shape with the
walk in NumPy (``argsort``, ``partition``: what the engine does) and in torch (``unique``, ``argsort``,
``kthvalue``: what it did), side by side in one process, and checks both give the same intervals.

    .venv/bin/python benchmarks/conformal_speed.py [--strategies 6000] [--origins 103] [--steps 52]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import Tensor

from stratcast.daemon.engine.evaluation import conformal


def torch_quantile(scores: Tensor, alpha: float) -> float:
    """The finite-sample quantile through ``torch.kthvalue`` (the engine's earlier way)."""
    n = scores.numel()
    rank = math.ceil((n + 1) * (1 - min(max(alpha, 0.0), 1.0)) - 1e-9)
    if rank > n or n == 0:
        return math.inf
    if rank < 1:
        return 0.0
    return float(scores.kthvalue(rank).values)


def torch_aci_alpha(scores: Tensor, origin: Tensor, alpha: float, gamma: float) -> float:
    """The ACI walk in torch (the engine's earlier way)."""
    origins, inverse = torch.unique(origin, sorted=True, return_inverse=True)
    if origins.numel() < 2:
        return alpha
    ordered = torch.argsort(inverse, stable=True)
    srt, groups = scores[ordered], inverse[ordered]
    bounds = torch.searchsorted(groups, torch.arange(origins.numel() + 1))
    a = alpha
    for t in range(1, origins.numel()):
        q = torch_quantile(srt[: bounds[t]], a)
        a = a + gamma * (alpha - float((srt[bounds[t] : bounds[t + 1]] > q).double().mean()))
    return a


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategies", type=int, default=6000)
    p.add_argument("--origins", type=int, default=103)
    p.add_argument("--steps", type=int, default=52)
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    n, t, h = args.strategies, args.origins, args.steps
    rows = torch.arange(n).repeat(t)  # [M] strategy of each row, origin-major
    order = torch.arange(t).repeat_interleave(n)
    realized = torch.randn(n * t, h, generator=g, dtype=torch.float64) * (1 + rows[:, None] % 7)
    forecast = torch.zeros_like(realized)
    mask = (order[:, None] + torch.arange(h)) < t + h // 2  # the last origins see fewer steps, as a job's do
    scale = torch.ones(n * t, dtype=torch.float64)

    def timed() -> tuple[float, conformal.Conformal]:
        began = time.perf_counter()
        out = conformal.calibrate(forecast, realized, mask, rows, scale, order=order, n_series=n)
        return time.perf_counter() - began, out

    numpy_s, numpy_out = timed()
    engine = conformal.finite_sample_quantile, conformal.aci_alpha
    conformal.finite_sample_quantile, conformal.aci_alpha = torch_quantile, torch_aci_alpha
    try:
        torch_s, torch_out = timed()
    finally:
        conformal.finite_sample_quantile, conformal.aci_alpha = engine
    same = torch.equal(numpy_out.pooled, torch_out.pooled) and torch.equal(numpy_out.own, torch_out.own)
    threads = torch.get_num_threads()
    print(f"calibrate, {n} strategies x {t} origins x {h} steps, ACI walk, levels 80/95, {threads} torch threads")
    print(f"  NumPy walk {numpy_s:7.1f} s")
    print(f"  torch walk {torch_s:7.1f} s")
    print(f"  speed-up x{torch_s / numpy_s:.1f}; same intervals: {same}")


if __name__ == "__main__":
    main()
