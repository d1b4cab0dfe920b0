"""The memory plan on a real GPU under a memory cap: the planned micro-batch trains without an OOM within budget.

The cap (``torch.cuda.set_per_process_memory_fraction``) is calibrated from two measured steps so that the budget
falls between the peak of a small micro-batch and that of the whole batch, whatever the GPU.
"""

import pytest
import torch

from stratcast.daemon.engine.data.windows import PanelWindows, Split, TrainSampler
from stratcast.daemon.engine.memory.devmem import CudaMemory, peak_budget
from stratcast.daemon.engine.memory.plancache import PlanCache
from stratcast.daemon.engine.memory.planner import CudaProbe
from stratcast.daemon.engine.run.runplan import plan_run
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.zoo.catalog import build_model, make_config
from stratcast.shared.events import RanOutOfMemory

pytestmark = pytest.mark.gpu
DEV = torch.device("cuda")
PARAMS = {"hidden_size": 2048, "num_layers": 3}
CFG = TrainConfig(
    input_size=256, horizon=16, max_steps=3, batch_size=32768, val_size=0, precision="fp32", oom_grow_after=1
)


def big_trainer():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(64, 2000, generator=g).to(DEV)
    windows = PanelWindows(values, torch.zeros(64, dtype=torch.long, device=DEV), input_size=256, horizon=16)
    torch.manual_seed(0)
    net = build_model("mlp", make_config("mlp", PARAMS), input_size=256, horizon=16)
    return Trainer(net, CFG, TrainSampler(windows, Split.make(2000, 0, 0).train_end, 0), None)


def spec():
    return RunSpec(data="-", model="mlp", out="-", device="cuda", train=CFG, model_params=PARAMS)


def test_the_planned_micro_batch_trains_under_a_cap_without_an_oom_and_probing_leaves_no_trace(tmp_path):
    torch.cuda.empty_cache()
    trainer = big_trainer()
    memory = trainer.memory
    assert isinstance(memory, CudaMemory)
    probe = CudaProbe(trainer.model, trainer.optimizer, trainer.probe_step, DEV)
    small, full = probe.measure(2048), probe.measure(32768)
    assert small < full / 2, (small, full)
    torch.cuda.empty_cache()
    allocated, total = memory.allocated(), torch.cuda.get_device_properties(DEV).total_memory
    target = small + (full - small) // 2  # the budget we want: halfway between the two peaks
    cap = allocated + (target - allocated + (256 << 20)) / 0.9
    torch.cuda.set_per_process_memory_fraction(cap / total, DEV)
    try:
        assert abs(peak_budget(memory) - target) < 0.05 * target
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        rng = torch.cuda.get_rng_state(DEV)
        plan = plan_run(trainer, spec(), cache=PlanCache(tmp_path / "plans.json"), panel_shape=(64, 2000))
        assert plan.source == "probe" and 2048 < plan.micro_batch < 32768, plan
        assert plan.measured_peak is not None and plan.budget is not None and plan.measured_peak <= plan.budget
        assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
        assert torch.equal(rng, torch.cuda.get_rng_state(DEV))
        assert plan_run(trainer, spec(), cache=PlanCache(tmp_path / "plans.json"), panel_shape=(64, 2000)).source == (
            "cache"
        )
        trainer.set_micro_batch(plan.micro_batch)
        events: list[RanOutOfMemory] = []
        trainer.on_oom = events.append
        trainer.fit()
        assert events == [] and trainer.micro.current == plan.micro_batch
        # a training step accumulates several micro-batches: its peak may pass the probe's by a little, which the
        # reserve kept back from the budget absorbs
        assert trainer.last_peak is not None and trainer.last_peak[1] <= plan.budget + (256 << 20)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, DEV)


def test_a_halved_micro_batch_grows_back_only_when_the_doubled_step_is_predicted_to_fit():
    torch.cuda.empty_cache()
    trainer = big_trainer()
    trainer.train_step()
    trainer.train_step()  # the whole batch, with the optimizer state and gradients already allocated
    assert trainer.memory is not None and trainer.last_peak is not None
    base, full = trainer.last_peak
    # a budget above a half-batch step's peak (about base + transient / 2), below the doubled prediction (~full)
    budget = base + 3 * (full - base) // 4
    allocated, total = trainer.memory.allocated(), torch.cuda.get_device_properties(DEV).total_memory
    cap = allocated + (budget - allocated + (256 << 20)) / 0.9
    trainer.micro.shrink()  # 32768 -> 16384, as after an OOM; oom_grow_after=1: growing is due after every step
    torch.cuda.set_per_process_memory_fraction(cap / total, DEV)
    try:
        trainer.train_step()
        assert trainer.micro.current == 16384, trainer.last_peak
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, DEV)
    trainer.train_step()
    assert trainer.micro.current == 32768
