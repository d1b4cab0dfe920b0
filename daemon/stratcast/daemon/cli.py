"""``stratcastd``: run one forecasting job in the foreground, list the models, or run the demo.

Exit codes (:class:`stratcast.shared.errors.ExitCode`): 0 done, 3 bad input (data or options), 1 other failure,
130 interrupted (a training checkpoint in ``OUT/checkpoints``, no outputs), 2 bad command line, and 76 out of
memory (the worker's code: not even a micro-batch of one window fits, or the optimizer step ran out of memory).

``run`` records its spec in ``OUT/spec.json``; ``stratcastd run --resume OUT`` continues an interrupted run from
the newest good checkpoint in ``OUT/checkpoints`` (on CPU the outputs equal an uninterrupted run's bit for bit).
A resume may change the device and, with ``--set``, the options that do not change what is trained (the
checkpoint interval, ``micro_batch_size``, ``oom_grow_after``, ``activation_checkpointing``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from stratcast.daemon.serve import add_arguments as add_serve_arguments
from stratcast.daemon.serve import add_keys_arguments, make_keys, serve
from stratcast.shared.errors import ExitCode
from stratcast.shared.protocol import DEFAULT_MODEL
from stratcast.shared.report import skill_table, table, top_table


def build_parser() -> argparse.ArgumentParser:
    """The ``stratcastd`` command line."""
    parser = argparse.ArgumentParser(prog="stratcastd", description=__doc__.splitlines()[0])
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
    demo = sub.add_parser("demo", help="generate a demo strategy panel and forecast it")
    add_job_arguments(demo)
    demo.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default: {DEFAULT_MODEL})")
    demo.add_argument("--out", default="demo-run", help="output folder (default: ./demo-run)")
    demo.add_argument("--strategies", type=int, default=1000, help="strategies in the demo panel")
    demo.add_argument("--weeks", type=int, default=260, help="weeks in the demo panel")
    demo.add_argument("--no-daemon", action="store_true", help="run the job in this process instead of a daemon")
    demo.add_argument("--keep-daemon", action="store_true", help="leave the demo's daemon running afterwards")
    demo.add_argument("--no-tui", action="store_true", help="print progress lines even on a terminal")
    models = sub.add_parser("models", help="list every model with its parameters, defaults and ranges")
    models.add_argument("--json", action="store_true", help="print JSON")
    return parser


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``demo``."""
    p.add_argument("--horizon", type=int, default=None, help="periods to forecast (default 52)")
    p.add_argument("--input-size", type=int, default=None, help="periods each window sees (default 104)")
    p.add_argument("--holdout", type=int, default=None, help="last periods kept for honest scoring")
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
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training option or model parameter")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout; progress goes to stderr")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stratcastd``."""
    args = build_parser().parse_args(argv)
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
    """Print the registry with each model's parameters."""
    from stratcast.daemon.engine.config import describe_train_config
    from stratcast.daemon.zoo.registry import describe_models

    models = describe_models()
    if as_json:
        print(json.dumps({"models": models, "train_options": describe_train_config()}, indent=2, default=str))
        return ExitCode.OK
    for m in models:
        print(f"{m['name']}: {m['summary']} ({m['paper']}){'' if m['stackable'] else ' [batch mode only]'}")
        rows = [[p["name"], repr(p["default"]), _range(p), p["help"]] for p in m["params"]]
        print("  " + table(["parameter", "default", "range", "help"], rows).replace("\n", "\n  ") + "\n")
    return ExitCode.OK


def _range(p: dict[str, Any]) -> str:
    if p["choices"]:
        return "|".join(map(str, p["choices"]))
    if p["lo"] is None and p["hi"] is None:
        return "-"
    return f"{p['lo'] if p['lo'] is not None else ''}..{p['hi'] if p['hi'] is not None else ''}"


def run_command(args: argparse.Namespace) -> int:
    """``run`` and ``demo``: build the spec, run the job, print the results; map errors to exit codes."""
    from stratcast.daemon.engine.checkpoint import CheckpointError
    from stratcast.daemon.engine.device import DeviceError, tune_cpu_allocator
    from stratcast.daemon.engine.panel import DataError

    tune_cpu_allocator()

    out: TextIO = sys.stderr if args.json else sys.stdout
    stop = StopFlag()

    def log(message: str) -> None:
        print(message, file=out, flush=True)

    try:
        spec, resume_from = resume_spec(args, log) if getattr(args, "resume", None) else (make_spec(args), None)
        from stratcast.daemon.engine.job import run_job, write_spec
        from stratcast.daemon.engine.runplan import default_plan_cache
        from stratcast.daemon.progress import ProgressPrinter

        write_spec(Path(spec.out), spec)
        printer = ProgressPrinter(out)
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
        print(f"stratcastd: error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except MemoryError as exc:
        print(f"stratcastd: out of memory: {exc}", file=sys.stderr)
        return OUT_OF_MEMORY
    except (CheckpointError, RuntimeError, OSError) as exc:
        print(f"stratcastd: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    if result.fit.interrupted:  # the job wrote a training checkpoint instead of outputs, and said where
        if args.json:
            print(json.dumps({"out": str(result.out_dir), "stopped": True, "checkpoint": str(result.checkpoint)}))
        print(f"continue with: stratcastd run --resume {result.out_dir}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    print_result(result, args.json)
    return ExitCode.OK


OUT_OF_MEMORY = 76
"""Exit code when the run ran out of memory (the worker's :attr:`~stratcast.daemon.worker.WorkerExit.OUT_OF_MEMORY`)."""


def resume_spec(args: argparse.Namespace, log: Callable[[str], None]) -> tuple[Any, Path]:
    """The spec recorded in ``--resume DIR`` (with ``--device`` and schedule ``--set`` items) and its checkpoint.

    Raises:
        ValueError: when DIR has no ``spec.json`` or no usable checkpoint, or a ``--set`` item would change what
            is trained.
    """
    import dataclasses

    from stratcast.daemon.engine.checkpoint import latest_checkpoint
    from stratcast.daemon.engine.config import parse_value
    from stratcast.daemon.engine.job import CHECKPOINT_DIR, SCHEDULE_OPTIONS, read_spec

    folder = Path(args.resume)
    spec = read_spec(folder)
    changes = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        if key not in SCHEDULE_OPTIONS:
            raise ValueError(f"--set {key} would change what is trained; a resume accepts {sorted(SCHEDULE_OPTIONS)}")
        changes[key] = parse_value(raw, getattr(spec.train, key))
    device = spec.device if args.device == "auto" else args.device
    spec = dataclasses.replace(spec, device=device, train=dataclasses.replace(spec.train, **changes))
    checkpoint = latest_checkpoint(folder / CHECKPOINT_DIR, log=log)
    if checkpoint is None:
        raise ValueError(f"{folder / CHECKPOINT_DIR} holds no usable checkpoint: nothing to resume")
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
        sets=[*DEMO_MODEL_PARAMS.get(args.model, []), *args.set] if demo else args.set,
        base=DEMO_DEFAULTS if demo else None,
    )
    if demo and args.holdout is None:
        spec = dataclasses.replace(spec, holdout=spec.train.horizon)
    return spec


DEMO_DEFAULTS = {
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
    print(f"\nTop strategies by forecast mean profit per period (outputs in {result.out_dir}):")
    print(top_table(result.top))
    best = result.metrics["best_strategy"]
    print(f"Best strategy: {best['strategy']} (forecast {best['forecast_mean']:.4g} per period)")
    if "errors" in result.metrics:
        h = result.metrics["holdout"]
        print(f"\nSkill on the holdout ({h['periods']} periods, {h['strategies']} strategies):")
        print(skill_table(result.metrics))
        for line in result.metrics["verdict"]:
            print(f"- {line}")


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
