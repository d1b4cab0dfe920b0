"""GPU and host telemetry: NVML and psutil samples, kept for the last minutes in ring buffers.

The daemon calls :meth:`Telemetry.sample` from its event loop every ``1 / rate_hz`` seconds and publishes the
``telemetry`` event it returns (typed readings of :mod:`stratcast.shared.events`); :meth:`Telemetry.history`
fills the snapshot reply and :meth:`Telemetry.gpu_views` feeds admission. The history is plain JSON-ready data;
map keys are strings (GPU indices, run ids, PIDs), as they come out of JSON on the client's side.

Cost. NVML calls take the driver's global lock, which the training processes need too, and the process lists
are the slow ones (``nvmlDeviceGetGraphicsRunningProcesses`` measured 4.5 ms against 12 us for the memory info
and 2.5 us for the utilization, MangoHud #2104). So memory, utilization and power are read at every sample,
while temperature, power limit and the process lists are read at most once per :data:`SLOW_EVERY_S`. A field a
GPU does not support is asked once, then reported as None. The host side reads ``/proc`` for the machine, the
daemon and the watched worker PIDs only: never ``psutil.process_iter``.

NVML reports host PIDs, which are wrong inside containers: workers also report their own allocator figures
(:meth:`Telemetry.add_run_sample`).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypedDict, TypeVar

import psutil
import pynvml  # type: ignore[import-untyped]  # nvidia-ml-py ships no type information

from stratcast.shared.events import GpuProcess, GpuSample, HostSample, TelemetrySampled

log = logging.getLogger(__name__)

SLOW_EVERY_S = 1.0
"""Seconds between reads of the slow or slowly changing GPU fields: temperature, power limit, process lists."""
MIB = 1 << 20
_UNSUPPORTED = (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound)
_NO_DRIVER = (pynvml.NVMLError_LibraryNotFound, pynvml.NVMLError_DriverNotLoaded, OSError)
T = TypeVar("T")


class GpuView(TypedDict):
    """What admission needs to know about one GPU (plain data); the daemon maps ``pids`` to its own runs."""

    index: int
    name: str
    total_mib: int
    free_mib: int
    """0 when NVML cannot say: such a GPU is never free."""
    pids: list[int]


# -- NVML ----------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Device:
    """One opened GPU and what we learned about it."""

    index: int
    handle: Any
    name: str
    uuid: str
    unsupported: set[str] = field(default_factory=set)
    """Fields it answered ``Not Supported`` for: never asked again."""
    slow: dict[str, tuple[float, Any]] = field(default_factory=dict)
    """Slow fields: the time read and the value."""
    failing: bool = False
    """It raised at the last sample (already reported)."""
    lost: bool = False
    """It fell off the bus: never sampled again."""

    def read(self, what: str, call: Callable[..., Any], *args: Any) -> Any:
        """``call(handle, *args)``, or None when the GPU does not support it."""
        if what in self.unsupported:
            return None
        try:
            return call(self.handle, *args)
        except _UNSUPPORTED:
            self.unsupported.add(what)
            return None

    def read_slow(self, what: str, now: float, call: Callable[..., Any], *args: Any) -> Any:
        """Like :meth:`read`, but asks NVML at most once per :data:`SLOW_EVERY_S`."""
        cached = self.slow.get(what)
        if cached is not None and 0 <= now - cached[0] < SLOW_EVERY_S:
            return cached[1]
        value = self.read(what, call, *args)
        self.slow[what] = (now, value)
        return value


class Nvml:
    """The NVIDIA driver's management library, opened once, sampling every GPU it found."""

    notice: ClassVar[str | None] = None
    """Why the last :meth:`open` found no GPU to use; None when it did."""

    def __init__(self, devices: list[_Device], notices: Iterable[str] = ()) -> None:
        self.devices = devices
        self._notices = deque(notices)  # appended by sample(), maybe in a thread; deques are thread-safe

    @classmethod
    def open(cls, only: Collection[GpuId] | None = None) -> Nvml | None:
        """Start NVML and open every GPU, or only those; None (see :attr:`notice`) if none is usable.

        ``only`` names GPUs by NVML index or UUID (:data:`GpuId`); empty, it names none (an empty
        ``CUDA_VISIBLE_DEVICES``): the daemon runs on the CPU.

        Raises:
            GpuSelectionError: when ``only`` names a GPU that NVML does not find (or finds no GPU at all).
        """
        if only is not None and not only:
            return cls._unavailable(
                "the daemon was given no GPU (CUDA_VISIBLE_DEVICES is empty): running on the CPU only"
            )
        notices: list[str] = []
        try:
            pynvml.nvmlInit()
        except (pynvml.NVMLError, OSError) as exc:
            if only is not None:
                raise GpuSelectionError(list(only), [], _nvml_failure(exc)) from exc
            return cls._unavailable(_no_nvml_reason(exc))
        try:
            devices = _open_devices(notices)
        except pynvml.NVMLError as exc:
            devices, notices = [], [*notices, f"NVML cannot count the GPUs ({exc})"]
        if only is not None:
            devices = _select(devices, only, notices)
        if not devices:
            _shutdown()
            return cls._unavailable("; ".join([*notices, "no usable NVIDIA GPU: running on the CPU only"]))
        cls.notice = None
        return cls(devices, [_say(n) for n in notices])

    @classmethod
    def _unavailable(cls, reason: str) -> None:
        if reason != cls.notice:  # say it once per process, however often the daemon retries
            log.warning("%s", reason)
        cls.notice = reason
        return None

    def sample(self, now: float) -> list[GpuSample]:
        """One sample of every GPU that answers; one that raises is reported once and skipped."""
        samples = []
        for device in self.devices:
            if device.lost:
                continue
            try:
                samples.append(_sample_device(device, now))
            except pynvml.NVMLError as exc:
                self._failed(device, exc)
                continue
            if device.failing:
                device.failing = False
                self._notices.append(_say(f"GPU {device.index} ({device.name}) answers again"))
        return samples

    def _failed(self, device: _Device, exc: Exception) -> None:
        if isinstance(exc, pynvml.NVMLError_GpuIsLost):
            device.lost = True
            self._notices.append(_say(f"GPU {device.index} ({device.name}) fell off the bus (NVML: {exc}): not used"))
        elif not device.failing:
            self._notices.append(_say(f"GPU {device.index} ({device.name}) stopped answering (NVML: {exc}): skipped"))
        device.failing = True

    def take_notices(self) -> list[str]:
        """Notices since the last call (GPUs lost, failing or back), each given once."""
        return _drain(self._notices)

    def close(self) -> None:
        """Shut NVML down (once); the object samples nothing afterwards."""
        if self.devices:
            self.devices = []
            _shutdown()


GpuId = int | str
"""A GPU as the daemon is told it: an NVML index, or a GPU UUID (or a unique prefix of one) as
``CUDA_VISIBLE_DEVICES`` may name it."""


class GpuSelectionError(ValueError):
    """A daemon was given GPUs (``--gpus``) that this machine does not have; the message names those it has."""

    def __init__(self, missing: Collection[GpuId], found: Collection[str], why: str = "") -> None:
        what = "GPU" if len(missing) == 1 else "GPUs"
        have = f"GPUs found: {', '.join(found)}" if found else f"no GPU found: {why}"
        super().__init__(f"no {what} {', '.join(map(str, missing))} on this machine ({have})")


def _select(devices: list[_Device], only: Collection[GpuId], notices: list[str]) -> list[_Device]:
    """The devices of ``only``, by index order; the NVML session is shut when one is missing or ambiguous."""
    chosen: dict[int, _Device] = {}
    missing: list[GpuId] = []
    for item in only:
        match = [d for d in devices if (d.index == item if isinstance(item, int) else d.uuid.startswith(item))]
        if len(match) == 1:
            chosen[match[0].index] = match[0]
        else:
            missing.append(item)
    if missing:
        _shutdown()
        by_uuid = any(isinstance(item, str) for item in missing)
        found = [f"{d.index} ({d.uuid})" if by_uuid else str(d.index) for d in devices]
        raise GpuSelectionError(missing, found, "; ".join(notices) or "NVML lists none")
    return [chosen[index] for index in sorted(chosen)]


def _no_nvml_reason(exc: Exception) -> str:
    return f"{_nvml_failure(exc)}: running on the CPU only"


def _nvml_failure(exc: Exception) -> str:
    what = "no NVIDIA driver found" if isinstance(exc, _NO_DRIVER) else "NVML failed to start"
    return f"{what} (NVML: {exc})"


def _open_devices(notices: list[str]) -> list[_Device]:
    devices = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name, uuid = pynvml.nvmlDeviceGetName(handle), pynvml.nvmlDeviceGetUUID(handle)
        except pynvml.NVMLError as exc:
            notices.append(f"GPU {index} cannot be opened (NVML: {exc}): not used")
            continue
        devices.append(_Device(index=index, handle=handle, name=str(name), uuid=str(uuid)))
    return devices


def _shutdown() -> None:
    try:
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:
        log.debug("nvmlShutdown: %s", exc)


def _drain(notices: deque[str]) -> list[str]:
    taken = []
    while notices:
        taken.append(notices.popleft())
    return taken


def _say(notice: str) -> str:
    log.warning("%s", notice)
    return notice


def _sample_device(device: _Device, now: float) -> GpuSample:
    memory = device.read("memory", pynvml.nvmlDeviceGetMemoryInfo)
    rates = device.read("utilization", pynvml.nvmlDeviceGetUtilizationRates)
    temperature = device.read_slow("temperature", now, pynvml.nvmlDeviceGetTemperature, pynvml.NVML_TEMPERATURE_GPU)
    return GpuSample(
        time=now,
        index=device.index,
        name=device.name,
        uuid=device.uuid,
        memory_used=None if memory is None else int(memory.used),
        memory_total=None if memory is None else int(memory.total),
        utilization=None if rates is None else int(rates.gpu),
        temperature=None if temperature is None else int(temperature),
        power_w=_watts(device.read("power", pynvml.nvmlDeviceGetPowerUsage)),
        power_limit_w=_watts(device.read_slow("power_limit", now, pynvml.nvmlDeviceGetEnforcedPowerLimit)),
        processes=_processes(device, now),
    )


def _watts(milliwatts: Any) -> float | None:
    return None if milliwatts is None else int(milliwatts) / 1000


def _processes(device: _Device, now: float) -> list[GpuProcess]:
    """Compute and graphics processes merged by PID (a process doing both is listed by both calls)."""
    used: dict[int, int | None] = {}
    for what, call in (
        ("compute", pynvml.nvmlDeviceGetComputeRunningProcesses),
        ("graphics", pynvml.nvmlDeviceGetGraphicsRunningProcesses),
    ):
        for proc in device.read_slow(what, now, call) or ():
            pid, mem = int(proc.pid), proc.usedGpuMemory
            known = used.get(pid)
            used[pid] = known if mem is None else max(int(mem), known or 0)
    return [GpuProcess(pid=pid, used=mem, session=session_of(pid)) for pid, mem in sorted(used.items())]


def session_of(pid: int) -> int | None:
    """The session id of process ``pid`` (None when it is gone, or hidden in another PID namespace)."""
    try:
        return os.getsid(pid)
    except OSError:
        return None


# -- host ----------------------------------------------------------------------------------------------------


class _Host:
    """psutil readings of the machine, this process and the watched workers."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.workers: dict[int, psutil.Process] = {}
        psutil.cpu_percent(interval=None)  # the first call has nothing to compare with: prime it

    def watch(self, pids: Iterable[int]) -> None:
        """Follow exactly these PIDs (keeping the handles of those already followed)."""
        workers = {}
        for pid in set(pids):
            proc = self.workers.get(pid)
            try:
                workers[pid] = proc if proc is not None else psutil.Process(pid)
            except psutil.NoSuchProcess:
                continue
        self.workers = workers

    def sample(self, now: float) -> HostSample:
        """One reading; workers that are gone are forgotten."""
        memory = psutil.virtual_memory()
        return HostSample(
            time=now,
            cpu_percent=psutil.cpu_percent(interval=None),
            memory_used=memory.total - memory.available,
            memory_total=memory.total,
            daemon_rss=self.me.memory_info().rss,
            workers_rss=self._workers_rss(),
        )

    def _workers_rss(self) -> dict[int, int]:
        rss = {}
        for pid, proc in list(self.workers.items()):
            try:
                rss[pid] = proc.memory_info().rss
            except psutil.Error:
                self.workers.pop(pid, None)
        return rss


# -- ring buffers and the sampler ----------------------------------------------------------------------------


class _Ring(Generic[T]):
    """Timed items of the last ``horizon`` seconds, at most ``maxlen`` of them."""

    def __init__(self, maxlen: int, horizon: float) -> None:
        self.items: deque[tuple[float, T]] = deque(maxlen=maxlen)
        self.horizon = horizon

    def add(self, when: float, item: T) -> None:
        """Append, dropping what is older than the horizon."""
        self.items.append((when, item))
        while self.items[0][0] < when - self.horizon:
            self.items.popleft()

    def values(self, now: float) -> list[T]:
        """Items no older than the horizon at ``now``, oldest first."""
        return [item for when, item in self.items if when >= now - self.horizon]


class Telemetry:
    """The daemon's sampler: the last ``history_s`` seconds of every GPU, the host and each run.

    :meth:`sample` may run in a thread (``asyncio.to_thread``), so that a slow driver never stalls the event
    loop, while the loop calls the other methods; one lock guards the buffers. Take one sample at a time.

    Args:
        rate_hz: Samples per second the daemon takes; sizes the ring buffers.
        history_s: Seconds of history kept.
        nvml: An opened :class:`Nvml`, None for no GPU sampling, or ``"auto"`` to open it here.
        gpus: With ``nvml="auto"``, the GPUs to open (the daemon's ``--gpus``, NVML indices or UUIDs); None: all.
        clock: Unix time source (tests pass a fake one).

    Raises:
        GpuSelectionError: when ``gpus`` names a GPU the machine does not have.
    """

    def __init__(
        self,
        rate_hz: float = 5.0,
        history_s: float = 600.0,
        nvml: Nvml | Literal["auto"] | None = "auto",
        *,
        gpus: Collection[GpuId] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rate_hz <= 0 or history_s <= 0:
            raise ValueError(f"rate_hz and history_s must be positive, not {rate_hz} and {history_s}")
        self.rate_hz, self.history_s, self.clock = rate_hz, history_s, clock
        self.nvml = Nvml.open(gpus) if nvml == "auto" else nvml
        self.notice: str | None = Nvml.notice if nvml == "auto" and self.nvml is None else None
        """Why there is no GPU telemetry (no driver, no GPU); None when there is."""
        self._pending = deque([self.notice] if self.notice else [])
        self._lock = threading.Lock()
        self._maxlen = math.ceil(rate_hz * history_s) + 1
        self._host = _Host()
        self._host_ring: _Ring[dict[str, Any]] = self._ring()
        self._gpu_rings: dict[int, _Ring[dict[str, Any]]] = {}
        self._run_rings: dict[int, _Ring[dict[str, Any]]] = {}
        self._latest: list[GpuSample] | None = None

    def _ring(self) -> _Ring[dict[str, Any]]:
        return _Ring(self._maxlen, self.history_s)

    @property
    def interval_s(self) -> float:
        """Seconds between samples."""
        return 1 / self.rate_hz

    def sample(self) -> TelemetrySampled:
        """Sample every GPU and the host, keep the samples, and return them as a ``telemetry`` event.

        The event's ``runs`` is empty: the workers' own allocator figures are the daemon's to add.
        """
        now = self.clock()
        gpus = self.nvml.sample(now) if self.nvml is not None else []
        host = self._host.sample(now)
        with self._lock:
            for gpu in gpus:
                self._gpu_rings.setdefault(gpu.index, self._ring()).add(now, gpu.to_dict())
            self._host_ring.add(now, host.to_dict())
            self._latest = gpus
        return TelemetrySampled(gpus=gpus, host=host)

    def add_run_sample(self, run_id: int, data: Mapping[str, Any]) -> None:
        """Keep a worker's report (allocator figures, progress), stamped with ``time`` unless it has one."""
        now = self.clock()
        with self._lock:
            self._run_rings.setdefault(run_id, self._ring()).add(now, {"time": now, **data})

    def drop_run(self, run_id: int) -> None:
        """Forget a run's samples."""
        with self._lock:
            self._run_rings.pop(run_id, None)

    def watch_pids(self, pids: Iterable[int]) -> None:
        """Report the resident memory of exactly these worker PIDs from the next sample on."""
        self._host.watch(pids)

    def latest_gpus(self) -> list[dict[str, Any]]:
        """The last sample of each GPU that answered it, as dicts."""
        return [gpu.to_dict() for gpu in self._latest or []]

    def history(self) -> dict[str, Any]:
        """Every kept sample, oldest first: ``{"gpus": {index: [...]}, "host": [...], "runs": {id: [...]}}``."""
        now = self.clock()
        with self._lock:
            return {
                "gpus": {str(index): ring.values(now) for index, ring in self._gpu_rings.items()},
                "host": self._host_ring.values(now),
                "runs": {str(run_id): ring.values(now) for run_id, ring in self._run_rings.items()},
            }

    def gpu_views(self) -> list[GpuView]:
        """Each GPU's memory and PIDs from the last sample (taking one if there is none yet)."""
        if self._latest is None:
            self.sample()
        return gpu_views(self._latest or [])

    def host_memory(self) -> tuple[int, int]:
        """The host's total and available memory in bytes, read now (admission of CPU runs)."""
        memory = psutil.virtual_memory()
        return memory.total, memory.available

    def take_notices(self) -> list[str]:
        """Notices to publish once as ``notice`` events: no driver (at first), GPUs lost or back."""
        return _drain(self._pending) + (self.nvml.take_notices() if self.nvml is not None else [])

    def close(self) -> None:
        """Shut NVML down (when this object opened it or was given it)."""
        if self.nvml is not None:
            self.nvml.close()


def gpu_views(samples: Iterable[GpuSample]) -> list[GpuView]:
    """Admission's view of GPU samples: totals and free memory in MiB, and the PIDs on each GPU."""
    return [
        {
            "index": gpu.index,
            "name": gpu.name,
            "total_mib": (gpu.memory_total or 0) // MIB,
            "free_mib": _free_mib(gpu),
            "pids": [proc.pid for proc in gpu.processes],
        }
        for gpu in samples
    ]


def _free_mib(gpu: GpuSample) -> int:
    if gpu.memory_total is None or gpu.memory_used is None:
        return 0
    return max(0, gpu.memory_total - gpu.memory_used) // MIB
