"""Out-of-memory recovery in place: halve the micro-batch, retry the same step, grow back later.

A training step always covers ``batch_size`` windows (the effective batch). It runs as micro-batches of
:attr:`MicroBatchPlan.current` windows whose gradients accumulate, so the micro-batch can change without
changing the optimisation. When the forward or backward pass of a micro-batch runs out of memory
(``torch.OutOfMemoryError`` on CUDA, the CPU allocator's plain ``RuntimeError`` "can't allocate memory", or
Python's ``MemoryError``) the trainer:

1. leaves the ``except`` block first (the exception's traceback keeps the failing frames' tensors alive), then
   drops the gradients and empties the CUDA cache;
2. restores the global RNG states and the sampler position taken at the step's start, so the retried step draws
   the same windows;
3. halves the micro-batch (:meth:`MicroBatchPlan.shrink`) and retries the same step; at micro-batch 1 it raises
   :class:`OutOfMemory`, whose message proposes the memory levers;
4. after ``oom_grow_after`` steps without an OOM doubles the micro-batch again, up to the configured size (the
   planned one on CUDA), if there is room: on CUDA the trainer predicts the doubled step's peak from the last
   step's and grows only when it fits the memory budget (see :meth:`MicroBatchPlan.step_done`).

Every OOM is reported as an :class:`RanOutOfMemory` (the worker sends it as an ``oom`` event line). An OOM inside the
optimizer step cannot be retried (the optimizer may have updated some parameters already): it raises
:class:`OptimizerStepOutOfMemory`, and the job ends so that the run resumes from its last checkpoint.

**Testing aid** (off unless set): with the environment variable ``STRATCAST_FAULT_OOM_ABOVE=N``, every
micro-batch of more than ``N`` windows (per strategy in per-strategy mode) raises the CPU allocator's
out-of-memory error from inside its backward pass, after the forward pass has allocated its activations. It
lets the recovery path run on a CPU honestly (same exception type, raised from inside autograd); ``N=0`` means
nothing fits. It is read when a trainer is built. Never set it in production.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import torch
from torch import Tensor

from stratcast.shared.events import RanOutOfMemory

FAULT_ENV = "STRATCAST_FAULT_OOM_ABOVE"
"""Environment variable of the fault-injection testing aid (see the module docstring)."""
CPU_OOM_TEXT = "can't allocate memory"
"""What the CPU allocator's ``RuntimeError`` says when an allocation fails."""


class OutOfMemory(MemoryError):
    """Not even a micro-batch of one window fits; the message proposes the memory levers."""


class OptimizerStepOutOfMemory(MemoryError):
    """The optimizer step ran out of memory: the step cannot be retried, the run rolls back to a checkpoint."""


OomHook = Callable[[RanOutOfMemory], None]
"""Receives every :class:`RanOutOfMemory`."""


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure that a smaller micro-batch may avoid."""
    if isinstance(exc, OutOfMemory | OptimizerStepOutOfMemory):
        return False
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and CPU_OOM_TEXT in str(exc)


def oom_event(step: int, phase: str, old: int, new: int, memory: tuple[int, int, int], error: str) -> RanOutOfMemory:
    """The event of an OOM now, at 1-based ``step`` in ``phase``, retried at micro-batch ``new`` (0: none left).

    ``memory`` is :func:`memory_now`'s (allocated, reserved, rss) at the error.
    """
    allocated, reserved, rss = memory
    return RanOutOfMemory(
        time=time.time(),
        step=step,
        phase=phase,
        old_micro_batch=old,
        new_micro_batch=new,
        allocated=allocated,
        reserved=reserved,
        rss=rss,
        error=error,
    )


def memory_now(device: torch.device) -> tuple[int, int, int]:
    """(allocated, reserved, rss) in bytes right now; the CUDA figures are 0 off CUDA."""
    rss = psutil.Process().memory_info().rss
    if device.type != "cuda":
        return 0, 0, rss
    return torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device), rss


def release_memory(device: torch.device) -> None:
    """Give cached blocks back after an OOM (call it outside the ``except`` block, references dropped)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def levers_message(
    step: int, batch_size: int, precision: str, *, checkpointing: bool = False, checkpointable: bool = True
) -> str:
    """The final error's text: what ran out, and the levers that lower memory per window.

    Args:
        step: The step that failed.
        batch_size: The configured batch.
        precision: The ``precision`` option (bf16 is not proposed when it is on).
        checkpointing: Activation checkpointing is on already (not proposed again).
        checkpointable: The model supports activation checkpointing (in this mode).
    """
    bf16 = "" if precision == "bf16" else "set precision=bf16 (about half the activation memory); "
    ckpt = "set activation_checkpointing=true (about a third less, a third slower); "
    if checkpointing:
        ckpt = ""
    elif not checkpointable:
        ckpt = "(activation checkpointing is not available for this model or mode); "
    return (
        f"out of memory at step {step} even with a micro-batch of 1 window (batch_size={batch_size} kept as the "
        f"effective batch): {bf16}{ckpt}use a smaller model (fewer or narrower layers) or a smaller input_size; or "
        "lower batch_size"
    )


Room = Callable[[int], bool]
"""Whether a micro-batch of the given size would fit the memory now (asked before growing back)."""


@dataclass
class MicroBatchPlan:
    """The micro-batch in use: halved on an OOM, doubled back after ``grow_after`` steps without one."""

    configured: int
    """The micro-batch asked for or planned (never more than the batch): the ceiling of growing back."""
    grow_after: int
    """Steps without an OOM before doubling back."""
    current: int = 0
    """The micro-batch in use (0 until set: the configured one)."""
    stable: int = 0
    """Steps since the last OOM or the last growth."""

    def __post_init__(self) -> None:
        self.current = self.current or self.configured

    def shrink(self) -> int | None:
        """Halve the micro-batch after an OOM and return it; None when it was already 1."""
        self.stable = 0
        if self.current <= 1:
            return None
        self.current //= 2
        return self.current

    def step_done(self, room: Room | None = None) -> None:
        """Count a step that ran without an OOM; grow back toward :attr:`configured` when due and there is room.

        ``room`` (None: always) is asked about the doubled size once growing is due; while it says no, the
        micro-batch stays and the question is asked again after the next step.
        """
        self.stable += 1
        if self.current >= self.configured or self.stable < self.grow_after:
            return
        bigger = min(self.configured, self.current * 2)
        if room is None or room(bigger):
            self.current, self.stable = bigger, 0


def fault_limit() -> int | None:
    """The testing aid's limit from :data:`FAULT_ENV`, or None when it is unset.

    Raises:
        ValueError: when the variable is set to something other than a non-negative integer.
    """
    raw = os.environ.get(FAULT_ENV)
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise ValueError(f"{FAULT_ENV} must be a non-negative number of windows, got {raw!r}")
    return int(raw)


def inject_fault(out: Tensor, windows: int, limit: int | None) -> None:
    """With the testing aid on and more than ``limit`` windows, make ``out``'s backward pass fail as an OOM."""
    if limit is None or windows <= limit or not out.requires_grad:
        return

    def fail(grad: Tensor) -> Tensor:
        raise RuntimeError(
            f"DefaultCPUAllocator: {CPU_OOM_TEXT}: injected by {FAULT_ENV}={limit} for a micro-batch of {windows}"
        )

    out.register_hook(fail)  # type: ignore[no-untyped-call]
