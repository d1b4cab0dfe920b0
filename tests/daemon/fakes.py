"""The one simulated GPU list of the tests: pynvml's functions answering from ``FakeGpu`` records.

``FakeNvml(gpus).install(monkeypatch)`` replaces the driver calls the telemetry module makes, so the daemon's real
``Nvml`` and ``Telemetry`` (and through them admission, ``status`` and ``list_gpus``) see these GPUs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml  # type: ignore[import-untyped]

from stratcast.daemon import telemetry

GIB = 1 << 30

DEVICE_CALLS = {
    "nvmlDeviceGetName": lambda gpu: gpu.name,
    "nvmlDeviceGetUUID": lambda gpu: gpu.uuid,
    "nvmlDeviceGetMemoryInfo": lambda gpu: SimpleNamespace(total=gpu.total, used=gpu.used, free=gpu.total - gpu.used),
    "nvmlDeviceGetUtilizationRates": lambda gpu: SimpleNamespace(gpu=gpu.utilization, memory=3),
    "nvmlDeviceGetTemperature": lambda gpu, sensor: gpu.temperature,
    "nvmlDeviceGetPowerUsage": lambda gpu: gpu.power_mw,
    "nvmlDeviceGetEnforcedPowerLimit": lambda gpu: gpu.limit_mw,
    "nvmlDeviceGetComputeRunningProcesses": lambda gpu: [
        SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.compute
    ],
    "nvmlDeviceGetGraphicsRunningProcesses": lambda gpu: [
        SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.graphics
    ],
}


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-0"
    total: int = 80 * GIB
    used: int = 3 * GIB
    utilization: int = 37
    temperature: int = 41
    power_mw: int = 120_500
    limit_mw: int = 700_000
    compute: list[tuple[int, int | None]] = field(default_factory=list)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)
    """pynvml function names that raise NotSupported on this GPU."""
    broken: type[pynvml.NVMLError] | None = None
    """Every call about this GPU raises this (set it to make the GPU fail mid-run)."""


def h100s(n: int) -> list[FakeGpu]:
    """``n`` idle 80 GiB GPUs, GPU-0 to GPU-(n-1)."""
    return [FakeGpu(uuid=f"GPU-{i}") for i in range(n)]


class FakeNvml:
    """Stands in for the driver: the pynvml functions the module calls, answering from FakeGpus."""

    def __init__(self, gpus):
        self.gpus = gpus
        self.calls: Counter[tuple[str, int]] = Counter()
        self.init_error: type[pynvml.NVMLError] | None = None

    def install(self, monkeypatch):
        monkeypatch.setattr(pynvml, "nvmlInit", self.init)
        monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: len(self.gpus))
        monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda index: index)
        for name, impl in DEVICE_CALLS.items():
            monkeypatch.setattr(pynvml, name, self.device_call(name, impl))
        # the fake GPUs' pids are made up: a real process may have one of them, so its session is not looked up
        monkeypatch.setattr(telemetry, "session_of", lambda pid: None)
        return self

    def init(self):
        if self.init_error is not None:
            raise self.init_error()

    def device_call(self, name, impl):
        def call(handle, *args):
            self.calls[name, handle] += 1
            gpu = self.gpus[handle]
            if gpu.broken is not None:
                raise gpu.broken()
            if name in gpu.unsupported:
                raise pynvml.NVMLError_NotSupported()
            return impl(gpu, *args)

        return call


def h100(index: int, free_gib: float = 70.0, pids: tuple[int, ...] = ()) -> FakeGpu:
    """GPU ``index`` of 80 GiB with ``free_gib`` free and processes ``pids`` (1 GiB each) on it."""
    return FakeGpu(uuid=f"GPU-{index}", used=round((80 - free_gib) * GIB), compute=[(pid, GIB) for pid in pids])


class FakeWorker:
    def __init__(self, run, device):
        self.run, self.device, self.pid = run, device, 1000 + run
        self.kill_requested = self.shutdown = False


class FakeExecutor:
    """An executor that records the runs the daemon starts, on which device, and pretends they run."""

    name = "fake"

    def __init__(self):
        self.started: list[tuple[int, str, float | None]] = []
        self.workers: dict[int, FakeWorker] = {}
        self.unreachable = ""
        """Set to a reason to make the executor unhealthy."""
        self.cluster_slots: int | None = None
        """Set to a number to make it a cluster executor with that many slots."""

    def health(self):
        return self.unreachable or "ok"

    def slots(self):
        return self.cluster_slots

    async def close(self):
        pass

    async def start(self, run, run_dir, device, memory_gib, ranks=1):
        self.started.append((run, device, memory_gib))
        self.workers[run] = FakeWorker(run, device)
        return self.workers[run]


def daemon_with(tmp_path, monkeypatch, fake_gpus, **options):
    """A daemon (not serving) whose NVML sees ``fake_gpus`` and whose executor only records starts."""
    from stratcast.daemon.server import Daemon, Options
    from stratcast.daemon.store import Store
    from stratcast.shared.paths import resolve_home

    FakeNvml(fake_gpus).install(monkeypatch)
    d = Daemon(resolve_home(tmp_path / "home"), Options(**options))
    d.home.ensure()
    d.store = Store(d.home.database)
    executor = FakeExecutor()
    d.runner = executor  # type: ignore[assignment]
    return d, executor


def submit(d, device="auto", **placement):
    """Queue a run (its data is never read: the executor is fake) with these placement fields."""
    from stratcast.shared.protocol import JobSpec, Placement

    return d.db.add_run(JobSpec(data="/x.parquet", device=device), Placement(**placement), runs_dir=d.home.runs)
