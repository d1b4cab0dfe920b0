"""The trainer: AdamW, an LR schedule, gradient clipping, early stopping that restores the best weights.

The loop is deliberately plain (one sampled batch of windows per step, one optimizer step). Its hooks
(:meth:`Trainer.sample`, :meth:`Trainer.batch_loss`, :meth:`Trainer.clip`, :meth:`Trainer.validation_loss`,
:meth:`Trainer.improved`) are what per-strategy (stacked) training overrides.

Callbacks: ``on_progress`` gets a :class:`Progress` every few steps; ``should_stop`` is asked before every step;
``on_step`` gets the trainer after every completed step that does not end training (a step boundary: what
:meth:`Trainer.state_dict` returns there resumes bit-exactly on CPU, so that is where checkpoints are taken).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from stratcast.daemon.engine.config import TrainConfig
from stratcast.daemon.engine.losses import elementwise_loss, masked_mean
from stratcast.daemon.engine.windows import TrainSampler, WindowBatch

VAL_CHUNK = 65_536
PROGRESS_EVERY = 10
TRAINER_STATE_VERSION = 1


@dataclass(frozen=True)
class Progress:
    """One progress report, sent every few steps and at every validation check."""

    step: int
    max_steps: int
    epoch: float
    """Training windows seen divided by the number of distinct training windows."""
    train_loss: float
    """Mean training loss since the previous report."""
    val_loss: float | None
    best_val_loss: float | None
    windows_per_s: float
    eta_s: float
    learning_rate: float


@dataclass(frozen=True)
class FitResult:
    """What :meth:`Trainer.fit` did."""

    steps: int
    best_val_loss: float | None
    best_step: int | None
    stopped_early: bool
    """Early stopping ended the run before ``max_steps``."""
    interrupted: bool
    """A stop request ended the run; the weights are the current ones (``best_state`` holds the best)."""
    seconds: float


def autocast_for(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA (``auto`` or ``bf16``) and on CPU only when asked; otherwise nothing."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The LR schedule named by ``cfg.lr_schedule`` over ``cfg.max_steps``."""
    if cfg.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.learning_rate, total_steps=cfg.max_steps + 1)
    warm, total = cfg.warmup_steps, cfg.max_steps

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


StepHook = Callable[["Trainer"], None]
"""Called with the trainer at a step boundary (see the module docstring)."""


class Trainer:
    """Trains one model on windows drawn from a :class:`TrainSampler`."""

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        sampler: TrainSampler,
        val: WindowBatch | None,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_step: StepHook | None = None,
    ) -> None:
        self.cfg, self.sampler, self.val = cfg, sampler, val
        self.device = sampler.windows.padded.device
        self.model = model.to(self.device)
        self.on_progress, self.should_stop, self.on_step = on_progress, should_stop, on_step
        fused = self.device.type in ("cuda", "cpu")  # fused AdamW: one kernel for all parameters (CPU since 2.4)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=fused
        )
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.step = 0
        self.best_val: Tensor | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, Tensor] | None = None
        self.bad_checks = 0

    # -- hooks -------------------------------------------------------------------------------------------------

    def sample(self) -> WindowBatch:
        """The windows of one step."""
        return self.sampler.sample(self.cfg.batch_size)

    @property
    def windows_per_step(self) -> int:
        """Training windows one step draws (``batch_size``), for the epoch and rate in progress reports."""
        return self.cfg.batch_size

    def batch_loss(self, out: Tensor, batch: WindowBatch) -> Tensor:
        """Scalar loss of outputs [B, H, O] against the batch's masked targets."""
        c = self.cfg
        err = elementwise_loss(c.loss, out.float(), batch.y, delta=c.huber_delta, quantiles=c.quantiles)
        return masked_mean(err, batch.mask)

    def clip(self) -> None:
        """Clip the gradient norm to ``grad_clip``."""
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip, foreach=True)

    @torch.no_grad()
    def validation_loss(self) -> Tensor:
        """Loss on the validation windows, in chunks."""
        assert self.val is not None
        total, count = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        for lo in range(0, self.val.x.shape[0], VAL_CHUNK):
            part = self.val.map(lambda t: t[lo : lo + VAL_CHUNK])  # noqa: B023 (used at once)
            with autocast_for(self.device, self.cfg.precision):
                out = self.model(part.x)
            n = part.mask.sum()
            total += self.batch_loss(out, part) * n
            count += n
        return total / count.clamp(min=1)

    def improved(self, val: Tensor) -> bool:
        """Record ``val`` and keep the best weights; true when it beat the best so far."""
        if self.best_val is not None and not bool(val < self.best_val):
            return False
        self.best_val, self.best_step = val.detach().clone(), self.step
        self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return True

    # -- the loop ----------------------------------------------------------------------------------------------

    def train_step(self) -> Tensor:
        """One optimizer step; returns the (detached) loss without synchronising the device."""
        self.model.train()
        batch = self.sample()
        with autocast_for(self.device, self.cfg.precision):
            out = self.model(batch.x)
        loss = self.batch_loss(out, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.clip()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss.detach()

    def fit(self) -> FitResult:
        """Train until ``max_steps``, early stopping or a stop request; restore the best weights."""
        cfg, t0 = self.cfg, time.perf_counter()
        meter = _Meter(t0, self.step)
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
        seconds = time.perf_counter() - t0
        return FitResult(self.step, best, self.best_step, stopped_early, interrupted, seconds)

    def check(self) -> Tensor | None:
        """Run a validation check, updating early stopping; None without validation windows."""
        if self.val is None:
            return None
        self.model.eval()
        val = self.validation_loss()
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

    def report(self, meter: _Meter, val: Tensor | None) -> None:
        """Send a :class:`Progress` to the callback."""
        if self.on_progress is None:
            return
        train_loss, rate = meter.flush(self.step)
        remaining = (self.cfg.max_steps - self.step) * self.windows_per_step
        self.on_progress(
            Progress(
                step=self.step,
                max_steps=self.cfg.max_steps,
                epoch=self.step * self.windows_per_step / self.sampler.n_windows,
                train_loss=train_loss,
                val_loss=None if val is None else float(val.mean()),
                best_val_loss=None if self.best_val is None else float(self.best_val.mean()),
                windows_per_s=rate * self.windows_per_step,
                eta_s=remaining / max(rate * self.windows_per_step, 1e-9),
                learning_rate=float(self.optimizer.param_groups[0]["lr"]),
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
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`, which may have been loaded onto the CPU (tensors move to the device).

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
        self.best_val = None if best_val is None else best_val.to(self.device)
        self.best_state = None if best_state is None else {k: v.to(self.device) for k, v in best_state.items()}
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)


class _Meter:
    """Accumulates training losses on the device and reads them out only at report time."""

    def __init__(self, t0: float, step: int) -> None:
        self.t, self.step, self.n = t0, step, 0
        self.total: Tensor | None = None

    def add(self, loss: Tensor) -> None:
        self.total = loss if self.total is None else self.total + loss
        self.n += 1

    def flush(self, step: int) -> tuple[float, float]:
        """Mean loss since the last flush, and steps per second."""
        now = time.perf_counter()
        mean = float(self.total.mean()) / max(self.n, 1) if self.total is not None else float("nan")
        rate = (step - self.step) / max(now - self.t, 1e-9)
        self.t, self.step, self.total, self.n = now, step, None, 0
        return mean, rate
