"""The worker over two CUDA ranks (NCCL): needs two visible GPUs (``CUDA_VISIBLE_DEVICES`` lists them)."""

import pytest
import torch

from stratcast.daemon.worker import WorkerExit
from tests.daemon.test_worker import kinds, log_text, make_run_dir, run_worker
from tests.daemon.test_worker_ranks import SETS, weights

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_a_run_over_two_gpus_trains_with_nccl_and_keeps_the_ranks_equal(tmp_path, panel_file):
    run_dir = make_run_dir(tmp_path / "nccl", panel_file, SETS)
    code, events = run_worker(run_dir, "--world-size", "2", device="cuda:0")
    assert code == WorkerExit.OK, log_text(run_dir)
    assert kinds(events).count("finished") == 1
    assert "training over 2 devices (cuda)" in log_text(run_dir)
    assert all(w.isfinite().all() for w in weights(run_dir).values())


@pytest.fixture
def panel_file(tmp_path):
    from stratcast.daemon.engine.data.synthetic import make_strategy_panel

    path = tmp_path / "panel.parquet"
    make_strategy_panel(10, 60, seed=3).to_parquet(path, index=False)
    return path
