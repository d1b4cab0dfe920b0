"""The ``slurm`` executor end to end: a daemon submits its runs as jobs to submitit's local executor.

One daemon (``--executor slurm --slurm-cluster local --slurm-max-jobs 2 --slurm-gpus-per-job 0``) serves the module;
its shared folder (run folders, submitit's files) lives in the test's home. The local executor runs each job the
way Slurm does (a job process calling the pickled task, the time-limit signal, requeue by exit code), on this
machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from stratcast.shared.client import Client
from stratcast.shared.events import RunStopped, WorkerStarted
from stratcast.shared.protocol import KillRun, ResumeRun, ShowRun, Status, StopRun, Submit
from tests.integration.cluster import (
    WAIT_S,
    job,
    small_panel,
    starts,
    wait_checkpoint,
    worker_events,
    worker_process,
)
from tests.integration.daemon_process import DaemonProcess
from tests.integration.test_daemon import wait_for

pytest.importorskip("submitit", reason="the slurm executor's tests need the extra: pip install 'stratcast[slurm]'")
pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ENDED = ("succeeded", "failed", "killed", "stopped", "oom-failed")


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> str:
    return small_panel(tmp_path_factory)


@pytest.fixture(scope="module")
def daemon():
    home = Path(tempfile.mkdtemp(prefix="sc-"))
    options = ["--executor", "slurm", "--slurm-cluster", "local", "--slurm-max-jobs", "2", "--slurm-gpus-per-job", "0"]
    d = DaemonProcess(home, *options, "--shared-dir", str(home / "shared")).start()
    try:
        yield d
        assert d.stop(timeout=120) == 0, d.output()
    finally:
        d.stop(timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def wait_starts(run_dir: str, count: int) -> list[WorkerStarted]:
    deadline = time.monotonic() + WAIT_S
    while len(found := starts(run_dir)) < count:
        assert time.monotonic() < deadline, f"{run_dir}: {len(found)} worker starts, not {count}, in {WAIT_S}s"
        time.sleep(0.2)
    return found


def job_process(run_dir: str) -> psutil.Process:
    """The job's process (submitit's ``_submit``, which calls the task): the worker's parent."""
    worker = worker_process(run_dir)
    assert worker is not None, "no worker process for the run"
    job = worker.parent()
    assert job is not None and "submitit.core._submit" in " ".join(job.cmdline()), job
    return job


def test_two_runs_run_as_jobs_at_once_and_succeed_with_outputs_in_the_shared_folder(daemon, panel):
    with Client(daemon.home) as client, client.subscribe() as events:
        status = client.call(Status())
        assert (status["executor"], status["executor_health"], status["devices"]) == ("slurm", "ok", ["slurm"])
        runs = [client.call(Submit(job=job(panel, 150)))["run"]["id"] for _ in range(2)]
        running: set[int] = set()
        deadline = time.monotonic() + WAIT_S
        while len(running) < 2 and time.monotonic() < deadline:
            running |= {r for r in runs if client.call(ShowRun(run=r))["run"]["state"] == "running"}
            time.sleep(0.1)
        assert running == set(runs), "the two runs did not run at once on the two slots"
        done = [wait_for(client, run, ENDED, WAIT_S) for run in runs]
        progress: set[int | None] = set()
        while (event := events.recv(timeout_s=0.2)) is not None:
            if event.topic == "progress":
                progress.add(event.run)
    shared = daemon.home.state / "shared"
    for info in done:
        assert info["state"] == "succeeded", info
        assert (info["device"], info["pid"]) == ("slurm", None)
        out = Path(info["out"])
        assert out.parent == shared / "runs"
        assert (out / "out" / "forecast.parquet").exists() and (out / "out" / "metrics.json").exists()
    assert progress == set(runs), "progress events of both runs reached the subscribers"
    assert len(list((shared / "submitit").glob("*/*_result.pkl"))) >= 2, "submitit's files are in the shared folder"


def test_a_stopped_job_resumes_from_its_checkpoint_and_a_kill_cancels_it(daemon, panel):
    with Client(daemon.home) as client:
        run = client.call(Submit(job=job(panel, 200_000)))["run"]["id"]
        wait_for(client, run, ("running",))
        wait_checkpoint(client, run)
        client.call(StopRun(run=run))
        stopped = wait_for(client, run, ENDED)
        assert stopped["state"] == "stopped", stopped
        assert worker_process(stopped["out"]) is None
        client.call(ResumeRun(run=run))
        wait_for(client, run, ("running",))
        (started,) = wait_starts(stopped["out"], 1)
        assert started.resume is not None, started
        assert client.call(ShowRun(run=run))["run"]["attempts"] == 2
        job_process(stopped["out"])  # the resumed worker runs in a job
        client.call(KillRun(run=run))
        killed = wait_for(client, run, ENDED)
        assert killed["state"] == "killed", killed
    deadline = time.monotonic() + 30
    while worker_process(killed["out"]) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker_process(killed["out"]) is None, "the worker outlived its cancelled job"


def test_the_time_limit_signal_checkpoints_requeues_the_job_and_it_resumes(daemon, panel):
    with Client(daemon.home) as client:
        run = client.call(Submit(job=job(panel, 1500)))["run"]["id"]
        info = wait_for(client, run, ("running",))
        wait_checkpoint(client, run)
        first = job_process(info["out"])
        first.send_signal(signal.SIGUSR2)  # what Slurm sends SIGNAL_S seconds before the time limit
        first_start, second_start = wait_starts(info["out"], 2)
        assert first_start.resume is None and second_start.resume is not None, (first_start, second_start)
        done = wait_for(client, run, ENDED, WAIT_S)
        assert done["state"] == "succeeded", done
        assert done["attempts"] == 1, "the job was requeued; the daemon did not restart the run"
    events = worker_events(info["out"])
    first_attempt = events[: events.index(second_start)]
    assert isinstance(first_attempt[-1], RunStopped), "the first attempt's worker checkpointed on the signal"
    assert second_start.resume == first_attempt[-1].path, "the requeued job resumed from that checkpoint"


def test_a_job_whose_process_is_killed_is_submitted_again_and_resumes(daemon, panel):
    with Client(daemon.home) as client:
        run = client.call(Submit(job=job(panel, 1500)))["run"]["id"]
        info = wait_for(client, run, ("running",))
        wait_checkpoint(client, run)
        os.kill(job_process(info["out"]).pid, signal.SIGKILL)  # as if its node went away
        done = wait_for(client, run, ENDED, WAIT_S)
        assert done["state"] == "succeeded", done
        assert done["attempts"] == 1, "the executor submitted the job again; the daemon did not restart the run"
    first, second = starts(info["out"])
    assert first.resume is None and second.resume is not None, (first, second)


def test_a_job_left_running_by_a_crashed_daemon_is_ended_before_its_run_resumes(panel):
    home = Path(tempfile.mkdtemp(prefix="sc-"))
    options = ["--executor", "slurm", "--slurm-cluster", "local", "--slurm-max-jobs", "1", "--slurm-gpus-per-job", "0"]
    d = DaemonProcess(home, *options)
    try:
        with Client(d.start().home) as client:
            run = client.call(Submit(job=job(panel, 3000)))["run"]["id"]
            info = wait_for(client, run, ("running",))
            wait_checkpoint(client, run)
        old = worker_process(info["out"])
        assert old is not None
        d.kill9()
        assert old.is_running(), "a job outlives its daemon, as on a cluster"
        with Client(d.start().home) as client:
            done = wait_for(client, run, ENDED, WAIT_S)
        assert done["state"] == "succeeded" and done["attempts"] == 2, done
        assert not old.is_running(), "the job the crashed daemon left was ended before the run resumed"
        (started,) = starts(info["out"])
        assert started.resume is not None and started.pid != old.pid, started
        assert not (Path(info["out"]) / "slurm-job").exists(), "the ended job's id was cleared"
        assert d.stop(timeout=120) == 0, d.output()
    finally:
        d.stop(timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def test_a_job_reaching_its_time_limit_checkpoints_and_its_requeued_job_resumes(panel):
    home = Path(tempfile.mkdtemp(prefix="sc-"))
    options = ["--executor", "slurm", "--slurm-cluster", "local", "--slurm-gpus-per-job", "0", "--slurm-time", "1"]
    d = DaemonProcess(home, *options)  # the signal comes 30 s into each one-minute job
    try:
        with Client(d.start().home) as client:
            run = client.call(Submit(job=job(panel, 200_000)))["run"]["id"]
            info = wait_for(client, run, ("running",))
            first, second = wait_starts(info["out"], 2)
            assert client.call(ShowRun(run=run))["run"]["state"] == "running"
            client.call(KillRun(run=run))
            assert wait_for(client, run, ENDED)["state"] == "killed"
        events = worker_events(info["out"])
        stopped = events[events.index(second) - 1]
        assert first.resume is None and isinstance(stopped, RunStopped), (first, stopped)
        assert second.resume == stopped.path, "the requeued job resumed from the checkpoint of the time limit"
        assert d.stop(timeout=120) == 0, d.output()
    finally:
        d.stop(timeout=120)
        shutil.rmtree(home, ignore_errors=True)
