"""A job's command-line options, declared once, and the one mapping of parsed options onto a :class:`JobSpec`.

``stratcastd run`` and ``demo``, ``stratcast submit``, ``check`` and ``schedule add`` all call
:func:`add_job_options`; what differs between them (whether ``--data`` and ``--model`` are needed, the defaults
their help names, which devices a daemon accepts) are its keyword arguments. Options only one command has
(``--out``, ``--resume``, placement, ``--json``) stay with that command. A study's options are declared once too
(:func:`add_study_options`, for ``stratcastd tune`` and ``stratcast tune``). :func:`job_from_args` turns the parsed
options into the job; the daemon (and ``stratcastd run``, through the same ``spec_from_job``) builds the run's
spec from that.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from stratcast.shared.cli import (
    ensemble_option,
    interval_levels,
    key_value,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    saved_name,
    top_picks,
)
from stratcast.shared.intervals import DEFAULT_LEVELS, RANK_BY_MEAN, level_text
from stratcast.shared.protocol import BacktestOptions, JobSpec, KeepBest

KEEP_CHOICES: tuple[KeepBest, ...] = ("all-data", "holdout", "none")
"""``--keep``'s choices (:data:`~stratcast.shared.protocol.KeepBest`)."""

DAEMON_DEVICES = ("auto", "cpu")
"""The devices a job sent to a daemon may name: the daemon places runs on its GPUs itself (``--gpu N``)."""


def add_job_options(
    parser: argparse._ActionsContainer,
    *,
    program: str,
    data: bool = True,
    model: str | None = None,
    unless: str | None = None,
    horizon: int = 52,
    input_size: int = 104,
    holdout: str = "none",
    placed: bool = False,
    model_unless: str | None = None,
) -> None:
    """Add the job options to ``parser`` (a parser or an argument group).

    Args:
        parser: where the options go.
        program: the program whose ``models`` command ``--model``'s help names.
        data: whether there is a ``--data`` option (the demo makes its own panel).
        model: ``--model``'s default; None: the command needs one.
        unless: an option that stands in for ``--data`` and ``--model`` (``run``'s ``--resume``); they are then
            not required by the parser and the command checks them itself.
        horizon: the horizon the command uses when ``--horizon`` is not given, for its help.
        input_size: the same for ``--input-size``.
        holdout: what the command holds out when ``--holdout`` is not given, in words, for its help.
        placed: whether a daemon places the run, so that ``--device`` is one of :data:`DAEMON_DEVICES`.
        model_unless: an option that stands in for ``--model`` alone (``--saved``); the command checks it.
    """
    needed = f"; required unless {unless}" if unless else ""
    if data:
        where = f"required unless {unless}" if unless else "made absolute"
        parser.add_argument("--data", required=not unless, help=f"long-format parquet or CSV file ({where})")
    if model:
        parser.add_argument("--model", default=model, help=f"model name (default: {model})")
    elif model_unless:
        parser.add_argument("--model", help=f"model name (see `{program} models`; required unless {model_unless})")
    else:
        parser.add_argument("--model", required=not unless, help=f"model name (see `{program} models`{needed})")
    parser.add_argument("--mode", choices=("batch", "per-strategy"), default="batch")
    parser.add_argument("--horizon", type=positive_int, help=f"periods to forecast (default {horizon})")
    parser.add_argument("--input-size", type=positive_int, help=f"periods each window sees (default {input_size})")
    parser.add_argument(
        "--holdout", type=non_negative_int, help=f"last periods kept for honest scoring (default {holdout})"
    )
    parser.add_argument("--id-col", help="strategy id column (default: No. or unique_id)")
    parser.add_argument("--time-col", help="time column (default: week, ds, date, time or t)")
    parser.add_argument("--target-col", help="value column (default: profit or y)")
    parser.add_argument(
        "--fill-missing",
        choices=("error", "zero"),
        default="error",
        help="missing periods: error, or zero (strategy reports: a missing week means no trade)",
    )
    parser.add_argument("--date-format", help="how text dates are written, such as %%d.%%m.%%Y (default: inferred)")
    parser.add_argument("--dayfirst", action="store_true", help="read dates such as 04/01/2016 day first")
    if placed:
        parser.add_argument("--device", choices=DAEMON_DEVICES, default="auto", help="auto, or cpu (GPUs: --gpu N)")
    else:
        parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument(
        "--levels",
        type=interval_levels,
        default=list(DEFAULT_LEVELS),
        help="prediction interval levels in percent, calibrated on the validation part "
        f"(default {level_text(DEFAULT_LEVELS)})",
    )
    parser.add_argument(
        "--rank-by",
        default=RANK_BY_MEAN,
        help="rank strategies by the forecast mean (mean, the default) or by a bound's mean over the horizon: "
        "lo80 ranks by the mean lower bound of the 80%% interval (a level of --levels)",
    )
    parser.add_argument(
        "--ensemble",
        type=ensemble_option,
        metavar="N|MODELS",
        help="average an ensemble: N seeds of --model (seed, seed+1, ...) or models such as nhits,dlinear (each "
        "with its default architecture and training defaults, the first is the job's model; --set options apply "
        "to every member); the combination then wraps their mean",
    )
    parser.add_argument(
        "--set",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="training option or model parameter",
    )


def add_study_options(
    parser: argparse._ActionsContainer,
    *,
    timeout_dest: str = "timeout",
    daemon: bool = False,
    timeout_flag: str = "--timeout",
    save_as: bool = True,
) -> None:
    """Add a study's options (``stratcastd tune`` in the foreground, ``stratcast tune`` in the daemon).

    Args:
        parser: where the options go (an argument group).
        timeout_dest: where ``--timeout`` goes (``stratcast`` has a ``--timeout`` of its own, for the reply).
        daemon: whether the daemon runs the study: ``--parallel`` (its trials run as queued runs) and its names.
        timeout_flag: the study timeout's option (``schedule add --tune``: ``--study-timeout``, as its
            ``--timeout`` is the reply's).
        save_as: whether to add ``--save-as`` (``schedule add`` has its own, which a re-tuning schedule reads).
    """
    parser.add_argument("--trials", type=positive_int, default=20, help="trials to run (default 20)")
    parser.add_argument(
        timeout_flag, dest=timeout_dest, type=positive_float, metavar="S", help="ask no trial after S seconds"
    )
    parser.add_argument(
        "--objective",
        default="holdout-rmse",
        help="holdout-rmse (default), holdout-rmse-raw, backtest-top-k, backtest-diff; several, comma-separated, "
        "make a multi-objective study (NSGA-II)",
    )
    parser.add_argument("--sampler", help="tpe, nsga2 or random (default: tpe for one objective, nsga2 for several)")
    parser.add_argument(
        "--pruner", help="median, hyperband, wilcoxon or none (default: median for one objective, none for several)"
    )
    parser.add_argument(
        "--space", metavar="FILE", help="TOML (.toml) or JSON file that replaces, fixes or removes spaces"
    )
    parser.add_argument("--storage", metavar="URL", help="RDB URL or journal file (default HOME/studies/journal.log)")
    named = "stratcast-study-ID" if daemon else "tune-MODELS"
    parser.add_argument(
        "--study", metavar="NAME", help=f"the Optuna study's name (default {named}); an existing one goes on"
    )
    if daemon:
        parser.add_argument(
            "--parallel", type=positive_int, default=1, help="trials queued or running at once (default 1)"
        )
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0)")
    parser.add_argument(
        "--keep",
        choices=KEEP_CHOICES,
        default="all-data",
        help="what to keep when the study finishes: its best configuration trained on all the data (all-data, "
        "the default) or with the trials' holdout (holdout), saved as --save-as; none keeps nothing",
    )
    if save_as:
        parser.add_argument(
            "--save-as",
            type=saved_name,
            metavar="NAME",
            help="the saved model the kept best becomes a version of (default: the study's name)",
        )


def add_backtest_options(parser: argparse._ActionsContainer, prefix: str = "") -> None:
    """Add the walk-forward backtest's own options (``stratcastd backtest``, ``stratcast backtest``).

    ``prefix`` goes before every flag and destination (``backtest-``: ``--backtest-cutoffs``, for ``schedule add``,
    whose ``--every`` and ``--hold`` are its own).
    """
    defaults = BacktestOptions()
    add = _Prefixed(parser, prefix).add_argument
    add("--cutoffs", type=positive_int, default=defaults.cutoffs, help=f"cutoffs (default {defaults.cutoffs})")
    add(
        "--every", type=positive_int, default=defaults.every, help=f"periods between cutoffs (default {defaults.every})"
    )
    add(
        "--refit-every",
        type=positive_int,
        default=defaults.refit_every,
        help=f"retrain at every R-th cutoff, the others predict with the last model (default {defaults.refit_every})",
    )
    add("--hold", type=positive_int, help="periods each pick is held (default: --every)")
    add(
        "--top",
        type=top_picks,
        default=list(defaults.top),
        help=f"pick sizes: counts and shares of the strategies (default {','.join(defaults.top).replace('%', '%%')})",
    )
    add("--cost", type=non_negative_float, default=defaults.cost, help="cost per pick and holding (default 0)")
    add(
        "--draws", type=positive_int, default=defaults.draws, help=f"random picks per cutoff (default {defaults.draws})"
    )


def backtest_from_args(args: argparse.Namespace, prefix: str = "") -> BacktestOptions:
    """The backtest options of parsed :func:`add_backtest_options` options (added with ``prefix``)."""

    def get(name: str) -> Any:
        return getattr(args, (prefix + name).replace("-", "_"))

    return BacktestOptions(
        cutoffs=get("cutoffs"),
        every=get("every"),
        refit_every=get("refit_every"),
        hold=get("hold"),
        top=list(get("top")),
        cost=get("cost"),
        draws=get("draws"),
    )


class _Prefixed:
    """An argument container whose options get ``prefix`` before their flag and destination."""

    def __init__(self, parser: argparse._ActionsContainer, prefix: str) -> None:
        self.parser, self.prefix = parser, prefix

    def add_argument(self, flag: str, **kwargs: Any) -> argparse.Action:
        name = self.prefix + flag.removeprefix("--")
        return self.parser.add_argument("--" + name, dest=name.replace("-", "_"), **kwargs)


def job_from_args(args: argparse.Namespace, *, data: str | Path | None = None) -> JobSpec:
    """The job of parsed job options (``data``: instead of ``--data``), its data path made absolute.

    The path is absolute because a daemon has another working folder, and a foreground run records it for
    ``--resume`` from anywhere. No ``--holdout`` holds nothing out.
    """
    members = ensemble_members(getattr(args, "ensemble", None), args.model)
    saved: str | None = getattr(args, "saved", None)
    model = members[0] if members and (args.model or "").lower() in members else args.model
    return JobSpec(
        data=absolute(str(args.data if data is None else data)),
        model=model if model is not None else JobSpec(data="").model,  # --saved: the saved model's, unused
        mode=args.mode,
        horizon=args.horizon,
        input_size=args.input_size,
        holdout=0 if args.holdout is None else args.holdout,
        id_col=args.id_col,
        time_col=args.time_col,
        target_col=args.target_col,
        fill_missing=args.fill_missing,
        date_format=args.date_format,
        dayfirst=args.dayfirst,
        device=args.device,
        sets=list(args.set),
        levels=list(args.levels),
        rank_by=args.rank_by,
        ensemble=members,
        saved=saved,
        save_as=getattr(args, "save_as", None),
    )


def ensemble_members(option: int | list[str] | None, model: str | None) -> list[str]:
    """The members' models of a parsed ``--ensemble`` (empty without it): ``N`` copies of ``model``, or the list.

    A list that does not hold ``model`` is kept as given: the daemon refuses the job, naming both.
    """
    if option is None:
        return []
    if isinstance(option, int):
        return [(model or "").lower()] * option
    return list(option)


def absolute(path: str) -> str:
    """``path`` with ``~`` expanded, made absolute: the daemon has another working folder."""
    return os.path.abspath(os.path.expanduser(path))
