"""``stratcastd tune``: an Optuna study run in the foreground, its trials one after another in this process.

``stratcastd tune --data PATH --model NAME[,NAME...] [--trials N] [--timeout S] [--objective ...] [--sampler ...]
[--pruner ...] [--space FILE] [--storage URL] [--study NAME] [--keep all-data|holdout|none] [--save-as NAME]``
plus every option of ``stratcastd run`` (they fix the trials' job; ``--set`` fixes a setting, and ``nhits.x=...``
fixes one model's) and the backtest's options (for a backtest objective); the study's options are ``stratcast
tune``'s (:func:`~stratcast.shared.jobargs.add_study_options`). The study lives in the storage (default
``HOME/studies/journal.log``), so running the same command again goes on with it; trials left RUNNING by a killed
command are told FAIL (``crashed``) first, so the command must be the study's only client while it runs (two at once
on one study would reap each other's trials). Each trial prints one line; the best trial (or the Pareto front) comes
last. Then, as the daemon's studies do, the best configuration is kept (``--keep``): trained on all the data (or
with the trials' holdout) in ``OUT/best`` and saved as the next version of ``--save-as`` (default: the study's name)
in the home's saved models. See :mod:`stratcast.daemon.engine.study`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from stratcast.shared.errors import ExitCode
from stratcast.shared.jobargs import (
    add_backtest_options,
    add_job_options,
    add_study_options,
    backtest_from_args,
    job_from_args,
)
from stratcast.shared.paths import resolve_home

COMMANDS = ("tune",)
"""The top-level commands this module adds."""


def add_tune_command(sub: Any, program: str) -> None:
    """Add ``tune`` to ``stratcastd``'s subcommands ``sub``."""
    tune = sub.add_parser("tune", help="run an Optuna study in the foreground, trial after trial (no server)")
    add_job_options(tune, program=program)
    study = tune.add_argument_group("study")
    add_study_options(study)
    study.add_argument("--out", help="folder of the trials' outputs (default ./STUDY)")
    study.add_argument("--home", help="the daemon's home folder (default: $STRATCAST_HOME or XDG)")
    add_backtest_options(tune.add_argument_group("backtest (for a backtest objective)"))


def tune_command(args: argparse.Namespace) -> int:
    """Run the study; exit 3 for a bad space, objective or option, 0 when every trial was asked and told."""
    from stratcast.daemon.engine.memory.device import tune_cpu_allocator
    from stratcast.daemon.engine.study.objectives import ObjectiveError, parse_objectives
    from stratcast.daemon.engine.study.space import SpaceError, build_space, load_overrides
    from stratcast.daemon.engine.study.study import StudyError, open_storage, open_study, pruner_warmup

    tune_cpu_allocator()
    models = [m.strip().lower() for m in args.model.split(",") if m.strip()]
    if args.ensemble:
        print("stratcastd: error: a study tunes single models: drop --ensemble", file=sys.stderr)
        return ExitCode.BAD_INPUT
    try:
        objectives = parse_objectives(args.objective)
        overrides = load_overrides(args.space) if args.space else None
        space = build_space(models, fixed=args.set, overrides=overrides)
        several = len(objectives) > 1
        name = args.study or f"tune-{'-'.join(models)}"
        storage = open_storage(args.storage, resolve_home(args.home).state)
        study = open_study(
            storage,
            name,
            [o.direction for o in objectives],
            args.sampler or ("nsga2" if several else "tpe"),
            args.pruner or ("none" if several else "median"),
            seed=args.seed,
            warmup_steps=pruner_warmup(job_from_args(args)),
        )
    except (SpaceError, ObjectiveError, StudyError) as exc:
        print(f"stratcastd: error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    return _optimize(args, study, space, objectives, models)


def _optimize(args: argparse.Namespace, study: Any, space: Any, objectives: Any, models: list[str]) -> int:
    """Ask, run and tell ``--trials`` trials (or until ``--timeout``), one line each; then the best."""
    import msgspec

    from stratcast.daemon.cli import StopFlag
    from stratcast.daemon.engine.run.runplan import default_plan_cache
    from stratcast.daemon.engine.study.local import run_trial_locally
    from stratcast.daemon.engine.study.study import ask, best, client_id, reap_orphans, trial_line

    fixed = msgspec.structs.replace(job_from_args(args), save_as=None)  # --save-as names the kept best
    if any(not o.backtest for o in objectives) and not fixed.holdout:
        fixed = msgspec.structs.replace(fixed, holdout=fixed.horizon or 52)  # a holdout objective needs a holdout
    client = client_id("stratcastd tune", resolve_home(args.home).state)  # a daemon's trials are not its orphans
    for number in reap_orphans(study, client=client):
        print(f"trial {number}: left running by an earlier command, told FAIL (crashed)")
    print(f"study {study.study_name}: {', '.join(o.name for o in objectives)}; space:")
    for line in space.describe():
        print(f"  {line}")
    out = Path(args.out or study.study_name)
    stop, t0, quiet, plans = StopFlag(), time.monotonic(), _quiet_log(), default_plan_cache(args.home)
    for _ in range(args.trials):
        if stop() or (args.timeout is not None and time.monotonic() - t0 > args.timeout):
            break
        plan = ask(study, space, fixed, device=args.device, client=client)
        run_trial_locally(
            study,
            plan,
            fixed,
            objectives,
            out=out,
            backtest=backtest_from_args(args),
            device=args.device,
            log=quiet,
            should_stop=stop,
            plan_cache=plans,
        )
        told = study.trials[plan.number]
        seconds = told.duration.total_seconds() if told.duration is not None else 0.0
        print(f"{trial_line(told)} [{seconds:.1f}s]")
    top = best(study)
    print("Pareto front:" if len(objectives) > 1 else "best:", "none completed" if not top else "")
    for trial in top:
        print(f"  {trial_line(trial)}")
    if stop():
        return ExitCode.INTERRUPTED
    if args.keep == "none":
        return ExitCode.OK
    return _keep(args, study, fixed, models, [o.name for o in objectives], out / "best", quiet)


def _keep(
    args: argparse.Namespace, study: Any, fixed: Any, models: list[str], objectives: list[str], out: Path, log: Any
) -> int:
    """Train the kept trial's configuration (``--keep``) in ``out`` and save it; exit 1 when that fails."""
    from stratcast.daemon.engine.run.job import run_job
    from stratcast.daemon.engine.run.runplan import default_plan_cache
    from stratcast.daemon.engine.saved.versions import save_run
    from stratcast.daemon.engine.spec.runspec import spec_from_job
    from stratcast.daemon.engine.study.study import evidence, final_job, kept_trial

    trial = kept_trial(study)
    if trial is None:
        print("kept: nothing (no trial completed)")
        return ExitCode.OK
    name = args.save_as or study.study_name
    try:
        job = final_job(trial, fixed, models, args.keep, fixed)
        spec = spec_from_job(job, out=str(out), device=args.device)
        result = run_job(spec, log=log, plan_cache=default_plan_cache(args.home))
        version = save_run(
            resolve_home(args.home).state, result.out_dir, name, source=f"trial {trial.number}",
            study=evidence(study, trial, objectives, args.keep),
        )  # fmt: skip
    except Exception as exc:  # the study is done and told: only its copy failed
        print(f"stratcastd: error: the best (trial {trial.number}) was not kept: {type(exc).__name__}: {exc}")
        return ExitCode.FAILED
    print(f"kept: trial {trial.number} trained ({args.keep}) in {out}, saved as {version.ref}")
    return ExitCode.OK


def _quiet_log() -> Any:
    """A log that keeps the trials' own lines out of the study's output (one line per trial)."""

    def log(line: str) -> None:
        del line

    return log
