"""The executor interface: the local executor behind the daemon, the worker environment it builds on a GPU
subset, an unreachable executor holding the queue, and the ``--executor`` choice."""

import asyncio
import os
import sys

import pytest

from stratcast.daemon.cli import main
from stratcast.daemon.executors import base
from stratcast.daemon.executors.base import UnknownExecutor, open_executor
from stratcast.daemon.executors.local import LocalExecutor, launch, worker_env
from stratcast.daemon.handlers import status
from stratcast.daemon.server import Daemon
from stratcast.daemon.store import Store
from stratcast.shared.errors import ExitCode
from stratcast.shared.paths import resolve_home
from stratcast.shared.protocol import Status
from stratcast.tui.render import status_text
from tests.daemon.fakes import daemon_with, h100s, submit

STAND_IN = """
import os, sys
from stratcast.shared.events import WarningGiven, encode_line
seen = os.environ["CUDA_VISIBLE_DEVICES"] + " " + " ".join(sys.argv[2:])
sys.stdout.buffer.write(encode_line(WarningGiven(kind="seen", message=seen)))
"""
"""A worker stand-in: reports the GPU it was given and its options as an event, and succeeds."""


def test_runs_on_a_gpu_subset_get_workers_that_see_only_their_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    d, _ = daemon_with(tmp_path, monkeypatch, h100s(4), gpus=(1, 3))
    worker = [sys.executable, "-c", STAND_IN]
    d.runner = LocalExecutor(d._worker_event, d._worker_exit, d.home.state, worker=worker)
    runs = [submit(d) for _ in range(3)]

    async def admit_and_wait():
        await d.admit()
        await d.runner.wait_all(timeout=120)

    asyncio.run(admit_and_wait())
    seen = {}
    for run in runs[:2]:
        info = d.db.get_run(run.id)
        assert info.state == "succeeded", info.reason
        (warning,) = [e["data"] for e in d.db.events(run.id) if e["kind"] == "warning"]
        seen[info.device] = warning["message"]
    assert seen == {"cuda:1": "1 --device cuda:0", "cuda:3": "3 --device cuda:0"}
    assert d.db.get_run(runs[2].id).state == "queued"


def test_a_data_parallel_run_gets_one_worker_that_sees_all_its_gpus_and_is_told_the_world_size(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    d, _ = daemon_with(tmp_path, monkeypatch, h100s(4))
    worker = [sys.executable, "-c", STAND_IN]
    d.runner = LocalExecutor(d._worker_event, d._worker_exit, d.home.state, worker=worker)
    wide, single = submit(d, gpus=3), submit(d)

    async def admit_and_wait():
        await d.admit()
        assert d.gpu_devices(d.db.list_runs(("running",)))[1].runs == (wide.id,)  # on each of its GPUs
        await d.runner.wait_all(timeout=120)

    asyncio.run(admit_and_wait())
    seen = {}
    for run in (wide, single):
        info = d.db.get_run(run.id)
        assert info.state == "succeeded", info.reason
        (warning,) = [e["data"] for e in d.db.events(run.id) if e["kind"] == "warning"]
        seen[info.device] = warning["message"]
    assert seen == {"cuda:0,cuda:1,cuda:2": "0,1,2 --device cuda:0 --world-size 3", "cuda:3": "3 --device cuda:0"}


def test_a_gpu_workers_command_and_environment(tmp_path):
    env = worker_env({"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}, "3", tmp_path)
    assert env["CUDA_VISIBLE_DEVICES"] == "3" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    cmd = launch(["worker"], tmp_path, "3", 12.0)
    assert cmd == ["worker", str(tmp_path), "--device", "cuda:0", "--memory-gib", "12.0"]
    assert launch(["worker"], tmp_path, "", 12.0) == ["worker", str(tmp_path), "--device", "cpu"]


def test_an_unreachable_executor_holds_the_queue_until_it_answers_and_fails_nothing(tmp_path, monkeypatch):
    d, executor = daemon_with(tmp_path, monkeypatch, h100s(2))
    executor.unreachable = "cannot reach the cluster at ray://head:10001 (connection refused)"
    runs = [submit(d) for _ in range(3)]
    asyncio.run(d.admit())
    assert executor.started == []
    for run in runs:
        info = d.db.get_run(run.id)
        assert info.state == "queued"
        assert info.reason == f"waiting for the fake executor: {executor.unreachable}"
    reply = asyncio.run(status.handle(d, Status()))
    assert (reply["executor"], reply["executor_health"]) == ("fake", executor.unreachable)
    assert f"executor fake ({executor.unreachable}; queued runs wait for it)" in status_text(reply)
    asyncio.run(d.admit())  # still unreachable: said once
    executor.unreachable = ""
    asyncio.run(d.admit())
    assert [dev for _, dev, _ in executor.started] == ["cuda:0", "cuda:1"]
    asyncio.run(d.admit())
    # the TUI's status line shows the last notice: the loss with its reason, then the return, once each
    lost = "fake executor: cannot reach the cluster at ray://head:10001 (connection refused)"
    assert d.notices == [lost, "fake executor: ok, runs start again"]


def test_the_daemon_runs_its_runs_with_the_local_executor_by_default(tmp_path):
    d = Daemon(resolve_home(tmp_path / "home"))
    assert isinstance(d.runner, LocalExecutor) and d.runner.health() == "ok"
    d.home.ensure()
    d.store = Store(d.home.database)
    reply = asyncio.run(status.handle(d, Status()))
    assert (reply["executor"], reply["executor_health"]) == ("local", "ok")
    assert "executor local (ok)" in status_text(reply).splitlines()


def test_an_unknown_executor_is_refused_naming_the_choices(tmp_path, capsys):
    with pytest.raises(UnknownExecutor, match=r"^unknown executor 'k8s' \(choose from: local, ray, slurm\)$"):
        open_executor("k8s", lambda run, event: None, lambda run, ending: asyncio.sleep(0))
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--home", str(tmp_path / "home"), "--executor", "k8s"])
    assert exit_.value.code == 2
    assert "unknown executor 'k8s' (choose from: local, ray, slurm)" in capsys.readouterr().err


def test_the_ray_executor_without_its_extra_names_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(base, "find_spec", lambda name: None)
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--home", str(tmp_path / "home"), "--executor", "ray"])
    assert exit_.value.code == 2
    assert "--executor ray needs the extra: pip install 'stratcast[ray]'" in capsys.readouterr().err


def test_ray_options_without_the_ray_executor_are_a_usage_error(tmp_path, capsys):
    assert main(["serve", "--home", str(tmp_path / "home"), "--ray-address", "local"]) == ExitCode.USAGE
    assert "--ray-address and --ray-temp-dir go with --executor ray" in capsys.readouterr().err


def test_a_cluster_executor_gets_as_many_runs_as_it_has_slots_and_the_rest_wait(tmp_path, monkeypatch):
    d, executor = daemon_with(tmp_path, monkeypatch, h100s(1))
    executor.name, executor.cluster_slots = "ray", 2
    runs = [submit(d) for _ in range(3)]
    asyncio.run(d.admit())
    assert [(run, device) for run, device, _ in executor.started] == [(runs[0].id, "ray"), (runs[1].id, "ray")]
    for run in runs[:2]:
        d.update_run(run.id, state="running", device="ray")
    asyncio.run(d.admit())
    assert len(executor.started) == 2
    assert d.db.get_run(runs[2].id).reason == f"ray busy (2 of 2 slots: runs {runs[0].id}, {runs[1].id})"
    assert asyncio.run(status.handle(d, Status()))["devices"] == ["ray"]


def test_a_run_over_several_gpus_is_refused_with_a_cap_a_pin_or_another_executor(tmp_path, monkeypatch):
    from stratcast.daemon.handlers.common import InvalidSpec
    from stratcast.daemon.handlers.submit import check_placement
    from stratcast.shared.protocol import Placement

    d, executor = daemon_with(tmp_path, monkeypatch, h100s(2))
    with pytest.raises(InvalidSpec, match="drop --memory-gib"):
        check_placement(d, Placement(gpus=2, memory_gib=8.0))
    with pytest.raises(InvalidSpec, match="drop --gpu"):
        check_placement(d, Placement(gpus=2, gpu=1))
    with pytest.raises(InvalidSpec, match="the fake executor runs each run on one GPU"):
        check_placement(d, Placement(gpus=2))
    executor.name = "local"
    check_placement(d, Placement(gpus=2))


def test_cpu_workers_share_the_cores_among_the_cpu_slots_and_gpu_workers_keep_theirs(tmp_path):
    from stratcast.daemon.executors.local import cpu_threads

    assert [cpu_threads(slots, cores=16) for slots in (1, 2, 3, 16, 32)] == [16, 8, 5, 1, 1]
    assert worker_env({}, "", tmp_path, threads=8)["OMP_NUM_THREADS"] == "8"
    assert "OMP_NUM_THREADS" not in worker_env({}, "0", tmp_path, threads=8)  # a GPU worker
    assert worker_env({"OMP_NUM_THREADS": "3"}, "", tmp_path, threads=8)["OMP_NUM_THREADS"] == "3"  # the user's
