"""Memory planner: choose the largest micro-batch that fits, from a few measured training steps.

Peak memory is convex in the micro-batch, and at small sizes the optimizer step's fixed peak hides the batch term,
so a line fitted through many small probes overshoots (see NOTES.md, "GPU memory, OOM and checkpoints"). The
planner therefore:

1. measures real forward+backward+optimizer steps at doubling micro-batches upward from ``start``, stopping once
   the budget lies within 2x of the last probe (two or three probes in the common case);
2. fits ``peak = a + b * m`` on the last two fitting probes only and extrapolates at most 2x beyond the largest;
3. confirms the chosen size with one real step, stepping down (refitting on the failed point) until one fits.

A probe that runs out of memory (``torch.OutOfMemoryError``, or the CPU allocator's "can't allocate memory"
``RuntimeError``, told apart from other errors by
:func:`~stratcast.daemon.engine.memory.oom.is_oom`) counts as "does not
fit"; any other error propagates. :func:`lightning_search` is Lightning's
doubling-then-bisect search, kept for the benchmark.
:class:`~stratcast.daemon.engine.memory.plancache.PlanCache` keeps plans in a JSON file so repeated runs and tuning
trials skip probing.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from torch import nn

from stratcast.daemon.engine.memory.oom import is_oom

MIB = 1 << 20
DEFAULT_RESERVE = 256 * MIB
"""Bytes kept back from the budget for cuDNN workspaces, allocator fragmentation and the CUDA graph pool."""
MAX_PROBES = 12
"""Upward probes at most (4096x ``start``); doubling also stops at ``max_micro_batch``."""
MAX_CONFIRMS = 3
"""Confirmation steps at most before falling back to the largest probe that fitted."""
BF16_PER_SAMPLE = 0.49
"""Per-sample peak saved by bf16 autocast, measured on CPU (NOTES.md)."""
CHECKPOINTING_PER_SAMPLE = 0.33
"""Per-sample peak saved by activation checkpointing, measured on CPU (NOTES.md)."""

Measure = Callable[[int], int]
"""Peak bytes of one real forward+backward+optimizer step at a micro-batch; may raise an OOM."""
Probe = tuple[int, int | None]
"""A measured ``(micro_batch, peak_bytes)``; ``None`` when the step ran out of memory."""


class MemoryProbe(Protocol):
    """A measurement backend: pass its bound ``measure`` to :func:`plan_micro_batch`."""

    def measure(self, micro_batch: int) -> int:
        """Return the peak bytes of one training step at ``micro_batch``, leaving no trace."""
        ...


def budget_bytes(free: int, *, margin: float = 0.1, reserve: int = DEFAULT_RESERVE) -> int:
    """Return the bytes a run may plan for: ``free * (1 - margin) - reserve`` (never below 0).

    Args:
        free: Free device memory in bytes (``torch.cuda.mem_get_info()[0]``).
        margin: Share of ``free`` left unplanned, for growth the probes did not see.
        reserve: Fixed bytes kept back (workspaces, fragmentation).
    """
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    return max(0, int(free * (1.0 - margin)) - reserve)


@dataclass(frozen=True, kw_only=True)
class MemoryPlan:
    """The outcome of :func:`plan_micro_batch`, stored in the run's metrics and the plan cache."""

    probes: tuple[Probe, ...]
    """Every measurement in the order taken, confirmations included."""
    micro_batch: int
    """The chosen micro-batch; 0 when not even a micro-batch of 1 fits."""
    predicted_peak: int | None
    """Peak bytes the fit predicted at ``micro_batch`` (the measured one when it was probed)."""
    measured_peak: int | None
    """Peak bytes measured at ``micro_batch``; ``None`` when unconfirmed or nothing fits."""
    budget_bytes: int
    """The budget planned for."""
    max_micro_batch: int
    """The ceiling: the configured ``batch_size``."""
    seconds: float
    """Wall time the planning took."""

    @property
    def n_probes(self) -> int:
        """Number of real steps measured."""
        return len(self.probes)

    @property
    def fits(self) -> bool:
        """Whether some micro-batch fits the budget."""
        return self.micro_batch > 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (probes as ``[m, peak]`` lists)."""
        d = asdict(self)
        d["probes"] = [list(p) for p in self.probes]
        d["n_probes"] = self.n_probes
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MemoryPlan:
        """Inverse of :meth:`to_dict`."""
        fields = {k: v for k, v in d.items() if k != "n_probes"}
        fields["probes"] = tuple((int(m), None if p is None else int(p)) for m, p in d["probes"])
        return cls(**fields)

    def explain(self) -> str:
        """Describe the plan in one or two sentences."""
        probes = ", ".join(f"{m}: {'OOM' if p is None else f'{p / MIB:.1f} MiB'}" for m, p in self.probes)
        head = f"budget {self.budget_bytes / MIB:.1f} MiB; probes {probes} ({self.n_probes} in {self.seconds:.2f} s)."
        if not self.fits:
            return f"Not even a micro-batch of 1 fits: {head}"
        pred = "?" if self.predicted_peak is None else f"{self.predicted_peak / MIB:.1f}"
        meas = "unconfirmed" if self.measured_peak is None else f"measured {self.measured_peak / MIB:.1f} MiB"
        accum = math.ceil(self.max_micro_batch / self.micro_batch)
        return (
            f"Micro-batch {self.micro_batch} of batch {self.max_micro_batch} ({accum} accumulation step(s)): "
            f"predicted {pred} MiB, {meas}; {head}"
        )


def _try(measure: Measure, m: int, probes: list[Probe]) -> int | None:
    """Measure at ``m``, record it, and return the peak (``None`` on an OOM)."""
    peak: int | None
    try:
        peak = int(measure(m))
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not is_oom(exc):
            raise
        peak = None
    probes.append((m, peak))
    return peak


def _fits(peak: int | None, budget: int) -> bool:
    return peak is not None and peak <= budget


def fit_line(points: Sequence[tuple[int, int]]) -> tuple[float, float]:
    """Fit ``peak = a + b * m`` through the last two points (through the origin when there is one).

    A single point gives ``a = 0``: with a positive fixed part that overestimates every larger size, so it is safe.
    """
    if not points:
        raise ValueError("need at least one fitting probe")
    if len(points) == 1:
        m, p = points[0]
        return 0.0, p / m
    (m0, p0), (m1, p1) = points[-2], points[-1]
    b = (p1 - p0) / (m1 - m0)
    return p1 - b * m1, b


def _largest_under(a: float, b: float, budget: int, lo: int, hi: int) -> int:
    """Largest m in ``[lo, hi]`` with ``a + b * m <= budget`` (``lo`` when none)."""
    if b <= 0:
        return hi
    return max(lo, min(hi, math.floor((budget - a) / b)))


def _probe_upward(measure: Measure, budget: int, start: int, cap: int, probes: list[Probe]) -> None:
    """Double from ``start`` until a probe fails, ``cap`` is reached, or the budget is within 2x of the last."""
    m = start
    for _ in range(MAX_PROBES):
        if not _fits(_try(measure, m, probes), budget) or m >= cap:
            return
        ok = _fitting(probes)
        if len(ok) >= 2:
            a, b = fit_line(ok)
            if b > 0 and (budget - a) / b <= 2 * m:
                return
        m = min(2 * m, cap)


def _probe_downward(measure: Measure, budget: int, start: int, probes: list[Probe]) -> None:
    """Halve from ``start // 2`` until a probe fits or a micro-batch of 1 fails."""
    m = start // 2
    while m >= 1 and not _fits(_try(measure, m, probes), budget):
        m //= 2


def _fitting(probes: Sequence[Probe]) -> list[tuple[int, int]]:
    """Distinct probes that measured a peak (in budget or not), sorted by micro-batch."""
    best: dict[int, int] = {}
    for m, p in probes:
        if p is not None:
            best[m] = p
    return sorted(best.items())


def _choose(probes: Sequence[Probe], budget: int, cap: int) -> tuple[int, int]:
    """Return ``(micro_batch, predicted_peak)`` from the probes: at most 2x the largest fit, below any failure.

    A failure with a measured peak bounds the choice below it and joins the fit (the chord to it lies above a
    convex curve, so the choice is conservative); an OOM has no peak, so the choice is at most halfway to it.
    """
    ok = [(m, p) for m, p in _fitting(probes) if p <= budget]
    m_ok = ok[-1][0]
    bounds = [m - 1 if p is not None else m_ok + (m - m_ok) // 2 for m, p in probes if m > m_ok]
    hi = max(m_ok, min([cap, 2 * m_ok, *bounds]))
    above = [(m, p) for m, p in _fitting(probes) if m > m_ok]
    a, b = fit_line([ok[-1], above[0]] if above else ok[-2:])
    m = _largest_under(a, b, budget, m_ok, hi)
    return m, dict(_fitting(probes)).get(m, round(a + b * m))


def plan_micro_batch(
    measure: Measure,
    *,
    budget_bytes: int,
    start: int,
    max_micro_batch: int,
    confirm: bool = True,
) -> MemoryPlan:
    """Choose the largest micro-batch whose training step fits ``budget_bytes``.

    Args:
        measure: Peak bytes of one real step at a micro-batch (e.g. ``CudaProbe(...).measure``).
        budget_bytes: Bytes the step may use (see :func:`budget_bytes`).
        start: First micro-batch probed (clipped to ``max_micro_batch``).
        max_micro_batch: Ceiling, the configured ``batch_size``.
        confirm: Measure the chosen size once more (stepping down until one fits) when it was not probed.

    Returns:
        The plan; ``micro_batch`` is 0 when not even 1 fits. With ``confirm`` the chosen size was measured
        within budget.
    """
    if start < 1 or max_micro_batch < 1:
        raise ValueError(f"start and max_micro_batch must be >= 1, got {start} and {max_micro_batch}")
    t0 = time.perf_counter()
    probes: list[Probe] = []
    start = min(start, max_micro_batch)
    _probe_upward(measure, budget_bytes, start, max_micro_batch, probes)
    if not any(_fits(p, budget_bytes) for _, p in probes):
        _probe_downward(measure, budget_bytes, start, probes)
    if not any(_fits(p, budget_bytes) for _, p in probes):
        return _plan(probes, 0, None, None, budget_bytes, max_micro_batch, t0)
    m, predicted = _choose(probes, budget_bytes, max_micro_batch)
    if confirm:
        m, predicted = _confirm(measure, probes, budget_bytes, max_micro_batch, m, predicted)
    measured = dict(_fitting(probes)).get(m)
    return _plan(probes, m, predicted, measured, budget_bytes, max_micro_batch, t0)


def _confirm(measure: Measure, probes: list[Probe], budget: int, cap: int, m: int, predicted: int) -> tuple[int, int]:
    """Measure ``m`` unless already probed; on a miss re-choose below it, up to :data:`MAX_CONFIRMS` times."""
    for _ in range(MAX_CONFIRMS):
        if any(pm == m for pm, _ in probes) or _fits(_try(measure, m, probes), budget):
            return m, predicted
        m, predicted = _choose(probes, budget, cap)
    ok = [(pm, p) for pm, p in _fitting(probes) if p <= budget]
    return ok[-1]


def _plan(
    probes: list[Probe], m: int, predicted: int | None, measured: int | None, budget: int, cap: int, t0: float
) -> MemoryPlan:
    return MemoryPlan(
        probes=tuple(probes),
        micro_batch=m,
        predicted_peak=predicted,
        measured_peak=measured,
        budget_bytes=budget,
        max_micro_batch=cap,
        seconds=time.perf_counter() - t0,
    )


def lightning_search(measure: Measure, budget: int, start: int, max_micro_batch: int) -> tuple[int, list[Probe]]:
    """Lightning BatchSizeFinder's ``binsearch`` mode: double until a failure, then bisect.

    A failure is an OOM or a peak over ``budget``. Sizes are capped at ``max_micro_batch`` (Lightning's
    ``max_val``). Returns the chosen size (0 when even 1 fails) and every probe.
    """
    probes: list[Probe] = []
    low, high, m = 0, 0, min(start, max_micro_batch)
    while m >= 1:
        if _fits(_try(measure, m, probes), budget):
            low = m
            if m >= max_micro_batch or (high and high - low <= 1):
                break
            m = (low + high) // 2 if high else min(2 * m, max_micro_batch)
        else:
            high = m
            if high - low <= 1:
                break
            m = (low + high) // 2
    return low, probes


def levers(
    probes: Sequence[Probe],
    *,
    requested: int,
    budget_bytes: int,
    bf16: bool = False,
    checkpointing: bool = False,
    checkpointable: bool = True,
) -> list[str]:
    """Say, in sentences, whether bf16 autocast or activation checkpointing would make ``requested`` fit.

    The per-sample slope of the last two fitting probes is cut by the measured savings
    (:data:`BF16_PER_SAMPLE`, :data:`CHECKPOINTING_PER_SAMPLE`); the fixed part (weights, optimizer) is kept.

    Args:
        probes: Measured ``(micro_batch, peak)`` pairs, e.g. a plan's ``probes``.
        requested: The micro-batch wanted (usually ``batch_size``).
        budget_bytes: The budget.
        bf16: bf16 autocast is already on (not proposed again).
        checkpointing: Activation checkpointing is already on (not proposed again).
        checkpointable: The model supports activation checkpointing; when not, the answer says so instead.
    """
    ok = _fitting(probes)
    if not ok:
        return ["No probe succeeded, so no lever can be estimated; try a smaller model or input."]
    a, b = fit_line(ok)

    def peak(saving: float) -> float:
        return a + b * (1.0 - saving) * requested

    def mib(x: float) -> str:
        return f"{x / MIB:.1f} MiB"

    now = peak(0.0)
    if now <= budget_bytes:
        return [f"Batch {requested} already fits: predicted {mib(now)} of {mib(budget_bytes)}."]
    out = [f"Batch {requested} is predicted at {mib(now)}, over the budget of {mib(budget_bytes)}."]
    options = []
    if not bf16:
        options.append(("bf16 autocast", BF16_PER_SAMPLE))
    if not checkpointing and checkpointable:
        options.append(("activation checkpointing", CHECKPOINTING_PER_SAMPLE))
    if len(options) == 2:
        both = 1.0 - (1.0 - BF16_PER_SAMPLE) * (1.0 - CHECKPOINTING_PER_SAMPLE)
        options.append(("bf16 autocast with activation checkpointing", both))
    for name, saving in options:
        p = peak(saving)
        verdict = "would make it fit" if p <= budget_bytes else "would not be enough"
        out.append(f"{name[0].upper()}{name[1:]} (about -{saving:.0%} per sample) {verdict}: predicted {mib(p)}.")
    if not checkpointing and not checkpointable:
        out.append("Activation checkpointing is not available for this model.")
    return out


def _to_cpu(obj: Any) -> Any:
    """Deep copy of a state dict with every tensor on the CPU (the snapshot must not count in the peak)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


@dataclass(frozen=True)
class _Snapshot:
    model: dict[str, Any]
    optimizer: dict[str, Any]
    cpu_rng: torch.Tensor
    cuda_rng: list[torch.Tensor]


class CudaProbe:
    """Measure the peak of one real training step on a CUDA device, then put everything back.

    ``step_fn(m)`` runs one forward+backward+optimizer step on a micro-batch of ``m`` (synthetic windows of the
    run's shapes). Around it the probe resets the peak counter, reads ``max_memory_allocated``, and restores the
    model and optimizer state dicts and the CPU and CUDA RNG states, zeroes the gradients and empties the cache,
    so probing leaves no trace. ``reset_peak`` and ``read_peak`` replace the CUDA counters (tests on CPU).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        step_fn: Callable[[int], object],
        device: torch.device,
        *,
        reset_peak: Callable[[], None] | None = None,
        read_peak: Callable[[], int] | None = None,
    ) -> None:
        self.model, self.optimizer, self.step_fn, self.device = model, optimizer, step_fn, device
        self._reset_peak = reset_peak or (lambda: torch.cuda.reset_peak_memory_stats(device))
        self._read_peak = read_peak or (lambda: torch.cuda.max_memory_allocated(device))

    def measure(self, micro_batch: int) -> int:
        """Return the peak bytes of one step at ``micro_batch``; re-raise an OOM only after cleaning up."""
        snap = self._snapshot()
        oom: str | None = None
        peak = 0
        try:
            self._reset_peak()
            self.step_fn(micro_batch)
            peak = int(self._read_peak())
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not is_oom(exc):
                self._restore(snap)
                raise
            oom = str(exc)
        # cleanup outside the except block: the exception's frames would keep the step's tensors alive
        self._restore(snap)
        if oom is not None:
            raise torch.OutOfMemoryError(f"probe at micro-batch {micro_batch}: {oom}")
        return peak

    def _uses_cuda(self) -> bool:
        return self.device.type == "cuda" and torch.cuda.is_available()

    def _snapshot(self) -> _Snapshot:
        cuda_rng = torch.cuda.get_rng_state_all() if self._uses_cuda() else []
        return _Snapshot(
            _to_cpu(self.model.state_dict()), _to_cpu(self.optimizer.state_dict()), torch.get_rng_state(), cuda_rng
        )

    def _restore(self, snap: _Snapshot) -> None:
        self.model.load_state_dict(snap.model)
        self.optimizer.load_state_dict(snap.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        self.model.zero_grad(set_to_none=True)
        torch.set_rng_state(snap.cpu_rng)
        if self._uses_cuda():
            torch.cuda.set_rng_state_all(snap.cuda_rng)
            torch.cuda.empty_cache()
