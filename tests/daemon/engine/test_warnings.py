import json

import pytest

from stratcast.daemon.engine.run.advice import RunWarning, early_best_warning, loss_warning, windows_warning
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.training.trainparts import FitResult
from tests.daemon.engine.small_jobs import mlp_spec, write_small_panel


def fit_result(steps: int, best_step: int | None) -> FitResult:
    return FitResult(steps, None if best_step is None else 0.5, best_step, False, False, 1.0)


def test_a_median_loss_on_a_panel_a_third_zeros_warns_and_names_the_losses_to_use():
    warning = loss_warning(TrainConfig(loss="mae"), zero_share=0.33)
    assert warning is not None and warning.kind == "loss"
    assert "loss=mae" in warning.message and "33% zeros" in warning.message
    assert "loss=mse" in warning.message and "huber" in warning.message


@pytest.mark.parametrize(
    ("loss", "zeros"), [("mse", 0.6), ("huber", 0.6), ("quantile", 0.6), ("hurdle", 0.6), ("mae", 0.29)]
)
def test_no_loss_warning_for_mean_forecasts_or_a_panel_with_few_zeros(loss, zeros):
    assert loss_warning(TrainConfig(loss=loss), zero_share=zeros) is None


def test_a_training_part_with_one_window_per_strategy_warns_and_names_the_levers():
    # the README's recipe on 208 weeks: 208 - 52 holdout - 51 validation = 105 periods, input 104
    warning = windows_warning(TrainConfig(input_size=104, horizon=52), train_periods=105)
    assert warning is not None and warning.kind == "few-windows"
    assert "only 1 window per strategy (105 periods before validation, input_size 104)" in warning.message
    assert "--input-size" in warning.message and "pad_start=true" in warning.message


def test_no_windows_warning_with_room_for_many_windows_or_padded_starts():
    assert windows_warning(TrainConfig(input_size=52, horizon=52), train_periods=104) is None
    assert windows_warning(TrainConfig(input_size=104, horizon=52, pad_start=True), train_periods=105) is None


def test_a_validation_loss_best_at_its_first_check_says_so():
    warning = early_best_warning(fit_result(300, 50), TrainConfig(val_check_steps=50))
    assert warning is not None and warning.kind == "early-best"
    assert "best at step 50 of 300: consider fewer steps or a lower learning rate" in warning.message


@pytest.mark.parametrize(("steps", "best"), [(300, 100), (50, 50), (300, None)])
def test_no_early_best_warning_when_the_loss_improved_or_was_checked_once_or_never(steps, best):
    assert early_best_warning(fit_result(steps, best), TrainConfig(val_check_steps=50)) is None


def test_a_warning_reaches_the_log_the_hook_metrics_and_the_verdict(tmp_path):
    spec = mlp_spec(write_small_panel(tmp_path / "p.parquet"), tmp_path / "out", extra=["loss=mae"], dropout=0.0)
    lines: list[str] = []
    seen: list[RunWarning] = []
    result = run_job(spec, log=lines.append, on_warning=seen.append)
    (warning,) = [w for w in seen if w.kind == "loss"]
    assert f"warning: {warning.message}" in lines
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"kind": "loss", "message": warning.message} in metrics["warnings"]
    assert warning.message in metrics["verdict"] and metrics["verdict"] == result.metrics["verdict"]
    assert metrics["verdict"][0].startswith("The model")  # the skill sentences come first
