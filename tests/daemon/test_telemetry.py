import json
import logging
import os
import subprocess
import time

import msgspec
import psutil
import pynvml  # type: ignore[import-untyped]
import pytest

from stratcast.daemon.telemetry import MIB, Nvml, Telemetry, gpu_views
from stratcast.shared.events import GpuProcess, TelemetrySampled
from tests.daemon.fakes import GIB, FakeGpu, FakeNvml


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture(autouse=True)
def _fresh_notice(monkeypatch):
    monkeypatch.setattr(Nvml, "notice", None)


@pytest.fixture
def fake(monkeypatch):
    driver = FakeNvml(
        [
            FakeGpu(compute=[(4242, 2 * GIB)], graphics=[(4242, None), (77, 5 * MIB)]),
            FakeGpu(uuid="GPU-1", used=10 * GIB, unsupported={"nvmlDeviceGetPowerUsage", "nvmlDeviceGetTemperature"}),
        ]
    )
    driver.install(monkeypatch)
    return driver


def open_fake() -> Nvml:
    nvml = Nvml.open()
    assert nvml is not None
    return nvml


# -- without a driver ----------------------------------------------------------------------------------------


def raise_(error):
    def call(*args):
        raise error()

    return call


def test_open_without_a_driver_is_none_and_the_notice_names_the_reason(monkeypatch):
    monkeypatch.setattr(pynvml, "nvmlInit", raise_(pynvml.NVMLError_DriverNotLoaded))
    assert Nvml.open() is None
    assert Nvml.notice == "no NVIDIA driver found (NVML: Driver Not Loaded): running on the CPU only"


def test_open_on_this_machine_gives_gpus_or_a_reason():
    nvml = Nvml.open()
    if nvml is None:  # this machine: no NVIDIA library at all
        assert Nvml.notice is not None
        assert "(NVML: " in Nvml.notice
        assert Nvml.notice.endswith("running on the CPU only")
    else:  # a GPU machine
        assert Nvml.notice is None
        assert [gpu.index for gpu in nvml.sample(time.time())] == list(range(len(nvml.devices)))
        nvml.close()


def test_the_no_driver_notice_is_logged_once_however_often_nvml_is_opened(monkeypatch, caplog):
    FakeNvml([]).install(monkeypatch)
    monkeypatch.setattr(pynvml, "nvmlInit", raise_(pynvml.NVMLError_LibraryNotFound))
    with caplog.at_level(logging.WARNING, logger="stratcast.daemon.telemetry"):
        assert Nvml.open() is None
        assert Nvml.open() is None
    assert [r.getMessage() for r in caplog.records] == [
        "no NVIDIA driver found (NVML: NVML Shared Library Not Found): running on the CPU only"
    ]


def test_a_driver_without_gpus_is_none_with_a_notice(monkeypatch):
    FakeNvml([]).install(monkeypatch)
    assert Nvml.open() is None
    assert Nvml.notice == "no usable NVIDIA GPU: running on the CPU only"


def test_telemetry_without_a_driver_still_samples_the_host_and_gives_its_notice_once(monkeypatch):
    driver = FakeNvml([])
    driver.init_error = pynvml.NVMLError_DriverNotLoaded
    driver.install(monkeypatch)
    telemetry = Telemetry(nvml="auto")
    payload = telemetry.sample()
    assert payload.gpus == []
    host = payload.host
    assert 0 < host.memory_used <= host.memory_total
    assert host.daemon_rss > 0
    assert telemetry.notice is not None and "Driver Not Loaded" in telemetry.notice
    assert telemetry.take_notices() == [telemetry.notice]
    assert telemetry.take_notices() == []
    assert telemetry.gpu_views() == []
    assert telemetry.latest_gpus() == []
    total, available = telemetry.host_memory()
    assert 0 < available <= total == host.memory_total


# -- host ----------------------------------------------------------------------------------------------------


def test_watched_workers_report_their_rss_and_are_forgotten_once_they_exit(monkeypatch):
    monkeypatch.setattr(psutil, "process_iter", raise_(AssertionError))  # far too slow to call per sample
    worker = subprocess.Popen(["sleep", "30"])
    try:
        telemetry = Telemetry(nvml=None)
        telemetry.watch_pids([worker.pid, os.getppid()])
        assert set(telemetry.sample().host.workers_rss) == {worker.pid, os.getppid()}
    finally:
        worker.kill()
        worker.wait()
    assert set(telemetry.sample().host.workers_rss) == {os.getppid()}
    telemetry.watch_pids([])
    assert telemetry.sample().host.workers_rss == {}


# -- ring buffers --------------------------------------------------------------------------------------------


def test_ring_buffers_keep_only_the_last_history_seconds():
    clock = Clock(0.0)
    telemetry = Telemetry(rate_hz=1.0, history_s=3.0, nvml=None, clock=clock)
    for t in range(10):
        clock.now = float(t)
        telemetry.sample()
        telemetry.add_run_sample(7, {"allocated": t})
    history = telemetry.history()
    assert [s["time"] for s in history["host"]] == [6.0, 7.0, 8.0, 9.0]
    assert [s["allocated"] for s in history["runs"]["7"]] == [6, 7, 8, 9]


def test_samples_older_than_the_history_are_dropped_even_after_a_pause():
    clock = Clock(0.0)
    telemetry = Telemetry(rate_hz=10.0, history_s=3.0, nvml=None, clock=clock)
    for t in (0.0, 0.1, 0.2):
        clock.now = t
        telemetry.sample()
    clock.now = 100.0
    assert telemetry.history()["host"] == []  # nothing new: the old samples are stale, not shown
    telemetry.sample()
    assert [s["time"] for s in telemetry.history()["host"]] == [100.0]


def test_run_samples_are_stamped_and_dropped_with_the_run():
    clock = Clock(50.0)
    telemetry = Telemetry(nvml=None, clock=clock)
    telemetry.add_run_sample(3, {"allocated": 1024, "step": 10})
    telemetry.add_run_sample(4, {"time": 49.5, "allocated": 1})
    assert telemetry.history()["runs"] == {
        "3": [{"time": 50.0, "allocated": 1024, "step": 10}],
        "4": [{"time": 49.5, "allocated": 1}],
    }
    telemetry.drop_run(3)
    telemetry.drop_run(99)
    assert list(telemetry.history()["runs"]) == ["4"]


# -- GPUs through a fake NVML --------------------------------------------------------------------------------


def test_fake_gpus_give_samples_with_none_for_unsupported_fields_and_their_processes(fake):
    first, second = open_fake().sample(12.5)
    assert first.to_dict() == {
        "time": 12.5,
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-0",
        "memory_used": 3 * GIB,
        "memory_total": 80 * GIB,
        "utilization": 37,
        "temperature": 41,
        "power_w": 120.5,
        "power_limit_w": 700.0,
        "processes": [{"pid": 77, "used": 5 * MIB}, {"pid": 4242, "used": 2 * GIB}],
    }
    assert (second.index, second.power_w, second.temperature, second.power_limit_w) == (1, None, None, 700.0)
    assert second.processes == []


def test_an_unsupported_field_is_asked_once(fake):
    nvml = open_fake()
    for t in range(5):
        nvml.sample(float(t))
    assert fake.calls["nvmlDeviceGetPowerUsage", 1] == 1
    assert fake.calls["nvmlDeviceGetPowerUsage", 0] == 5


def test_process_lists_temperature_and_power_limit_are_read_at_most_once_a_second(fake):
    nvml = open_fake()
    for t in (0.0, 0.2, 0.4, 0.9, 1.0, 1.5):
        nvml.sample(t)
    assert fake.calls["nvmlDeviceGetMemoryInfo", 0] == 6
    for slow in ("ComputeRunningProcesses", "GraphicsRunningProcesses", "Temperature", "EnforcedPowerLimit"):
        assert fake.calls[f"nvmlDeviceGet{slow}", 0] == 2


def test_a_gpu_falling_off_the_bus_is_skipped_with_one_notice(fake):
    telemetry = Telemetry(nvml=open_fake(), clock=Clock())
    assert [gpu.index for gpu in telemetry.sample().gpus] == [0, 1]
    fake.gpus[1].broken = pynvml.NVMLError_GpuIsLost
    for _ in range(3):
        assert [gpu.index for gpu in telemetry.sample().gpus] == [0]
    assert telemetry.take_notices() == ["GPU 1 (NVIDIA H100 80GB HBM3) fell off the bus (NVML: GPU is lost): not used"]
    assert telemetry.take_notices() == []
    assert fake.calls["nvmlDeviceGetMemoryInfo", 1] == 2  # never asked again after it was lost
    assert [view["index"] for view in telemetry.gpu_views()] == [0]
    assert list(telemetry.history()["gpus"]["1"]) != []  # what it said before is kept


def test_a_gpu_that_errors_then_answers_again_is_reported_once_each_way(fake):
    nvml = open_fake()
    fake.gpus[0].broken = pynvml.NVMLError_Unknown
    for t in range(3):
        assert [gpu.index for gpu in nvml.sample(float(t))] == [1]
    fake.gpus[0].broken = None
    assert [gpu.index for gpu in nvml.sample(5.0)] == [0, 1]
    assert nvml.take_notices() == [
        "GPU 0 (NVIDIA H100 80GB HBM3) stopped answering (NVML: Unknown Error): skipped",
        "GPU 0 (NVIDIA H100 80GB HBM3) answers again",
    ]


def test_a_gpu_that_cannot_be_opened_is_left_out_with_a_notice(fake, monkeypatch):
    def handle(index):
        if index == 0:
            raise pynvml.NVMLError_NoPermission()
        return index

    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", handle)
    nvml = open_fake()
    assert [device.index for device in nvml.devices] == [1]
    assert nvml.take_notices() == ["GPU 0 cannot be opened (NVML: Insufficient Permissions): not used"]


def test_history_and_payloads_are_plain_json(fake):
    clock = Clock()
    telemetry = Telemetry(nvml=open_fake(), clock=clock)
    telemetry.watch_pids([os.getpid()])
    telemetry.add_run_sample(1, {"allocated": 5})
    payload = telemetry.sample()
    clock.now += 0.2
    telemetry.sample()
    history = telemetry.history()
    assert msgspec.json.decode(msgspec.json.encode(payload), type=TelemetrySampled) == payload
    assert json.loads(json.dumps(history)) == history
    assert set(history) == {"gpus", "host", "runs"}
    assert [len(history["gpus"][key]) for key in ("0", "1")] == [2, 2]
    assert telemetry.latest_gpus()[1]["memory_used"] == 10 * GIB


def test_gpu_views_give_memory_in_mib_and_the_pids_on_each_gpu(fake):
    telemetry = Telemetry(nvml=open_fake(), clock=Clock())
    assert telemetry.gpu_views() == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "total_mib": 81920, "free_mib": 78848, "pids": [77, 4242]},
        {"index": 1, "name": "NVIDIA H100 80GB HBM3", "total_mib": 81920, "free_mib": 71680, "pids": []},
    ]


def test_a_gpu_whose_memory_cannot_be_read_is_never_free(fake):
    fake.gpus[0].unsupported.add("nvmlDeviceGetMemoryInfo")
    (view, _) = gpu_views(open_fake().sample(0.0))
    assert (view["total_mib"], view["free_mib"]) == (0, 0)


def test_processes_seen_by_both_lists_are_merged_by_pid(fake):
    fake.gpus[0].compute = [(5, None), (6, 100)]
    fake.gpus[0].graphics = [(5, 300), (6, None)]
    (gpu, _) = open_fake().sample(0.0)
    assert gpu.processes == [GpuProcess(pid=5, used=300), GpuProcess(pid=6, used=100)]


def test_sampling_eight_gpus_and_the_host_costs_far_less_than_a_core(monkeypatch):
    FakeNvml([FakeGpu(uuid=f"GPU-{i}", compute=[(100 + i, GIB)]) for i in range(8)]).install(monkeypatch)
    monkeypatch.setattr(psutil, "process_iter", raise_(AssertionError))
    clock = Clock()
    telemetry = Telemetry(rate_hz=10.0, nvml=open_fake(), clock=clock)
    telemetry.watch_pids([os.getpid(), os.getppid()])
    start = time.process_time()
    for _ in range(200):
        clock.now += 0.1
        telemetry.sample()
    per_sample = (time.process_time() - start) / 200
    # 10 Hz under 5% of a core leaves 5 ms a sample; our own share (NVML answering instantly) must be far less.
    assert per_sample < 0.0025, f"{per_sample * 1e3:.2f} ms a sample"
