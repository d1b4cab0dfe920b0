"""Real CUDA out-of-memory errors under a memory cap: the trainer halves the micro-batch, retries, and finishes.

The cap (``torch.cuda.set_per_process_memory_fraction``) is calibrated in the test from two measured steps, so it
sits between the peak of a small micro-batch and the peak of the whole batch whatever the GPU.
"""

import pytest
import torch

from stratcast.daemon.engine.data.windows import PanelWindows, Split, TrainSampler
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.training.trainer import Trainer
from stratcast.daemon.zoo.catalog import build_model, make_config
from stratcast.shared.events import RanOutOfMemory

pytestmark = pytest.mark.gpu
DEV = torch.device("cuda")


def big_trainer(micro=0, steps=4):
    g = torch.Generator().manual_seed(0)
    values = torch.randn(64, 2000, generator=g).to(DEV)
    cfg = TrainConfig(
        input_size=256, horizon=16, max_steps=steps, batch_size=32768, micro_batch_size=micro, val_size=0,
        precision="fp32", oom_grow_after=1000,
    )  # fmt: skip
    windows = PanelWindows(values, torch.zeros(64, dtype=torch.long, device=DEV), input_size=256, horizon=16)
    torch.manual_seed(0)
    net = build_model("mlp", make_config("mlp", {"hidden_size": 2048, "num_layers": 3}), input_size=256, horizon=16)
    return Trainer(net, cfg, TrainSampler(windows, Split.make(2000, 0, 0).train_end, 0), None)


def peak_of_one_step(micro):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(DEV)
    trainer = big_trainer(micro, steps=1)
    trainer.train_step()
    peak = torch.cuda.max_memory_reserved(DEV)
    del trainer
    torch.cuda.empty_cache()
    return peak


def test_a_capped_gpu_run_recovers_from_real_ooms_with_the_uncapped_weights():
    full, small = peak_of_one_step(0), peak_of_one_step(2048)
    assert small < full / 2, (small, full)
    reference = big_trainer()
    reference.fit()
    expected = {k: v.clone() for k, v in reference.model.state_dict().items()}
    del reference
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(DEV).total_memory
    torch.cuda.set_per_process_memory_fraction((small + (full - small) * 0.4) / total, DEV)
    try:
        capped = big_trainer()
        events: list[RanOutOfMemory] = []
        capped.on_oom = events.append
        capped.fit()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, DEV)
    assert events and all(e.phase == "forward/backward" and e.reserved > 0 for e in events)
    assert capped.micro.current < 32768 and capped.step == 4
    for k, v in capped.model.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=1e-4, atol=1e-5)
