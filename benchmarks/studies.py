"""Optuna studies of N-HiTS on a strategy panel: pruning, cached memory plans and out-of-memory recovery, side by side.

Runs studies one after another in this process, trial after trial, as ``stratcastd tune`` does (``ask``,
:func:`~stratcast.daemon.engine.study.local.run_trial_locally`, told into a journal in a temporary folder), all with
the same seed, the same space (the catalog's N-HiTS space) and the same fixed job, so that their first trials draw
the same configurations:

* ``pruned``: TPE and the median pruner (the default), the memory plan cache shared by all trials;
* ``unpruned``: the same without pruning;
* ``no-cache``: the same as ``pruned`` with no plan cache (every trial plans from scratch), ``--plan-trials``
  trials: its wall time is compared with ``pruned``'s first as many trials. Off CUDA there is nothing to plan (a
  CPU run trains the whole batch, plan source ``cpu``), so this pair measures only what the cache costs;
* ``oom``: no pruner, ``--oom-trials`` trials over batch sizes up to twice what the fault-injection testing aid
  (``STRATCAST_FAULT_OOM_ABOVE``, :mod:`stratcast.daemon.engine.memory.oom`) lets through: every trial must end
  (COMPLETE, or FAIL ``oom`` beyond recovery) and the study must never abort; each trial's recoveries (the trainer's
  halvings of the micro-batch) are counted.

Each trial prints one line (its time, and the study's so far); the table at the end gives each study's wall time,
its trials by state, the best value (holdout RMSE) and the ratios, over the trials both studies finished. Ctrl-C
stops the study running and still prints the table. Without ``--data`` a generated panel of the EURUSD panel's
shape (6,000 strategies x 208 weeks) is used; ``--subset N`` keeps the first N strategies of ``--data``. Nothing is
written into the repository.

    .venv/bin/python benchmarks/studies.py [--data PATH] [--trials 20] [--plan-trials N] [--oom-trials 8]
        [--subset N] [--set max_steps=50 ...] [--parts pruned,unpruned,no-cache,oom] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from optuna.trial import TrialState

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.memory.device import tune_cpu_allocator
from stratcast.daemon.engine.memory.oom import FAULT_ENV
from stratcast.daemon.engine.study.local import run_trial_locally
from stratcast.daemon.engine.study.objectives import parse_objectives
from stratcast.daemon.engine.study.space import Space, build_space
from stratcast.daemon.engine.study.study import ask, best, open_storage, open_study, pruner_warmup, trial_line
from stratcast.shared.events import RanOutOfMemory
from stratcast.shared.protocol import JobSpec
from stratcast.shared.runfiles import PLAN_CACHE, Outputs

PARTS = ("pruned", "unpruned", "no-cache", "oom")
ID = "No."
"""The strategy column of the EURUSD panel and of generated ones."""
OOM_BATCHES = [512, 1024, 2048]
"""The OOM study's batch sizes; the aid lets through half the largest, so 2048 needs twice what is allowed."""


@dataclass
class StudyRun:
    """One study's figures."""

    label: str
    seconds: float = 0.0
    states: Counter[str] = field(default_factory=Counter)
    best: float | None = None
    trial_seconds: list[float] = field(default_factory=list)
    ooms: list[int] = field(default_factory=list)
    """Out-of-memory events per trial."""
    sources: Counter[str] = field(default_factory=Counter)
    """Memory plan sources (``cpu``, ``probe``, ``cache``, ``fixed``) of the trials that trained to the end."""
    aborts: int = 0
    """Trials whose runner raised instead of telling the study (each would have ended ``stratcastd tune``)."""
    interrupted: bool = False
    """Ctrl-C stopped the study: its figures cover the trials finished before."""

    def first(self, n: int) -> float:
        """Wall time of the first ``n`` trials."""
        return sum(self.trial_seconds[:n])


def run_study(
    label: str,
    fixed: JobSpec,
    space: Space,
    root: Path,
    *,
    trials: int,
    pruner: str,
    cache: bool,
    args: argparse.Namespace,
) -> StudyRun:
    """Run ``trials`` trials of a fresh study ``label`` under ``root``, printing one line each."""
    folder = root / label
    study = open_study(
        open_storage(str(folder / "journal.log"), folder), label, ["minimize"], "tpe", pruner, seed=args.seed,
        warmup_steps=pruner_warmup(fixed),
    )  # fmt: skip
    objectives = parse_objectives("holdout-rmse")
    out, plans = StudyRun(label), folder / PLAN_CACHE if cache else None
    print(f"\n{label}: {trials} trials, pruner {pruner}, plan cache {'shared' if cache else 'none'}")
    t0 = time.perf_counter()
    for _ in range(trials):
        events: list[RanOutOfMemory] = []
        t = time.perf_counter()
        try:
            plan = ask(study, space, fixed, device=args.device)
            run_trial_locally(
                study, plan, fixed, objectives, out=folder / "trials", device=args.device, log=lambda line: None,
                plan_cache=plans, on_oom=events.append,
            )  # fmt: skip
        except KeyboardInterrupt:  # the trial is told FAIL (killed); the table still comes
            print("  interrupted: the figures cover the trials finished before")
            out.interrupted = True
            break
        except Exception as exc:  # counted, not raised: whether a study aborts is what this part measures
            out.aborts += 1
            print(f"  study aborted by a trial: {type(exc).__name__}: {exc}")
            continue
        out.trial_seconds.append(time.perf_counter() - t)
        out.ooms.append(len(events))
        told = study.trials[plan.number]
        out.states[told.state.name] += 1
        source = plan_source(folder / "trials" / f"trial-{plan.number}")
        if source is not None:
            out.sources[source] += 1
        shrinks = ", ".join(f"{e.old_micro_batch}->{e.new_micro_batch or 'none'}" for e in events)
        ooms = f" OOM x{len(events)} ({shrinks})" if events else ""
        spent = f"{out.trial_seconds[-1]:.1f}s, {sum(out.trial_seconds):.0f}s in all"
        print(f"  {trial_line(told)} [{spent}]{ooms}", flush=True)
    out.seconds = time.perf_counter() - t0
    top = best(study)
    out.best = top[0].values[0] if top else None
    return out


def plan_source(trial_folder: Path) -> str | None:
    """The memory plan's source in a trial's ``metrics.json`` (None: the trial wrote none, pruned or failed)."""
    metrics = Outputs(trial_folder / "holdout").metrics
    if not metrics.exists():
        return None
    return str(json.loads(metrics.read_text())["memory_plan"]["source"])


@contextmanager
def fault_injection(limit: int) -> Iterator[None]:
    """The OOM testing aid on (micro-batches above ``limit`` windows fail as out of memory) for the block."""
    before = os.environ.get(FAULT_ENV)
    os.environ[FAULT_ENV] = str(limit)
    try:
        yield
    finally:
        if before is None:
            del os.environ[FAULT_ENV]
        else:
            os.environ[FAULT_ENV] = before


def row(run: StudyRun, reference: StudyRun | None = None) -> str:
    """A table row; ``reference`` gives the ratio column (over the trials both finished: the same first ones)."""
    done = len(run.trial_seconds)
    counts = "/".join(str(run.states[s.name]) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    best_value = "-" if run.best is None else f"{run.best:.4f}"
    ratio = "-"
    if reference is not None and (n := min(done, len(reference.trial_seconds))):
        ratio = f"{run.first(n) / reference.first(n):.2f}x ({n})"
    sources = ", ".join(f"{k} {v}" for k, v in sorted(run.sources.items())) or "-"
    return (
        f"| {run.label} | {done} | {run.seconds:.1f} | {run.seconds / max(done, 1):.1f} | {counts} | {best_value} "
        f"| {ratio} | {sum(run.ooms)} | {sources} | {run.aborts} |"
    )


def main() -> None:
    """Build the panel and the job, run the studies asked for, print the table."""
    args = parse_args()
    tune_cpu_allocator()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"--parts: {', '.join(sorted(unknown))} not among {', '.join(PARTS)}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data, shape = panel(root, args)
        fixed = JobSpec(
            data=str(data), model="nhits", horizon=args.horizon, input_size=args.input_size, holdout=args.horizon,
            device=args.device, sets=list(args.set),
        )  # fmt: skip
        print(f"panel: {shape}; N-HiTS, input {args.input_size}, horizon {args.horizon}; fixed: {fixed.sets}")
        runs: list[tuple[StudyRun, str]] = []
        for part in parts:
            runs.append((run_part(part, fixed, root, args), part))
            if runs[-1][0].interrupted:
                break
    by_part = {part: run for run, part in runs}
    print(
        "\n| study | trials | wall s | s per trial | complete/pruned/failed | best holdout RMSE | wall vs pruned "
        "(trials) | OOM events | plan sources | aborts |"
    )
    print("|---|--:|--:|--:|---|--:|--:|--:|---|--:|")
    for run, part in runs:
        reference = by_part.get("pruned") if part in ("unpruned", "no-cache") else None
        print(row(run, reference))


def run_part(part: str, fixed: JobSpec, root: Path, args: argparse.Namespace) -> StudyRun:
    """Run the study of one part (see the module docstring)."""
    space = build_space(["nhits"], fixed=fixed.sets)
    if part == "pruned":
        return run_study(part, fixed, space, root, trials=args.trials, pruner="median", cache=True, args=args)
    if part == "unpruned":
        return run_study(part, fixed, space, root, trials=args.trials, pruner="none", cache=True, args=args)
    if part == "no-cache":
        n = args.plan_trials or args.trials
        return run_study(part, fixed, space, root, trials=n, pruner="median", cache=False, args=args)
    overrides = {"train": {"batch_size": {"choices": OOM_BATCHES}}}
    limit = max(OOM_BATCHES) // 2
    print(f"\n{FAULT_ENV}={limit}: batch sizes {OOM_BATCHES}")
    with fault_injection(limit):
        space = build_space(["nhits"], fixed=fixed.sets, overrides=overrides)
        return run_study(part, fixed, space, root, trials=args.oom_trials, pruner="none", cache=True, args=args)


def panel(root: Path, args: argparse.Namespace) -> tuple[Path, str]:
    """The panel's file (``--data``, its first ``--subset`` strategies, or a generated one) and a description."""
    path = root / "panel.parquet"
    if args.data is None:
        make_strategy_panel(args.strategies, args.weeks, seed=0).to_parquet(path, index=False)
        return path, f"generated, {args.strategies} strategies x {args.weeks} weeks"
    if not args.subset:
        return Path(args.data), args.data
    frame = pd.read_parquet(args.data)
    ids = frame[ID].drop_duplicates().sort_values().iloc[: args.subset]
    frame[frame[ID].isin(ids)].to_parquet(path, index=False)
    return path, f"{args.data}, its first {len(ids)} strategies"


def parse_args() -> argparse.Namespace:
    """The command line; ``--quick`` shrinks everything to a smoke run of a minute or two."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="long-format panel (No., week, profit); default: a generated one")
    p.add_argument("--subset", type=int, default=0, help="keep the first N strategies of --data (0: all)")
    p.add_argument("--strategies", type=int, default=6000, help="generated panel's strategies")
    p.add_argument("--weeks", type=int, default=208, help="generated panel's weeks")
    p.add_argument("--trials", type=int, default=20, help="trials of the pruned and unpruned studies")
    p.add_argument("--plan-trials", type=int, help="trials of the no-cache study (default --trials)")
    p.add_argument("--oom-trials", type=int, default=8, help="trials of the OOM study")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    p.add_argument("--input-size", type=int, default=52)
    p.add_argument("--horizon", type=int, default=13)
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed (all studies)")
    p.add_argument("--set", action="append", help="fixed training option (default max_steps=50, val_check_steps=10)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="200 strategies x 120 weeks, 3 trials, 10 steps")
    args = p.parse_args()
    args.set = args.set or ["max_steps=50", "val_check_steps=10"]
    if args.quick:
        args.strategies, args.weeks, args.trials, args.oom_trials = 200, 120, 3, 3
        args.set = ["max_steps=10", "val_check_steps=5"]
    return args


if __name__ == "__main__":
    main()
