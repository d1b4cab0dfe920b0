"""When and what a job checkpoints: its training checkpoints, the resume from one, and the final ``model.pt``.

The file format (temp file, fsync, sha256 manifest, rotation, ``weights_only`` load) is
:mod:`stratcast.daemon.engine.training.checkpoint`'s; this module decides what goes in a checkpoint and when.

Training checkpoints (``kind: "train"``) go to ``checkpoint_dir/step-00000123.pt`` every
``checkpoint_every_steps`` steps and/or ``checkpoint_every_s`` seconds, and when a stop request ends training. A
resume rebuilds the data, model and trainer exactly as a fresh run (see :mod:`stratcast.daemon.engine.run.build`)
and loads the trainer state: on CPU the result equals an uninterrupted run bit for bit. The final checkpoint
(``kind: "final"``, ``out/model.pt``) holds the trained model, its scaler and configs, loadable with
``weights_only=True``. Every checkpoint records the memory plan the run trained under (``memory_plan``).

A data-parallel run (:mod:`stratcast.daemon.engine.training.distributed`): rank 0 writes the checkpoint, every other
rank its own sampler and RNG state next to it (``step-00000123.rank1.pt``), at the same steps; a resume loads both
and refuses a checkpoint of another world size.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stratcast.daemon.engine.run.build import Log, Prepared
from stratcast.daemon.engine.run.runplan import RunPlan
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.daemon.engine.spec.specfile import SCHEDULE_OPTIONS
from stratcast.daemon.engine.training.checkpoint import (
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
    save_rotating,
)
from stratcast.daemon.engine.training.distributed import (
    Ranks,
    RankTrainer,
    check_world,
    load_rank_state,
    save_rank_state,
)
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.shared.runfiles import Outputs

OnCheckpoint = Callable[[Path, int], None]
"""Called with a training checkpoint's path and step once it is safely on disk."""
TRAIN_KIND, FINAL_KIND = "train", "final"
"""``kind`` of a resumable training checkpoint and of the final ``model.pt``."""


class Checkpointer:
    """Writes the training checkpoints of one job: on a step or time interval, and when asked."""

    def __init__(
        self, spec: RunSpec, prep: Prepared, directory: Path, on_saved: OnCheckpoint | None, ranks: Ranks | None = None
    ) -> None:
        self.spec, self.prep, self.directory, self.on_saved = spec, prep, directory, on_saved
        self.ranks = ranks or Ranks(0, 1)
        """Rank 0 writes the checkpoint; another rank of a data-parallel run writes its own state next to it."""
        self.last_time = time.monotonic()
        self.last: tuple[int, Path] | None = None
        self.plan: dict[str, Any] | None = None
        """The run's memory plan (:meth:`RunPlan.to_dict`), recorded in every checkpoint."""
        self.member, self.offset = spec, 0
        self.extra: dict[str, Any] = {}
        """The spec of the member training now, the steps of the members before it (a file's step is
        ``offset + step``: the newest file is the current member's) and the entries saved besides the trainer's."""

    def start_member(self, spec: RunSpec, offset: int, extra: dict[str, Any]) -> None:
        """Checkpoint an ensemble's member from now on: its ``spec``, its files' step ``offset`` and ``extra``."""
        self.member, self.offset, self.extra = spec, offset, extra

    def due(self, step: int) -> bool:
        """Whether the step or the time interval since the last checkpoint has come round."""
        every_steps, every_s = self.spec.train.checkpoint_every_steps, self.spec.train.checkpoint_every_s
        by_steps = every_steps > 0 and step % every_steps == 0
        return by_steps or (every_s > 0 and time.monotonic() - self.last_time >= every_s)

    def maybe_save(self, trainer: Trainer) -> None:
        """The trainer's step hook: save when :meth:`due` (on a rank: when due on any rank, so all save together)."""
        due = self.due(trainer.step)
        if isinstance(trainer, RankTrainer) and self.spec.train.checkpoint_every_s > 0:
            due = trainer.agreed(due)  # the clocks differ; the step interval alone is the same on every rank
        if due:
            self.save(trainer)

    def rollback_note(self, resumed_from: Path | None) -> str:
        """Which checkpoint a run that must roll back continues from when resumed."""
        if self.last is not None:
            return f"resume the run to continue from {self.last[1]} (step {self.last[0]})"
        if resumed_from is not None:
            return f"resume the run to continue from {resumed_from}"
        return "no checkpoint was written yet: the run starts again from scratch"

    def save(self, trainer: Trainer) -> Path:
        """Save the trainer's state now (once per step) and return the checkpoint's path."""
        step = self.offset + trainer.step
        if self.last is not None and self.last[0] == step:
            return self.last[1]
        if not self.ranks.lead:
            assert isinstance(trainer, RankTrainer)
            path = checkpoint_path(self.directory, step)
            save_rank_state(path, trainer)
            self.last, self.last_time = (step, path), time.monotonic()
            return path
        state = checkpoint_state(self.member, trainer, self.prep, TRAIN_KIND, self.plan) | self.extra
        path = save_rotating(self.directory, step, state, val_loss=trainer.last_val)
        self.last, self.last_time = (step, path), time.monotonic()
        if self.on_saved is not None:
            self.on_saved(path, step)
        return path


def resume(spec: RunSpec, prep: Prepared, trainer: Trainer, path: Path, log: Log) -> None:
    """Load the training checkpoint at ``path`` into a freshly built ``trainer``.

    Raises:
        CheckpointError: when the file is damaged, is not a training checkpoint, or was written for another
            model, mode, configuration, panel or number of devices (or a rank's own file is missing).
    """
    state = load_checkpoint(path)
    expected = checkpoint_state(spec, None, prep, TRAIN_KIND)
    for key in ("kind", "model_name", "mode", "model_config", "train_config", "ids"):
        if _comparable(key, state.get(key)) != _comparable(key, expected[key]):
            raise CheckpointError(
                f"checkpoint {path} does not belong to this job: its {key} differs (was the job or its data file "
                "changed?); restart the run from scratch"
            )
    ranks = trainer.ranks if isinstance(trainer, RankTrainer) else Ranks(0, 1)
    check_world(path, state, ranks.world)
    trainer.load_state_dict(state["trainer"])
    if isinstance(trainer, RankTrainer) and not ranks.lead:
        load_rank_state(path, trainer)
    log(f"resumed from {path.name} at step {trainer.step}/{spec.train.max_steps}")


def _comparable(key: str, value: Any) -> Any:
    """``value`` as plain JSON data (tuples and lists alike), without the options a resume may change."""
    if key == "train_config" and isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in SCHEDULE_OPTIONS}
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def save_final(
    out: Path, spec: RunSpec, trainer: Trainer, prep: Prepared, plan: RunPlan, extra: dict[str, Any] | None = None
) -> None:
    """The final checkpoint: trainer state, scaler, configs and memory plan, loadable with ``weights_only=True``.

    ``extra``: entries saved besides (an ensemble's members, ``trainer`` being its last member's).
    """
    state = checkpoint_state(spec, trainer, prep, FINAL_KIND, plan.to_dict()) | (extra or {})
    save_checkpoint(Outputs(out).model, state)


def checkpoint_state(
    spec: RunSpec, trainer: Trainer | None, prep: Prepared, kind: str, plan: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A checkpoint's named state (``trainer`` is None when only the identifying fields are wanted).

    ``memory_plan`` is the plan the run trained under (:meth:`RunPlan.to_dict`): a record, not restored on a
    resume, which plans again for its own device.
    """
    return {
        "kind": kind,
        "model_name": spec.model,
        "mode": spec.mode,
        "model_config": dataclasses.asdict(spec.model_config()),
        "train_config": dataclasses.asdict(spec.train),
        "trainer": None if trainer is None else trainer.state_dict(),
        "scaler": prep.scaler.state_dict(),
        "ids": [str(i) for i in prep.panel.ids],
        "memory_plan": plan,
    }
