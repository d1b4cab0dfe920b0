"""OOM recovery in place, driven by the ``STRATCAST_FAULT_OOM_ABOVE`` testing aid on the CPU."""

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import torch

from stratcast.daemon.engine.memory import oom
from stratcast.daemon.engine.memory.oom import (
    FAULT_ENV,
    MicroBatchPlan,
    OptimizerStepOutOfMemory,
    OutOfMemory,
    fault_limit,
    is_oom,
    levers_message,
)
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.training.checkpoint import list_checkpoints, load_checkpoint, save_rotating
from stratcast.daemon.worker import WorkerExit
from stratcast.shared.events import RanOutOfMemory
from stratcast.shared.protocol import JobSpec
from tests.daemon.engine.small_jobs import mlp_spec, write_small_panel
from tests.daemon.test_worker import parse

DROPOUT = 0.2
"""dropout on: a retried step must also restore the global RNG to draw the same masks as an unfailed run."""


@pytest.fixture(scope="module")
def panel_file(tmp_path_factory):
    return write_small_panel(tmp_path_factory.mktemp("data") / "panel.parquet")


def spec_for(panel_file, out, mode="batch", extra=()):
    return mlp_spec(panel_file, out, mode, extra, dropout=DROPOUT)


def weights(out):
    return load_checkpoint(out / "model.pt")["trainer"]["model"]


@pytest.mark.parametrize("mode", ["batch", "per-strategy"])
def test_a_run_that_runs_out_of_memory_recovers_with_the_weights_of_the_smaller_micro_batch(
    tmp_path, panel_file, mode, monkeypatch
):
    run_job(spec_for(panel_file, tmp_path / "fits", mode, ["micro_batch_size=8"]), log=lambda m: None)
    monkeypatch.setenv(FAULT_ENV, "8")
    events: list[RanOutOfMemory] = []
    spec = spec_for(panel_file, tmp_path / "capped", mode, ["oom_grow_after=10"])
    result = run_job(spec, log=lambda m: None, on_oom=events.append)
    assert result.fit.steps == 30
    # 32 -> 16 -> 8 at step 1; after 10 steps without an OOM it grows to 16, fails, and halves back to 8
    assert [(e.step, e.old_micro_batch, e.new_micro_batch) for e in events] == [
        (1, 32, 16),
        (1, 16, 8),
        (11, 16, 8),
        (21, 16, 8),
    ]
    assert all(e.phase == "forward/backward" and e.rss > 0 and "can't allocate memory" in e.error for e in events)
    a, b = weights(tmp_path / "fits"), weights(tmp_path / "capped")
    assert all(torch.equal(a[k], b[k]) for k in a)
    fits = (tmp_path / "fits" / "forecast.parquet").read_bytes()
    assert fits == (tmp_path / "capped" / "forecast.parquet").read_bytes()


def test_when_nothing_fits_the_run_ends_proposing_the_memory_levers(tmp_path, panel_file, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "0")
    events: list[RanOutOfMemory] = []
    with pytest.raises(OutOfMemory, match="micro-batch of 1 window") as info:
        run_job(spec_for(panel_file, tmp_path / "o"), log=lambda m: None, on_oom=events.append)
    for lever in ("precision=bf16", "activation checkpointing", "smaller model", "input_size", "batch_size"):
        assert lever in str(info.value)
    assert [e.new_micro_batch for e in events] == [16, 8, 4, 2, 1, 0]


def test_the_levers_message_proposes_only_the_levers_that_apply():
    on_cpu = levers_message(3, 64, "auto")
    assert "precision=bf16" in on_cpu and "set activation_checkpointing=true" in on_cpu
    unsupported = levers_message(3, 64, "bf16", checkpointable=False)
    assert "precision=bf16" not in unsupported and "activation checkpointing is not available" in unsupported
    both_on = levers_message(3, 64, "bf16", checkpointing=True)
    assert "bf16" not in both_on and "checkpointing" not in both_on and "smaller model" in both_on


def test_an_oom_in_the_optimizer_step_is_not_retried_and_names_the_checkpoint(tmp_path, panel_file, monkeypatch):
    calls = []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self, *args, **kwargs)

    real_step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    events: list[RanOutOfMemory] = []
    spec = spec_for(panel_file, tmp_path / "o", extra=["checkpoint_every_steps=5"])
    with pytest.raises(OptimizerStepOutOfMemory, match=r"step-00000005\.pt") as info:
        run_job(spec, log=lambda m: None, on_oom=events.append)
    assert isinstance(info.value, MemoryError)
    assert [(e.phase, e.step, e.error) for e in events] == [
        ("optimizer", 7, "CUDA out of memory. Tried to allocate 2.00 GiB")
    ]


def test_errors_other_than_ooms_are_not_caught(tmp_path, panel_file, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(torch.nn.Linear, "forward", boom)
    with pytest.raises(RuntimeError, match="shapes"):
        run_job(spec_for(panel_file, tmp_path / "o"), log=lambda m: None)


def test_what_counts_as_an_oom():
    assert is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    assert is_oom(MemoryError())
    assert not is_oom(RuntimeError("size mismatch"))
    assert not is_oom(OutOfMemory("levers")) and not is_oom(OptimizerStepOutOfMemory("roll back"))


def test_one_function_in_the_daemon_says_what_counts_as_an_oom():
    daemon = Path(oom.__file__).parents[2]
    defining = [p.relative_to(daemon) for p in sorted(daemon.rglob("*.py")) if "def is_oom(" in p.read_text()]
    assert defining == [Path("engine/memory/oom.py")]


def test_the_plan_halves_and_grows_back_to_the_configured_micro_batch():
    plan = MicroBatchPlan(12, grow_after=2)
    assert (plan.shrink(), plan.shrink(), plan.shrink()) == (6, 3, 1)
    assert plan.shrink() is None
    for _ in range(8):
        plan.step_done()
    assert plan.current == 12  # 1 -> 2 -> 4 -> 8 -> 12, never above the configured size


def test_the_fault_limit_is_off_unless_set_and_rejects_junk(monkeypatch):
    monkeypatch.delenv(FAULT_ENV, raising=False)
    assert fault_limit() is None
    monkeypatch.setenv(FAULT_ENV, "64")
    assert fault_limit() == 64
    monkeypatch.setenv(FAULT_ENV, "-1")
    with pytest.raises(ValueError, match=FAULT_ENV):
        fault_limit()


def run_worker(run_dir, data, fault):
    run_dir.mkdir(parents=True)
    sets = ["max_steps=12", "batch_size=32", "val_check_steps=4"]
    job = JobSpec(data=str(data), model="dlinear", horizon=4, input_size=8, holdout=4, sets=sets)
    (run_dir / "job.json").write_bytes(msgspec.json.encode(job))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", FAULT_ENV: str(fault)}
    cmd = [sys.executable, "-m", "stratcast.daemon.worker", str(run_dir), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    return proc.returncode, [parse(line) for line in proc.stdout.splitlines()], proc.stderr.decode()


def test_the_worker_sends_oom_events_and_finishes_after_recovering(tmp_path, panel_file):
    code, events, log = run_worker(tmp_path / "run", panel_file, fault=8)
    assert code == WorkerExit.OK, log
    ooms = [e for e in events if e["event"] == "oom"]
    assert [(e["step"], e["old_micro_batch"], e["new_micro_batch"]) for e in ooms] == [(1, 32, 16), (1, 16, 8)]
    assert set(ooms[0]) >= {"time", "phase", "allocated", "reserved", "rss", "error"}
    assert "out of memory at step 1 (forward/backward, micro-batch 32): retrying with micro-batch 16" in log
    assert events[-1]["event"] == "finished"


def test_the_worker_exits_with_its_oom_code_when_nothing_fits(tmp_path, panel_file):
    code, events, log = run_worker(tmp_path / "run", panel_file, fault=0)
    assert code == WorkerExit.OUT_OF_MEMORY and int(code) == 76, log
    assert [e["new_micro_batch"] for e in events if e["event"] == "oom"] == [16, 8, 4, 2, 1, 0]
    assert events[-1]["event"] == "failed" and events[-1]["exit"] == 76
    assert "precision=bf16" in events[-1]["error"] and "out of memory: OutOfMemory" in log


# -- checkpoints: what a rollback or a resume on another machine continues from ---------------------------------


def test_rotation_keeps_the_newest_and_the_best_checkpoint(tmp_path):
    losses = {1: 0.9, 2: 0.4, 3: 0.7, 4: None, 5: 0.8, 6: 0.6}
    for step, loss in losses.items():
        save_rotating(tmp_path, step, {"x": torch.tensor(step)}, keep=2, val_loss=loss)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [6, 5, 2]  # newest two, and step 2 the best
    save_rotating(tmp_path, 7, {"x": torch.tensor(7)}, keep=3, val_loss=0.1)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [7, 6, 5]  # step 7 is the new best
    with pytest.raises(ValueError, match="keep=1"):
        save_rotating(tmp_path, 8, {}, keep=1)


def test_a_resume_with_another_micro_batch_ends_with_the_same_weights(tmp_path, panel_file, monkeypatch):
    """Stopped with micro-batch 8 (16 OOMed), resumed configured at 32 with room for 8: bitwise the 8 run."""
    run_job(spec_for(panel_file, tmp_path / "fits", extra=["micro_batch_size=8"]), log=lambda m: None)
    monkeypatch.setenv(FAULT_ENV, "8")
    out = tmp_path / "moved"
    steps = iter(range(1000))
    stopped = run_job(
        spec_for(panel_file, out, extra=["micro_batch_size=16"]),
        log=lambda m: None,
        should_stop=lambda: next(steps) == 13,  # asked before every step: stops after 13
    )
    assert stopped.checkpoint is not None and load_checkpoint(stopped.checkpoint)["trainer"]["micro_batch"] == 8
    events: list[RanOutOfMemory] = []
    run_job(spec_for(panel_file, out), log=lambda m: None, resume_from=stopped.checkpoint, on_oom=events.append)
    assert [(e.step, e.old_micro_batch, e.new_micro_batch) for e in events] == [(14, 32, 16), (14, 16, 8)]
    a, b = weights(tmp_path / "fits"), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
