"""The daemon on a real GPU: NVML telemetry, admission to a GPU, allocator figures from the worker, stop/resume."""

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.shared.client import Client
from stratcast.shared.protocol import JobSpec, KillRun, ListGpus, ResumeRun, ShowRun, Snapshot, StopRun, Submit
from tests.integration.daemon_process import DaemonProcess

pytestmark = pytest.mark.gpu


@pytest.fixture
def gpu_daemon(tmp_path):
    home = Path(tempfile.mkdtemp(prefix="sc-"))
    daemon = DaemonProcess(home).start()
    yield daemon
    daemon.stop()
    shutil.rmtree(home, ignore_errors=True)


def wait_state(client, run, states, timeout=180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.call(ShowRun(run=run))["run"]
        if info["state"] in states:
            return info
        time.sleep(0.2)
    raise AssertionError(f"run {run} is {info['state']} ({info['reason']})")


def test_a_run_goes_to_a_gpu_reports_allocator_memory_and_resumes_there(gpu_daemon, tmp_path):
    panel = tmp_path / "panel.parquet"
    make_strategy_panel(500, 208, seed=0).to_parquet(panel, index=False)
    sets = ["max_steps=200000", "checkpoint_every_s=1", "val_size=0"]
    with Client(gpu_daemon.home) as client:
        gpus = client.call(ListGpus())
        assert gpus["gpus"] and gpus["notice"] is None
        assert gpus["gpus"][0]["memory_total"] > 0
        run = client.call(Submit(job=JobSpec(data=str(panel), model="nhits", sets=sets)))["run"]["id"]
        info = wait_state(client, run, ("running",))
        assert info["device"].startswith("cuda:")
        deadline = time.monotonic() + 120
        memory: dict[str, float] = {}
        while time.monotonic() < deadline and not memory.get("allocated"):
            history = client.call(Snapshot())["telemetry"]["runs"].get(str(run), [])
            memory = next((s for s in reversed(history) if s.get("kind") == "memory"), {})
            time.sleep(0.5)
        assert memory["allocated"] > 0 and memory["peak"] >= memory["allocated"]
        processes = [p for g in client.call(ListGpus())["gpus"] for p in g["processes"]]
        assert any(p["run"] == run for p in processes)  # NVML sees the worker, named as the daemon's run
        client.call(StopRun(run=run))
        stopped = wait_state(client, run, ("stopped", "failed"))
        assert stopped["state"] == "stopped"
        client.call(ResumeRun(run=run))
        again = wait_state(client, run, ("running",))
        assert again["device"].startswith("cuda:") and again["attempts"] == 2
        client.call(KillRun(run=run))
        wait_state(client, run, ("killed",))
