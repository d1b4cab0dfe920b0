"""The memory plan wired into a job: on a CPU as it is, and on a fake GPU whose memory is a function of the windows.

The fake stands in for the CUDA allocator's figures (``Trainer.memory``); the steps it measures are real steps of
the job's own trainer, so these tests show that probing leaves no trace (the trained weights equal a run
configured at the chosen micro-batch, bit for bit, with dropout on) and that the plan reaches the metrics, the
checkpoints and the callbacks.
"""

import pytest
import torch
from torch.nn.modules.module import register_module_forward_pre_hook

from stratcast.daemon.engine.memory.oom import FAULT_ENV, MicroBatchPlan, OutOfMemory
from stratcast.daemon.engine.memory.planner import MIB
from stratcast.daemon.engine.run.build import make_model, make_trainer, prepare
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.run.runplan import PLAN_CACHE_ENV, RunPlan, default_plan_cache
from stratcast.daemon.engine.training import trainer as trainer_module
from stratcast.daemon.engine.training.checkpoint import load_checkpoint
from stratcast.daemon.zoo.models.mlp import MLP
from stratcast.shared.events import ProgressReported
from tests.daemon.engine.small_jobs import mlp_spec, write_small_panel

FIXED, PER_WINDOW = 100 * MIB, 10 * MIB
"""The fake GPU's memory: weights and optimizer state, plus this much per window of a forward pass."""
ROOMY, TIGHT = 500 * MIB, 290 * MIB
"""Available memory giving a budget of 100 + 0.9 * 500 - 256 = 294 MiB (micro-batch 19), or 105 MiB (none fits)."""


class FakeGpu:
    """``DeviceMemory`` on paper: the peak is FIXED plus PER_WINDOW per window of the largest MLP forward pass."""

    name = "Fake GPU 80GB"

    def __init__(self):
        self.free, self.largest, self.resets = ROOMY, 0, 0

    def seen(self, module, args):
        if isinstance(module, MLP):
            self.largest = max(self.largest, args[0].shape[0])  # [m, L]: m windows

    def allocated(self):
        return FIXED

    def available(self):
        return self.free

    def reset_peak(self):
        self.largest, self.resets = 0, self.resets + 1

    def peak(self):
        return FIXED + PER_WINDOW * self.largest


@pytest.fixture(scope="module")
def panel_file(tmp_path_factory):
    return write_small_panel(tmp_path_factory.mktemp("data") / "panel.parquet")


@pytest.fixture
def gpu(monkeypatch):
    fake = FakeGpu()
    handle = register_module_forward_pre_hook(fake.seen)
    monkeypatch.setattr(trainer_module, "device_memory", lambda device: fake)
    yield fake
    handle.remove()


def spec_for(panel_file, out, extra=(), mode="batch"):
    return mlp_spec(panel_file, out, mode, extra, dropout=0.2)


def run(spec, **kwargs):
    plans: list[RunPlan] = []
    lines: list[str] = []
    result = run_job(spec, log=lines.append, on_plan=plans.append, **kwargs)
    return result, plans, lines


def weights(out):
    return load_checkpoint(out / "model.pt")["trainer"]["model"]


# -- without CUDA: nothing measured ----------------------------------------------------------------------------------


def test_on_a_cpu_the_plan_is_the_whole_batch_and_reaches_metrics_checkpoints_and_progress(tmp_path, panel_file):
    progress: list[ProgressReported] = []
    result, plans, lines = run(
        spec_for(panel_file, tmp_path / "o", ["max_steps=10", "checkpoint_every_steps=4"]), on_progress=progress.append
    )
    assert [(p.source, p.micro_batch, p.batch_size, p.budget, p.probes, p.device) for p in plans] == [
        ("cpu", 32, 32, None, (), "cpu")
    ]
    plan = plans[0].to_dict()
    assert result.metrics["memory_plan"] == plan
    assert load_checkpoint(tmp_path / "o" / "model.pt")["memory_plan"] == plan
    assert load_checkpoint(tmp_path / "o" / "checkpoints" / "step-00000008.pt")["memory_plan"] == plan
    assert "memory plan: micro-batch 32 of 32 (no memory probing on cpu)" in lines
    assert progress and {p.micro_batch for p in progress} == {32}
    checks = [p for p in progress if p.val_loss is not None]
    assert checks and all(p.val_score is not None and p.val_score > 0 for p in checks)  # the run has its units


def test_a_set_micro_batch_is_the_plan(tmp_path, panel_file, gpu):
    largest_in_training: list[int] = []
    progress = lambda _: largest_in_training.append(gpu.largest)  # noqa: E731
    spec = spec_for(panel_file, tmp_path / "o", ["micro_batch_size=8", "max_steps=2"])
    _, plans, _ = run(spec, on_progress=progress)
    assert [(p.source, p.micro_batch) for p in plans] == [("fixed", 8)]
    # nothing was probed or trained above the set size (prediction afterwards batches every window it forecasts)
    assert largest_in_training and max(largest_in_training) <= 8


# -- on the fake GPU --------------------------------------------------------------------------------------------------


def test_probing_chooses_the_largest_micro_batch_that_fits_and_leaves_no_trace(tmp_path, panel_file, gpu):
    result, plans, lines = run(spec_for(panel_file, tmp_path / "planned", ["max_steps=10"]))
    plan = plans[0]
    assert (plan.source, plan.micro_batch, plan.budget) == ("probe", 19, 294 * MIB)
    assert plan.probes == ((8, 180 * MIB), (16, 260 * MIB), (19, 290 * MIB))  # from batch/4 up, confirmed at 19
    assert plan.measured_peak == 290 * MIB and plan.oom_probes == () and plan.seconds >= 0
    assert plan.levers[0] == "Batch 32 is predicted at 420.0 MiB, over the budget of 294.0 MiB."
    assert any(line.startswith("Activation checkpointing is not available") for line in plan.levers)  # mlp
    head = "memory plan: micro-batch 19 of 32 (2 pass(es) per step), peak 290 MiB of a 294 MiB budget (3 probe"
    assert sum(line.startswith(head) for line in lines) == 1 and f"  {plan.levers[0]}" in lines
    assert result.metrics["memory_plan"]["probes"][0] == {"micro_batch": 8, "peak": 180 * MIB}
    # the probes ran real steps of this trainer; the weights are those of a run set to 19 from the start
    run_job(spec_for(panel_file, tmp_path / "set", ["max_steps=10", "micro_batch_size=19"]), log=lambda m: None)
    a, b = weights(tmp_path / "planned"), weights(tmp_path / "set")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_per_strategy_probing_plans_windows_per_strategy_and_leaves_no_trace(tmp_path, panel_file, gpu):
    _, plans, _ = run(spec_for(panel_file, tmp_path / "planned", ["max_steps=6"], mode="per-strategy"))
    assert [(p.source, p.micro_batch) for p in plans] == [("probe", 19)]  # each member sees [m, L] under vmap
    extra = ["max_steps=6", "micro_batch_size=19"]
    run_job(spec_for(panel_file, tmp_path / "set", extra, mode="per-strategy"), log=lambda m: None)
    a, b = weights(tmp_path / "planned"), weights(tmp_path / "set")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_cached_plan_skips_probing_until_the_budget_changes(tmp_path, panel_file, gpu):
    cache, short = tmp_path / "plans.json", ["max_steps=3"]
    _, first, _ = run(spec_for(panel_file, tmp_path / "a", short), plan_cache=cache)
    resets = gpu.resets
    _, second, _ = run(spec_for(panel_file, tmp_path / "b", short), plan_cache=cache)
    assert first[0].source == "probe" and second[0].source == "cache"
    assert second[0].micro_batch == 19 and second[0].probes == first[0].probes and second[0].seconds == 0
    assert gpu.resets - resets == 3  # one per training step: no probe steps
    gpu.free = 1000 * MIB  # more memory: plan again to use it
    _, third, _ = run(spec_for(panel_file, tmp_path / "c", short), plan_cache=cache)
    assert third[0].source == "probe" and third[0].micro_batch == 32


def test_a_probe_that_runs_out_of_memory_counts_as_not_fitting(tmp_path, panel_file, gpu, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "12")
    _, plans, _ = run(spec_for(panel_file, tmp_path / "o", ["max_steps=2"]))
    plan = plans[0]
    assert plan.oom_probes == (16,) and plan.micro_batch == 12  # halfway between the fit and the failure
    assert plan.to_dict()["oom_probes"] == [16] and all(p["peak"] > 0 for p in plan.to_dict()["probes"])


def test_when_nothing_fits_the_plan_is_reported_and_the_job_ends_out_of_memory(tmp_path, panel_file, gpu):
    gpu.free = TIGHT
    plans: list[RunPlan] = []
    with pytest.raises(OutOfMemory, match="not even a micro-batch of 1 fits the 105 MiB budget") as info:
        run_job(spec_for(panel_file, tmp_path / "o"), log=lambda m: None, on_plan=plans.append)
    assert [p.micro_batch for p in plans] == [0] and [m for m, _ in plans[0].probes] == [8, 4, 2, 1]
    assert "precision=bf16" in str(info.value)


def test_a_resume_plans_again_for_the_memory_it_finds(tmp_path, panel_file, gpu):
    steps, short = iter(range(1000)), ["max_steps=6"]
    stopped, plans, _ = run(spec_for(panel_file, tmp_path / "o", short), should_stop=lambda: next(steps) == 3)
    assert stopped.checkpoint is not None and plans[0].micro_batch == 19
    assert load_checkpoint(stopped.checkpoint)["memory_plan"]["micro_batch"] == 19
    gpu.free = 400 * MIB  # budget 204 MiB: micro-batch 10
    _, resumed, _ = run(spec_for(panel_file, tmp_path / "o", short), resume_from=stopped.checkpoint)
    assert [(p.source, p.micro_batch) for p in resumed] == [("probe", 10)]
    assert load_checkpoint(tmp_path / "o" / "model.pt")["memory_plan"]["micro_batch"] == 10


# -- growing back needs room -----------------------------------------------------------------------------------------


def small_trainer(panel_file, tmp_path):
    spec = spec_for(panel_file, tmp_path / "o", ["oom_grow_after=2"])
    prep = prepare(spec, torch.device("cpu"), lambda m: None)
    return make_trainer(spec, make_model(spec, prep.panel.n_series), prep, None, None)


def test_a_halved_micro_batch_grows_back_only_when_the_doubled_step_fits(tmp_path, panel_file, gpu):
    trainer = small_trainer(panel_file, tmp_path)
    assert trainer.memory is gpu
    trainer.micro.shrink()  # as after an OOM: 32 -> 16
    gpu.free = 400 * MIB  # budget 204 MiB; a step at 16 peaks at 260 MiB, one at 32 is predicted at 420 MiB
    for _ in range(4):
        trainer.train_step()
    assert trainer.micro.current == 16 and trainer.last_peak == (FIXED, 260 * MIB)
    gpu.free = 800 * MIB  # budget 564 MiB: room now, asked again after the next step
    trainer.train_step()
    assert trainer.micro.current == 32


def test_without_a_memory_probe_growing_back_is_by_steps_alone(tmp_path, panel_file):
    trainer = small_trainer(panel_file, tmp_path)
    assert trainer.memory is None
    trainer.micro.shrink()
    trainer.train_step()
    trainer.train_step()
    assert trainer.micro.current == 32


def test_the_plan_asks_for_room_once_growing_is_due_and_again_after_every_step():
    asked: list[int] = []
    plan = MicroBatchPlan(32, grow_after=2, current=8)

    def no_room(size):
        asked.append(size)
        return False

    for _ in range(4):
        plan.step_done(no_room)
    assert plan.current == 8 and asked == [16, 16, 16]
    plan.step_done(lambda size: True)
    assert plan.current == 16 and plan.stable == 0


# -- the cache's location --------------------------------------------------------------------------------------------


def test_the_plan_cache_lives_in_the_state_folder_unless_the_environment_says_otherwise(tmp_path, monkeypatch):
    monkeypatch.delenv(PLAN_CACHE_ENV, raising=False)
    monkeypatch.setenv("STRATCAST_HOME", str(tmp_path / "home"))
    assert default_plan_cache() == tmp_path / "home" / "memory-plans.json"
    assert default_plan_cache(str(tmp_path / "other")) == tmp_path / "other" / "memory-plans.json"  # --home
    monkeypatch.setenv(PLAN_CACHE_ENV, str(tmp_path / "elsewhere.json"))
    assert default_plan_cache() == tmp_path / "elsewhere.json"
    monkeypatch.setenv(PLAN_CACHE_ENV, "")
    assert default_plan_cache() is None
