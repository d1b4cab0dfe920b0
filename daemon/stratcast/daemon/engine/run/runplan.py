"""A run's memory plan: the micro-batch its training starts with, and how that was chosen.

:func:`start_plan` is called by the job once the trainer is built (and resumed), before training; it logs the
plan, hands it to ``on_plan`` and sets the trainer's micro-batch. The plan itself is :func:`plan_run`'s:

* ``micro_batch_size`` set by the user: that micro-batch, nothing measured (``source: "fixed"``);
* no CUDA device (CPU, MPS): the whole batch, nothing measured (``source: "cpu"``);
* CUDA: a plan from the plan cache when one was made for the same model, shapes, precision, GPU and torch version
  and a budget within 5% (``source: "cache"``); otherwise the memory planner
  (:func:`~stratcast.daemon.engine.memory.planner.plan_micro_batch`) measures real steps of this very trainer
  (:meth:`~stratcast.daemon.engine.training.trainer.Trainer.probe_step`, put back afterwards by
  :class:`~stratcast.daemon.engine.memory.planner.CudaProbe`) from ``batch_size / 4`` upward and confirms its choice
  with
  one step (``source: "probe"``), and the plan is cached.

The budget is :func:`~stratcast.daemon.engine.memory.devmem.peak_budget`: the bytes allocated now plus 90% of what is
still available less a 256 MiB reserve. A resume plans again (the device or its free memory may have changed); the
micro-batch recorded in a checkpoint does not bind it. When not even a micro-batch of 1 fits, the plan has
``micro_batch`` 0 and the job ends with :class:`~stratcast.daemon.engine.memory.oom.OutOfMemory`.

The plan cache is one JSON file, ``memory-plans.json`` in the daemon's state folder (``$STRATCAST_HOME``, else
the XDG state folder), shared by all runs and tuning trials of that daemon and by foreground runs;
``STRATCAST_PLAN_CACHE=PATH`` names another file and ``STRATCAST_PLAN_CACHE=`` (empty) turns caching off.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratcast.daemon.engine.memory.devmem import DeviceMemory, peak_budget
from stratcast.daemon.engine.memory.oom import OutOfMemory
from stratcast.daemon.engine.memory.plancache import PlanCache, PlanCacheWarning, plan_key
from stratcast.daemon.engine.memory.planner import MIB, CudaProbe, MemoryPlan, levers, plan_micro_batch
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.engine.training.trainparts import uses_bf16
from stratcast.shared.paths import resolve_home

PLAN_CACHE_ENV = "STRATCAST_PLAN_CACHE"
"""Environment variable naming the plan cache file (empty: no cache)."""
PROBE_START_DIVISOR = 4
"""Probing starts at ``batch_size // 4``: two doublings reach the whole batch, and a first probe that small
rarely runs out of memory."""
SOURCES = ("probe", "cache", "cpu", "fixed")


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """The micro-batch a run trains with, and the measurements behind it (sizes in bytes)."""

    micro_batch: int
    """The chosen micro-batch (per strategy in per-strategy mode); 0 when not even 1 fits."""
    batch_size: int
    """The configured batch: the effective batch of every step, whatever the micro-batch."""
    source: str
    """How it was chosen: one of :data:`SOURCES`."""
    device: str
    budget: int | None = None
    """The peak a step may reach (probe and cache plans)."""
    predicted_peak: int | None = None
    measured_peak: int | None = None
    probes: tuple[tuple[int, int], ...] = ()
    """Measured ``(micro_batch, peak)`` steps, in the order taken."""
    oom_probes: tuple[int, ...] = ()
    """Micro-batches whose probe step ran out of memory."""
    levers: tuple[str, ...] = ()
    """Sentences on whether bf16 autocast or activation checkpointing would make the whole batch fit."""
    seconds: float = 0.0
    """Time spent probing (0 for the other sources)."""

    @property
    def fits(self) -> bool:
        """Whether some micro-batch fits."""
        return self.micro_batch > 0

    def to_dict(self) -> dict[str, Any]:
        """The worker's ``plan`` event fields; also ``metrics.json``'s and the checkpoints' ``memory_plan``."""
        return {
            "micro_batch": self.micro_batch,
            "batch_size": self.batch_size,
            "budget": self.budget,
            "predicted_peak": self.predicted_peak,
            "measured_peak": self.measured_peak,
            "probes": [{"micro_batch": m, "peak": p} for m, p in self.probes],
            "oom_probes": list(self.oom_probes),
            "source": self.source,
            "levers": list(self.levers),
            "device": self.device,
            "seconds": self.seconds,
        }

    def describe(self) -> str:
        """One log line."""
        head = f"memory plan: micro-batch {self.micro_batch} of {self.batch_size}"
        if self.source == "fixed":
            return f"{head} (micro_batch_size is set)"
        if self.source == "cpu":
            return f"{head} (no memory probing on {self.device})"
        budget = f"{(self.budget or 0) / MIB:.0f} MiB budget"
        if not self.fits:
            return f"memory plan: not even a micro-batch of 1 fits the {budget} ({len(self.probes)} probes)"
        passes = math.ceil(self.batch_size / self.micro_batch)
        peak = self.measured_peak if self.measured_peak is not None else self.predicted_peak
        how = "cached plan" if self.source == "cache" else f"{self.n_probes} probe steps in {self.seconds:.1f} s"
        return f"{head} ({passes} pass(es) per step), peak {(peak or 0) / MIB:.0f} MiB of a {budget} ({how})"

    @property
    def n_probes(self) -> int:
        """Steps measured, out-of-memory ones included."""
        return len(self.probes) + len(self.oom_probes)


OnPlan = Callable[[RunPlan], None]
"""Called with the run's memory plan before training starts."""


def start_plan(
    trainer: Trainer,
    spec: RunSpec,
    *,
    cache: Path | None,
    panel_shape: tuple[int, int],
    log: Callable[[str], None],
    on_plan: OnPlan | None,
) -> RunPlan:
    """Plan the micro-batch ``trainer`` starts with (:func:`plan_run`), log and report the plan, and set it.

    Raises:
        OutOfMemory: when not even a micro-batch of one window fits (after reporting the plan).
    """
    plan = plan_run(trainer, spec, cache=None if cache is None else PlanCache(cache), panel_shape=panel_shape)
    log(plan.describe())
    if plan.micro_batch < spec.train.batch_size or not plan.fits:
        for line in plan.levers:
            log(f"  {line}")
    if on_plan is not None:
        on_plan(plan)
    if not plan.fits:
        raise OutOfMemory(f"{trainer.levers_message(trainer.step + 1)} (the memory plan: {plan.describe()})")
    trainer.set_micro_batch(plan.micro_batch)
    return plan


def default_plan_cache(home: str | None = None) -> Path | None:
    """The plan cache file: ``$STRATCAST_PLAN_CACHE`` (empty: none), else ``memory-plans.json`` in ``home``.

    ``home`` is a ``--home`` option's value (None: ``$STRATCAST_HOME``, else the XDG state folder).
    """
    chosen = os.environ.get(PLAN_CACHE_ENV)
    if chosen is not None:
        return Path(chosen).expanduser() if chosen else None
    return resolve_home(home).plan_cache


def plan_run(trainer: Trainer, spec: RunSpec, *, cache: PlanCache | None, panel_shape: tuple[int, int]) -> RunPlan:
    """Choose the micro-batch ``trainer`` starts with (see the module docstring); probing leaves it unchanged.

    Args:
        trainer: The job's trainer, built and resumed, not yet trained.
        spec: The job (model, mode and options: the plan cache key).
        cache: Where plans are kept between runs (None: always probe).
        panel_shape: ``(strategies, periods)`` of the panel on the device (part of the cache key).
    """
    cfg = trainer.cfg
    batch, device = cfg.batch_size, str(trainer.device)
    if cfg.micro_batch_size:
        return RunPlan(micro_batch=min(cfg.micro_batch_size, batch), batch_size=batch, source="fixed", device=device)
    memory = trainer.memory
    if memory is None:
        return RunPlan(micro_batch=batch, batch_size=batch, source="cpu", device=device)
    budget = peak_budget(memory)
    key = _cache_key(trainer, spec, memory, panel_shape)
    cached = None if cache is None else cache.get(key, budget_bytes=budget)
    if cached is not None and cached.fits:
        return _from_plan(cached, trainer, "cache", budget)
    probe = CudaProbe(
        trainer.model,
        trainer.optimizer,
        trainer.probe_step,
        trainer.device,
        reset_peak=memory.reset_peak,
        read_peak=memory.peak,
    )
    start = max(1, batch // PROBE_START_DIVISOR)
    plan = plan_micro_batch(probe.measure, budget_bytes=budget, start=start, max_micro_batch=batch)
    if cache is not None and plan.fits:
        try:
            cache.put(key, plan)
        except OSError as exc:  # a cache is an optimisation: never fail a run for it
            warnings.warn(f"cannot write the plan cache {cache.path}: {exc}", PlanCacheWarning, stacklevel=2)
    return _from_plan(plan, trainer, "probe", budget)


def _cache_key(trainer: Trainer, spec: RunSpec, memory: DeviceMemory, panel_shape: tuple[int, int]) -> str:
    cfg = trainer.cfg
    return plan_key(
        model_name=spec.model,
        model_config=dataclasses.asdict(spec.model_config()),
        input_size=cfg.input_size,
        horizon=cfg.horizon,
        n_outputs=cfg.n_outputs,
        batch_size=cfg.batch_size,
        precision="bf16" if uses_bf16(trainer.device, cfg.precision) else "fp32",
        gpu_name=memory.name,
        activation_checkpointing=cfg.activation_checkpointing,
        extra={"mode": spec.mode, "panel": list(panel_shape), "scaler": cfg.scaler == "revin"},
    )


def _from_plan(plan: MemoryPlan, trainer: Trainer, source: str, budget: int) -> RunPlan:
    """The :class:`RunPlan` of a planner's (or the cache's) :class:`MemoryPlan`, with the levers for this run."""
    cfg = trainer.cfg
    advice = levers(
        plan.probes,
        requested=cfg.batch_size,
        budget_bytes=budget,
        bf16=uses_bf16(trainer.device, cfg.precision),
        checkpointing=cfg.activation_checkpointing,
        checkpointable=trainer.checkpointable,
    )
    return RunPlan(
        micro_batch=plan.micro_batch,
        batch_size=cfg.batch_size,
        source=source,
        device=str(trainer.device),
        budget=budget,
        predicted_peak=plan.predicted_peak,
        measured_peak=plan.measured_peak,
        probes=tuple((m, p) for m, p in plan.probes if p is not None),
        oom_probes=tuple(m for m, p in plan.probes if p is None),
        levers=tuple(advice),
        seconds=plan.seconds if source == "probe" else 0.0,
    )
