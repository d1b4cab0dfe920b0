"""Data-parallel training of one run over several processes (``--gpus-per-run N``): ranks, the step's all-reduces.

A run over ``N`` processes (ranks; rank ``r`` trains on ``cuda:r`` with NCCL, or on the CPU with gloo) trains one
model as one process would with the same global batch:

- **Batch:** the global batch stays ``batch_size``; rank ``r`` draws its share (``batch_size // N``, one more for the
  first ``batch_size % N`` ranks, :meth:`Ranks.share`) from its own sampler stream (:meth:`Ranks.seed`). The rank's
  trainer runs with its share as ``batch_size``: its micro-batches, memory plan and OOM retries are its own.
- **Gradients:** every rank accumulates its micro-batches' gradients locally, then sums them over the ranks once
  per step, after every local backward pass succeeded (:func:`sum_gradients`: all-reduces of buckets of at most
  :data:`BUCKET_BYTES`, one for a small model). Each micro-loss divides by
  the step's GLOBAL count of scored targets (one tiny all-reduce, once per step, before the first micro-batch), so
  the summed gradient is the single-process gradient of the union batch. Torch's ``DistributedDataParallel`` is
  not used: its bucketed hooks all-reduce during the backward pass, and a rank whose micro-batch ran out of memory
  there retries its local step alone, which would pair its collectives with another rank's and desynchronise them;
  here an OOM retry redoes local work only, and the count is kept for the retry (it draws the same windows).
- **Stop:** before every step the ranks all-reduce (MAX) their stop flags, so a stop asked of rank 0 (the process
  the daemon signals) ends every rank at the same step boundary; their checkpoints then match.
- **Weights:** every rank builds the model from the same seed and takes rank 0's parameters once (a broadcast);
  identical optimizer steps on identical gradients keep them identical. Then each rank seeds its global RNG from
  :meth:`Ranks.seed` too, so its dropout masks are its own.
- **Models:** one batch-mode model, univariate (:class:`~stratcast.daemon.engine.data.windows.TrainSampler`) or
  multivariate (:class:`~stratcast.daemon.engine.data.windows.SeriesSampler`, validation in groups of series);
  ensembles and per-strategy mode refuse several devices
  (:func:`~stratcast.daemon.engine.run.build.check_distributable`).
- **Validation:** the validation windows are sharded over the ranks and their sums (loss, target count and the
  validation score's sums) all-reduced, so every rank takes the same early-stopping decision.
- **Checkpoints:** rank 0 writes the checkpoint (with ``world_size``); every other rank writes its sampler and RNG
  state next to it (``step-00000040.rank1.pt``, :func:`rank_path`), with the same safe save, rotated with it. A
  resume needs the same world size (:func:`check_world`); :func:`latest_for_world` picks the newest checkpoint
  whose every rank file loads.

A hung peer cannot block a rank forever: every collective has the process group's timeout
(``$STRATCAST_DIST_TIMEOUT_S``, default :data:`DEFAULT_TIMEOUT_S`; joining the group waits at least
:data:`RENDEZVOUS_S`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch._C._distributed_c10d import TCPStore  # what torch.distributed re-exports, typed

from stratcast.daemon.engine.data.windows import TrainSampler, WindowBatch
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.zoo.contract import UNIVARIATE, Capabilities
from stratcast.shared.events import ProgressReported

TIMEOUT_ENV = "STRATCAST_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
"""Longest wait of a collective for a peer before the rank fails."""
RENDEZVOUS_S = 300.0
"""Longest wait for every rank to join the group, at least (the ranks start, import torch and read the job)."""
WORLD_KEY = "world_size"
"""The checkpoint entry recording how many ranks wrote it (absent: 1)."""
RANK_STATE_VERSION = 1
BUCKET_BYTES = 64 * 2**20
"""Most float32 bytes of gradients summed in one all-reduce (its transient copy; a larger parameter goes alone)."""


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place in a run: rank ``rank`` of ``world`` (``Ranks(0, 1)``: a run in one process)."""

    rank: int
    world: int

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not between 0 and world size {self.world} - 1")

    @property
    def lead(self) -> bool:
        """Whether this is rank 0: the one that reports, writes the outputs and the checkpoint."""
        return self.rank == 0

    def share(self, batch_size: int) -> int:
        """This rank's windows of a step of ``batch_size`` (the first ``batch_size % world`` ranks draw one more).

        Raises:
            ValueError: when ``batch_size`` is smaller than the world size (a rank would draw nothing).
        """
        if batch_size < self.world:
            raise ValueError(
                f"batch_size {batch_size} is smaller than the {self.world} devices of the run: every device needs "
                f"windows; set batch_size to {self.world} or more, or run on fewer devices"
            )
        return batch_size // self.world + (self.rank < batch_size % self.world)

    def seed(self, seed: int) -> int:
        """The seed of this rank's sampler stream, derived from the run's ``seed`` (rank 0 of one process: it)."""
        return seed if self.world == 1 else (seed * 1_000_003 + self.rank + 1) % 2**63

    def shard(self, val: WindowBatch) -> WindowBatch:
        """This rank's contiguous part of the validation windows ``val`` (possibly empty)."""
        return val.map(lambda t: t.tensor_split(self.world)[self.rank])


def timeout() -> timedelta:
    """The process group's timeout: ``$STRATCAST_DIST_TIMEOUT_S`` seconds, else :data:`DEFAULT_TIMEOUT_S`."""
    return timedelta(seconds=float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S))


def _rendezvous() -> timedelta:
    return max(timeout(), timedelta(seconds=RENDEZVOUS_S))


def backend_for(device: torch.device) -> str:
    """NCCL on CUDA, gloo on the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def lead_store(world: int) -> TCPStore:
    """Rank 0's rendezvous store on a free port of 127.0.0.1 (its ``port`` is what the other ranks are given)."""
    return TCPStore("127.0.0.1", 0, world, True, timeout=_rendezvous(), wait_for_workers=False)


def join_group(ranks: Ranks, device: torch.device, store: TCPStore | None = None, port: int = 0) -> None:
    """Join the run's process group: rank 0 with its :func:`lead_store`, the others through its ``port``."""
    if store is None:
        store = TCPStore("127.0.0.1", port, ranks.world, False, timeout=_rendezvous())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend_for(device), store=store, rank=ranks.rank, world_size=ranks.world, timeout=timeout()
    )


def leave_group() -> None:
    """Leave the process group, when this process is in one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(t: Tensor) -> Tensor:
    """``t`` summed over the ranks (in place, returned)."""
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


class RankTrainer(Trainer):
    """A :class:`Trainer` on one rank of a data-parallel run (see the module docstring).

    ``cfg`` is the run's; the trainer runs with this rank's share of ``batch_size`` as its own. ``val`` is every
    validation window (the trainer keeps its shard); ``should_stop`` is this process's stop flag.
    """

    def __init__(
        self,
        ranks: Ranks,
        model: nn.Module,
        cfg: TrainConfig,
        sampler: TrainSampler,
        val: WindowBatch | None,
        *,
        on_progress: Callable[[ProgressReported], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        capabilities: Capabilities = UNIVARIATE,
    ) -> None:
        self.ranks, self.global_batch = ranks, cfg.batch_size
        local = dataclasses.replace(cfg, batch_size=ranks.share(cfg.batch_size))
        shard = None if val is None else ranks.shard(val)
        local_stop = should_stop or (lambda: False)
        super().__init__(
            model,
            local,
            sampler,
            shard,
            on_progress=on_progress,
            should_stop=lambda: self.agreed(local_stop()),
            capabilities=capabilities,
        )
        self.step_count: Tensor | None = None
        """The step's global count of scored targets, once all-reduced (kept for an OOM retry of the step)."""
        with torch.no_grad():
            for t in [*self.model.parameters(), *self.model.buffers()]:
                dist.broadcast(t, src=0)
        torch.manual_seed(ranks.seed(cfg.seed))  # the ranks' dropout masks differ, as one process's do per window

    @property
    def windows_per_step(self) -> int:
        """The global batch: every rank's windows of a step."""
        return self.global_batch

    def agreed(self, flag: bool) -> bool:
        """Whether any rank's ``flag`` is set (a MAX all-reduce): the stop request and time-based checkpoints."""
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def train_step(self) -> Tensor:
        """One step of the run: the local micro-batches, then the gradients summed over the ranks."""
        self.step_count = None
        return super().train_step()

    def target_count(self, batch: WindowBatch) -> Tensor:
        """The step's scored targets over every rank (all-reduced once per step; a retry reuses it)."""
        if self.step_count is None:
            self.step_count = all_sum(super().target_count(batch))
        return self.step_count

    def probe_step(self, micro_batch: int) -> None:
        """The planner's probe: local, its count is the probed micro-batch's own (no collective)."""
        self.step_count = torch.ones((), device=self.device)  # any count: the probe measures memory
        try:
            super().probe_step(micro_batch)
        finally:
            self.step_count = None

    def reduce_step(self, loss: Tensor) -> Tensor:
        """Sum every gradient and the step's loss over the ranks (:func:`sum_gradients`)."""
        return sum_gradients(list(self.model.parameters()), loss)

    def reduce_sums(self, sums: Tensor) -> Tensor:
        """The validation sums of every rank's shard."""
        return all_sum(sums)

    def state_dict(self) -> dict[str, Any]:
        """The trainer's state, with the world size it was trained over."""
        return super().state_dict() | {WORLD_KEY: self.ranks.world}

    def rank_state(self) -> dict[str, Any]:
        """What this rank (not rank 0) keeps besides rank 0's checkpoint: its sampler position and RNG states."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {
            "version": RANK_STATE_VERSION,
            "rank": self.ranks.rank,
            WORLD_KEY: self.ranks.world,
            "step": self.step,
            "sampler": self.sampler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": cuda,
        }

    def load_rank_state(self, state: dict[str, Any]) -> None:
        """Continue this rank's sampler and RNG streams from :meth:`rank_state`."""
        if state.get("version") != RANK_STATE_VERSION or state.get("rank") != self.ranks.rank:
            raise CheckpointError(
                f"rank state of rank {state.get('rank')} (version {state.get('version')}) is not rank "
                f"{self.ranks.rank}'s"
            )
        if state.get("step") != self.step:
            raise CheckpointError(f"rank {self.ranks.rank}'s state is of step {state.get('step')}, not {self.step}")
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)


def sum_gradients(params: list[nn.Parameter], loss: Tensor) -> Tensor:
    """Sum the gradients of ``params`` and ``loss`` over the ranks (in place); returns the summed loss.

    A tiny all-reduce first says which parameters have a gradient on some rank, with the loss: a parameter without
    one on every rank keeps none (as in one process: AdamW skips it); one with a gradient on some rank gets the sum
    (a missing one counts as zeros). The gradients then travel in float32 buckets of at most
    :data:`BUCKET_BYTES`, each written back before the next is copied, so the transient memory is one bucket, not
    a second copy of every gradient. Complex gradients travel as their real and imaginary parts.
    """
    flags = [float(p.grad is not None) for p in params]
    head = all_sum(torch.tensor([*flags, 0.0], device=loss.device) + _last(len(flags) + 1, loss))
    have = head[:-1].tolist()  # one device sync, not one per parameter
    live = [p for p, n in zip(params, have, strict=True) if n > 0]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    for bucket in _buckets(live):
        flat = [_real(p.grad).reshape(-1).float() for p in bucket if p.grad is not None]
        summed, at = all_sum(torch.cat(flat)), 0
        for p, t in zip(bucket, flat, strict=True):
            assert p.grad is not None
            _real(p.grad).copy_(summed[at : at + t.numel()].view(_real(p.grad).shape))
            at += t.numel()
    return head[-1].reshape(loss.shape).to(loss.dtype)


def _last(n: int, value: Tensor) -> Tensor:
    """[n] zeros but for ``value`` (a scalar) last."""
    out = torch.zeros(n, device=value.device)
    out[-1] = value.detach().float()
    return out


def _buckets(params: list[nn.Parameter]) -> list[list[nn.Parameter]]:
    """``params`` in order, in groups of at most :data:`BUCKET_BYTES` of float32 (a larger parameter alone)."""
    out: list[list[nn.Parameter]] = []
    size = BUCKET_BYTES
    for p in params:
        n = _real(p).numel() * 4
        if size + n > BUCKET_BYTES:
            out.append([])
            size = 0
        out[-1].append(p)
        size += n
    return out


def _real(t: Tensor) -> Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def rank_path(path: Path, rank: int) -> Path:
    """Rank ``rank``'s state file next to rank 0's checkpoint ``path``: ``step-00000040.rank1.pt``."""
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def save_rank_state(path: Path, trainer: RankTrainer) -> Path:
    """Write this rank's state next to rank 0's checkpoint ``path`` (same safe save); returns its path."""
    mine = rank_path(path, trainer.ranks.rank)
    save_checkpoint(mine, {"rank_state": trainer.rank_state()}, {"step": trainer.step, "rank": trainer.ranks.rank})
    return mine


def load_rank_state(path: Path, trainer: RankTrainer) -> None:
    """Load this rank's state written next to rank 0's checkpoint ``path``.

    Raises:
        CheckpointError: when the file is missing, damaged or another rank's or step's.
    """
    trainer.load_rank_state(load_checkpoint(rank_path(path, trainer.ranks.rank))["rank_state"])


def world_of(state: dict[str, Any]) -> int:
    """How many ranks trained the checkpoint ``state`` (1 for a checkpoint without the entry)."""
    trainer = state.get("trainer")
    world = trainer.get(WORLD_KEY, 1) if isinstance(trainer, dict) else 1
    return int(world)


def check_world(path: Path, state: dict[str, Any], world: int) -> None:
    """Refuse to resume ``world`` ranks from checkpoint ``path`` written by another number of ranks.

    Every rank's sampler stream is part of the run's state: continuing over another number of devices would not
    be the run that was stopped.

    Raises:
        CheckpointError: naming both world sizes and what to do.
    """
    saved = world_of(state)
    if saved != world:
        raise CheckpointError(
            f"checkpoint {path.name} was written by a run over {saved} device(s) and this run has {world}: resume it "
            f"with --gpus-per-run {saved}, or restart the run from scratch"
        )


def latest_for_world(directory: Path, world: int, log: Callable[[str], None] | None = None) -> Path | None:
    """The newest checkpoint in ``directory`` that loads with every rank file of ``world`` ranks; None: none.

    A checkpoint written by another world size is returned as it is (the resume refuses it with a clear
    message rather than silently starting over); a damaged file, or a missing or damaged rank file, is reported
    through ``log`` and skipped.
    """

    def rank_files_load(path: Path, state: dict[str, Any]) -> None:
        if world_of(state) == world:
            for r in range(1, world):
                load_checkpoint(rank_path(path, r))

    return latest_checkpoint(directory, log, verify=rank_files_load)
