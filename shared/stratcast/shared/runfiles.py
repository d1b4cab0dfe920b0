"""The names of the files and folders in a daemon's home and in a run folder: the one module that spells them.

A daemon's home (``HOME``, found by :func:`stratcast.shared.paths.resolve_home`)::

    HOME/stratcast.db          the store (runs, events, schedules)
    HOME/stratcastd.lock       held by the serving daemon: one daemon per home
    HOME/daemon.log            a background daemon's output (``serve --detach``, the demo)
    HOME/memory-plans.json     the memory plan cache of workers and foreground runs
    HOME/runs/<id>/            one run folder per run
    HOME/sock/control, events  the sockets, unless they are placed elsewhere

A run folder (``RUN_DIR``, :class:`RunFolder`)::

    RUN_DIR/job.json           the job, written at submit, read by the worker
    RUN_DIR/log.txt            the worker's stderr
    RUN_DIR/history.jsonl      the worker's series events, appended by the daemon
    RUN_DIR/checkpoints/       training checkpoints, ``step-00000123.pt`` + ``.pt.json``
    RUN_DIR/out/               the outputs (:class:`Outputs`)

An outputs folder (:class:`Outputs`) holds ``metrics.json``, ``summary.parquet``, ``forecast.parquet`` and
``model.pt`` (+ ``model.pt.json``); a backtest's holds ``backtest.parquet``, ``backtest.json`` and
``backtest.png``. A foreground ``stratcastd run --out OUT`` uses ``OUT`` as both its run folder
and its outputs folder: the outputs, ``spec.json`` and ``checkpoints/`` all lie in ``OUT``.

The daemon and the TUI both read run folders, so this module is in ``shared`` and imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATABASE = "stratcast.db"
LOCK = "stratcastd.lock"
DAEMON_LOG = "daemon.log"
PLAN_CACHE = "memory-plans.json"
RUNS = "runs"
SOCKETS = "sock"
CONTROL = "control"
EVENTS = "events"

JOB = "job.json"
LOG = "log.txt"
HISTORY = "history.jsonl"
SPEC = "spec.json"
STUDY = "study.json"
CHECKPOINTS = "checkpoints"
OUT = "out"
CHECKPOINT_PATTERN = "*.pt"
"""The checkpoint files in :attr:`RunFolder.checkpoints` (their ``.pt.json`` manifests excluded)."""

METRICS = "metrics.json"
SUMMARY = "summary.parquet"
FORECAST = "forecast.parquet"
MODEL = "model.pt"
BACKTEST = "backtest.parquet"
BACKTEST_TABLE = "backtest.json"
BACKTEST_CHART = "backtest.png"


@dataclass(frozen=True)
class Outputs:
    """A run's outputs folder: ``RUN_DIR/out`` for a daemon's run, ``OUT`` itself for a foreground run."""

    path: Path

    @property
    def metrics(self) -> Path:
        """The skill table, verdict, warnings, training summary, spec and memory plan (JSON)."""
        return self.path / METRICS

    @property
    def summary(self) -> Path:
        """One row per strategy: its forecast sum and mean, rank and holdout skill inputs (Parquet)."""
        return self.path / SUMMARY

    @property
    def forecast(self) -> Path:
        """Every strategy's forecast, one row per strategy and step (Parquet)."""
        return self.path / FORECAST

    @property
    def model(self) -> Path:
        """The final checkpoint (its manifest beside it as ``model.pt.json``)."""
        return self.path / MODEL

    @property
    def backtest(self) -> Path:
        """A backtest's picks: one row per cutoff, method and strategy with its rank, forecast and realized profit."""
        return self.path / BACKTEST

    @property
    def backtest_table(self) -> Path:
        """A backtest's table per method and pick size, its verdict, cumulative profits and errors (JSON)."""
        return self.path / BACKTEST_TABLE

    @property
    def backtest_chart(self) -> Path:
        """A backtest's chart of each method's cumulative realized profit (PNG, with the ``plot`` extra)."""
        return self.path / BACKTEST_CHART


@dataclass(frozen=True)
class RunFolder:
    """One run's folder: ``HOME/runs/<id>`` for a daemon's run, ``OUT`` for a foreground run."""

    path: Path

    @property
    def job(self) -> Path:
        """The job the worker runs (a daemon's run)."""
        return self.path / JOB

    @property
    def log(self) -> Path:
        """The worker's stderr (a daemon's run)."""
        return self.path / LOG

    @property
    def history(self) -> Path:
        """The series events, one JSON object a line (a daemon's run)."""
        return self.path / HISTORY

    @property
    def study(self) -> Path:
        """A study's final run: the kept trial and what it scored, for the saved version's manifest."""
        return self.path / STUDY

    @property
    def spec(self) -> Path:
        """The run spec a foreground run resumes from."""
        return self.path / SPEC

    @property
    def checkpoints(self) -> Path:
        """The folder of training checkpoints."""
        return self.path / CHECKPOINTS

    @property
    def out(self) -> Outputs:
        """The outputs folder of a daemon's run."""
        return Outputs(self.path / OUT)

    def checkpoint_files(self) -> list[Path]:
        """The checkpoint files in :attr:`checkpoints`, in name (and so step) order; none when it is missing."""
        return sorted(self.checkpoints.glob(CHECKPOINT_PATTERN))

    def has_checkpoint(self) -> bool:
        """Whether :attr:`checkpoints` holds a checkpoint file (the run can resume)."""
        return any(self.checkpoints.glob(CHECKPOINT_PATTERN))
