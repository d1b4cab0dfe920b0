"""The worker as the daemon runs it: a real subprocess on a run folder, JSON events on stdout, a log on stderr."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys

import msgspec
import pandas as pd
import pytest
import torch

from stratcast.daemon.engine.data.panel import DataError
from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.run.advice import RunWarning
from stratcast.daemon.engine.training.checkpoint import list_checkpoints, load_checkpoint
from stratcast.daemon.worker import Events, WorkerExit, exit_code_for
from stratcast.shared.events import decode_line, event_fields
from stratcast.shared.protocol import JobSpec

# long enough (a few seconds) that a signal sent after the first progress event lands mid-training
LONG = ["max_steps=1000", "batch_size=64", "val_check_steps=50", "early_stop_patience=-1"]
PROGRESS_KEYS = {"step", "max_steps", "epoch", "train_loss", "val_loss", "best_val_loss", "windows_per_s", "eta_s"}
PROGRESS_KEYS |= {"learning_rate", "micro_batch"}
MEMORY_KEYS = {"allocated", "reserved", "peak", "oom_count", "rss"}


@pytest.fixture(scope="module")
def panel_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "panel.parquet"
    make_strategy_panel(10, 60, seed=3).to_parquet(path, index=False)
    return path


def make_run_dir(path, data, sets):
    path.mkdir(parents=True)
    job = JobSpec(data=str(data), model="dlinear", horizon=4, input_size=8, holdout=4, sets=sets)
    (path / "job.json").write_bytes(msgspec.json.encode(job))
    return path


def start_worker(run_dir, *args, device="cpu"):
    # the environment the daemon gives a worker: only its own GPU visible (none for a CPU run)
    env = {**os.environ, "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    with open(run_dir / "log.txt", "ab") as log:  # the daemon appends each attempt's stderr
        return subprocess.Popen(
            [sys.executable, "-m", "stratcast.daemon.worker", str(run_dir), "--device", device, *args],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )


def parse(line):
    """The event of a worker's line as JSON, checked to be one the daemon reads with the same fields."""
    event = json.loads(line)
    assert event_fields(decode_line(line)) == {k: v for k, v in event.items() if k != "event"}
    return event


def run_worker(run_dir, *args, device="cpu"):
    proc = start_worker(run_dir, *args, device=device)
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, [parse(line) for line in out.splitlines()]


def signal_after_first_progress(run_dir, *signals, device="cpu"):
    proc = start_worker(run_dir, device=device)
    assert proc.stdout is not None
    events = []
    for line in proc.stdout:
        events.append(parse(line))
        if events[-1]["event"] == "progress":
            for sig in signals:
                proc.send_signal(sig)
            break
    events += [parse(line) for line in proc.stdout]
    proc.stdout.close()
    return proc.wait(timeout=120), events


def kinds(events):
    return [e["event"] for e in events]


def log_text(run_dir):
    return (run_dir / "log.txt").read_text()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, panel_file):
    run_dir = make_run_dir(tmp_path_factory.mktemp("runs") / "straight", panel_file, LONG)
    return run_dir, *run_worker(run_dir)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, panel_file):
    sets = [*LONG, "checkpoint_every_steps=5"]
    run_dir = make_run_dir(tmp_path_factory.mktemp("runs") / "stopped", panel_file, sets)
    return run_dir, *signal_after_first_progress(run_dir, signal.SIGTERM)


def resumed_copy(stopped, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped[0], run_dir)
    return run_dir


def assert_same_outputs(a, b):
    assert pd.read_parquet(a / "out" / "forecast.parquet").equals(pd.read_parquet(b / "out" / "forecast.parquet"))
    wa = load_checkpoint(a / "out" / "model.pt")["trainer"]["model"]
    wb = load_checkpoint(b / "out" / "model.pt")["trainer"]["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_worker_succeeds_with_started_progress_memory_and_finished_events(finished):
    run_dir, code, events = finished
    assert code == WorkerExit.OK, log_text(run_dir)
    assert events[0] == {"event": "started", "pid": events[0]["pid"], "device": "cpu", "resume": None}
    assert events[-1]["event"] == "finished" and events[-2]["event"] == "memory"
    progress = [e for e in events if e["event"] == "progress"]
    assert len(progress) >= 2 and progress[0].keys() >= PROGRESS_KEYS and progress[-1]["step"] == 1000
    memory = [e for e in events if e["event"] == "memory"]
    assert set(memory[0]) == {"event", *MEMORY_KEYS} and memory[0]["allocated"] == 0 and memory[0]["rss"] > 0
    assert kinds(events).index("memory") == kinds(events).index("progress") + 1  # sent with the first report
    metrics = json.loads((run_dir / "out" / "metrics.json").read_text())
    assert events[-1]["metrics"] == metrics and metrics["run"]["steps"] == 1000
    assert {p.name for p in (run_dir / "out").iterdir()} >= {"forecast.parquet", "summary.parquet", "model.pt"}
    assert "device: cpu" in log_text(run_dir)


def test_bad_data_exits_3_and_the_log_says_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("No.,week,profit\n1,2020-01-06,1.0\n1,2020-01-06,2.0\n")
    run_dir = make_run_dir(tmp_path / "run", bad, LONG)
    code, events = run_worker(run_dir)
    log = log_text(run_dir)
    assert code == WorkerExit.BAD_INPUT, log
    assert "bad.csv" in log and "duplicate" in log.lower() and "Traceback" not in log
    assert events[-1]["event"] == "failed" and events[-1]["exit"] == 3 and "bad.csv" in events[-1]["error"]


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_75_without_outputs(stopped):
    run_dir, code, events = stopped
    assert code == WorkerExit.STOPPED, log_text(run_dir)
    step = events[-1]["step"]
    assert events[-1] == {
        "event": "stopped",
        "path": str(run_dir / "checkpoints" / f"step-{step:08d}.pt"),
        "step": step,
    }
    assert 10 <= step < 1000
    saved = [e["step"] for e in events if e["event"] == "checkpoint"]
    assert saved == list(range(5, step + 1, 5)) + ([step] if step % 5 else [])
    assert [s for s, _ in list_checkpoints(run_dir / "checkpoints")] == saved[::-1][:2]  # the newest two kept
    assert not (run_dir / "out" / "forecast.parquet").exists()
    assert f"stopped at step {events[-1]['step']}/1000" in log_text(run_dir)


@pytest.mark.slow
def test_resume_after_sigterm_equals_the_uninterrupted_run_bit_for_bit(stopped, finished, tmp_path):
    run_dir = resumed_copy(stopped, tmp_path)
    code, events = run_worker(run_dir, "--resume")
    assert code == WorkerExit.OK, log_text(run_dir)
    assert events[0]["resume"] == stopped[2][-1]["path"].replace(str(stopped[0]), str(run_dir))
    assert events[-1]["metrics"]["run"]["steps"] == 1000
    assert_same_outputs(run_dir, finished[0])


@pytest.mark.slow
def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one_with_a_warning(stopped, finished, tmp_path):
    run_dir = resumed_copy(stopped, tmp_path)
    (_, newest_path), (previous, previous_path) = list_checkpoints(run_dir / "checkpoints")[:2]
    newest_path.write_bytes(newest_path.read_bytes()[:-100])  # torn, as by a crash mid-write
    code, events = run_worker(run_dir, "--resume")
    log = log_text(run_dir)
    assert code == WorkerExit.OK, log
    assert "warning" in log and newest_path.name in log and events[0]["resume"] == str(previous_path)
    assert f"resumed from {previous_path.name} at step {previous}/1000" in log
    assert_same_outputs(run_dir, finished[0])


def test_resume_without_a_checkpoint_starts_from_scratch(tmp_path, panel_file):
    run_dir = make_run_dir(tmp_path / "run", panel_file, ["max_steps=20", "batch_size=32"])
    code, events = run_worker(run_dir, "--resume")
    assert code == WorkerExit.OK and events[0]["resume"] is None
    # the memory plan comes before training; on a CPU nothing is measured
    assert events[1] == {
        "event": "plan",
        "micro_batch": 32,
        "batch_size": 32,
        "budget": None,
        "predicted_peak": None,
        "measured_peak": None,
        "probes": [],
        "oom_probes": [],
        "source": "cpu",
        "levers": [],
        "device": "cpu",
        "seconds": 0.0,
    }
    assert events[-1]["metrics"]["memory_plan"] == {k: v for k, v in events[1].items() if k != "event"}
    assert {e["micro_batch"] for e in events if e["event"] == "progress"} == {32}
    assert "no usable checkpoint" in log_text(run_dir) and "starting from scratch" in log_text(run_dir)


def test_a_second_signal_exits_at_once(tmp_path, panel_file):
    run_dir = make_run_dir(tmp_path / "run", panel_file, LONG)
    # two different signals: Python runs both handlers (a repeated one may be merged before it runs)
    code, events = signal_after_first_progress(run_dir, signal.SIGINT, signal.SIGTERM)
    assert code == WorkerExit.FORCED and "stopped" not in kinds(events)
    assert "exiting now, without a checkpoint" in log_text(run_dir)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), WorkerExit.OUT_OF_MEMORY),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"), 76),
        (MemoryError(), WorkerExit.OUT_OF_MEMORY),
        (DataError("panel.csv: duplicate rows"), WorkerExit.BAD_INPUT),
        (ValueError("holdout=60 must be between 0 and horizon=52"), WorkerExit.BAD_INPUT),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), WorkerExit.FAILED),
        (KeyError("step"), WorkerExit.FAILED),
    ],
)
def test_exit_codes_tell_memory_input_and_other_failures_apart(exc, code):
    assert exit_code_for(exc) == code


def test_the_daemon_can_import_the_exit_codes_without_torch():
    code = "import sys, stratcast.daemon.worker as w; assert 'torch' not in sys.modules; print(w.EXIT_STOPPED.name)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "STOPPED"


@pytest.mark.gpu
def test_on_cuda_the_worker_reports_allocator_memory_honours_its_cap_and_resumes(tmp_path, panel_file):
    run_dir = make_run_dir(tmp_path / "run", panel_file, [*LONG, "checkpoint_every_steps=5"])
    code, events = signal_after_first_progress(run_dir, signal.SIGTERM, device="cuda:0")
    assert code == WorkerExit.STOPPED, log_text(run_dir)
    code, events = run_worker(run_dir, "--resume", "--memory-gib", "2", device="cuda:0")
    log = log_text(run_dir)
    assert code == WorkerExit.OK, log
    assert events[0]["device"] == "cuda:0" and "memory cap: 2.00 GiB" in log and "resumed from" in log
    memory = [e for e in events if e["event"] == "memory"]
    assert memory[-1]["peak"] > 0 and memory[-1]["reserved"] >= memory[-1]["allocated"] and memory[-1]["oom_count"] == 0
    assert pd.read_parquet(run_dir / "out" / "forecast.parquet")["forecast"].notna().all()


def test_a_worker_warning_is_one_event_line_with_its_kind_and_message():
    stream = io.BytesIO()
    Events(stream).warning(RunWarning("loss", "use loss=mse"))
    assert json.loads(stream.getvalue()) == {"event": "warning", "kind": "loss", "message": "use loss=mse"}


def test_a_final_runs_study_file_is_its_evidence_and_a_damaged_one_is_left_out(tmp_path):
    from stratcast.daemon.engine.saved.manifest import StudyEvidence
    from stratcast.daemon.worker import kept_evidence

    assert kept_evidence(tmp_path) is None
    kept = StudyEvidence(study="s", trial=2, objectives=["holdout-rmse"], values=[0.99], keep="holdout", complete=4)
    (tmp_path / "study.json").write_bytes(msgspec.json.encode(kept))
    assert kept_evidence(tmp_path) == kept
    (tmp_path / "study.json").write_text('{"study": "s"}')
    assert kept_evidence(tmp_path) is None
