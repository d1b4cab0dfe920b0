"""The trainer's parts that hold no trainer state: its reports and the helpers its step uses.

- What :class:`~stratcast.daemon.engine.training.trainer.Trainer` reports: a ``ProgressReported`` every few steps, a
  :class:`FitResult` at the end, and the :class:`LossMeter` that keeps the training losses on the device between
  reports.
- Precision: :func:`uses_bf16` and :func:`autocast_for` (bf16 autocast on CUDA for ``auto``, elsewhere only when
  asked), shared by training, validation, forecasting and the memory planner.
- What a model is called with: :func:`side_inputs`, the one place the engine turns its windows' series rows and
  origins into the keyword inputs a model declares (its catalog capabilities).
- :func:`compiled`: a model's forward pass through ``torch.compile`` (the ``compile`` option).
- The optimizer (:func:`make_optimizer`: AdamW, fused for real parameters) and the LR schedule
  (:func:`make_scheduler`), and the micro-batch cut (:func:`split`: a step's windows as views, in
  order).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from stratcast.daemon.engine.data.windows import WindowBatch
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.zoo.contract import Capabilities


@dataclass(frozen=True)
class FitResult:
    """What :meth:`~stratcast.daemon.engine.training.trainer.Trainer.fit` did."""

    steps: int
    best_val_loss: float | None
    best_step: int | None
    stopped_early: bool
    """Early stopping ended the run before ``max_steps``."""
    interrupted: bool
    """A stop request ended the run; the weights are the current ones (``best_state`` holds the best)."""
    seconds: float
    """Training time of this fit (the run's last segment)."""
    earlier_seconds: tuple[float, ...] = ()
    """Training time of each earlier segment of a resumed run (from its checkpoint), oldest first."""

    @property
    def segment_seconds(self) -> list[float]:
        """Training time of every segment of the run, this fit's last."""
        return [*self.earlier_seconds, self.seconds]

    @property
    def train_seconds(self) -> float:
        """The run's training time over all its segments."""
        return sum(self.segment_seconds)


class LossMeter:
    """Accumulates training losses on the device and reads them out only at report time."""

    def __init__(self, t0: float, step: int) -> None:
        self.t, self.step, self.n = t0, step, 0
        self.total: Tensor | None = None

    def add(self, loss: Tensor) -> None:
        """Add one step's detached loss (kept on the device, not read)."""
        self.total = loss if self.total is None else self.total + loss
        self.n += 1

    def flush(self, step: int) -> tuple[float, float]:
        """Mean loss since the last flush, and steps per second."""
        now = time.perf_counter()
        mean = float(self.total.mean()) / max(self.n, 1) if self.total is not None else float("nan")
        rate = (step - self.step) / max(now - self.t, 1e-9)
        self.t, self.step, self.total, self.n = now, step, None, 0
        return mean, rate


def uses_bf16(device: torch.device, precision: str) -> bool:
    """Whether training runs under bf16 autocast: on CUDA for ``auto`` or ``bf16``, elsewhere only for ``bf16``."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast_for(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA (``auto`` or ``bf16``) and on CPU only when asked; otherwise nothing."""
    if not uses_bf16(device, precision):
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


COMPILE_BACKEND = "inductor"
"""``torch.compile``'s backend for the ``compile`` option (tests use ``aot_eager``: the same tracing, no C++ build)."""


def compiled(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` behind ``torch.compile``: calls run the compiled forward pass on the same parameters.

    The model itself stays what is saved and loaded (the compiled wrapper's state dict would prefix every key). The
    batch dimension is compiled dynamic, so a micro-batch halved after an out-of-memory error does not recompile
    for every size.

    Raises:
        ValueError: on a CPU without a C++ compiler, which inductor needs there.
    """
    if COMPILE_BACKEND == "inductor" and device.type == "cpu" and not any(map(shutil.which, ("g++", "c++", "clang++"))):
        raise ValueError(
            "compile=true needs a C++ compiler on a CPU (torch.compile's inductor builds C++ kernels): install g++ "
            "or leave compile off"
        )
    out: nn.Module = torch.compile(model, backend=COMPILE_BACKEND, dynamic=None)  # type: ignore[assignment]
    return out


def side_inputs(capabilities: Capabilities, rows: Tensor, origin: Tensor | None = None) -> dict[str, Tensor]:
    """The keyword inputs a model declares, for windows of series ``rows`` at ``origin`` (shaped alike).

    Every place the engine runs a model calls it as ``model(x, **side_inputs(...))``: the trainer's steps and
    validation, the memory planner's probe step, stacked training and prediction. A model that declares none gets
    ``model(x)``, as it always did.

    Raises:
        ValueError: when the model declares ``origin`` and none was given.
    """
    side: dict[str, Tensor] = {}
    for name in capabilities.side_inputs:
        if name == "ids":
            side["ids"] = rows
        elif origin is None:
            raise ValueError(f"the model takes {name}= but its caller gave no window origins")
        else:
            side["origin"] = origin
    return side


def make_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over ``params``, fused (one kernel for all parameters; on the CPU since torch 2.4) on CUDA and CPU.

    Fused AdamW takes real floating-point parameters only (torch 2.13 raises on complex ones), so complex
    parameters (the frequency-domain weights of FITS or FEDformer) get a second group that leaves the choice to
    torch (``fused=None``: foreach on CUDA, a loop on the CPU). Those kernels update a complex tensor as its real
    and imaginary parts (``view_as_real``): the same decoupled weight decay, and moments per part. A model without
    complex parameters gets the one group it always had, so its steps and optimizer state are unchanged.
    """
    params = list(params)
    real = [p for p in params if not p.is_complex()]
    spectral = [p for p in params if p.is_complex()]
    groups: list[dict[str, Any]] = [{"params": real}] if real else []
    if spectral:
        groups.append({"params": spectral, "fused": None})
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=fused)


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


def split(batch: WindowBatch, size: int, dim: int) -> list[WindowBatch]:
    """``batch`` cut along ``dim`` into micro-batches of ``size`` windows (views, in order; the last may be short)."""
    n = batch.x.shape[dim]
    if size >= n:
        return [batch]
    return [batch.map(_narrow(dim, lo, min(size, n - lo))) for lo in range(0, n, size)]


def _narrow(dim: int, start: int, length: int) -> Callable[[Tensor], Tensor]:
    return lambda t: t.narrow(dim, start, length)
