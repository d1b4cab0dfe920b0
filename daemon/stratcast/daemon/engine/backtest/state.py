"""What a stopped backtest keeps besides its training checkpoint: the finished blocks' rows and cutoffs.

Three files in the checkpoint folder, each written atomically: ``backtest-rows.parquet`` (the long table of the
finished cutoffs), ``backtest-residuals.parquet`` (their per-step forecasts and realized values, which the bands
calibrate on) and ``backtest-progress.json`` (the plan's cutoffs, the options, the finished blocks, their per-cutoff
records and training totals). A block's end removes its training checkpoints first and records the
block after: a crash between the two leaves no checkpoint and an unfinished block, which a resume trains again
from scratch (to the same result). A resume skips the finished blocks and continues the next one's training from
its checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd

from stratcast.daemon.engine.backtest.picks import empty_rows
from stratcast.daemon.engine.run.outputs import write_parquet_atomic
from stratcast.daemon.engine.training.checkpoint import CheckpointError, list_checkpoints, write_json_atomic
from stratcast.shared.protocol import BacktestOptions

ROWS_FILE, PROGRESS_FILE = "backtest-rows.parquet", "backtest-progress.json"
RESIDUALS_FILE = "backtest-residuals.parquet"
"""The finished cutoffs' per-step model forecasts and realized values (the bands calibrate on them)."""


@dataclass
class Progress:
    """The finished blocks of a backtest."""

    cutoffs: list[int]
    """The plan's cutoffs: a resume must have the same."""
    options: BacktestOptions
    blocks_done: int = 0
    rows: pd.DataFrame = field(default_factory=empty_rows)
    records: list[dict[str, Any]] = field(default_factory=list)
    """One dict per finished cutoff (the backtest's ``cutoffs`` list)."""
    trainings: int = 0
    train_seconds: float = 0.0
    steps: int = 0
    """Training steps of the finished blocks, all together."""
    residuals: pd.DataFrame = field(default_factory=pd.DataFrame)
    """``cutoff, date, strategy, step, model, realized``: every finished cutoff's forecasts per step."""

    def add(
        self, rows: pd.DataFrame, records: list[dict[str, Any]], steps: int, seconds: float, residuals: pd.DataFrame
    ) -> None:
        """Record a finished block."""
        self.rows = rows if self.rows.empty else pd.concat([self.rows, rows], ignore_index=True)
        self.residuals = pd.concat([self.residuals, residuals], ignore_index=True)
        self.records += records
        self.blocks_done += 1
        self.trainings += 1
        self.train_seconds += seconds
        self.steps += steps


def save_progress(directory: Path, progress: Progress) -> None:
    """Write both files (the rows first: the JSON says which of them count)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(progress.rows, directory / ROWS_FILE)
    write_parquet_atomic(progress.residuals, directory / RESIDUALS_FILE)
    write_json_atomic(
        directory / PROGRESS_FILE,
        {
            "cutoffs": progress.cutoffs,
            "options": msgspec.to_builtins(progress.options),
            "blocks_done": progress.blocks_done,
            "records": progress.records,
            "trainings": progress.trainings,
            "train_seconds": progress.train_seconds,
            "steps": progress.steps,
        },
    )


def read_options(directory: Path) -> BacktestOptions:
    """The options a backtest with its checkpoints in ``directory`` was started with.

    Raises:
        CheckpointError: when ``directory`` holds no backtest's progress.
    """
    return msgspec.convert(_read(directory)["options"], BacktestOptions)


def load_progress(directory: Path, cutoffs: list[int], options: BacktestOptions) -> Progress:
    """The finished blocks recorded in ``directory`` (none when nothing is recorded).

    Raises:
        CheckpointError: when the record belongs to a backtest with other cutoffs.
    """
    if not (directory / PROGRESS_FILE).exists():
        return Progress(cutoffs, options)
    state = _read(directory)
    if state["cutoffs"] != cutoffs:
        raise CheckpointError(
            f"{directory / PROGRESS_FILE} belongs to a backtest with other cutoffs ({len(state['cutoffs'])} from "
            f"period {state['cutoffs'][0]}, here {len(cutoffs)} from {cutoffs[0]}); restart it from scratch"
        )
    done = {r["cutoff"] for r in state["records"]}
    rows = pd.read_parquet(directory / ROWS_FILE) if done else empty_rows()
    rows = rows[rows["cutoff"].isin(done)].reset_index(drop=True)
    residuals = pd.read_parquet(directory / RESIDUALS_FILE) if done else pd.DataFrame()
    residuals = residuals[residuals["cutoff"].isin(done)].reset_index(drop=True) if done else residuals
    return Progress(
        cutoffs,
        options,
        state["blocks_done"],
        rows,
        state["records"],
        state["trainings"],
        state["train_seconds"],
        state["steps"],
        residuals,
    )


def _read(directory: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((directory / PROGRESS_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the backtest's progress in {directory}: {exc}") from None
    return state


def clear_checkpoints(directory: Path) -> None:
    """Remove the finished block's training checkpoints: the next block's start from step 0."""
    for _, path in list_checkpoints(directory):
        path.with_suffix(path.suffix + ".json").unlink(missing_ok=True)
        path.unlink(missing_ok=True)
