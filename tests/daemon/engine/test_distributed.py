"""Data-parallel training over two gloo processes: the summed gradient is the union batch's, the ranks stay equal."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stratcast.daemon.engine.data.windows import validation_windows
from stratcast.daemon.engine.run.build import check_distributable, prepare
from stratcast.daemon.engine.spec.runspec import RunSpec, build_spec
from stratcast.daemon.engine.training import distributed
from stratcast.daemon.engine.training.checkpoint import CheckpointError, save_checkpoint, save_rotating
from stratcast.daemon.engine.training.distributed import Ranks, check_world, latest_for_world, rank_path
from tests.daemon.engine.rank_steps import spec_of, union_batch
from tests.daemon.engine.small_jobs import write_small_panel

ROOT = Path(__file__).resolve().parents[3]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worktree_env():
    """This environment, importing this checkout's packages first (the ranks are subprocesses)."""
    paths = [str(ROOT / p) for p in ("shared", "daemon", "tui")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Both ranks' results (rank_steps.py) and the panel they trained on."""
    tmp = tmp_path_factory.mktemp("ranks")
    panel = write_small_panel(tmp / "panel.parquet")
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.daemon.engine.rank_steps", str(r), "2", str(port), str(panel), str(tmp)],
            cwd=ROOT,
            env=worktree_env(),
        )
        for r in range(2)
    ]
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    return [torch.load(tmp / f"rank{r}.pt") for r in range(2)], panel


def test_the_summed_gradient_is_the_union_batchs(two_ranks, tmp_path):
    (zero, one), panel = two_ranks
    single, _ = union_batch(spec_of(str(panel), str(tmp_path)), str(panel))
    single.train_step()
    expected = {n: p.grad for n, p in single.model.named_parameters() if p.grad is not None}
    assert expected.keys() == zero["grads"].keys() == one["grads"].keys()
    for name, grad in expected.items():
        assert grad.abs().sum() > 0
        torch.testing.assert_close(zero["grads"][name], grad, rtol=1e-5, atol=1e-7)
        assert torch.equal(zero["grads"][name], one["grads"][name])  # every rank holds the same sum


def test_the_ranks_weights_stay_identical_through_oom_retries(two_ranks):
    (zero, one), _ = two_ranks
    assert zero["steps"] == one["steps"] == 12
    assert zero["batch"] == one["batch"] == 16  # each draws half of batch_size=32
    assert one["micro"] < 16 <= zero["micro"]  # rank 1 retried its own micro-batches after its OOMs
    assert zero["weights"].keys() == one["weights"].keys()
    for name, w in zero["weights"].items():
        assert torch.equal(w, one["weights"][name]), name
    assert zero["best"] == one["best"] is not None  # the same validation sums: the same early-stopping decisions
    assert zero["score"] == one["score"] is not None


def test_a_multivariate_models_ranks_stay_identical_with_their_own_dropout(two_ranks):
    (zero, one), _ = two_ranks
    assert zero["multi_steps"] == one["multi_steps"] == 6
    for name, w in zero["multi_weights"].items():
        assert torch.equal(w, one["multi_weights"][name]), name
    assert zero["multi_best"] == one["multi_best"] is not None
    assert not torch.equal(zero["dropout"], one["dropout"])  # each rank's own masks


def test_shares_and_shards_cover_the_batch_and_the_validation_windows(tmp_path):
    assert [Ranks(r, 3).share(32) for r in range(3)] == [11, 11, 10]
    assert len({Ranks(r, 2).seed(7) for r in range(2)}) == 2 and Ranks(0, 1).seed(7) == 7
    with pytest.raises(ValueError, match="batch_size 2 is smaller than the 3 devices"):
        Ranks(0, 3).share(2)
    panel = write_small_panel(tmp_path / "panel.parquet")
    spec = spec_of(str(panel), str(tmp_path))
    prep = prepare(spec, torch.device("cpu"), lambda _: None)
    val = validation_windows(prep.windows, prep.split)
    assert val is not None
    shards = [Ranks(r, 3).shard(val) for r in range(3)]
    assert torch.equal(torch.cat([s.x for s in shards]), val.x)


def test_modes_that_cannot_span_devices_are_refused(tmp_path):
    panel = write_small_panel(tmp_path / "panel.parquet")

    def spec(model: str, mode: str = "batch", ensemble: tuple[str, ...] = ()) -> RunSpec:
        out, data = str(tmp_path), str(panel)
        return build_spec(data=data, model=model, out=out, mode=mode, ensemble=ensemble, horizon=4, input_size=8)

    check_distributable(spec("mlp"), 2)
    check_distributable(spec("stemgnn"), 2)  # a multivariate model draws groups of series on each rank
    with pytest.raises(ValueError, match="per-strategy mode cannot train over 2 devices"):
        check_distributable(spec("mlp", mode="per-strategy"), 2)
    with pytest.raises(ValueError, match="an ensemble"):
        check_distributable(spec("mlp", ensemble=("mlp", "dlinear")), 2)


def test_resume_needs_every_rank_file_and_the_same_world_size(tmp_path):
    trainer = {"world_size": 2, "step": 4}
    for step in (4, 8):
        save_rotating(tmp_path, step, {"trainer": trainer})
    save_checkpoint(rank_path(tmp_path / "step-00000004.pt", 1), {"rank_state": {}})
    logged: list[str] = []
    assert latest_for_world(tmp_path, 2, logged.append) == tmp_path / "step-00000004.pt"
    assert "skipping checkpoint step-00000008.pt" in logged[0]
    with pytest.raises(CheckpointError, match=r"over 2 device.* this run has 1: resume it with --gpus-per-run 2"):
        check_world(tmp_path / "step-00000004.pt", {"trainer": trainer}, 1)
    for step in (12, 16):  # rotation deletes a checkpoint's rank files with it
        save_rotating(tmp_path, step, {"trainer": trainer})
    assert not rank_path(tmp_path / "step-00000004.pt", 1).exists()


def test_gradients_travel_in_buckets_and_come_back_in_place(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(distributed, "BUCKET_BYTES", 40)  # 10 floats: several buckets, a large parameter alone
    params = [torch.nn.Parameter(torch.randn(*shape)) for shape in ((3,), (4, 5), (2,), (3,))]
    params.append(torch.nn.Parameter(torch.randn(3, dtype=torch.complex64)))
    for p in params[:2] + params[3:]:
        p.grad = torch.randn_like(p)
    before = [None if p.grad is None else p.grad.clone() for p in params]
    storage = [None if p.grad is None else p.grad.data_ptr() for p in params]
    assert [len(b) for b in distributed._buckets([p for p in params if p.grad is not None])] == [1, 1, 2]
    distributed.join_group(Ranks(0, 1), torch.device("cpu"), store=distributed.lead_store(1))
    try:
        loss = distributed.sum_gradients(params, torch.tensor(2.5))
    finally:
        distributed.leave_group()
    assert not dist.is_initialized()
    assert loss == 2.5 and params[2].grad is None  # no rank had one: none, as AdamW expects
    for p, b, ptr in zip(params, before, storage, strict=True):
        if b is not None:
            assert p.grad is not None and torch.equal(p.grad, b) and p.grad.data_ptr() == ptr
