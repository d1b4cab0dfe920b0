"""``stratcastd``: run one forecasting job in the foreground, list the models, or run the demo.

Exit codes (:class:`stratcast.shared.errors.ExitCode`, the README's table): 0 done, 3 bad input (data or options),
1 other failure, 130 interrupted (a training checkpoint in ``OUT/checkpoints``, no outputs), 2 bad command line,
and 76 out of memory. A run that fails before its first checkpoint removes the output folder it created.

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

from stratcast.daemon.serve import add_arguments as add_serve_arguments
from stratcast.daemon.serve import add_keys_arguments, make_keys, serve
from stratcast.shared.cli import (
    add_completion_command,
    add_version,
    completion_script,
    key_value,
    non_negative_int,
    positive_int,
)
from stratcast.shared.errors import ExitCode
from stratcast.shared.protocol import DEFAULT_MODEL
from stratcast.shared.report import models_text, results_text
from stratcast.shared.runfiles import RunFolder


def build_parser() -> argparse.ArgumentParser:
    """The ``stratcastd`` command line."""
    parser = argparse.ArgumentParser(prog="stratcastd", description=__doc__.splitlines()[0])
    add_version(parser)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the daemon in the foreground (the default with no command)")
    add_serve_arguments(serve)
    keys = sub.add_parser("keys", help="create CURVE certificates for serving over TCP (--tcp)")
    add_keys_arguments(keys)
    run = sub.add_parser("run", help="run one forecasting job in the foreground (no server)")
    add_job_arguments(run)
    run.add_argument("--data", help="long-format parquet or CSV file (required unless --resume)")
    run.add_argument("--model", help="model name (see `stratcastd models`; required unless --resume)")
    run.add_argument("--out", help="output folder (required unless --resume)")
    run.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR from its newest checkpoint")
    demo = sub.add_parser("demo", help="generate a demo strategy panel and forecast it", epilog=_demo_epilog())
    add_job_arguments(demo, horizon=DEMO_DEFAULTS["horizon"], input_size=DEMO_DEFAULTS["input_size"])
    demo.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default: {DEFAULT_MODEL})")
    demo.add_argument("--out", default="demo-run", help="output folder (default: ./demo-run)")
    demo.add_argument("--strategies", type=positive_int, default=1000, help="strategies in the demo panel")
    demo.add_argument("--weeks", type=positive_int, default=260, help="weeks in the demo panel")
    demo.add_argument("--no-daemon", action="store_true", help="run the job in this process instead of a daemon")
    demo.add_argument("--keep-daemon", action="store_true", help="leave the demo's daemon running afterwards")
    demo.add_argument("--no-tui", action="store_true", help="print progress lines even on a terminal")
    models = sub.add_parser("models", help="list every model with its parameters, defaults and ranges")
    models.add_argument("--json", action="store_true", help="print JSON")
    add_completion_command(sub, parser.prog)
    return parser


def add_job_arguments(p: argparse.ArgumentParser, *, horizon: int = 52, input_size: int = 104) -> None:
    """Options shared by ``run`` and ``demo`` (``horizon``, ``input_size``: the defaults their help names)."""
    holdout = "none" if p.prog.endswith(" run") else "the horizon"
    p.add_argument("--horizon", type=positive_int, default=None, help=f"periods to forecast (default {horizon})")
    p.add_argument(
        "--input-size", type=positive_int, default=None, help=f"periods each window sees (default {input_size})"
    )
    p.add_argument(
        "--holdout",
        type=non_negative_int,
        default=None,
        help=f"last periods kept for honest scoring (default {holdout})",
    )
    p.add_argument("--mode", choices=("batch", "per-strategy"), default="batch")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--id-col", help="strategy id column (default: No. or unique_id)")
    p.add_argument("--time-col", help="time column (default: week, ds, date, time or t)")
    p.add_argument("--target-col", help="value column (default: profit or y)")
    p.add_argument(
        "--fill-missing",
        choices=("error", "zero"),
        default="error",
        help="missing periods: error, or zero (strategy reports: a missing week means no trade)",
    )
    p.add_argument("--date-format", help="how text dates are written, such as %%d.%%m.%%Y (default: inferred)")
    p.add_argument("--dayfirst", action="store_true", help="read dates such as 04/01/2016 day first")
    p.add_argument(
        "--set",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="training option or model parameter",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout; progress goes to stderr")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stratcastd``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "completion":
        print(completion_script(parser, args.shell), end="")
        return ExitCode.OK
    if args.command in (None, "serve"):
        if args.command is None:  # `stratcastd` alone serves with the defaults
            args = build_parser().parse_args(["serve"])
        return serve(args)
    if args.command == "keys":
        return make_keys(args)
    if args.command == "models":
        return list_models(args.json)
    if args.command == "demo" and not args.no_daemon:
        return demo_through_daemon(args)
    if args.command == "run":
        given = [f"--{k}" for k in ("data", "model", "out") if getattr(args, k)]
        if args.resume and given:
            build_parser().error(f"--resume continues the run as it was started: drop {', '.join(given)}")
        if not args.resume and len(given) < 3:
            build_parser().error("run needs --data, --model and --out (or --resume DIR)")
        if args.data and not Path(args.data).is_file():  # said before the seconds that importing torch takes
            print(f"stratcastd: error: {args.data}: no such file. Check the path.", file=sys.stderr)
            return ExitCode.BAD_INPUT
    return run_command(args)


def demo_through_daemon(args: argparse.Namespace) -> int:
    """``demo``: the demo job submitted to a daemon of its own (see :mod:`stratcast.daemon.embedded`)."""
    from stratcast.daemon.embedded import run_demo

    args.horizon = args.horizon or DEMO_DEFAULTS["horizon"]
    args.input_size = args.input_size or DEMO_DEFAULTS["input_size"]
    args.holdout = args.horizon if args.holdout is None else args.holdout
    options = [f"{k}={v}" for k, v in DEMO_DEFAULTS.items() if k not in ("horizon", "input_size")]
    return run_demo(args, write_demo_panel(args), [*options, *DEMO_MODEL_PARAMS.get(args.model, []), *args.set])


def list_models(as_json: bool) -> int:
    """Print the model catalog with each model's parameters."""
    from stratcast.daemon.engine.config import describe_train_config
    from stratcast.daemon.zoo.catalog import describe_models

    described = {"models": describe_models(), "train_options": describe_train_config()}
    print(json.dumps(described, indent=2, default=str) if as_json else models_text(described))
    return ExitCode.OK


def run_command(args: argparse.Namespace) -> int:
    """``run`` and ``demo``: build the spec, run the job, print the results; map errors to exit codes."""
    from stratcast.daemon.engine.checkpoint import CheckpointError
    from stratcast.daemon.engine.device import DeviceError, tune_cpu_allocator
    from stratcast.daemon.engine.panel import DataError
    from stratcast.daemon.progress import ProgressPrinter

    tune_cpu_allocator()
    printer = ProgressPrinter(sys.stderr if args.json else sys.stdout)
    log, stop = printer.log, StopFlag()
    made = None if getattr(args, "resume", None) or Path(args.out).exists() else Path(args.out)
    try:
        spec, resume_from = resume_spec(args, log) if getattr(args, "resume", None) else (make_spec(args), None)
        from stratcast.daemon.engine.job import run_job, write_spec
        from stratcast.daemon.engine.runplan import default_plan_cache

        write_spec(Path(spec.out), spec)
        result = run_job(
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
        print(f"continue with: stratcastd run --resume {result.out_dir}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    print_result(result, args.json)
    return ExitCode.OK


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

    from stratcast.daemon.engine.checkpoint import latest_checkpoint
    from stratcast.daemon.engine.config import parse_value
    from stratcast.daemon.engine.job import SCHEDULE_OPTIONS, read_spec

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
    """The :class:`RunSpec` for ``run``, or for ``demo`` after writing the demo panel (holdout: the horizon)."""
    import dataclasses

    from stratcast.daemon.engine.spec import build_spec

    demo = args.command == "demo"
    spec = build_spec(
        data=str(args.data if not demo else write_demo_panel(args)),
        model=args.model,
        out=args.out,
        mode=args.mode,
        device=args.device,
        horizon=args.horizon,
        input_size=args.input_size,
        holdout=args.holdout,
        id_col=args.id_col,
        time_col=args.time_col,
        target_col=args.target_col,
        fill_missing=args.fill_missing,
        date_format=args.date_format,
        dayfirst=args.dayfirst,
        sets=[*DEMO_MODEL_PARAMS.get(args.model, []), *args.set] if demo else args.set,
        base=DEMO_DEFAULTS if demo else None,
    )
    if demo and args.holdout is None:
        spec = dataclasses.replace(spec, holdout=spec.train.horizon)
    return spec


DEMO_DEFAULTS: dict[str, Any] = {
    "input_size": 52,
    "horizon": 26,
    "max_steps": 600,
    "batch_size": 2048,
    "val_check_steps": 25,
    "loss": "huber",
}
DEMO_MODEL_PARAMS = {"nhits": ["mlp_units=128,128"]}
"""A smaller N-HiTS than its default: the demo's weekly profits carry little signal for a large network."""
"""The demo is sized to finish in well under a minute on two CPU cores."""


def _demo_epilog() -> str:
    """What the demo sets on top of the engine's defaults, for ``demo --help``."""
    options = ", ".join(f"{k}={v}" for k, v in DEMO_DEFAULTS.items() if k not in ("horizon", "input_size"))
    models = "; ".join(f"{m}: {', '.join(sets)}" for m, sets in DEMO_MODEL_PARAMS.items())
    return f"The demo sets {options} (--set overrides them) and, per model, {models}."


def write_demo_panel(args: argparse.Namespace) -> Path:
    """Generate the demo strategy panel into the output folder."""
    from stratcast.daemon.engine.demo import make_strategy_panel

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo_panel.parquet"
    make_strategy_panel(args.strategies, args.weeks, seed=0).to_parquet(path, index=False)
    return path


def print_result(result: Any, as_json: bool) -> None:
    """The top strategies and the skill table, or one JSON object."""
    if as_json:
        payload = {
            "out": str(result.out_dir),
            "device": result.device,
            "metrics": result.metrics,
            "top": result.top,
        }
        print(json.dumps(payload, indent=2, default=str))
        return
    print()
    print(results_text(result.metrics, result.top, where=str(result.out_dir)))


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
