"""The slurm executor's pieces without a daemon: the time-limit hook inside a job, the cluster's health, its options."""

import asyncio
import subprocess
import sys
import time

import pytest

from stratcast.daemon.cli import main
from stratcast.daemon.executors import base, slurm
from stratcast.daemon.executors.slurm import SlurmExecutor, SlurmOptions, SlurmTask, signal_delay_s
from stratcast.daemon.worker import EXIT_OK, EXIT_STOPPED
from stratcast.shared.errors import ExitCode

submitit = pytest.importorskip("submitit", reason="the slurm executor's tests need the extra: stratcast[slurm]")
pytestmark = pytest.mark.slurm

STOPS_ON_SIGTERM = f"""
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit({EXIT_STOPPED}))
print("ready", flush=True)
time.sleep(60)
"""
"""A worker stand-in that checkpoints (exits stopped) on SIGTERM, as the worker does."""


def fake_worker(monkeypatch, code: str, stdout: int | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=stdout)
    monkeypatch.setattr(slurm, "_worker", proc)
    return proc


def test_the_time_limit_hook_stops_the_worker_and_requeues_the_same_task(monkeypatch, tmp_path):
    proc = fake_worker(monkeypatch, STOPS_ON_SIGTERM, subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    proc.stdout.close()
    task = SlurmTask(str(tmp_path), False, None, None)
    requeued = task.checkpoint()
    assert proc.returncode == EXIT_STOPPED, "the worker was asked to checkpoint and exit"
    assert isinstance(requeued, submitit.helpers.DelayedSubmission)
    assert requeued.function == task and requeued.args == () and requeued.kwargs == {}


def test_a_worker_that_already_finished_is_not_requeued(monkeypatch, tmp_path):
    proc = fake_worker(monkeypatch, f"import sys; sys.exit({EXIT_OK})")
    proc.wait(30)
    assert SlurmTask(str(tmp_path), False, None, None).checkpoint() is None


def test_the_signal_comes_90_s_before_the_limit_or_halfway_through_a_short_one():
    assert (signal_delay_s(240), signal_delay_s(2), signal_delay_s(0.5)) == (90, 60, 15)


def test_a_machine_without_slurm_is_reported_and_takes_no_jobs(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    said = "no Slurm here: `sinfo` is not on PATH (serve on a Slurm login node, or use --slurm-cluster local)"
    assert slurm._sinfo_problem() == said
    executor = SlurmExecutor(lambda run, event: None, lambda run, ending: asyncio.sleep(0), tmp_path, SlurmOptions())
    assert executor.health() in ("asking Slurm (`sinfo`) whether it answers", said) and executor.slots() == 4
    deadline = time.monotonic() + 30
    while executor.health() != said and time.monotonic() < deadline:  # the first check runs in the background
        time.sleep(0.05)
    assert executor.health() == said
    with pytest.raises(OSError, match=r"^Slurm cannot take runs now: "):
        asyncio.run(executor.start(1, tmp_path, "slurm", None))
    asyncio.run(executor.close())


def test_a_failing_sinfo_is_reported_with_what_it_said(monkeypatch, tmp_path):
    sinfo = tmp_path / "sinfo"
    sinfo.write_text("#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller' >&2\nexit 1\n")
    sinfo.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    said = "Slurm does not answer: `sinfo` failed: slurm_load_partitions: Unable to contact slurm controller"
    assert slurm._sinfo_problem() == said
    sinfo.write_text("#!/bin/sh\nexit 0\n")
    assert slurm._sinfo_problem() == ""


def test_slurm_options_without_the_slurm_executor_are_a_usage_error(tmp_path, capsys):
    assert main(["serve", "--home", str(tmp_path / "home"), "--slurm-max-jobs", "8"]) == ExitCode.USAGE
    assert "the --slurm-* options go with --executor slurm" in capsys.readouterr().err


def test_the_slurm_executor_without_its_extra_names_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(base, "find_spec", lambda name: None)
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--home", str(tmp_path / "home"), "--executor", "slurm"])
    assert exit_.value.code == 2
    assert "--executor slurm needs the extra: pip install 'stratcast[slurm]'" in capsys.readouterr().err


def test_the_options_reach_each_jobs_sbatch_script():
    from submitit.slurm.slurm import _make_sbatch_string

    options = SlurmOptions(partition="gpu", time_min=59.5, gpus_per_job=2)
    script = _make_sbatch_string("python -m task", "/shared/submitit/%j", **slurm.sbatch_parameters(options))
    lines = set(script.splitlines())
    expected = {"--partition=gpu", "--time=60", "--gpus-per-node=2", "--signal=USR2@90", "--ntasks-per-node=1"}
    assert {f"#SBATCH {option}" for option in expected} <= lines
    on_cpu = _make_sbatch_string("python -m task", "/s", **slurm.sbatch_parameters(SlurmOptions(gpus_per_job=0)))
    assert "gpus" not in on_cpu and "partition" not in on_cpu and "#SBATCH --time=240" in on_cpu
