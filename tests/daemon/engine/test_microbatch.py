"""Micro-batches keep the effective batch: the accumulated step equals the single-batch step.

Not bitwise: a weight gradient sums over the step's windows (a matmul over the batch dimension), and summing it
per micro-batch and then across micro-batches rounds differently from one matmul. Every output element gets
bitwise the gradient of the unsplit step (each micro-batch's loss is its sum over the step's target count), so
the weights agree to float tolerance (about 1e-7 relative after 30 steps here). A fixed micro-batch is bitwise
reproducible, which is what the OOM tests rely on.
"""

import pytest
import torch

from stratcast.daemon.engine.data.windows import WindowBatch
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.training.checkpoint import load_checkpoint
from stratcast.daemon.engine.training.trainparts import split
from tests.daemon.engine.small_jobs import mlp_spec, write_small_panel

DROPOUT = 0.0
"""No dropout: with dropout the micro-batches draw their masks in another order (equivalent, not equal)."""


@pytest.fixture(scope="module")
def panel_file(tmp_path_factory):
    return write_small_panel(tmp_path_factory.mktemp("data") / "panel.parquet")


def train(panel_file, out, mode="batch", extra=()):
    spec = mlp_spec(panel_file, out, mode, extra, dropout=DROPOUT)
    run_job(spec, log=lambda m: None)
    return load_checkpoint(out / "model.pt")["trainer"]


@pytest.mark.parametrize("mode", ["batch", "per-strategy"])
@pytest.mark.parametrize("micro", [1, 8, 12])
def test_micro_batches_give_the_single_batch_weights(tmp_path, panel_file, mode, micro):
    whole = train(panel_file, tmp_path / "whole", mode)
    parts = train(panel_file, tmp_path / "parts", mode, [f"micro_batch_size={micro}"])
    assert parts["step"] == whole["step"] == 30 and parts["micro_batch"] == micro
    for key, w in whole["model"].items():
        torch.testing.assert_close(parts["model"][key], w, rtol=1e-5, atol=1e-6)


def test_a_fixed_micro_batch_is_bitwise_reproducible(tmp_path, panel_file):
    a = train(panel_file, tmp_path / "a", extra=["micro_batch_size=8"])
    b = train(panel_file, tmp_path / "b", extra=["micro_batch_size=8"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_a_micro_batch_as_large_as_the_batch_is_the_unsplit_step_bit_for_bit(tmp_path, panel_file):
    whole = train(panel_file, tmp_path / "whole")
    same = train(panel_file, tmp_path / "same", extra=["micro_batch_size=32"])
    assert all(torch.equal(whole["model"][k], same["model"][k]) for k in whole["model"])


def test_split_cuts_the_windows_in_order_along_the_given_dimension():
    t = torch.arange(2 * 5).reshape(2, 5)
    batch = WindowBatch(t, t, t > 3, t, t)
    parts = split(batch, 2, dim=1)
    assert [p.x.shape[1] for p in parts] == [2, 2, 1]
    assert torch.equal(torch.cat([p.x for p in parts], dim=1), t)
    assert split(batch, 5, dim=1) == [batch]
