"""The ``ray`` executor end to end: a daemon that starts a local Ray instance runs its runs as Ray tasks.

One daemon (``--executor ray --ray-address local --cpu-slots 2``) serves the module: Ray takes several seconds to
start. Its Ray session folder and the shared run folders live in the test's home, kept short because Ray's unix
socket paths must fit in 107 bytes.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import msgspec
import psutil
import pytest

from stratcast.shared.client import Client
from stratcast.shared.protocol import JobSpec, KillRun, ListSaved, ResumeRun, ShowRun, Status, StopRun, Submit
from tests.integration.cluster import WAIT_S, job, small_panel, starts, wait_checkpoint, worker_process
from tests.integration.daemon_process import DaemonProcess
from tests.integration.test_daemon import wait_for

pytest.importorskip("ray", reason="the ray executor's tests need the extra: pip install 'stratcast[ray]'")
pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> str:
    return small_panel(tmp_path_factory)


@pytest.fixture(scope="module")
def daemon():
    home = Path(tempfile.mkdtemp(prefix="sc-"))
    options = ["--executor", "ray", "--ray-address", "local", "--cpu-slots", "2", "--ray-temp-dir", str(home / "r")]
    d = DaemonProcess(home, *options, "--shared-dir", str(home / "shared")).start()
    try:
        with Client(d.home) as client:
            wait_healthy(client)
        yield d
        assert d.stop(timeout=120) == 0, d.output()
        deadline = time.monotonic() + 30
        while ray_processes(home) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not ray_processes(home), "the daemon's Ray instance outlived it"
    finally:
        d.stop(timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def wait_healthy(client: Client, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.call(Status())
        if status["executor_health"] == "ok":
            return
        time.sleep(0.5)
    raise AssertionError(f"the ray executor did not become healthy: {status['executor_health']}")


def ray_processes(home: Path) -> list[psutil.Process]:
    """Processes whose command line names the test's Ray folder (raylet, GCS, workers)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(str(home / "r") in part for part in p.info["cmdline"] or ()):
            found.append(p)
    return found


def test_two_runs_run_as_ray_tasks_at_once_and_succeed_with_outputs_in_the_shared_folder(daemon, panel):
    with Client(daemon.home) as client, client.subscribe() as events:
        status = client.call(Status())
        assert (status["executor"], status["executor_health"]) == ("ray", "ok")
        runs = [client.call(Submit(job=job(panel, 150)))["run"]["id"] for _ in range(2)]
        running: set[int] = set()
        deadline = time.monotonic() + WAIT_S
        while len(running) < 2 and time.monotonic() < deadline:
            running |= {r for r in runs if client.call(ShowRun(run=r))["run"]["state"] == "running"}
            time.sleep(0.1)
        assert running == set(runs), "the two runs did not run at once on the two slots"
        done = [wait_for(client, run, ("succeeded", "failed", "killed"), WAIT_S) for run in runs]
        progress: set[int | None] = set()
        while (event := events.recv(timeout_s=0.2)) is not None:
            if event.topic == "progress":
                progress.add(event.run)
    for info in done:
        assert info["state"] == "succeeded", info
        assert (info["device"], info["pid"]) == ("ray", None)
        out = Path(info["out"])
        assert out.parent == daemon.home.state / "shared" / "runs"
        assert (out / "out" / "forecast.parquet").exists() and (out / "out" / "metrics.json").exists()
    assert progress == set(runs), "progress events of both runs reached the subscribers"


def test_a_stopped_ray_run_resumes_from_its_checkpoint_and_a_kill_ends_its_worker(daemon, panel):
    with Client(daemon.home) as client:
        run = client.call(Submit(job=job(panel, 200_000)))["run"]["id"]
        wait_for(client, run, ("running",))
        wait_checkpoint(client, run)
        client.call(StopRun(run=run))
        stopped = wait_for(client, run, ("stopped", "failed", "succeeded"))
        assert stopped["state"] == "stopped", stopped
        assert worker_process(stopped["out"]) is None
        client.call(ResumeRun(run=run))
        wait_for(client, run, ("running",))
        deadline = time.monotonic() + WAIT_S
        while not starts(stopped["out"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        (started,) = starts(stopped["out"])
        assert started.resume is not None, started
        assert client.call(ShowRun(run=run))["run"]["attempts"] == 2
        client.call(KillRun(run=run))
        killed = wait_for(client, run, ("killed", "failed", "stopped"))
        assert killed["state"] == "killed", killed
    deadline = time.monotonic() + 30
    while worker_process(killed["out"]) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker_process(killed["out"]) is None, "the worker outlived its cancelled task"


def test_a_ray_task_whose_worker_process_dies_is_resubmitted_and_resumes(daemon, panel):
    with Client(daemon.home) as client:
        run = client.call(Submit(job=job(panel, 3000)))["run"]["id"]
        info = wait_for(client, run, ("running",))
        wait_checkpoint(client, run)
        worker = worker_process(info["out"])
        assert worker is not None, "no worker process for the run"
        ray_worker = worker.parent()
        assert ray_worker is not None and ray_worker.pid != daemon.pid
        os.kill(ray_worker.pid, signal.SIGKILL)  # as if its node went away
        done = wait_for(client, run, ("succeeded", "failed", "killed", "stopped"), WAIT_S)
        assert done["state"] == "succeeded", done
        assert done["attempts"] == 1, "Ray resubmitted the task; the daemon did not restart the run"
    first, second = starts(info["out"])
    assert first.resume is None and second.resume is not None, (first, second)


def test_a_model_saved_by_a_cluster_run_is_in_the_shared_store_that_the_daemon_lists_and_scores_with(daemon, panel):
    # the workers' home is the shared folder: the daemon must read the saved models where they write them
    with Client(daemon.home) as client:
        saving = msgspec.structs.replace(job(panel, 20), save_as="on-cluster")
        run = client.call(Submit(job=saving))["run"]["id"]
        done = wait_for(client, run, ("succeeded", "failed", "killed", "stopped"), WAIT_S)
        assert done["state"] == "succeeded", done
        assert (daemon.home.state / "shared" / "models" / "on-cluster").is_dir()
        assert [m["name"] for m in client.call(ListSaved())] == ["on-cluster"]
        scoring = client.call(Submit(job=JobSpec(data=panel, saved="on-cluster", device="cpu")))["run"]["id"]
        scored = wait_for(client, scoring, ("succeeded", "failed", "killed", "stopped"), WAIT_S)
        assert scored["state"] == "succeeded", scored
        assert (Path(scored["out"]) / "out" / "forecast.parquet").exists()


def driver_process(daemon: DaemonProcess) -> psutil.Process:
    """The daemon's Ray driver process."""
    for child in psutil.Process(daemon.pid).children():
        if "stratcast.daemon.executors.raydriver" in child.cmdline():
            return child
    raise AssertionError("the daemon has no Ray driver process")


def test_a_lost_ray_driver_is_reported_replaced_and_its_runs_resume_in_the_daemon_that_stays_up(daemon, panel):
    # Ray ends a driver that cannot go on (a head restarted as a new cluster): the daemon must outlive it
    with Client(daemon.home) as client:
        run = client.call(Submit(job=job(panel, 3000)))["run"]["id"]
        info = wait_for(client, run, ("running",))
        wait_checkpoint(client, run)
        old = driver_process(daemon)
        old.kill()
        old.wait(30)
        deadline = time.monotonic() + 30
        seen = ""
        while "the Ray driver process ended (signal SIGKILL" not in seen and time.monotonic() < deadline:
            seen = client.call(Status())["executor_health"]
            time.sleep(0.05)
        assert "the Ray driver process ended (signal SIGKILL" in seen and "runs wait for it" in seen, seen
        assert client.call(ShowRun(run=run))["run"]["state"] == "running", "the run must wait, not fail"
        done = wait_for(client, run, ("succeeded", "failed", "killed", "stopped"), WAIT_S)
        assert done["state"] == "succeeded", done
        assert done["attempts"] == 1, "the executor submitted the run again; the daemon did not restart it"
        assert daemon.alive()
        assert driver_process(daemon).pid != old.pid
        wait_healthy(client)
    first, second = starts(info["out"])
    assert first.resume is None and second.resume is not None, (first, second)


def test_an_unreachable_ray_cluster_is_reported_and_runs_wait_for_it(panel):
    home = Path(tempfile.mkdtemp(prefix="sc-"))
    d = DaemonProcess(home, "--executor", "ray", "--ray-address", "127.0.0.1:1").start()
    try:
        with Client(d.home) as client:
            health = client.call(Status())["executor_health"]
            assert health.startswith("connecting to the Ray cluster at 127.0.0.1:1: no answer yet"), health
            run = client.call(Submit(job=job(panel, 20)))["run"]["id"]
            deadline = time.monotonic() + 30
            while not (info := client.call(ShowRun(run=run))["run"])["reason"] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert (info["state"], info["reason"]) == ("queued", f"waiting for the ray executor: {health}")
        assert d.stop(timeout=60) == 0, d.output()
    finally:
        d.stop(timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def test_a_crashed_daemon_leaves_no_ray_worker_behind_and_its_run_resumes_at_the_next_start(panel):
    home = Path(tempfile.mkdtemp(prefix="sc-"))
    options = ["--executor", "ray", "--ray-address", "local", "--cpu-slots", "1", "--ray-temp-dir", str(home / "r")]
    d = DaemonProcess(home, *options)
    try:
        with Client(d.start().home) as client:
            wait_healthy(client)
            run = client.call(Submit(job=job(panel, 3000)))["run"]["id"]
            info = wait_for(client, run, ("running",))
            wait_checkpoint(client, run)
        d.kill9()
        deadline = time.monotonic() + 30
        while worker_process(info["out"]) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert worker_process(info["out"]) is None, "the worker outlived its daemon's Ray instance"
        with Client(d.start().home) as client:
            done = wait_for(client, run, ("succeeded", "failed", "killed", "stopped"), WAIT_S)
        assert done["state"] == "succeeded" and done["attempts"] == 2, done
        (started,) = starts(info["out"])
        assert started.resume is not None, started
        assert d.stop(timeout=120) == 0, d.output()
    finally:
        d.stop(timeout=120)
        shutil.rmtree(home, ignore_errors=True)
