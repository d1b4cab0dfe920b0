"""Every GPU of one server, or the subset ``--gpus`` gives the daemon, seen through the simulated NVML.

The daemon's real telemetry and admission run against :mod:`tests.daemon.fakes`' GPU list; only the worker
processes are faked (the executor records where each run would start).
"""

import asyncio
import os

import pytest

from stratcast.daemon.cli import main
from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.handlers import list_gpus, status
from stratcast.daemon.serve import cuda_visible
from stratcast.daemon.telemetry import GpuSelectionError, Telemetry
from stratcast.shared.errors import ExitCode
from stratcast.shared.protocol import JobSpec, ListGpus, Status, StudySpec
from tests.daemon.engine.small_jobs import MLP_SPACE as SPACE
from tests.daemon.fakes import FakeNvml, daemon_with, h100, h100s, submit


def test_four_queued_runs_start_one_per_gpu(tmp_path, monkeypatch):
    d, runner = daemon_with(tmp_path, monkeypatch, h100s(4))
    runs = [submit(d) for _ in range(5)]
    asyncio.run(d.admit())
    assert [(r, dev) for r, dev, _ in runner.started] == [(runs[i].id, f"cuda:{i}") for i in range(4)]
    assert d.db.get_run(runs[4].id).reason == "all 4 GPUs busy (runs 1, 2, 3, 4)"


def test_a_gpu_filled_by_another_users_process_gets_no_run(tmp_path, monkeypatch):
    # GPU 1: another container's job holds 79.5 GiB and NVML shows no pid for it; GPU 2: a visible foreign pid
    gpus = [h100(0), h100(1, free_gib=0.5), h100(2, pids=(4242,)), h100(3, free_gib=3.0)]
    d, runner = daemon_with(tmp_path, monkeypatch, gpus, min_free_gib=4.0)
    runs = [submit(d) for _ in range(3)]
    asyncio.run(d.admit())
    assert [(r, dev) for r, dev, _ in runner.started] == [(runs[0].id, "cuda:0")]
    reason = d.db.get_run(runs[1].id).reason
    assert "GPU 0 busy with run 1" in reason and "GPU 2 has processes stratcastd does not own (pid 4242)" in reason
    assert "not enough free memory on GPU 1 (needs 4.0 GiB, 0.5 GiB free)" in reason
    assert "not enough free memory on GPU 3 (needs 4.0 GiB, 3.0 GiB free)" in reason


def test_a_gpu_subset_gets_the_runs_and_the_other_gpus_are_not_seen(tmp_path, monkeypatch):
    d, runner = daemon_with(tmp_path, monkeypatch, h100s(4), gpus=(1, 3))
    runs = [submit(d) for _ in range(3)]
    asyncio.run(d.admit())
    assert [(r, dev) for r, dev, _ in runner.started] == [(runs[0].id, "cuda:1"), (runs[1].id, "cuda:3")]
    assert d.db.get_run(runs[2].id).reason == "all 2 GPUs busy (runs 1, 2)"
    assert asyncio.run(status.handle(d, Status()))["devices"] == ["cuda:1", "cuda:3", "cpu"]
    d.telemetry.sample()
    assert [g["index"] for g in asyncio.run(list_gpus.handle(d, ListGpus()))["gpus"]] == [1, 3]
    assert set(d.telemetry.history()["gpus"]) == {"1", "3"}


def test_a_run_pinned_to_a_gpu_outside_the_subset_waits_naming_the_daemons_gpus(tmp_path, monkeypatch):
    d, runner = daemon_with(tmp_path, monkeypatch, h100s(4), gpus=(1, 3))
    pinned = submit(d, gpu=2)
    asyncio.run(d.admit())
    assert runner.started == []
    assert d.db.get_run(pinned.id).reason == (
        "GPU 2 is not one of the daemon's GPUs (1, 3): remove this run, submit it on one of those"
    )


def test_study_trials_spread_over_the_gpus(tmp_path, monkeypatch):
    data = tmp_path / "panel.parquet"
    make_strategy_panel(6, 40, seed=4).to_parquet(data, index=False)
    d, runner = daemon_with(tmp_path, monkeypatch, h100s(4), gpus=(0, 2, 3))
    job = JobSpec(data=str(data), model="mlp", horizon=4, input_size=8, holdout=4, sets=["max_steps=2"])
    spec = StudySpec(models=["mlp"], trials=6, parallel=4, pruner="none", space=SPACE, job=job)

    async def run_study():
        info = await d.studies.submit(spec)
        await d.studies.step()
        await d.admit()
        return info

    info = asyncio.run(run_study())
    trials = d.db.study_runs(info.id)
    assert len(trials) == 4  # parallel 4: four trials asked, each a queued run
    assert sorted(dev for _, dev, _ in runner.started) == ["cuda:0", "cuda:2", "cuda:3"]
    waiting = [r for r in d.db.study_runs(info.id) if r.state == "queued"]
    assert len(waiting) == 1 and waiting[0].reason.startswith("all 3 GPUs busy")


def test_gpus_naming_a_missing_gpu_is_refused_naming_the_gpus_found(monkeypatch):
    FakeNvml(h100s(4)).install(monkeypatch)
    with pytest.raises(GpuSelectionError, match=r"^no GPUs 5, 7 on this machine \(GPUs found: 0, 1, 2, 3\)$"):
        Telemetry(gpus=(0, 5, 7))


def test_serve_with_a_missing_gpu_exits_with_the_reason(tmp_path, monkeypatch, capsys):
    FakeNvml(h100s(2)).install(monkeypatch)
    monkeypatch.setattr("os.umask", lambda mask: 0o022)  # serve sets the daemon's umask: not this test process's
    assert main(["serve", "--home", str(tmp_path / "home"), "--gpus", "1,2"]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert err.strip().endswith("--gpus 1,2: no GPU 2 on this machine (GPUs found: 0, 1)")


def test_serve_with_gpus_on_a_machine_without_a_driver_exits_with_the_reason(tmp_path, monkeypatch, capsys):
    import pynvml  # type: ignore[import-untyped]

    driver = FakeNvml([]).install(monkeypatch)
    driver.init_error = pynvml.NVMLError_DriverNotLoaded
    monkeypatch.setattr("os.umask", lambda mask: 0o022)
    monkeypatch.setenv("STRATCAST_GPUS", "0")
    assert main(["serve", "--home", str(tmp_path / "home")]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "--gpus 0: no GPU 0 on this machine (no GPU found: no NVIDIA driver found (NVML: Driver Not Loaded))" in err


@pytest.mark.parametrize(
    ("value", "gpus"),
    [
        ("4,5", (4, 5)),
        (" 1, 3 ,1", (1, 3)),
        ("GPU-3,1", ("GPU-3", 1)),
        ("0,-1,2", (0,)),  # CUDA stops at the first item it cannot take
        ("-1", ()),
        ("", ()),
        ("MIG-4d2f,0", ()),
    ],
)
def test_cuda_visible_devices_is_read_as_cuda_reads_it(value, gpus):
    assert cuda_visible(value) == gpus


def test_a_daemon_given_gpu_uuids_uses_those_gpus_in_index_order(tmp_path, monkeypatch):
    d, runner = daemon_with(tmp_path, monkeypatch, h100s(4), gpus=("GPU-3", "GPU-1"))
    runs = [submit(d) for _ in range(2)]
    asyncio.run(d.admit())
    assert [(r, dev) for r, dev, _ in runner.started] == [(runs[0].id, "cuda:1"), (runs[1].id, "cuda:3")]
    assert asyncio.run(status.handle(d, Status()))["devices"] == ["cuda:1", "cuda:3", "cpu"]


def test_an_unknown_gpu_uuid_is_refused_naming_each_gpu_with_its_uuid(monkeypatch):
    FakeNvml(h100s(2)).install(monkeypatch)
    with pytest.raises(
        GpuSelectionError, match=r"^no GPU GPU-7 on this machine \(GPUs found: 0 \(GPU-0\), 1 \(GPU-1\)\)$"
    ):
        Telemetry(gpus=(0, "GPU-7"))


def test_an_empty_gpu_selection_runs_on_the_cpu_saying_why(monkeypatch):
    FakeNvml(h100s(2)).install(monkeypatch)
    telemetry = Telemetry(gpus=())
    assert telemetry.nvml is None
    assert telemetry.notice is not None and "CUDA_VISIBLE_DEVICES is empty" in telemetry.notice


def test_serve_inside_an_allocation_uses_cuda_visible_devices_and_names_it_when_wrong(tmp_path, monkeypatch, capsys):
    FakeNvml(h100s(2)).install(monkeypatch)
    monkeypatch.setattr("os.umask", lambda mask: 0o022)
    monkeypatch.delenv("STRATCAST_GPUS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,2")
    assert main(["serve", "--home", str(tmp_path / "home")]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "CUDA_VISIBLE_DEVICES=1,2: no GPU 2 on this machine (GPUs found: 0, 1) (give --gpus to choose others)"
    )
    assert main(["serve", "--home", str(tmp_path / "home"), "--gpus", "0,5"]) == ExitCode.BAD_INPUT  # --gpus wins
    assert capsys.readouterr().err.strip().endswith("--gpus 0,5: no GPU 5 on this machine (GPUs found: 0, 1)")


@pytest.mark.parametrize("text", ["", "0,,2", "a", "-1", "0;2"])
def test_a_bad_gpu_list_is_a_usage_error(tmp_path, capsys, text):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--home", str(tmp_path / "home"), "--gpus", text])
    assert exit_.value.code == 2
    assert "is not a list of GPU indices like 0,2" in capsys.readouterr().err


def test_the_other_ranks_of_a_data_parallel_worker_are_the_daemons_not_foreign(tmp_path, monkeypatch):
    import subprocess
    import sys

    from tests.daemon.fakes import FakeWorker

    rank = "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
    rank += "; print(p.pid, flush=True); time.sleep(60)"
    leader = subprocess.Popen([sys.executable, "-c", rank], start_new_session=True, stdout=subprocess.PIPE, text=True)
    try:
        assert leader.stdout is not None
        child = int(leader.stdout.readline())  # rank 1: a child in the worker's session, on GPU 1
        stranger = os.getpid()  # this test's own process: another session
        d, executor = daemon_with(tmp_path, monkeypatch, [h100(0, pids=(leader.pid,)), h100(1, pids=(child, stranger))])
        worker = FakeWorker(9, "cuda:0,cuda:1")
        worker.pid = leader.pid
        executor.workers[9] = worker
        d.telemetry.sample()
        foreign = {g.index: g.foreign for g in d.gpu_devices([])}
        assert foreign == {0: (), 1: (stranger,)}
    finally:
        os.killpg(leader.pid, 9)
        leader.wait()
        assert leader.stdout is not None
        leader.stdout.close()
