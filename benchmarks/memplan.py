"""The memory planner against Lightning's doubling-then-bisect batch-size search, side by side.

Synthetic memory curves stand in for ``measure`` (peak bytes of one training step at a micro-batch): linear,
convex (a quadratic term, as forward+backward peaks are), a large fixed optimizer peak that hides the batch term
at small sizes, and an OOM wall (the step raises ``torch.OutOfMemoryError`` above a size, whatever the budget).
For each curve and budget both searches start at ``--start`` with the same ceiling; the table gives the true
largest micro-batch that fits (by brute force), each choice, the probes (real steps) each used and how many of
them ran out of memory, and simulated seconds: probes x ``--probe-seconds`` (one step each; Lightning's default
``steps_per_trial=3`` would triple its column). Where CUDA is available the same comparison runs on a real zoo
model through ``CudaProbe``, timed for real; without CUDA the script says so and skips it.

    .venv/bin/python benchmarks/memplan.py [--start 64] [--max 8192] [--probe-seconds 2.0] [--model nhits]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from stratcast.daemon.engine.memory.planner import (
    MIB,
    CudaProbe,
    Measure,
    Probe,
    budget_bytes,
    lightning_search,
    plan_micro_batch,
)


def linear(m: int) -> int:
    return 100 * MIB + MIB * m


def convex(m: int) -> int:
    return 50 * MIB + MIB * m // 2 + int(0.002 * MIB * m * m)


def fixed_optimizer_peak(m: int) -> int:
    return max(400 * MIB, 100 * MIB + MIB * m)


def oom_wall(m: int) -> int:
    if m > 700:
        raise torch.OutOfMemoryError(f"out of memory at {m}")
    return linear(m)


CURVES: dict[str, Callable[[int], int]] = {
    "linear 100 + 1.0 m MiB": linear,
    "convex 50 + 0.5 m + 0.002 m^2 MiB": convex,
    "fixed 400 MiB optimizer peak": fixed_optimizer_peak,
    "linear, OOM above m = 700": oom_wall,
}
BUDGETS_MIB = (500, 1000, 2000, 8000)


def true_largest(curve: Measure, budget: int, cap: int) -> int:
    lo, hi = 0, cap  # every curve here is monotone, so bisect on "fits"
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            ok = curve(mid) <= budget
        except torch.OutOfMemoryError:
            ok = False
        lo, hi = (mid, hi) if ok else (lo, mid - 1)
    return lo


def ooms(probes: list[Probe] | tuple[Probe, ...]) -> int:
    return sum(p is None for _, p in probes)


def row(name: str, budget_mib: int, args: argparse.Namespace) -> str:
    curve, budget = CURVES[name], budget_mib * MIB
    best = true_largest(curve, budget, args.max)
    t0 = time.perf_counter()
    plan = plan_micro_batch(curve, budget_bytes=budget, start=args.start, max_micro_batch=args.max)
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    chosen, probes = lightning_search(curve, budget, args.start, args.max)
    t_light = time.perf_counter() - t0
    share = f"{plan.micro_batch / best:.0%}" if best else "-"
    n_plan, n_light = plan.n_probes, len(probes)
    return (
        f"| {name} | {budget_mib:,} | {best:,} | {plan.micro_batch:,} ({share}) | {n_plan} ({ooms(plan.probes)}) "
        f"| {n_plan * args.probe_seconds:.0f} | {t_plan * 1e6:.0f} | {chosen:,} | {n_light} ({ooms(probes)}) "
        f"| {n_light * args.probe_seconds:.0f} | {t_light * 1e6:.0f} |"
    )


def synthetic(args: argparse.Namespace) -> None:
    print(f"start {args.start}, ceiling {args.max}, {args.probe_seconds:g} s per probe (simulated)\n")
    print(
        "| curve | budget MiB | largest that fits | planner (share) | probes (OOMs) | sim s | search us "
        "| Lightning | probes (OOMs) | sim s | search us |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in CURVES:
        for budget_mib in BUDGETS_MIB:
            print(row(name, budget_mib, args))


def real_model(args: argparse.Namespace) -> None:
    if not torch.cuda.is_available():
        print("\nno CUDA device: the real-model comparison is skipped (synthetic curves only)")
        return
    from stratcast.daemon.zoo.catalog import build_model, make_config

    dev = torch.device("cuda")
    torch.manual_seed(0)
    net = build_model(args.model, make_config(args.model), input_size=96, horizon=24).to(dev)
    opt = torch.optim.AdamW(net.parameters())

    def step(m: int) -> None:
        x, y = torch.randn(m, 96, device=dev), torch.randn(m, 24, 1, device=dev)
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
        opt.zero_grad()

    step(args.start)
    probe = CudaProbe(net, opt, step, dev)
    budget = min(budget_bytes(torch.cuda.mem_get_info(dev)[0]), int(args.gpu_budget_gib * (1 << 30)))
    for label, search in (("planner", _plan_real), ("Lightning", _light_real)):
        t0 = time.perf_counter()
        chosen, probes = search(probe.measure, budget, args)
        seconds = time.perf_counter() - t0
        print(f"{args.model} on {torch.cuda.get_device_name(dev)}, budget {budget / MIB:,.0f} MiB: {label} chose")
        print(f"  {chosen:,} with {len(probes)} probes ({ooms(probes)} OOM) in {seconds:.2f} s")


def _plan_real(measure: Measure, budget: int, args: argparse.Namespace) -> tuple[int, list[Probe]]:
    plan = plan_micro_batch(measure, budget_bytes=budget, start=args.start, max_micro_batch=args.max)
    return plan.micro_batch, list(plan.probes)


def _light_real(measure: Measure, budget: int, args: argparse.Namespace) -> tuple[int, list[Probe]]:
    return lightning_search(measure, budget, args.start, args.max)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--start", type=int, default=64, help="first micro-batch probed")
    ap.add_argument("--max", type=int, default=8192, help="ceiling (the configured batch_size)")
    ap.add_argument("--probe-seconds", type=float, default=2.0, help="simulated cost of one probe step")
    ap.add_argument("--model", default="nhits", help="zoo model for the CUDA comparison")
    ap.add_argument("--gpu-budget-gib", type=float, default=8.0, help="cap on the CUDA budget")
    args = ap.parse_args()
    synthetic(args)
    real_model(args)


if __name__ == "__main__":
    main()
