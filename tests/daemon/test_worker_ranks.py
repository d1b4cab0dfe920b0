"""The worker over two gloo ranks (``--world-size 2``, job device cpu): one run, events and outputs from rank 0."""

import signal
import time

import psutil
import pytest
import torch

from stratcast.daemon.engine.training.checkpoint import list_checkpoints, load_checkpoint
from stratcast.daemon.engine.training.distributed import TIMEOUT_ENV, rank_path
from stratcast.daemon.worker import WorkerExit, rank_timed_out
from tests.daemon.test_worker import kinds, log_text, make_run_dir, parse, resumed_copy, run_worker, start_worker

SETS = ["max_steps=250", "batch_size=64", "val_check_steps=50", "early_stop_patience=-1", "checkpoint_every_steps=5"]
TWO = ("--world-size", "2")


@pytest.fixture(scope="module")
def panel_file(tmp_path_factory):
    from stratcast.daemon.engine.data.synthetic import make_strategy_panel

    path = tmp_path_factory.mktemp("data") / "panel.parquet"
    make_strategy_panel(10, 60, seed=3).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def straight(tmp_path_factory, panel_file):
    run_dir = make_run_dir(tmp_path_factory.mktemp("runs") / "straight", panel_file, SETS)
    return run_dir, *run_worker(run_dir, *TWO)


def after_first_progress(run_dir, act, *args):
    """Start a two-rank worker, call ``act(proc, ranks)`` at its first progress event; its exit code and events."""
    proc = start_worker(run_dir, *TWO, *args)
    assert proc.stdout is not None
    events, others = [], []
    for line in proc.stdout:
        events.append(parse(line))
        if events[-1]["event"] == "progress":
            others = psutil.Process(proc.pid).children()
            act(proc, others)
            break
    events += [parse(line) for line in proc.stdout]
    proc.stdout.close()
    code = proc.wait(timeout=120)
    return code, events, others


def gone(procs, within_s=10.0):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in procs):
            return True
        time.sleep(0.1)
    return False


def weights(run_dir):
    return load_checkpoint(run_dir / "out" / "model.pt")["trainer"]["model"]


def test_a_two_rank_run_writes_its_outputs_once_with_rank_0s_events(straight):
    run_dir, code, events = straight
    assert code == WorkerExit.OK, log_text(run_dir)
    names = kinds(events)
    assert names.count("started") == names.count("finished") == 1 and names[-1] == "finished"
    assert "failed" not in names
    steps = [e["step"] for e in events if e["event"] == "checkpoint"]
    assert steps == sorted(set(steps)) and steps  # one event per checkpoint: rank 0's
    log = log_text(run_dir)
    assert log.count("finished: outputs in") == 1 and log.count("panel: 10 strategies") == 1
    assert "rank 1: " not in log  # the other rank logs only a failure
    assert "training over 2 devices (cpu)" in log
    assert (run_dir / "out" / "forecast.parquet").exists()
    for step, path in list_checkpoints(run_dir / "checkpoints"):
        assert load_checkpoint(path)["trainer"]["world_size"] == 2
        assert load_checkpoint(rank_path(path, 1))["rank_state"]["step"] == step


def test_stopped_and_resumed_it_ends_as_the_uninterrupted_run(straight, tmp_path, panel_file):
    run_dir = make_run_dir(tmp_path / "stopped", panel_file, SETS)
    code, events, others = after_first_progress(run_dir, lambda proc, _: proc.send_signal(signal.SIGTERM))
    assert code == WorkerExit.STOPPED, log_text(run_dir)
    assert others and gone(others)
    stopped = events[-1]
    assert stopped["event"] == "stopped" and stopped["step"] < 250
    assert rank_path(run_dir / "checkpoints" / f"step-{stopped['step']:08d}.pt", 1).exists()
    resumed = resumed_copy((run_dir,), tmp_path)
    code, events = run_worker(resumed, *TWO, "--resume")
    assert code == WorkerExit.OK, log_text(resumed)
    assert f"resumed from step-{stopped['step']:08d}.pt" in log_text(resumed)
    expected, got = weights(straight[0]), weights(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    code, events = run_worker(resumed_copy((run_dir,), tmp_path / "one"), "--resume")  # one device: refused
    assert code == WorkerExit.FAILED
    assert "over 2 device(s) and this run has 1: resume it with --gpus-per-run 2" in events[-1]["error"]


def test_a_killed_rank_fails_the_run_naming_it(tmp_path, panel_file):
    run_dir = make_run_dir(tmp_path / "killed", panel_file, SETS)
    t0 = time.monotonic()
    code, events, _ = after_first_progress(run_dir, lambda _, ranks: ranks[0].send_signal(signal.SIGKILL))
    assert code == WorkerExit.FAILED and time.monotonic() - t0 < 60
    assert events[-1]["event"] == "failed"
    assert events[-1]["error"].startswith("rank 1 was killed by SIGKILL"), events[-1]
    assert kinds(events).count("failed") == 1


def test_a_killed_rank_0_takes_the_other_ranks_with_it(tmp_path, panel_file):
    run_dir = make_run_dir(tmp_path / "lead", panel_file, SETS)
    code, _, others = after_first_progress(run_dir, lambda proc, _: proc.send_signal(signal.SIGKILL))
    assert code == -signal.SIGKILL
    assert others and gone(others)


def test_a_hung_rank_fails_the_run_at_the_groups_timeout(tmp_path, panel_file, monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, "3")
    run_dir = make_run_dir(tmp_path / "hung", panel_file, SETS)
    code, events, others = after_first_progress(run_dir, lambda _, ranks: ranks[0].send_signal(signal.SIGSTOP))
    assert code == WorkerExit.FAILED
    assert events[-1]["error"].startswith("a rank did not answer within the process group's timeout"), events[-1]
    assert gone(others)  # rank 0 killed it on its way out


def test_a_backtest_refuses_several_devices(tmp_path, panel_file):
    run_dir = make_run_dir(tmp_path / "bt", panel_file, SETS)
    job = (run_dir / "job.json").read_text().replace('"backtest":null', '"backtest":{}')
    (run_dir / "job.json").write_text(job)
    code, events = run_worker(run_dir, *TWO)
    assert code == WorkerExit.BAD_INPUT
    assert "a backtest cannot run over 2 devices (--gpus-per-run 2)" in events[-1]["error"]


def test_a_batch_smaller_than_the_devices_is_bad_input_before_any_rank_starts(tmp_path, panel_file):
    run_dir = make_run_dir(tmp_path / "small", panel_file, ["batch_size=2"])
    code, events = run_worker(run_dir, "--world-size", "3")
    assert code == WorkerExit.BAD_INPUT
    assert "batch_size 2 is smaller than the 3 devices of the run" in events[-1]["error"]
    assert "started" not in kinds(events)


def test_a_wait_past_the_groups_timeout_is_named_whether_a_collective_or_the_store_waited():
    # where rank 0 waits for the hung rank decides the error: both are the group's timeout
    assert rank_timed_out("RuntimeError: [../gloo/transport/tcp/pair.cc:534] Timed out waiting 3000ms for recv")
    assert rank_timed_out("DistStoreError: wait timeout after 3000ms, keys: /0//cpu//0/1")
    assert not rank_timed_out("RuntimeError: Connection reset by peer")
    assert not rank_timed_out("ValueError: timeout must be positive")
