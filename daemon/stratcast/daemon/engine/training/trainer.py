"""The trainer: AdamW, an LR schedule, gradient clipping, early stopping that restores the best weights.

The loop is deliberately plain (one sampled batch of windows per step, one optimizer step). Its hooks
(:meth:`Trainer.sample`, :meth:`Trainer.elementwise_loss`, :meth:`Trainer.batch_loss`, :meth:`Trainer.target_count`,
:meth:`Trainer.micro_loss`, :meth:`Trainer.clip`, :meth:`Trainer.validation_loss`, :meth:`Trainer.improved`) are what
per-strategy (stacked) training overrides; :meth:`Trainer.target_count`, :meth:`Trainer.reduce_step` and
:meth:`Trainer.reduce_sums` are what a rank of a data-parallel run overrides
(:mod:`stratcast.daemon.engine.training.distributed`).

Losses: the trainer knows no loss by name. The run's output head (``cfg.head``, see
:mod:`stratcast.daemon.zoo.heads`) scores the model's outputs elementwise; a model that implements
:class:`~stratcast.daemon.zoo.heads.OwnLoss` scores itself. The trainer masks and averages either.

Micro-batches: a step draws its ``batch_size`` windows once and runs them as micro-batches of
``micro_batch_size`` (0: all at once) whose gradients accumulate. Each micro-batch's loss is its masked loss
*sum* divided by the whole step's count of scored targets, so every output element gets exactly the gradient it
gets in an unsplit step and the accumulated gradient is the unsplit step's gradient. It is not bitwise the same:
a weight gradient is a sum over the batch's windows (a matmul over the batch dimension), and summing it per
micro-batch and then across micro-batches rounds differently; the weights agree to float tolerance. A run with a
fixed micro-batch is bitwise reproducible, and an OOM retry (see :mod:`stratcast.daemon.engine.memory.oom`) gives
bitwise
the step the smaller micro-batch gives. With dropout, micro-batches draw their masks in another order
(statistically equivalent, not the same numbers).

Memory: the micro-batch starts at ``micro_batch_size``, or where :meth:`Trainer.set_micro_batch` puts it (the
job's memory plan, see :mod:`stratcast.daemon.engine.run.runplan`). On CUDA every step's peak is measured
(``max_memory_allocated``, reset at the step's start) and a halved micro-batch grows back only when the doubled
step is predicted to fit (:meth:`Trainer.room_to_grow`); :meth:`Trainer.probe_step` is the real step the memory
planner measures.

Validation score: with :meth:`Trainer.set_units` (the panel scaler's location and scale) every validation check
also scores the point forecast (the head's mean; a sampling model's mean of :data:`VAL_DRAWS` draws) in the
data's units, as the run's default forecast will use it: shrunk toward zero at each step by the least-squares
weight in [0, 1] (what the combination does with the zero forecast), its RMSE over the zero forecast's on the same
validation targets (:attr:`Trainer.last_score`, the progress report's ``val_score``): 1 when the model adds
nothing to forecasting zero, below 1 by what it adds. Unlike the loss, it does not depend on the loss, the head or
the scaler a run chose, so it compares across a study's trials: it is what the median and Hyperband pruners see.
(The raw model's RMSE ratio did not: trials whose raw model was 5% worse than zero at a check, and were pruned,
ended better than most, the combination having kept what they added.)

Callbacks: ``on_progress`` gets a :class:`~stratcast.shared.events.ProgressReported` every few steps;
``should_stop`` is asked before every step; ``on_step`` gets the trainer after every completed step that does not
end training (a step boundary: what :meth:`Trainer.state_dict` returns there resumes bit-exactly on CPU, so that
is where checkpoints are taken); ``on_oom`` (an attribute, like ``on_step``) gets an
:class:`~stratcast.daemon.engine.memory.oom.RanOutOfMemory` for every out-of-memory error.

The report dataclasses (``ProgressReported``, ``FitResult``), the loss meter and the stateless helpers the step uses
(bf16 autocast, the LR schedule, the micro-batch cut :func:`~stratcast.daemon.engine.training.trainparts.split`) are in
:mod:`stratcast.daemon.engine.training.trainparts`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import msgspec
import torch
from torch import Tensor, nn

from stratcast.daemon.engine.data.windows import TrainSampler, WindowBatch
from stratcast.daemon.engine.memory.devmem import DeviceMemory, device_memory, peak_budget
from stratcast.daemon.engine.memory.oom import (
    MicroBatchPlan,
    OomHook,
    OptimizerStepOutOfMemory,
    OutOfMemory,
    fault_limit,
    inject_fault,
    is_oom,
    levers_message,
    memory_now,
    oom_event,
    release_memory,
)
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.training.losses import masked_mean
from stratcast.daemon.engine.training.trainparts import (
    FitResult,
    LossMeter,
    autocast_for,
    compiled,
    make_optimizer,
    make_scheduler,
    side_inputs,
    split,
)
from stratcast.daemon.zoo.contract import UNIVARIATE, Capabilities, supports_activation_checkpointing
from stratcast.daemon.zoo.heads import OwnLoss
from stratcast.shared.events import ProgressReported, RanOutOfMemory

VAL_CHUNK = 65_536
VAL_DRAWS = 8
"""Draws whose mean is a sampling model's point forecast in the validation score."""
PROGRESS_EVERY = 10
TRAINER_STATE_VERSION = 1


StepHook = Callable[["Trainer"], None]
"""Called with the trainer at a step boundary (see the module docstring)."""


class Trainer:
    """Trains one model on windows drawn from a :class:`TrainSampler`.

    ``capabilities`` (the model's catalog entry's) say which side inputs the model is called with (:meth:`forward`).
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        sampler: TrainSampler,
        val: WindowBatch | None,
        *,
        on_progress: Callable[[ProgressReported], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_step: StepHook | None = None,
        capabilities: Capabilities = UNIVARIATE,
    ) -> None:
        self.cfg, self.sampler, self.val, self.capabilities = cfg, sampler, val, capabilities
        self.head = cfg.head
        """Scores the model's outputs (unless the model has its own loss)."""
        self.device = sampler.windows.padded.device
        self.model = model.to(self.device)
        self.run_model: nn.Module = compiled(self.model, self.device) if cfg.compile else self.model
        """What the forward pass calls: the model, or the model through torch.compile (the ``compile`` option)."""
        self.on_progress, self.should_stop, self.on_step = on_progress, should_stop, on_step
        self.optimizer = make_optimizer(self.model.parameters(), cfg, self.device)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.step = 0
        self.best_val: Tensor | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, Tensor] | None = None
        self.bad_checks = 0
        self.last_val: float | None = None
        """The latest validation loss (the members' mean in per-strategy mode): how good a checkpoint is."""
        self.units: tuple[Tensor, Tensor] | None = None
        """(location [N], scale [N]) of the panel's scaler on the device (:meth:`set_units`); None: no score."""
        self.last_score: float | None = None
        """The latest validation score (module docstring); None without units or before the first check."""
        self.micro = MicroBatchPlan(min(cfg.micro_batch_size or cfg.batch_size, cfg.batch_size), cfg.oom_grow_after)
        """The micro-batch in use (halved on an OOM, grown back later)."""
        self.split_dim = 0
        """The dimension of a step's windows that micro-batches cut (1 for stacked [N, b, ...] batches)."""
        self.fault_limit = fault_limit()
        self.on_oom: OomHook | None = None
        self.memory: DeviceMemory | None = device_memory(self.device)
        """Allocator figures (None off CUDA): each step's peak decides whether a halved micro-batch grows back."""
        self.last_peak: tuple[int, int] | None = None
        """(bytes allocated at the start, peak bytes) of the last step's successful attempt, on CUDA."""
        self.checkpointable = supports_activation_checkpointing(model)
        """Whether the model has blocks activation checkpointing applies to (for the levers message)."""
        self.earlier_seconds: list[float] = []
        """Training time of each earlier segment (fit, or run stopped and resumed), oldest first."""
        self.fit_clock: tuple[float, float | None] | None = None
        """``perf_counter`` at the start and end (None while it runs) of the latest fit; None before any."""

    # -- hooks -------------------------------------------------------------------------------------------------

    def forward(self, batch: WindowBatch) -> Tensor:
        """The model's outputs for ``batch``: its inputs plus the side inputs the model declares."""
        out: Tensor = self.run_model(batch.x, **side_inputs(self.capabilities, batch.rows, batch.origin))
        return out

    def sample(self) -> WindowBatch:
        """The windows of one step."""
        return self.sampler.sample(self.cfg.batch_size)

    @property
    def windows_per_step(self) -> int:
        """Training windows one step draws (``batch_size``), for the epoch and rate in progress reports."""
        return self.cfg.batch_size

    def elementwise_loss(self, part: WindowBatch) -> Tensor:
        """The unmasked float32 loss [..., H] of each target of ``part``: the model's own, or its head's."""
        with autocast_for(self.device, self.cfg.precision):
            if isinstance(self.model, OwnLoss):
                side = side_inputs(self.capabilities, part.rows, part.origin)
                return self.model.training_loss(part.x, part.y, **side).float()
            out = self.forward(part)
        return self.head.loss(out.float(), part.y)

    def batch_loss(self, err: Tensor, batch: WindowBatch) -> Tensor:
        """Scalar loss: the mean of the elementwise loss ``err`` [B, H] over the batch's scored targets."""
        return masked_mean(err, batch.mask)

    def target_count(self, batch: WindowBatch) -> Tensor:
        """The number of scored targets in a step's windows: the denominator of the step's mean loss."""
        return batch.mask.to(torch.float32).sum()

    def micro_loss(self, err: Tensor, part: WindowBatch, count: Tensor) -> Tensor:
        """A micro-batch's share of the step's loss: its masked loss sum (of ``err``) over the step's ``count``."""
        return (err * part.mask.to(err.dtype)).sum() / count.clamp(min=1)

    def clip(self) -> None:
        """Clip the gradient norm to ``grad_clip``."""
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip, foreach=True)

    def reduce_step(self, loss: Tensor) -> Tensor:
        """The step's loss once its gradients are complete (other processes' added, in a data-parallel run)."""
        return loss

    def reduce_sums(self, sums: Tensor) -> Tensor:
        """The validation sums [4] (loss, count, score sums) over every process's windows: here, ``sums``."""
        return sums

    def set_units(self, loc: Tensor, scale: Tensor) -> None:
        """Score validation checks in the data's units: ``loc`` and ``scale`` [N] are the panel scaler's."""
        self.units = (loc.to(self.device, torch.float32), scale.to(self.device, torch.float32))

    @torch.no_grad()
    def validation_loss(self) -> Tensor:
        """Loss on the validation windows, in chunks (and the validation score, when the trainer has units)."""
        assert self.val is not None
        total, count = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        score = ScoreMeter(self.units, self.device, self.val.y.shape[-1])
        for lo in range(0, self.val.x.shape[0], VAL_CHUNK):
            part = self.val.map(lambda t: t[lo : lo + VAL_CHUNK])  # noqa: B023 (used at once)
            n = part.mask.sum()
            err, point = self.validation_part(part)
            total += self.batch_loss(err, part) * n
            count += n
            score.add(point, part)
        sums = self.reduce_sums(torch.cat([torch.stack([total, count]).double(), score.sums.flatten()]))
        score.sums = sums[2:].view_as(score.sums)  # every rank's shard (one rank: the same sums)
        self.last_score = score.value()
        mean: Tensor = (sums[0] / sums[1].clamp(min=1)).to(total.dtype)
        return mean

    def validation_part(self, part: WindowBatch) -> tuple[Tensor, Tensor | None]:
        """The elementwise loss of validation windows ``part`` and, when the trainer has units, their point forecast.

        The point forecast is in the scaled units, from the same forward pass as the loss (a sampling model's is
        the mean of :data:`VAL_DRAWS` draws from a generator seeded by the run's seed: checks stay reproducible).
        """
        if self.units is None:
            return self.elementwise_loss(part), None
        if isinstance(self.model, OwnLoss):
            side = side_inputs(self.capabilities, part.rows, part.origin)
            generator = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
            with autocast_for(self.device, self.cfg.precision):
                loss = self.model.training_loss(part.x, part.y, **side).float()
                draws = self.model.sample(part.x, VAL_DRAWS, generator, **side).float()
            return loss, draws.mean(0)
        with autocast_for(self.device, self.cfg.precision):
            out = self.forward(part).float()
        return self.head.loss(out, part.y), self.head.mean(out)

    def improved(self, val: Tensor) -> bool:
        """Record ``val`` and keep the best weights; true when it beat the best so far."""
        if self.best_val is not None and not bool(val < self.best_val):
            return False
        self.best_val, self.best_step = val.detach().clone(), self.step
        self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return True

    # -- the loop ----------------------------------------------------------------------------------------------

    def train_step(self) -> Tensor:
        """One optimizer step over ``batch_size`` windows in micro-batches; returns the detached loss, unsynced.

        An OOM in a micro-batch's forward or backward pass restores the RNG states and sampler position of the
        step's start, halves the micro-batch and runs the same step again (see :meth:`try_accumulate`).
        """
        self.model.train()
        start = self.rng_state()
        while True:
            base = self.start_peak()
            if (loss := self.try_accumulate()) is not None:
                break
            self.load_rng_state(start)  # the retry draws the same windows
        loss = self.reduce_step(loss)
        self.clip()
        self.optimizer_step()
        self.scheduler.step()
        self.step += 1
        if self.memory is not None:
            self.last_peak = (base, self.memory.peak())
        self.micro.step_done(self.room_to_grow)
        return loss

    def start_peak(self) -> int:
        """Start measuring a step's peak; returns the bytes allocated now (0 off CUDA)."""
        if self.memory is None:
            return 0
        self.memory.reset_peak()
        return self.memory.allocated()

    def room_to_grow(self, bigger: int) -> bool:
        """Whether a step at micro-batch ``bigger`` is predicted to fit the memory budget (always true off CUDA).

        The last step's transient memory (its peak less what was allocated at its start: activations, gradients,
        the drawn windows) is scaled by ``bigger / current``, which overestimates it (only the activations grow
        with the micro-batch), and added to the peak; the sum must fit
        :func:`~stratcast.daemon.engine.memory.devmem.peak_budget` as it is now.
        """
        if self.memory is None or self.last_peak is None:
            return True
        base, peak = self.last_peak
        now = self.micro.current
        predicted = peak + (peak - base) * (bigger - now) / now
        return predicted <= peak_budget(self.memory)

    def set_micro_batch(self, micro_batch: int) -> None:
        """Start from ``micro_batch`` (the memory plan's choice), which is also the ceiling of growing back."""
        if not 1 <= micro_batch <= self.cfg.batch_size:
            raise ValueError(f"micro-batch {micro_batch} is not between 1 and batch_size={self.cfg.batch_size}")
        self.micro = MicroBatchPlan(micro_batch, self.cfg.oom_grow_after)

    def probe_step(self, micro_batch: int) -> None:
        """One real optimizer step whose forward and backward pass run ``micro_batch`` windows (for the planner).

        It draws a step's windows as :meth:`accumulate` does, puts the sampler back, and trains on the first
        micro-batch of them (the fault-injection testing aid applies). The weights, optimizer state and global RNG
        change: the caller (:class:`~stratcast.daemon.engine.memory.planner.CudaProbe`) restores them.
        """
        position = self.sampler.state_dict()
        self.model.train()
        batch = self.sample()
        self.sampler.load_state_dict(position)
        part = split(batch, micro_batch, self.split_dim)[0]
        self.optimizer.zero_grad(set_to_none=True)
        err = self.elementwise_loss(part)
        inject_fault(err, part.x.shape[self.split_dim], self.fault_limit)
        self.micro_loss(err, part, self.target_count(part)).backward()  # type: ignore[no-untyped-call]
        self.clip()
        self.optimizer.step()

    def accumulate(self) -> Tensor:
        """Draw the step's windows once and accumulate their gradient over micro-batches; returns the loss."""
        batch = self.sample()
        count = self.target_count(batch)
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for part in split(batch, self.micro.current, self.split_dim):
            err = self.elementwise_loss(part)
            inject_fault(err, part.x.shape[self.split_dim], self.fault_limit)
            loss = self.micro_loss(err, part, count)
            loss.backward()  # type: ignore[no-untyped-call]
            total += loss.detach()
        return total

    def try_accumulate(self) -> Tensor | None:
        """:meth:`accumulate`, or None after an OOM, cleaned up and with the micro-batch halved.

        Raises:
            OutOfMemory: when the micro-batch was 1 already.
        """
        try:
            return self.accumulate()
        except Exception as exc:
            if not is_oom(exc):
                raise
            error, memory = str(exc), memory_now(self.device)
        old = self.micro.current
        new = self.micro.shrink()
        self.clean_up_oom(oom_event(self.step + 1, "forward/backward", old, new or 0, memory, error))
        if new is None:
            raise OutOfMemory(self.levers_message(self.step + 1))
        return None

    def levers_message(self, step: int) -> str:
        """The out-of-memory message proposing the levers that apply to this run."""
        c = self.cfg
        return levers_message(
            step,
            c.batch_size,
            c.precision,
            checkpointing=c.activation_checkpointing,
            checkpointable=self.checkpointable,
        )

    def clean_up_oom(self, event: RanOutOfMemory) -> None:
        """Drop the gradients, give cached memory back and report ``event``.

        Called after the ``except`` block is left: its traceback held the failing frames' tensors until then.
        """
        self.optimizer.zero_grad(set_to_none=True)
        release_memory(self.device)
        self.report_oom(event)

    def optimizer_step(self) -> None:
        """``optimizer.step()``; an OOM there cannot be retried (parameters may be half updated).

        Raises:
            OptimizerStepOutOfMemory: on an OOM, after reporting it: the run must roll back to a checkpoint.
        """
        try:
            self.optimizer.step()
            return
        except Exception as exc:
            if not is_oom(exc):
                raise
            error, memory = str(exc), memory_now(self.device)
        now = self.micro.current
        self.clean_up_oom(oom_event(self.step + 1, "optimizer", now, now, memory, error))
        raise OptimizerStepOutOfMemory(
            f"out of memory in the optimizer step of step {self.step + 1}: the weights may be half updated, so the "
            "run must roll back to its last checkpoint"
        )

    def report_oom(self, event: RanOutOfMemory) -> None:
        """Send ``event`` (its error cut to the first line) to ``on_oom``."""
        first = event.error.splitlines()[0] if event.error else "out of memory"
        if self.on_oom is not None:
            self.on_oom(msgspec.structs.replace(event, error=first))

    def rng_state(self) -> dict[str, Any]:
        """The global RNG states and the sampler position, taken at a step's start."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {"torch": torch.get_rng_state(), "cuda": cuda, "sampler": self.sampler.state_dict()}

    def load_rng_state(self, state: dict[str, Any]) -> None:
        """Go back to :meth:`rng_state`."""
        torch.set_rng_state(state["torch"])
        if state["cuda"] is not None:
            torch.cuda.set_rng_state(state["cuda"], self.device)
        self.sampler.load_state_dict(state["sampler"])

    def fit(self) -> FitResult:
        """Train until ``max_steps``, early stopping or a stop request; restore the best weights."""
        cfg, t0 = self.cfg, time.perf_counter()
        self.earlier_seconds, self.fit_clock = self.segment_seconds(), (t0, None)
        meter = LossMeter(t0, self.step)
        stopped_early = interrupted = False
        while self.step < cfg.max_steps:
            if self.should_stop is not None and self.should_stop():
                interrupted = True
                break
            meter.add(self.train_step())
            val = self.check() if self.step % cfg.val_check_steps == 0 else None
            if val is not None or self.step % PROGRESS_EVERY == 0 or self.step == cfg.max_steps:
                self.report(meter, val)
            if self.patience_spent():
                stopped_early = True
                break
            if self.on_step is not None and self.step < cfg.max_steps:
                self.on_step(self)
        if not interrupted:  # an interrupted run keeps its current weights so it can be resumed exactly
            self.restore_best()
        best = None if self.best_val is None else float(self.best_val.mean())
        self.fit_clock = (t0, time.perf_counter())
        *earlier, seconds = self.segment_seconds()
        return FitResult(self.step, best, self.best_step, stopped_early, interrupted, seconds, tuple(earlier))

    def segment_seconds(self) -> list[float]:
        """Training time of every segment so far: the earlier ones, then the latest fit's (up to now, if it runs)."""
        if self.fit_clock is None:
            return list(self.earlier_seconds)
        start, end = self.fit_clock
        return [*self.earlier_seconds, (time.perf_counter() if end is None else end) - start]

    def check(self) -> Tensor | None:
        """Run a validation check, updating early stopping; None without validation windows."""
        if self.val is None:
            return None
        self.model.eval()
        val = self.validation_loss()
        self.last_val = float(val.mean())
        self.bad_checks = 0 if self.improved(val) else self.bad_checks + 1
        return val

    def patience_spent(self) -> bool:
        """Whether early stopping should end training now."""
        patience = self.cfg.early_stop_patience
        return self.val is not None and patience >= 0 and self.bad_checks > patience

    def restore_best(self) -> None:
        """Load the best validated weights, when there were validation checks."""
        if self.val is not None and (self.best_state is None or self.step % self.cfg.val_check_steps):
            self.check()  # score the final weights too, so the last steps are not thrown away unseen
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def report(self, meter: LossMeter, val: Tensor | None) -> None:
        """Send a :class:`~stratcast.daemon.engine.training.trainparts.ProgressReported` to the callback."""
        if self.on_progress is None:
            return
        train_loss, rate = meter.flush(self.step)
        remaining = (self.cfg.max_steps - self.step) * self.windows_per_step
        self.on_progress(
            ProgressReported(
                step=self.step,
                max_steps=self.cfg.max_steps,
                epoch=self.step * self.windows_per_step / self.sampler.n_windows,
                train_loss=train_loss,
                val_loss=None if val is None else float(val.mean()),
                val_score=None if val is None else self.last_score,
                best_val_loss=None if self.best_val is None else float(self.best_val.mean()),
                windows_per_s=rate * self.windows_per_step,
                eta_s=remaining / max(rate * self.windows_per_step, 1e-9),
                learning_rate=float(self.optimizer.param_groups[0]["lr"]),
                micro_batch=self.micro.current,
            )
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training: weights, optimizer, schedule, sampler, early stopping."""
        return {
            "version": TRAINER_STATE_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "step": self.step,
            "best_val": self.best_val,
            "best_step": self.best_step,
            "best_state": self.best_state,
            "bad_checks": self.bad_checks,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "micro_batch": self.micro.current,
            "last_val": self.last_val,
            "segment_seconds": self.segment_seconds(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`, which may have been loaded onto the CPU (tensors move to the device).

        The micro-batch in use when the state was saved (``micro_batch``) is not restored: a resume may find other
        free memory, so it starts from the configured micro-batch or the one the job plans for this device (the
        optimisation is the same either way).

        Raises:
            ValueError: for a state of another version.
        """
        if state.get("version") != TRAINER_STATE_VERSION:
            raise ValueError(f"trainer state version {state.get('version')} is not {TRAINER_STATE_VERSION}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.step, self.best_step, self.bad_checks = state["step"], state["best_step"], state["bad_checks"]
        best_val, best_state = state["best_val"], state["best_state"]
        self.last_val = state.get("last_val")
        self.earlier_seconds = [float(s) for s in state.get("segment_seconds", [])]  # absent before they were kept
        self.fit_clock = None
        self.best_val = None if best_val is None else best_val.to(self.device)
        self.best_state = None if best_state is None else {k: v.to(self.device) for k, v in best_state.items()}
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)


class ScoreMeter:
    """Per-step sums over validation chunks, in the data's units: the validation score (module docstring).

    With forecast ``f`` and target ``y`` in the data's units (``scaled * scale + loc``), each step ``h`` keeps
    ``sum f^2``, ``sum f y`` and ``sum y^2`` over the scored targets. The step's weight ``w = clip(sum f y / sum f^2,
    0, 1)`` minimizes the squared error of ``w f``, which is then ``sum y^2 - 2 w sum f y + w^2 sum f^2``.
    """

    def __init__(self, units: tuple[Tensor, Tensor] | None, device: torch.device, horizon: int) -> None:
        self.units = units
        self.sums = torch.zeros(3, horizon if units is not None else 0, dtype=torch.float64, device=device)
        """[3, H] float64: sum f^2, sum f y, sum y^2 at each step ([3, 0] without units: nothing is scored)."""

    def add(self, point: Tensor | None, part: WindowBatch) -> None:
        """Add chunk ``part``'s point forecast ``point`` (scaled, shaped like ``part.y``; None adds nothing)."""
        if self.units is None or point is None:
            return
        loc, scale = (u[part.rows].unsqueeze(-1) for u in self.units)  # [...] -> [..., 1]
        mask = part.mask.to(torch.float64)
        f, y = (point.double() * scale + loc) * mask, (part.y.double() * scale + loc) * mask
        dims = tuple(range(f.dim() - 1))  # every dimension but the step's
        self.sums += torch.stack([(f * f).sum(dims), (f * y).sum(dims), (y * y).sum(dims)])

    def value(self) -> float | None:
        """The shrunk forecast's RMSE over the zero forecast's; None without units or targets, or if not finite."""
        if self.units is None:
            return None
        ff, fy, yy = self.sums
        if float(yy.sum()) <= 0:
            return None
        w = torch.where(ff > 0, fy / ff.clamp(min=1e-300), 0.0).clamp(0.0, 1.0)
        sse = (yy - 2 * w * fy + w * w * ff).clamp(min=0.0)
        ratio = float((sse.sum() / yy.sum()).sqrt())
        return ratio if math.isfinite(ratio) else None
