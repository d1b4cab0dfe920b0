"""The members a job trains one after another: one model, or an ensemble's (``--ensemble``).

Every member trains on the job's prepared panel with its own spec
(:func:`~stratcast.daemon.engine.spec.ensemble.member_specs`), through the memory plan and out-of-memory handling a
single model gets. Progress spans the job: member ``i``'s step ``s`` is reported as ``i * max_steps + s`` of
``members * max_steps`` (:class:`SpanProgress`), so a progress bar runs from 0 to 100% once.

Checkpoints of an ensemble: the training checkpoint of member ``i`` at step ``s`` is the file of step
``i * (max_steps + 1) + s`` (:func:`file_offset`: the newest file is the current member's, and the last step of
one member never shares a file with the first of the next), and it carries, under :data:`ENSEMBLE_KEY`,
the member's index and the weights of every finished member. A resume loads the finished members' weights,
continues the current member from its trainer state and trains the members after it: the forecast equals an
uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import torch
from torch import Tensor, nn

from stratcast.daemon.engine.memory.oom import OomHook
from stratcast.daemon.engine.run.build import Log, Prepared, make_model
from stratcast.daemon.engine.run.checkpoints import OnCheckpoint
from stratcast.daemon.engine.run.runplan import OnPlan
from stratcast.daemon.engine.spec.ensemble import member_labels
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.daemon.engine.training.checkpoint import CheckpointError, load_checkpoint
from stratcast.daemon.engine.training.trainparts import FitResult
from stratcast.shared.events import ProgressReported

ENSEMBLE_KEY = "ensemble"
"""The checkpoint entry of an ensemble: ``members`` (models), ``member`` (training now) and ``done`` (finished)."""


class SpanProgress:
    """A part's progress reports as steps of the whole job: ``k * max_steps + step`` of ``parts * max_steps``.

    A part is an ensemble's member or a backtest's refit block; the remaining time assumes the parts after it
    take as long per step as this one.
    """

    def __init__(self, sink: Callable[[ProgressReported], None], part: int, parts: int) -> None:
        self.sink, self.part, self.parts = sink, part, parts
        self.per_step = 0.0

    def __call__(self, p: ProgressReported) -> None:
        """Pass ``p`` on with the job's step, total and remaining time."""
        total, step = self.parts * p.max_steps, self.part * p.max_steps + p.step
        if p.step < p.max_steps:
            self.per_step = p.eta_s / (p.max_steps - p.step)
        self.sink(msgspec.structs.replace(p, step=step, max_steps=total, eta_s=(total - step) * self.per_step))


@dataclass
class Hooks:
    """The callbacks and files of a job (:func:`~stratcast.daemon.engine.run.job.run_job`, a backtest)."""

    log: Log
    on_progress: Callable[[ProgressReported], None] | None
    should_stop: Callable[[], bool] | None
    checkpoint_dir: Path
    on_checkpoint: OnCheckpoint | None
    on_oom: OomHook | None
    on_plan: OnPlan | None
    plan_cache: Path | None


@dataclass
class Member:
    """A finished member: its trained model and how its training went."""

    label: str
    spec: RunSpec
    model: nn.Module
    fit: FitResult


def labels(spec: RunSpec) -> list[str]:
    """The members' labels (``nhits#0``, ``nhits#1``, or ``nhits``, ``dlinear``); the model's name for one model."""
    return member_labels(spec.ensemble) if spec.ensemble else [spec.model]


def file_offset(i: int, spec: RunSpec) -> int:
    """The step added to member ``i``'s steps in its checkpoint files' names: members' files never collide."""
    return i * (spec.train.max_steps + 1)


def ensemble_state(spec: RunSpec, index: int, done: list[Member]) -> dict[str, Any]:
    """The checkpoint entries of an ensemble training member ``index`` (none for one model)."""
    if not spec.ensemble:
        return {}
    finished = [{"model": m.model.state_dict(), "fit": _fit_dict(m.fit)} for m in done]
    return {ENSEMBLE_KEY: {"members": list(spec.ensemble), "member": index, "done": finished}}


def _fit_dict(fit: FitResult) -> dict[str, Any]:
    """A fit as plain data for a checkpoint (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(fit).items()}


def resumed_members(specs: list[RunSpec], spec: RunSpec, prep: Prepared, path: Path | None) -> tuple[list[Member], int]:
    """The finished members recorded in the training checkpoint at ``path``, and the index of the member it trains.

    Without a checkpoint, or for one model, nothing is finished and member 0 trains.

    Raises:
        CheckpointError: when the checkpoint belongs to another ensemble (or to a job without one).
    """
    if path is None or not spec.ensemble:
        return [], 0
    entry = load_checkpoint(path).get(ENSEMBLE_KEY)
    if not isinstance(entry, dict) or entry.get("members") != list(spec.ensemble):
        raise CheckpointError(
            f"checkpoint {path} does not belong to this job: it was not written by the ensemble "
            f"{','.join(spec.ensemble)}; restart the run from scratch"
        )
    names = labels(spec)
    done = [_restore(names[i], specs[i], prep, rec) for i, rec in enumerate(entry["done"])]
    return done, int(entry["member"])


def _restore(label: str, spec: RunSpec, prep: Prepared, record: dict[str, Any]) -> Member:
    """A finished member rebuilt from its checkpoint record (weights and fit)."""
    model = make_model(spec, prep.panel.n_series).to(prep.raw.device)
    weights: dict[str, Tensor] = record["model"]
    model.load_state_dict(weights)
    fit = dict(record["fit"])
    fit["earlier_seconds"] = tuple(fit.get("earlier_seconds", ()))
    return Member(label, spec, model, FitResult(**fit))


def seed_member(spec: RunSpec) -> None:
    """Seed torch for a member's model, so its initial weights do not depend on the members before it."""
    torch.manual_seed(spec.train.seed)


def ensemble_fit(members: list[Member]) -> FitResult:
    """The job's training summary over its members: steps and seconds summed; one member's fit as it is."""
    if len(members) == 1:
        return members[0].fit
    losses = [m.fit.best_val_loss for m in members if m.fit.best_val_loss is not None]
    seconds = [s for m in members for s in m.fit.segment_seconds]
    return FitResult(
        steps=sum(m.fit.steps for m in members),
        best_val_loss=sum(losses) / len(losses) if losses else None,
        best_step=None,
        stopped_early=all(m.fit.stopped_early for m in members),
        interrupted=False,
        seconds=seconds[-1],
        earlier_seconds=tuple(seconds[:-1]),
    )


def ensemble_info(spec: RunSpec, members: list[Member]) -> dict[str, Any]:
    """``metrics.json``'s ``ensemble``: every member's model, seed, the options its catalog may set, and its training.

    Absent for one model.
    """
    if not spec.ensemble:
        return {}
    rows = [
        {
            "label": m.label,
            "model": m.spec.model,
            "seed": m.spec.train.seed,
            **{k: getattr(m.spec.train, k) for k in ("batch_size", "learning_rate", "loss", "series_per_window")},
            "steps": m.fit.steps,
            "best_step": m.fit.best_step,
            "best_val_loss": m.fit.best_val_loss,
            "stopped_early": m.fit.stopped_early,
            "train_seconds": m.fit.train_seconds,
        }
        for m in members
    ]
    return {"ensemble": {"members": rows, "combined": "mean"}}
