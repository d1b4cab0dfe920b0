"""The daemon's admission step with a fake GPU: which device each queued run is started on, and why others wait."""

import asyncio

from tests.daemon.fakes import daemon_with, submit
from tests.daemon.fakes import h100 as gpu


def test_cpu_jobs_go_to_the_cpu_and_the_rest_to_free_gpus(tmp_path, monkeypatch):
    d, runner = daemon_with(tmp_path, monkeypatch, [gpu(0), gpu(1, pids=(4242,))])
    a, b, c = submit(d), submit(d, device="cpu"), submit(d)
    asyncio.run(d.admit())
    assert runner.started == [(b.id, "cpu", None), (a.id, "cuda:0", None)]
    assert d.db.get_run(a.id).state == "running" and d.db.get_run(a.id).device == "cuda:0"
    waiting = d.db.get_run(c.id)
    assert waiting.state == "queued"
    assert "run 1" in waiting.reason and "4242" in waiting.reason  # GPU 0 busy, GPU 1 not ours


def test_sharing_runs_share_a_gpu_under_their_caps(tmp_path, monkeypatch):
    d, runner = daemon_with(tmp_path, monkeypatch, [gpu(0, free_gib=30.0)])
    runs = [submit(d, memory_gib=12.0) for _ in range(3)]
    asyncio.run(d.admit())
    assert [(r, dev) for r, dev, _ in runner.started] == [(runs[0].id, "cuda:0"), (runs[1].id, "cuda:0")]
    assert "memory" in d.db.get_run(runs[2].id).reason


def test_without_gpus_runs_wait_for_a_cpu_slot(tmp_path, monkeypatch):
    d, runner = daemon_with(tmp_path, monkeypatch, [])
    first, second = submit(d), submit(d)
    asyncio.run(d.admit())
    assert runner.started == [(first.id, "cpu", None)]
    assert "CPU busy" in d.db.get_run(second.id).reason


def test_a_succeeded_dependency_releases_the_run(tmp_path, monkeypatch):
    d, runner = daemon_with(tmp_path, monkeypatch, [])
    first = submit(d)
    second = submit(d, after=[first.id])
    d.db.update_run(first.id, state="succeeded")
    asyncio.run(d.admit())
    assert runner.started == [(second.id, "cpu", None)]


def test_a_cpu_run_after_a_gpu_run_waits_for_it_by_name(tmp_path, monkeypatch):
    d, runner = daemon_with(tmp_path, monkeypatch, [gpu(0, pids=(4242,))])
    on_gpu = submit(d)
    on_cpu = submit(d, device="cpu", after=[on_gpu.id])
    asyncio.run(d.admit())
    assert runner.started == []
    assert d.db.get_run(on_cpu.id).reason == f"waiting for run {on_gpu.id} (queued)"


def test_a_removed_dependency_holds_the_run_and_says_it_was_removed(tmp_path, monkeypatch):
    d, runner = daemon_with(tmp_path, monkeypatch, [])
    first = submit(d)
    second = submit(d, after=[first.id])
    d.db.update_run(first.id, state="failed")
    d.db.remove_run(first.id)
    asyncio.run(d.admit())
    assert runner.started == []
    assert d.db.get_run(second.id).reason == f"run {first.id} was removed, so this run cannot start: remove this run"
