"""Which queued runs start now, and why each of the others waits: the queue's admission logic, without I/O.

:func:`plan` takes the runs (any states), a view of each device and the queue's settings, and returns the runs
to start with their devices, plus a reason, in words a user can act on, for every queued or held run that does
not start. The scheduler calls it whenever something changes and carries out the starts in order.

Policy, in the order the checks are made:

1. ``held`` runs wait ("held"). Only ``queued`` runs are considered, by priority (higher first), then FIFO
   (``created``, then id).
2. A run whose dependency (``placement.after``) failed, ran out of memory, was killed or was removed can never
   start: its reason says so and what to do (pueue's rule). Then, if the queue is paused, every run waits for
   that. Then a run waits for dependencies that have not succeeded yet; once all have, it is placed.
3. **GPU machines** (``devices`` holds GPUs). A run needs a GPU without processes that stratcastd does not own.
   An *exclusive* run (``memory_gib`` None) needs a GPU with none of the daemon's runs and at least
   ``min_free_mib`` free. A *sharing* run (``memory_gib`` set) may join a GPU whose runs all have caps, when
   the memory left covers its cap: the free memory less the caps of runs started earlier in the same plan, and
   never more than the GPU's total less the caps of every run on it (a run that has not yet grown to its cap
   still owns it). ``placement.gpu`` pins a run to one GPU. Exclusive runs take the lowest free index; sharing
   runs pack onto GPUs already shared, tightest fit first, keeping whole GPUs free for exclusive runs.
4. **No run starts ahead of a run before it in the queue that could use the same GPU.** A run that waits for a
   device keeps every GPU it could use (its pinned GPU, or all GPUs with enough total memory for it) for itself;
   later runs, of any priority, may start only on other GPUs. So a run behind one that waits for a busy,
   pinned GPU starts on a free one (backfill), but a stream of small sharing runs can never starve an
   exclusive run that was queued first. A run that waits on a dependency, or can fit on no GPU at all, keeps
   nothing.
5. **CPU-only machines** (``devices`` is one view with ``index`` None) run up to ``cpu_slots`` runs at once.
6. **A run over several devices** (``placement.gpus`` N > 1, data-parallel) needs N GPUs that an exclusive run
   could take, the lowest free indices; until N are free it keeps every GPU it could use (rule 4), so runs behind
   it may only backfill GPUs it cannot use. On a CPU-only machine it takes N of the ``cpu_slots`` (a CPU view
   lists such a run's id once per slot it takes). Its start names every device: ``cuda:0,cuda:2``.

A start updates the plan's view of its device, so one plan never puts two exclusive runs on one GPU and never
promises the same memory twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from stratcast.shared.protocol import RunInfo

MIB_PER_GIB = 1024.0
_BROKEN = {"failed": "failed", "oom-failed": "ran out of GPU memory", "killed": "was killed"}
"""Dependency states that mean a run can never start, with how to say so."""


@dataclass(frozen=True)
class DeviceView:
    """One device as the scheduler sees it now (from telemetry and the daemon's own runs).

    Raises:
        ValueError: when ``runs`` and ``caps_gib`` differ in length.
    """

    name: str
    """``cuda:0``, ``cuda:1``, ... or ``cpu``."""
    index: int | None
    """GPU index; None for the CPU."""
    total_mib: float
    free_mib: float
    foreign: tuple[int, ...] = ()
    """PIDs of processes on this GPU that the daemon does not own."""
    runs: tuple[int, ...] = ()
    """Ids of the daemon's runs placed on it now."""
    caps_gib: tuple[float | None, ...] = ()
    """Memory cap of each of those runs, in order; None for an exclusive run."""

    def __post_init__(self) -> None:
        if len(self.caps_gib) != len(self.runs):
            raise ValueError(f"{self.name}: {len(self.runs)} runs but {len(self.caps_gib)} memory caps")


@dataclass(frozen=True)
class Plan:
    """What to do now."""

    starts: list[tuple[int, str]]
    """(run id, device names joined by commas: ``cuda:1``, ``cuda:0,cuda:2``, ``cpu``) to start now, in order."""
    reasons: dict[int, str]
    """Why each queued or held run that does not start waits."""


@dataclass
class _Slot:
    """A device during planning: its view plus the runs this plan has started on it."""

    view: DeviceView
    runs: list[int] = field(default_factory=list)
    caps: list[float | None] = field(default_factory=list)
    promised_mib: float = 0.0
    """Caps of sharing runs started on it by this plan (not yet visible in ``free_mib``)."""
    kept_for: int | None = None
    """The first run in queue order that waits for a device and could use this one."""

    @property
    def label(self) -> str:
        """``GPU 0``, ``CPU`` or a cluster executor's name (``ray``), as reasons name devices."""
        if self.view.index is not None:
            return f"GPU {self.view.index}"
        return "CPU" if self.view.name == "cpu" else self.view.name

    def available_mib(self) -> float:
        """Memory a sharing run may claim here."""
        committed = sum(cap * MIB_PER_GIB for cap in self.caps if cap is not None)
        return min(self.view.free_mib - self.promised_mib, self.view.total_mib - committed)

    def add(self, run: RunInfo) -> None:
        """Record a start on this device."""
        cap = run.placement.memory_gib
        self.runs.append(run.id)
        self.caps.append(cap)
        self.promised_mib += 0.0 if cap is None else cap * MIB_PER_GIB


class _Refusal(NamedTuple):
    """Why one device cannot take a run; ``ids`` are run ids or pids, depending on ``kind``."""

    kind: str
    """``busy``, ``foreign``, ``kept`` or ``memory``."""
    slot: _Slot
    ids: tuple[int, ...]
    text: str


def plan(
    runs: Sequence[RunInfo],
    devices: Sequence[DeviceView],
    *,
    paused: bool,
    cpu_slots: int,
    min_free_mib: float = 1024,
    dependencies: Sequence[RunInfo] = (),
) -> Plan:
    """Decide which queued runs start now, on which device, and why every other queued or held run waits.

    Args:
        runs: The runs to plan (any states: only queued and held ones are planned, the others may be
            dependencies).
        devices: The GPUs of the machine, or a single view with ``index`` None on a machine without GPUs.
        paused: The queue is paused: nothing starts.
        cpu_slots: How many runs may run at once on a CPU-only machine.
        min_free_mib: Free memory an exclusive run needs on its GPU.
        dependencies: Further runs that runs of ``runs`` wait for (finished, or planned against other devices):
            only their states are read.

    Raises:
        ValueError: when ``cpu_slots`` is below 1.
    """
    if cpu_slots < 1:
        raise ValueError(f"cpu_slots must be at least 1, got {cpu_slots}")
    by_id = {run.id: run for run in [*dependencies, *runs]}
    slots = _slots(devices)
    starts: list[tuple[int, str]] = []
    reasons = {run.id: "held" for run in runs if run.state == "held"}
    queued = sorted((run for run in runs if run.state == "queued"), key=_queue_order)
    for run in queued:
        reason = _waits_before_placement(run, by_id, paused)
        chosen: list[_Slot] = []
        if reason is None:
            chosen, reason = _place(run, slots, cpu_slots, min_free_mib)
        if not chosen:
            reasons[run.id] = reason
            continue
        for slot in chosen:
            slot.add(run)
        names = [s.view.name for s in chosen]
        starts.append((run.id, ",".join(dict.fromkeys(names))))  # a CPU run over N slots names the CPU once
    return Plan(starts=starts, reasons=reasons)


def _queue_order(run: RunInfo) -> tuple[int, float, int]:
    """Sort key: higher priority first, then first come, first served."""
    return (-run.placement.priority, run.created, run.id)


def _slots(devices: Sequence[DeviceView]) -> list[_Slot]:
    """Planning state per device: the GPUs when there are any (ignoring CPU views), else the CPU view."""
    gpus = sorted((d for d in devices if d.index is not None), key=lambda d: d.index or 0)
    chosen = gpus or [d for d in devices if d.index is None][:1]
    return [_Slot(view=d, runs=list(d.runs), caps=list(d.caps_gib)) for d in chosen]


def _waits_before_placement(run: RunInfo, by_id: Mapping[int, RunInfo], paused: bool) -> str | None:
    """Why ``run`` waits whatever the devices: a broken dependency, a paused queue, a pending dependency."""
    for dep in run.placement.after:
        other = by_id.get(dep)
        if other is None:  # ids are never reused: one lower than the run's own existed when it was queued
            what = "was removed" if dep < run.id else "does not exist"
            return f"run {dep} {what}, so this run cannot start: remove this run"
        if other.state in _BROKEN:
            return f"run {dep} {_BROKEN[other.state]}, so this run cannot start: remove it or restart run {dep}"
    if paused:
        return "queue paused"
    pending = [f"run {dep} ({by_id[dep].state})" for dep in run.placement.after if by_id[dep].state != "succeeded"]
    return f"waiting for {', '.join(pending)}" if pending else None


def _place(run: RunInfo, slots: list[_Slot], cpu_slots: int, min_free_mib: float) -> tuple[list[_Slot], str]:
    """The devices ``run`` starts on (one per slot it takes), or none and why it waits."""
    if not slots:
        return [], "no GPU or CPU to run on"
    if slots[0].view.index is None:
        return _place_on_cpu(run, slots[0], cpu_slots)
    if run.placement.gpus > 1:
        return _place_on_gpus(run, slots, min_free_mib)
    slot, reason = _place_on_gpu(run, slots, min_free_mib)
    return ([] if slot is None else [slot]), reason


def _place_on_cpu(run: RunInfo, slot: _Slot, cpu_slots: int) -> tuple[list[_Slot], str]:
    if run.placement.gpu is not None:
        return [], f"GPU {run.placement.gpu} does not exist (this machine has no GPUs)"
    need = run.placement.gpus
    if need > cpu_slots:
        return [], (
            f"needs {need} CPU slots (--gpus-per-run {need}) and the daemon has {cpu_slots}: remove this run, or "
            f"restart the daemon with --cpu-slots {need}"
        )
    if len(slot.runs) + need > cpu_slots:
        ids = sorted(set(slot.runs))
        return [], f"{slot.label} busy ({len(slot.runs)} of {cpu_slots} slots: {_runs(ids)})"
    return [slot] * need, ""


def _place_on_gpus(run: RunInfo, slots: list[_Slot], min_free_mib: float) -> tuple[list[_Slot], str]:
    """``placement.gpus`` GPUs of its own for a data-parallel run, the lowest free indices; else why it waits."""
    need = run.placement.gpus
    if need > len(slots):
        indices = ", ".join(str(s.view.index) for s in slots)
        return [], (
            f"needs {need} GPUs (--gpus-per-run {need}) and the daemon has {len(slots)} ({indices}): remove this "
            "run, or submit it with fewer"
        )
    refusals = [(s, _refusal(run, s, min_free_mib)) for s in slots]
    fitting = [s for s, why in refusals if why is None]
    if len(fitting) >= need:
        return fitting[:need], ""
    for slot in slots:
        slot.kept_for = run.id if slot.kept_for is None else slot.kept_for
    why = _explain([why for _, why in refusals if why is not None], len(slots))
    return [], f"needs {need} GPUs, {len(fitting)} free: {why}"


def _place_on_gpu(run: RunInfo, slots: list[_Slot], min_free_mib: float) -> tuple[_Slot | None, str]:
    pin, cap = run.placement.gpu, run.placement.memory_gib
    candidates = slots if pin is None else [s for s in slots if s.view.index == pin]
    if not candidates:
        indices = ", ".join(str(s.view.index) for s in slots)
        return (
            None,
            f"GPU {pin} is not one of the daemon's GPUs ({indices}): remove this run, submit it on one of those",
        )
    usable = [s for s in candidates if cap is None or s.view.total_mib >= cap * MIB_PER_GIB]
    if not usable:
        return None, _too_big(cap or 0.0, candidates)
    refusals = [(s, _refusal(run, s, min_free_mib)) for s in usable]
    fitting = [s for s, why in refusals if why is None]
    if fitting:
        return _best_fit(fitting, cap), ""
    for slot in usable:
        slot.kept_for = run.id if slot.kept_for is None else slot.kept_for
    return None, _explain([why for _, why in refusals if why is not None], len(slots))


def _refusal(run: RunInfo, slot: _Slot, min_free_mib: float) -> _Refusal | None:
    """Why ``slot`` cannot take ``run`` now, or None when it can."""
    label, cap = slot.label, run.placement.memory_gib
    blockers = slot.runs if cap is None else [r for r, c in zip(slot.runs, slot.caps, strict=True) if c is None]
    if blockers:
        return _Refusal("busy", slot, tuple(blockers), f"{label} busy with {_runs(blockers)}")
    if slot.view.foreign:
        pids = slot.view.foreign
        return _Refusal("foreign", slot, pids, f"{label} has processes stratcastd does not own ({_pids(pids)})")
    if slot.kept_for is not None:
        text = f"{label} kept for run {slot.kept_for}, which is ahead in the queue"
        return _Refusal("kept", slot, (slot.kept_for,), text)
    need = min_free_mib if cap is None else cap * MIB_PER_GIB
    have = slot.view.free_mib if cap is None else slot.available_mib()
    if have < need:
        text = f"not enough free memory on {label} (needs {_gib(need)}, {_gib(max(have, 0.0))} free)"
        return _Refusal("memory", slot, (), text)
    return None


def _best_fit(fitting: list[_Slot], cap: float | None) -> _Slot:
    """Exclusive: the lowest index. Sharing: a GPU already shared, with the least memory left, then index."""
    if cap is None:
        return fitting[0]
    return min(fitting, key=lambda s: (not s.runs, s.available_mib(), s.view.index or 0))


def _explain(refusals: list[_Refusal], n_gpus: int) -> str:
    """One sentence from the refusals of every GPU a run could use, grouped by kind."""
    if len(refusals) == n_gpus > 1 and all(r.kind == "busy" for r in refusals):
        return f"all {n_gpus} GPUs busy ({_runs(_merged(refusals))})"
    parts: list[str] = []
    for kind in ("busy", "foreign", "kept"):
        group = [r for r in refusals if r.kind == kind]
        if len(group) == 1:
            parts.append(group[0].text)
        elif group:
            parts.append(_group_text(kind, group))
    parts += [r.text for r in refusals if r.kind == "memory"]
    return "; ".join(parts)


def _group_text(kind: str, group: list[_Refusal]) -> str:
    """The refusals of several GPUs of one kind, said once."""
    gpus = "GPUs " + ", ".join(str(r.slot.view.index) for r in group)
    ids = _merged(group)
    if kind == "busy":
        return f"{gpus} busy ({_runs(ids)})"
    if kind == "foreign":
        return f"{gpus} have processes stratcastd does not own ({_pids(ids)})"
    verb = "is" if len(ids) == 1 else "are"
    return f"{gpus} kept for {_runs(ids)}, which {verb} ahead in the queue"


def _too_big(cap: float, candidates: list[_Slot]) -> str:
    """Why a sharing run fits on none of its GPUs even when they are empty."""
    largest = max(candidates, key=lambda s: s.view.total_mib)
    total = _gib(largest.view.total_mib)
    if len(candidates) == 1:
        return f"needs {cap:.1f} GiB, more than {largest.label} has ({total} in all)"
    return f"needs {cap:.1f} GiB, more than any GPU has (largest: {largest.label}, {total})"


def _merged(refusals: list[_Refusal]) -> list[int]:
    """The ids of several refusals, sorted, each once."""
    return sorted({i for r in refusals for i in r.ids})


def _runs(ids: Sequence[int]) -> str:
    return f"run {ids[0]}" if len(ids) == 1 else "runs " + ", ".join(map(str, ids))


def _pids(pids: Sequence[int]) -> str:
    return f"pid {pids[0]}" if len(pids) == 1 else "pids " + ", ".join(map(str, pids))


def _gib(mib: float) -> str:
    return f"{mib / MIB_PER_GIB:.1f} GiB"
