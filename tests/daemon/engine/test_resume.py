"""Training checkpoints, stopping and resuming a job, and the one spec builder shared by the CLI and the daemon."""

import pandas as pd
import pytest
import torch

from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.config import PER_STRATEGY_BATCH
from stratcast.daemon.engine.spec.runspec import build_spec, spec_from_job
from stratcast.daemon.engine.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    save_rotating,
)
from stratcast.shared.protocol import JobSpec
from tests.daemon.engine.small_jobs import mlp_spec, write_small_panel

DROPOUT = 0.2
"""mlp with dropout: resuming exactly needs the global RNG state as well as the sampler's."""


@pytest.fixture(scope="module")
def panel_file(tmp_path_factory):
    return write_small_panel(tmp_path_factory.mktemp("data") / "panel.parquet")


def job_spec(panel_file, out, mode="batch", extra=()):
    return mlp_spec(panel_file, out, mode, extra, dropout=DROPOUT)


class StopAfter:
    """A ``should_stop`` that asks for a stop before step ``k + 1``."""

    def __init__(self, k):
        self.k, self.calls = k, 0

    def __call__(self):
        self.calls += 1
        return self.calls > self.k


def final_weights(out):
    return load_checkpoint(out / "model.pt")["trainer"]["model"]


@pytest.mark.parametrize("mode", ["batch", "per-strategy"])
def test_resume_after_stop_gives_identical_weights_and_forecasts(tmp_path, panel_file, mode):
    straight = run_job(job_spec(panel_file, tmp_path / "straight", mode), log=lambda m: None)
    saved = []
    stopped_spec = job_spec(panel_file, tmp_path / "stopped", mode)
    stopped = run_job(
        stopped_spec, log=lambda m: None, should_stop=StopAfter(13), on_checkpoint=lambda p, s: saved.append((p, s))
    )
    assert stopped.fit.interrupted and stopped.fit.steps == 13 and stopped.metrics == {}
    assert stopped.checkpoint is not None
    assert saved == [(stopped.checkpoint, 13)] and stopped.checkpoint.name == "step-00000013.pt"
    assert not (tmp_path / "stopped" / "forecast.parquet").exists()
    assert not (tmp_path / "stopped" / "model.pt").exists()
    assert load_checkpoint(stopped.checkpoint)["kind"] == "train"

    resumed = run_job(stopped_spec, log=lambda m: None, resume_from=stopped.checkpoint)
    assert resumed.fit.steps == straight.fit.steps == 30 and resumed.fit.best_step == straight.fit.best_step
    a = pd.read_parquet(tmp_path / "straight" / "forecast.parquet")
    b = pd.read_parquet(tmp_path / "stopped" / "forecast.parquet")
    assert a.equals(b)
    wa, wb = final_weights(tmp_path / "straight"), final_weights(tmp_path / "stopped")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_stopped_and_resumed_job_reports_the_training_time_of_every_segment(tmp_path, panel_file):
    spec = job_spec(panel_file, tmp_path / "out")
    first = run_job(spec, log=lambda m: None, should_stop=StopAfter(5))
    second = run_job(spec, log=lambda m: None, should_stop=StopAfter(8), resume_from=first.checkpoint)
    lines: list[str] = []
    last = run_job(spec, log=lines.append, resume_from=second.checkpoint)
    segments = [first.fit.seconds, second.fit.seconds, last.fit.seconds]
    run = last.metrics["run"]
    assert run["train_segment_seconds"] == segments
    assert run["train_seconds"] == pytest.approx(sum(segments)) and run["train_seconds"] > last.fit.seconds
    assert f"trained to step 30 in {sum(segments):.1f}s over 3 segments" in lines


def test_a_checkpoint_taken_while_training_records_the_training_time_so_far(tmp_path, panel_file):
    result = run_job(job_spec(panel_file, tmp_path / "out", extra=["checkpoint_every_steps=10"]), log=lambda m: None)
    path = latest_checkpoint(tmp_path / "out" / "checkpoints")
    assert path is not None and path.name == "step-00000020.pt"
    (seconds,) = load_checkpoint(path)["trainer"]["segment_seconds"]
    assert 0 < seconds < result.fit.seconds


def test_a_job_trained_in_one_go_has_one_segment(tmp_path, panel_file):
    result = run_job(job_spec(panel_file, tmp_path / "out"), log=lambda m: None)
    assert result.metrics["run"]["train_segment_seconds"] == [result.fit.seconds]
    assert result.metrics["run"]["train_seconds"] == result.fit.seconds


def test_periodic_checkpoints_keep_the_newest_two_and_none_at_the_last_step(tmp_path, panel_file):
    saved = []
    spec = job_spec(panel_file, tmp_path / "out", extra=["checkpoint_every_steps=4"])
    run_job(spec, log=lambda m: None, on_checkpoint=lambda p, s: saved.append(s))
    assert saved == [4, 8, 12, 16, 20, 24, 28]
    assert [s for s, _ in list_checkpoints(tmp_path / "out" / "checkpoints")] == [28, 24]


def test_time_interval_checkpoints_while_training(tmp_path, panel_file):
    saved = []
    spec = job_spec(panel_file, tmp_path / "out", extra=["checkpoint_every_s=1e-9"])
    run_job(spec, log=lambda m: None, on_checkpoint=lambda p, s: saved.append(s))
    assert saved == list(range(1, 30))


def test_resume_refuses_a_checkpoint_of_another_job(tmp_path, panel_file):
    stopped = run_job(job_spec(panel_file, tmp_path / "a"), log=lambda m: None, should_stop=StopAfter(3))
    other = job_spec(panel_file, tmp_path / "b", extra=["learning_rate=0.01"])
    with pytest.raises(CheckpointError, match="train_config differs"):
        run_job(other, log=lambda m: None, resume_from=stopped.checkpoint)
    # how often checkpoints are written is not part of what is trained
    again = job_spec(panel_file, tmp_path / "c", extra=["checkpoint_every_s=0"])
    assert run_job(again, log=lambda m: None, resume_from=stopped.checkpoint).fit.steps == 30


def save_steps(directory, steps):
    for step in steps:
        save_rotating(directory, step, {"step": torch.tensor(step)})


def test_latest_checkpoint_skips_a_corrupt_newest_file_with_a_warning(tmp_path):
    save_steps(tmp_path, [10, 20])
    newest = tmp_path / "step-00000020.pt"
    newest.write_bytes(newest.read_bytes()[:-50])  # torn by a crash
    lines: list[str] = []
    assert latest_checkpoint(tmp_path, log=lines.append) == tmp_path / "step-00000010.pt"
    assert len(lines) == 1 and "step-00000020.pt" in lines[0] and "warning" in lines[0]


def test_latest_checkpoint_skips_a_file_that_is_not_a_checkpoint_and_returns_none_without_any(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    (tmp_path / "step-00000005.pt").write_bytes(b"not a checkpoint")
    save_checkpoint(tmp_path / "step-00000007.pt", {"x": 1})
    (tmp_path / "step-00000007.pt.json").write_text("{torn")
    assert latest_checkpoint(tmp_path, log=lambda m: None) is None


def test_rotation_keeps_two_and_drops_checkpoints_of_an_abandoned_later_attempt(tmp_path):
    save_steps(tmp_path, [5, 10, 15])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-00000010.pt",
        "step-00000010.pt.json",
        "step-00000015.pt",
        "step-00000015.pt.json",
    ]
    save_steps(tmp_path, [12])  # resumed from 10 because 15 was damaged
    assert [s for s, _ in list_checkpoints(tmp_path)] == [12, 10]


def test_build_spec_layers_defaults_options_and_sets():
    spec = build_spec(data="d.csv", model="dlinear", out="o", mode="per-strategy", horizon=6, sets=["input_size=9"])
    assert spec.train.batch_size == PER_STRATEGY_BATCH and spec.train.horizon == 6 and spec.train.input_size == 9
    assert spec.holdout == 0 and spec.mode == "per-strategy"
    base = build_spec(data="d.csv", model="dlinear", out="o", base={"max_steps": 7, "batch_size": 99})
    assert base.train.max_steps == 7 and base.train.batch_size == 99


def test_spec_from_job_uses_the_workers_folder_and_device():
    job = JobSpec(data="d.parquet", model="dlinear", horizon=8, holdout=8, sets=["max_steps=5", "moving_avg=5"])
    spec = spec_from_job(job, out="/runs/7/out", device="cuda:0")
    assert spec.out == "/runs/7/out" and spec.device == "cuda:0" and spec.holdout == 8
    assert spec.train.max_steps == 5 and spec.model_params == {"moving_avg": 5}
    with pytest.raises(ValueError, match="warp"):
        spec_from_job(JobSpec(data="d", sets=["warp=1"]), out="o", device="cpu")
