"""A run's training history for the run screen: the daemon's ``read_history`` plus the live samples since.

``read_history`` returns the whole run, thinned to a few hundred points per series; the mirror keeps the last few
hundred live samples (``progress`` events and allocator telemetry). The run screen reads the history every few
seconds and, in between, appends the mirror's samples that are newer than the history's last
(:meth:`RunHistory.with_live`), so the curves move at the repaint rate without a request per frame.

Everything here is pure data (no Textual): the curves as x/y lists and the memory plan in one normalised shape.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

GIB = 2**30
GAP_S = 60.0
"""Memory samples further apart than this (a stop and a resume) are not joined by a line."""

Sample = dict[str, Any]


def number(value: Any) -> float | None:
    """``value`` when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """One memory plan, from the history's ``plans`` or from ``metrics.json``'s ``memory_plan``."""

    micro_batch: int | None = None
    """The micro-batch chosen; 0 when not even 1 fits."""
    batch_size: int | None = None
    """The configured batch size (the planner's ceiling)."""
    budget: float | None = None
    """Bytes the planner planned for."""
    predicted_peak: float | None = None
    measured_peak: float | None = None
    probes: tuple[tuple[int, float | None], ...] = ()
    """``(micro_batch, peak bytes)`` per probe in the order taken; peak None for a probe that ran out of memory."""
    source: str = ""
    """Where the plan came from (``planner``, ``cache``, ``config``, ...)."""
    levers: tuple[str, ...] = ()
    """Sentences on what would make more fit."""
    device: str = ""
    time: float | None = None

    @classmethod
    def from_sample(cls, d: Mapping[str, Any]) -> Plan:
        """Read a plan sample, accepting the planner's own field names (``budget_bytes``, ``max_micro_batch``)."""
        budget = d.get("budget", d.get("budget_bytes"))
        batch = number(d.get("batch_size", d.get("max_micro_batch")))
        micro = number(d.get("micro_batch"))
        return cls(
            micro_batch=None if micro is None else int(micro),
            batch_size=None if batch is None else int(batch),
            budget=number(budget),
            predicted_peak=number(d.get("predicted_peak")),
            measured_peak=number(d.get("measured_peak")),
            probes=tuple(p for p in map(_probe, d.get("probes") or ()) if p is not None),
            source=str(d.get("source") or ""),
            levers=tuple(str(lever) for lever in d.get("levers") or ()),
            device=str(d.get("device") or ""),
            time=number(d.get("time")),
        )


def _probe(p: Any) -> tuple[int, float | None] | None:
    """A probe as ``{"micro_batch", "peak"}`` (the history) or ``[micro_batch, peak]`` (the planner's cache)."""
    if isinstance(p, Mapping):
        m, peak = p.get("micro_batch"), p.get("peak")
    elif isinstance(p, Sequence) and len(p) == 2:
        m, peak = p
    else:
        return None
    micro = number(m)
    return None if micro is None else (int(micro), number(peak))


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunHistory:
    """A run's series, oldest first: progress reports, allocator samples, OOMs, plans and checkpoints."""

    progress: tuple[Sample, ...] = ()
    memory: tuple[Sample, ...] = ()
    ooms: tuple[Sample, ...] = ()
    plans: tuple[Sample, ...] = ()
    checkpoints: tuple[Sample, ...] = ()
    thinned: bool = False
    """Whether the daemon left samples out to keep the reply small."""

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> RunHistory:
        """A ``read_history`` result (missing series are empty)."""
        series = {f: tuple(result.get(f) or ()) for f in ("progress", "memory", "ooms", "plans", "checkpoints")}
        return cls(**series, thinned=bool(result.get("thinned")))

    def with_live(self, samples: Iterable[Mapping[str, Any]]) -> RunHistory:
        """This history with the mirror's ``samples`` (``kind`` progress or memory) newer than its own appended."""
        after = {"progress": _last_time(self.progress), "memory": _last_time(self.memory)}
        fresh: dict[str, list[Sample]] = {"progress": [], "memory": []}
        for sample in samples:
            kind, t = sample.get("kind"), number(sample.get("time"))
            if kind in fresh and t is not None and t > after[kind]:
                fresh[kind].append({k: v for k, v in sample.items() if k != "kind"})
        if not fresh["progress"] and not fresh["memory"]:
            return self
        return dataclasses.replace(
            self, progress=self.progress + tuple(fresh["progress"]), memory=self.memory + tuple(fresh["memory"])
        )

    @property
    def plan(self) -> Plan | None:
        """The latest memory plan (a resumed run plans again), None before the first."""
        return Plan.from_sample(self.plans[-1]) if self.plans else None

    @property
    def oom_count(self) -> int:
        """OOMs in the history, or in the latest allocator sample when that has seen more (not yet read)."""
        live = number(self.memory[-1].get("oom_count")) if self.memory else None
        return max(len(self.ooms), int(live or 0))


def _last_time(samples: Sequence[Sample]) -> float:
    times = (number(s.get("time")) for s in samples)
    return max((t for t in times if t is not None), default=-math.inf)


@dataclasses.dataclass(frozen=True)
class Curve:
    """One line of a chart: x positions and y values (None is a gap), equal in length."""

    x: list[float]
    y: list[float | None]


def loss_curves(progress: Iterable[Mapping[str, Any]]) -> dict[str, Curve]:
    """``train`` and ``val`` loss by step; a step reported twice (a resume repeats a few) keeps its last value.

    Validation losses exist only at validation checks, so ``val`` has its own, sparser x positions.
    """
    by_step: dict[str, dict[float, float]] = {"train": {}, "val": {}}
    for sample in progress:
        step = number(sample.get("step"))
        if step is None:
            continue
        for name, key in (("train", "train_loss"), ("val", "val_loss")):
            if (loss := number(sample.get(key))) is not None:
                by_step[name][step] = loss
    curves = {}
    for name, points in by_step.items():
        steps = sorted(points)
        curves[name] = Curve(steps, [points[s] for s in steps])
    return curves


MEMORY_SERIES = ("allocated", "reserved", "peak")
"""The allocator figures drawn, in GiB."""


def memory_curves(memory: Iterable[Mapping[str, Any]]) -> dict[str, Curve]:
    """Allocated, reserved and peak GiB by time, with a gap wherever samples are :data:`GAP_S` apart.

    A run on the CPU has no allocator figures (they are 0): its resident memory (``rss``) is drawn instead.
    """
    samples = sorted((s for s in memory if number(s.get("time")) is not None), key=lambda s: float(s["time"]))
    cpu = not any(number(s.get(k)) for s in samples for k in MEMORY_SERIES)
    names = ("rss",) if cpu else MEMORY_SERIES
    x: list[float] = []
    ys: dict[str, list[float | None]] = {name: [] for name in names}
    previous: float | None = None
    for sample in samples:
        t = float(sample["time"])
        if previous is not None and t - previous > GAP_S:
            x.append((previous + t) / 2)
            for values in ys.values():
                values.append(None)
        x.append(t)
        for name, values in ys.items():
            value = number(sample.get(name))
            values.append(None if value is None else value / GIB)
        previous = t
    return {name: Curve(x, values) for name, values in ys.items()} if x else {}


def oom_times(ooms: Iterable[Mapping[str, Any]]) -> tuple[float, ...]:
    """When each OOM happened, for the memory chart's markers."""
    return tuple(t for t in (number(o.get("time")) for o in ooms) if t is not None)
