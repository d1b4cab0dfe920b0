"""``stratcastd``: run one forecasting job in the foreground, list the models, or run the demo.

Exit codes (:class:`stratcast.shared.errors.ExitCode`, the README's table): 0 done, 3 bad input (data or options),
1 other failure, 130 interrupted (a training checkpoint in ``OUT/checkpoints``, no outputs), 2 bad command line,
and 76 out of memory. A run that fails before its first checkpoint removes the output folder it created.

``backtest`` runs a walk-forward selection backtest
(:func:`~stratcast.daemon.engine.backtest.job.run_backtest`) with the same options, exit codes and ``--resume``.

``tune`` runs an Optuna study in the foreground (see :mod:`stratcast.daemon.tunecli`).

``forecast`` scores new data with a saved model and ``saved`` manages the saved models of a home folder (see
:mod:`stratcast.daemon.savedcli`).

``run`` records its spec in ``OUT/spec.json``; ``stratcastd run --resume OUT`` continues an interrupted run from
the newest good checkpoint in ``OUT/checkpoints`` (on CPU the outputs equal an uninterrupted run's bit for bit).
A resume may change the device and, with ``--set``, the options that do not change what is trained (the
checkpoint interval, ``micro_batch_size``, ``oom_grow_after``, ``activation_checkpointing``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec

from stratcast.daemon.savedcli import COMMANDS as SAVED_COMMANDS
from stratcast.daemon.savedcli import add_saved_commands, saved_command
from stratcast.daemon.serve import add_arguments as add_serve_arguments
from stratcast.daemon.serve import add_keys_arguments, make_keys, serve
from stratcast.daemon.tunecli import COMMANDS as TUNE_COMMANDS
from stratcast.daemon.tunecli import add_tune_command, tune_command
from stratcast.shared.cli import (
    add_completion_command,
    add_version,
    completion_script,
    positive_int,
)
from stratcast.shared.errors import ExitCode
from stratcast.shared.jobargs import (
    DAEMON_DEVICES,
    add_backtest_options,
    add_job_options,
    backtest_from_args,
    job_from_args,
)
from stratcast.shared.protocol import DEFAULT_MODEL, JobSpec
from stratcast.shared.report import models_text, results_text
from stratcast.shared.runfiles import RunFolder


def build_parser() -> argparse.ArgumentParser:
    """The ``stratcastd`` command line."""
    parser = argparse.ArgumentParser(prog="stratcastd", description=__doc__.splitlines()[0])
    add_version(parser)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser(
        "serve", help="run the daemon in the foreground (the default: `stratcastd --home DIR` serves)"
    )
    add_serve_arguments(serve)
    keys = sub.add_parser("keys", help="create CURVE certificates for serving over TCP (--tcp)")
    add_keys_arguments(keys)
    run = sub.add_parser("run", help="run one forecasting job in the foreground (no server)")
    add_job_options(run, program=parser.prog, unless="--resume")
    run.add_argument("--out", help="output folder (required unless --resume)")
    run.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR from its newest checkpoint")
    backtest = sub.add_parser(
        "backtest", help="run a walk-forward selection backtest in the foreground (no server)", epilog=BACKTEST_EPILOG
    )
    add_job_options(backtest, program=parser.prog, unless="--resume")
    add_backtest_options(backtest)
    backtest.add_argument("--out", help="output folder (required unless --resume)")
    backtest.add_argument(
        "--resume", metavar="DIR", help="continue the interrupted backtest in DIR from its newest checkpoint"
    )
    demo = sub.add_parser("demo", help="generate a demo strategy panel and forecast it", epilog=_demo_epilog())
    add_job_options(
        demo,
        program=parser.prog,
        data=False,
        model=DEFAULT_MODEL,
        horizon=DEMO_HORIZON,
        input_size=DEMO_INPUT_SIZE,
        holdout="the horizon",
    )
    demo.add_argument("--out", default="demo-run", help="output folder (default: ./demo-run)")
    demo.add_argument("--strategies", type=positive_int, default=1000, help="strategies in the demo panel")
    demo.add_argument("--weeks", type=positive_int, default=260, help="weeks in the demo panel")
    demo.add_argument("--no-daemon", action="store_true", help="run the job in this process instead of a daemon")
    demo.add_argument("--keep-daemon", action="store_true", help="leave the demo's daemon running afterwards")
    demo.add_argument("--no-tui", action="store_true", help="print progress lines even on a terminal")
    for job in (run, backtest, demo):
        job.add_argument(
            "--json", action="store_true", help="print the result as JSON on stdout; progress goes to stderr"
        )
    models = sub.add_parser("models", help="list every model with its parameters, defaults and ranges")
    models.add_argument("--json", action="store_true", help="print JSON")
    add_saved_commands(sub)
    add_tune_command(sub, parser.prog)
    add_completion_command(sub, parser.prog)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stratcastd``."""
    parser = build_parser()
    args = parser.parse_args(with_command(sys.argv[1:] if argv is None else argv))
    if args.command == "completion":
        print(completion_script(parser, args.shell), end="")
        return ExitCode.OK
    if args.command == "serve":
        return serve(args)
    if args.command == "keys":
        return make_keys(args)
    if args.command == "models":
        return list_models(args.json)
    if args.command in SAVED_COMMANDS:
        return saved_command(args)
    if args.command in TUNE_COMMANDS:
        return tune_command(args)
    if args.command == "demo" and not args.no_daemon:
        if args.device not in DAEMON_DEVICES:  # the daemon places runs on its GPUs itself
            parser.error(
                f"--device {args.device}: the demo's daemon takes auto or cpu (it places runs on its GPUs itself); "
                f"add --no-daemon to run on {args.device} in this process"
            )
        return demo_through_daemon(args)
    if args.command in ("run", "backtest"):
        given = [f"--{k}" for k in ("data", "model", "out", "ensemble") if getattr(args, k)]
        if args.resume and given:
            build_parser().error(f"--resume continues the run as it was started: drop {', '.join(given)}")
        if isinstance(args.ensemble, list) and not args.model:
            args.model = args.ensemble[0]  # a list of models names the job's model: its first
        if not args.resume and not (args.data and args.model and args.out):
            build_parser().error(f"{args.command} needs --data, --model and --out (or --resume DIR)")
        if args.data and (problem := _data_file_problem(Path(args.data))):  # before importing torch takes seconds
            print(f"stratcastd: error: {problem}", file=sys.stderr)
            return ExitCode.BAD_INPUT
    return run_command(args)


def _data_file_problem(path: Path) -> str | None:
    """What is wrong with the data file's path, as the engine would say it (None when nothing is)."""
    from stratcast.daemon.engine.data.load import file_kind
    from stratcast.daemon.engine.data.panel import DataError

    try:
        file_kind(path)
    except DataError as exc:
        return str(exc)
    return None


def with_command(argv: Sequence[str]) -> list[str]:
    """``argv``, with ``serve`` first when it names no command: ``stratcastd --home DIR`` serves, as ``stratcastd``."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        return ["serve", *argv]
    return list(argv)


def demo_through_daemon(args: argparse.Namespace) -> int:
    """``demo``: the demo job submitted to a daemon of its own (see :mod:`stratcast.daemon.embedded`)."""
    from stratcast.daemon.embedded import run_demo

    return run_demo(args, demo_job(args))


def list_models(as_json: bool) -> int:
    """Print the model catalog with each model's parameters."""
    from stratcast.daemon.engine.spec.config import describe_train_config
    from stratcast.daemon.zoo.catalog import describe_models

    described = {"models": describe_models(), "train_options": describe_train_config()}
    print(json.dumps(described, indent=2, default=str) if as_json else models_text(described))
    return ExitCode.OK


def run_command(args: argparse.Namespace) -> int:
    """``run`` and ``demo``: build the spec, run the job, print the results; map errors to exit codes."""
    from stratcast.daemon.engine.data.panel import DataError
    from stratcast.daemon.engine.memory.device import DeviceError, tune_cpu_allocator
    from stratcast.daemon.engine.training.checkpoint import CheckpointError
    from stratcast.daemon.progress import ProgressPrinter

    tune_cpu_allocator()
    printer = ProgressPrinter(sys.stderr if args.json else sys.stdout)
    log, stop = printer.log, StopFlag()
    made = None if getattr(args, "resume", None) or Path(args.out).exists() else Path(args.out)
    try:
        spec, resume_from = resume_spec(args, log) if getattr(args, "resume", None) else (make_spec(args), None)
        from stratcast.daemon.engine.run.runplan import default_plan_cache
        from stratcast.daemon.engine.spec.specfile import write_spec

        engine = job_engine(args)
        write_spec(Path(spec.out), spec)
        result = engine(
            spec,
            log=log,
            on_progress=printer,
            should_stop=stop,
            resume_from=resume_from,
            on_oom=OomPrinter(log),
            plan_cache=default_plan_cache(),
        )
        printer.close()
    except (DataError, DeviceError, ValueError, KeyError) as exc:
        return failed(printer, made, f"error: {exc}", ExitCode.BAD_INPUT)
    except MemoryError as exc:
        return failed(printer, made, f"out of memory: {exc}", ExitCode.OUT_OF_MEMORY)
    except (CheckpointError, RuntimeError, OSError) as exc:
        return failed(printer, made, f"failed: {plain(exc)}", ExitCode.FAILED)
    if result.fit.interrupted:  # the job wrote a training checkpoint instead of outputs, and said where
        if args.json:
            print(json.dumps({"out": str(result.out_dir), "stopped": True, "checkpoint": str(result.checkpoint)}))
        print(f"continue with: stratcastd {args.command} --resume {result.out_dir}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    if args.command == "backtest":
        print_backtest(result, args.json)
    else:
        print_result(result.out_dir, result.device, result.metrics, result.top, args.json)
    return ExitCode.OK


def job_engine(args: argparse.Namespace) -> Callable[..., Any]:
    """``run_job``, or for ``backtest`` ``run_backtest`` with its options (a resume's as recorded in DIR).

    Raises:
        CheckpointError: when ``--resume DIR`` holds no backtest's record.
    """
    if args.command != "backtest":
        from stratcast.daemon.engine.run.job import run_job

        return run_job
    import functools

    from stratcast.daemon.engine.backtest.job import run_backtest
    from stratcast.daemon.engine.backtest.state import read_options

    resumed = getattr(args, "resume", None)
    options = read_options(RunFolder(Path(resumed)).checkpoints) if resumed else backtest_from_args(args)
    return functools.partial(run_backtest, options=options)


def print_backtest(result: Any, as_json: bool) -> None:
    """The backtest's table per pick size, its verdicts and errors (or ``backtest.json``'s content as JSON)."""
    from stratcast.shared.backtest_report import backtest_text

    table = result.metrics["backtest"]
    if as_json:
        print(json.dumps({"out": str(result.out_dir), "device": result.device, "backtest": table}, indent=2))
        return
    print(backtest_text(table))
    print(f"outputs in {result.out_dir}")


def plain(exc: BaseException) -> str:
    """An error's message without Python's decoration (``[Errno 28] ...: 'path'`` becomes ``path: ...``)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


def failed(printer: Any, made: Path | None, message: str, code: ExitCode) -> ExitCode:
    """Say why the run failed; remove the output folder it ``made`` unless a checkpoint there can resume it."""
    printer.close()
    print(f"stratcastd: {message}", file=sys.stderr)
    if made is not None and made.is_dir() and not RunFolder(made).has_checkpoint():
        shutil.rmtree(made, ignore_errors=True)
    return code


def resume_spec(args: argparse.Namespace, log: Callable[[str], None]) -> tuple[Any, Path]:
    """The spec recorded in ``--resume DIR`` (with ``--device`` and schedule ``--set`` items) and its checkpoint.

    Raises:
        ValueError: when DIR has no ``spec.json`` or no usable checkpoint, or a ``--set`` item would change what
            is trained.
    """
    import dataclasses

    from stratcast.daemon.engine.spec.config import parse_value
    from stratcast.daemon.engine.spec.specfile import SCHEDULE_OPTIONS, read_spec
    from stratcast.daemon.engine.training.checkpoint import latest_checkpoint

    folder = Path(args.resume)
    spec = read_spec(folder)
    changes = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        if key not in SCHEDULE_OPTIONS:
            accepted = ", ".join(sorted(SCHEDULE_OPTIONS))
            raise ValueError(f"--set {key} would change what is trained; a resume accepts {accepted}")
        changes[key] = parse_value(raw, getattr(spec.train, key))
    device = spec.device if args.device == "auto" else args.device
    spec = dataclasses.replace(spec, device=device, train=dataclasses.replace(spec.train, **changes))
    checkpoint = latest_checkpoint(RunFolder(folder).checkpoints, log=log)
    if checkpoint is None:
        raise ValueError(f"{RunFolder(folder).checkpoints} holds no usable checkpoint: nothing to resume")
    return spec, checkpoint


class OomPrinter:
    """The ``on_oom`` callback of a foreground run: one line per out-of-memory error."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log

    def __call__(self, event: Any) -> None:
        """Say what ran out and what happens next."""
        then = f"retrying with micro-batch {event.new_micro_batch}" if event.new_micro_batch else "giving up"
        if event.phase == "optimizer":
            then = "the run rolls back to its last checkpoint"
        self.log(f"out of memory at step {event.step} ({event.phase}, micro-batch {event.old_micro_batch}): {then}")


def make_spec(args: argparse.Namespace) -> Any:
    """The :class:`RunSpec` of ``run``, or of ``demo`` after writing the demo panel: as a daemon's worker builds it."""
    from stratcast.daemon.engine.spec.runspec import spec_from_job

    job = demo_job(args) if args.command == "demo" else job_from_args(args)
    return spec_from_job(job, out=args.out, device=args.device)


def demo_job(args: argparse.Namespace) -> JobSpec:
    """The demo's job, after writing its panel: the options given over the demo's defaults."""
    job = job_from_args(args, data=write_demo_panel(args))
    horizon = args.horizon or DEMO_HORIZON
    options = {k: v for k, v in DEMO_OPTIONS.items() if k != "batch_size" or args.mode == "batch"}
    return msgspec.structs.replace(
        job,
        horizon=horizon,
        input_size=args.input_size or DEMO_INPUT_SIZE,
        holdout=horizon if args.holdout is None else args.holdout,
        sets=[*(f"{k}={v}" for k, v in options.items()), *DEMO_MODEL_PARAMS.get(args.model, []), *job.sets],
    )


BACKTEST_EPILOG = (
    "At each of N cutoffs, K periods apart and the last W periods before the panel's end, the model is trained on "
    "the data before the cutoff (retrained every R cutoffs), every strategy is forecast, and the top strategies by "
    "forecast mean are held for W periods. Writes backtest.parquet (every cutoff, method and strategy with its "
    "rank, forecast and realized profit), backtest.json and metrics.json."
)
DEMO_HORIZON = 26
DEMO_INPUT_SIZE = 52
DEMO_OPTIONS: dict[str, Any] = {"max_steps": 600, "batch_size": 2048, "val_check_steps": 25, "loss": "huber"}
"""The demo is sized to finish in well under a minute on two CPU cores. Per strategy ``batch_size`` counts
windows of each strategy, and the per-strategy default (32) stays."""
DEMO_MODEL_PARAMS = {"nhits": ["mlp_units=128,128"]}
"""A smaller N-HiTS than its default: the demo's weekly profits carry little signal for a large network."""


def _demo_epilog() -> str:
    """What the demo sets on top of the engine's defaults, for ``demo --help``."""
    options = ", ".join(f"{k}={v}" for k, v in DEMO_OPTIONS.items())
    models = "; ".join(f"{m}: {', '.join(sets)}" for m, sets in DEMO_MODEL_PARAMS.items())
    devices = "Its daemon takes --device auto or cpu; other devices need --no-daemon."
    return f"The demo sets {options} (--set overrides them) and, per model, {models}. {devices}"


def write_demo_panel(args: argparse.Namespace) -> Path:
    """Generate the demo strategy panel into the output folder."""
    from stratcast.daemon.engine.data.synthetic import make_strategy_panel

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo_panel.parquet"
    make_strategy_panel(args.strategies, args.weeks, seed=0).to_parquet(path, index=False)
    return path


def print_result(out: Path, device: str | None, metrics: Any, top: list[dict[str, Any]], as_json: bool) -> None:
    """The top strategies and the skill table, or one JSON object."""
    if as_json:
        payload = {"out": str(out), "device": device, "metrics": metrics, "top": top}
        print(json.dumps(payload, indent=2, default=str))
        return
    print()
    print(results_text(metrics, top, where=str(out)))


class StopFlag:
    """Turns SIGINT/SIGTERM into a stop request checked at the next step; a second signal exits at once."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """Record the request (never do work inside the handler); force exit on the second one."""
        if self.requested:
            raise SystemExit(ExitCode.INTERRUPTED)
        self.requested = True

    def __call__(self) -> bool:
        """Whether a stop was requested."""
        return self.requested


if __name__ == "__main__":
    sys.exit(main())
