"""The activation-checkpointing lever as a training option: where it applies, and that it changes no result."""

import pytest
import torch

from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.daemon.engine.training.checkpoint import load_checkpoint
from tests.daemon.engine.small_jobs import write_small_panel

NHITS_SETS = ["max_steps=10", "batch_size=32", "val_check_steps=5", "mlp_units=16,16", "dropout=0.2"]


@pytest.fixture(scope="module")
def panel_file(tmp_path_factory):
    return write_small_panel(tmp_path_factory.mktemp("data") / "panel.parquet")


def nhits_spec(panel_file, out, extra=(), model="nhits", mode="batch"):
    sets = NHITS_SETS if model == "nhits" else ["max_steps=20"]
    return build_spec(
        data=str(panel_file), model=model, out=str(out), mode=mode, device="cpu", horizon=4, input_size=8,
        holdout=4, sets=[*sets, *extra],
    )  # fmt: skip


def test_a_run_with_activation_checkpointing_trains_the_same_weights(tmp_path, panel_file):
    run_job(nhits_spec(panel_file, tmp_path / "plain"), log=lambda m: None)
    run_job(nhits_spec(panel_file, tmp_path / "ckpt", ["activation_checkpointing=true"]), log=lambda m: None)
    a = load_checkpoint(tmp_path / "plain" / "model.pt")["trainer"]["model"]
    b = load_checkpoint(tmp_path / "ckpt" / "model.pt")["trainer"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # dropout on: the recomputation redraws the same masks


def test_a_model_without_checkpointable_blocks_is_refused_naming_those_that_have_them(tmp_path, panel_file):
    with pytest.raises(ValueError, match="'mlp'") as info:
        nhits_spec(panel_file, tmp_path / "o", ["activation_checkpointing=true"], model="mlp")
    assert "nhits" in str(info.value) and "patchtst" in str(info.value) and "lstm" not in str(info.value)


def test_per_strategy_mode_is_refused(tmp_path, panel_file):
    with pytest.raises(ValueError, match="per-strategy"):
        nhits_spec(panel_file, tmp_path / "o", ["activation_checkpointing=true"], mode="per-strategy")
