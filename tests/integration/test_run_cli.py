"""End to end: ``stratcastd run`` and ``demo`` on small generated panels, as a user runs them."""

import fcntl
import json
import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.training.checkpoint import load_checkpoint
from stratcast.shared.errors import ExitCode
from tests.daemon.engine.trading_exports import write_export

SMALL = ["--set", "max_steps=40", "--set", "batch_size=128", "--set", "val_check_steps=10", "--device", "cpu"]


def stratcastd(*args, check_code=None):
    proc = subprocess.run(
        [sys.executable, "-m", "stratcast.daemon.cli", *args], capture_output=True, text=True, timeout=300
    )
    if check_code is not None:
        assert proc.returncode == check_code, proc.stderr
    return proc


@pytest.fixture(scope="module")
def panel_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "panel.parquet"
    make_strategy_panel(60, 90, seed=1).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("mode", ["batch", "per-strategy"])
def test_run_writes_forecasts_summary_metrics_and_a_safe_checkpoint(tmp_path, panel_file, mode):
    out = tmp_path / "run"
    proc = stratcastd(
        "run",
        "--data",
        str(panel_file),
        "--model",
        "dlinear",
        "--out",
        str(out),
        "--horizon",
        "8",
        "--input-size",
        "24",
        "--holdout",
        "8",
        "--mode",
        mode,
        "--json",
        *SMALL,
        check_code=ExitCode.OK,
    )
    result = json.loads(proc.stdout)
    assert "device: cpu" in proc.stderr
    fc = pd.read_parquet(out / "forecast.parquet")
    assert list(fc.columns[:3]) == ["strategy", "step", "forecast"] and len(fc) == 60 * 8
    summary = pd.read_parquet(out / "summary.parquet")
    assert sorted(summary["rank"]) == list(range(1, 61))
    assert summary["forecast_mean"].is_monotonic_decreasing
    assert summary["holdout_realized_mean"].notna().all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["errors"]) >= {"model", "zero", "trailing_mean", "last_value"}
    assert metrics["best_strategy"]["strategy"] == summary["strategy"][0] and metrics["best_strategy"]["rank"] == 1
    assert metrics["run"]["mode"] == mode and result["metrics"]["holdout"]["periods"] == 8
    state = load_checkpoint(out / "model.pt")
    assert state["model_name"] == "dlinear" and state["trainer"]["step"] >= 1


def test_bad_input_exits_with_the_bad_input_code_and_names_the_problem(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("No.,week,profit\n1,2020-01-06,1.0\n1,2020-01-06,2.0\n")
    proc = stratcastd("run", "--data", str(bad), "--model", "dlinear", "--out", str(tmp_path / "o"), *SMALL)
    assert proc.returncode == ExitCode.BAD_INPUT
    assert "bad.csv" in proc.stderr and "duplicate" in proc.stderr.lower()
    proc = stratcastd("run", "--data", str(bad), "--model", "nope", "--out", str(tmp_path / "o"))
    assert proc.returncode == ExitCode.BAD_INPUT and "known models" in proc.stderr


def test_a_semicolon_export_with_decimal_commas_forecasts_like_the_clean_parquet(tmp_path, panel_file):
    export = write_export(pd.read_parquet(panel_file), tmp_path / "export.csv")
    job = ["--model", "dlinear", "--horizon", "8", "--input-size", "24", "--holdout", "8", *SMALL]
    stratcastd("run", "--data", str(panel_file), "--out", str(tmp_path / "clean"), *job, check_code=ExitCode.OK)
    proc = stratcastd(
        *["run", "--data", str(export), "--out", str(tmp_path / "export"), "--date-format", "%d.%m.%Y", *job],
        check_code=ExitCode.OK,
    )
    assert "panel: 60 strategies x 90 periods" in proc.stdout
    clean = pd.read_parquet(tmp_path / "clean" / "forecast.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "export" / "forecast.parquet"), clean)


def test_missing_gpu_is_a_clear_bad_input_error(tmp_path, panel_file):
    proc = stratcastd(
        "run", "--data", str(panel_file), "--model", "dlinear", "--out", str(tmp_path), "--device", "cuda:7"
    )
    assert proc.returncode == ExitCode.BAD_INPUT and "cuda:7" in proc.stderr


def test_models_lists_every_model_with_parameters(tmp_path):
    proc = stratcastd("models", "--json", check_code=ExitCode.OK)
    data = json.loads(proc.stdout)
    names = {m["name"] for m in data["models"]}
    assert {"dlinear", "mlp", "nbeats", "nhits", "lstm", "gru", "tcn", "tide", "patchtst", "itransformer"} <= names
    assert any(p["name"] == "batch_size" for p in data["train_options"])


def test_models_json_shows_each_search_space_and_each_models_training_defaults():
    data = json.loads(stratcastd("models", "--json", check_code=ExitCode.OK).stdout)
    models = {m["name"]: m for m in data["models"]}
    widths = {p["name"]: p["search"] for p in models["mlp"]["params"]}["hidden_size"]
    assert widths["kind"] == "categorical" and 1024 in widths["choices"]
    assert models["patchtst"]["train_defaults"] == {"learning_rate": 0.0001}
    options = {p["name"]: p["search"] for p in data["train_options"]}
    assert options["learning_rate"]["log"] is True and options["max_steps"] is None


def test_results_client_prints_the_same_tables_without_torch(tmp_path, panel_file):
    out = tmp_path / "run"
    stratcastd(
        "run",
        "--data",
        str(panel_file),
        "--model",
        "mlp",
        "--out",
        str(out),
        "--horizon",
        "6",
        "--input-size",
        "12",
        "--holdout",
        "6",
        *SMALL,
        check_code=ExitCode.OK,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "stratcast.tui.cli", "results", str(out)], capture_output=True, text=True, check=True
    )
    assert "trailing mean" in proc.stdout and "best possible" in proc.stdout


def test_demo_runs_through_a_daemon_of_its_own_and_shuts_it_down(tmp_path):
    out = tmp_path / "demo"
    proc = stratcastd(
        "demo",
        "--out",
        str(out),
        "--model",
        "dlinear",
        "--strategies",
        "30",
        "--weeks",
        "120",
        "--set",
        "max_steps=30",
        "--set",
        "batch_size=128",
        check_code=ExitCode.OK,
    )
    assert "run 1 queued" in proc.stdout
    assert "Skill on the holdout (26 periods, 30 strategies)" in proc.stdout
    assert (out / "daemon" / "runs" / "1" / "out" / "forecast.parquet").exists()
    fd = os.open(out / "daemon" / "stratcastd.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the daemon let go of its home: it exited
    finally:
        os.close(fd)


def run_args(panel_file, out):
    return ["run", "--data", str(panel_file), "--model", "dlinear", "--out", str(out), "--horizon", "8"]


LONG = ["--input-size", "24", "--holdout", "8", "--device", "cpu", "--json"]
LONG_SETS = ["max_steps=600", "batch_size=64", "val_check_steps=50", "early_stop_patience=-1"]


def long_run(panel_file, out):
    return [*run_args(panel_file, out), *LONG, *(a for s in LONG_SETS for a in ("--set", s))]


def test_sigterm_then_resume_writes_the_forecast_of_an_uninterrupted_run_bit_for_bit(tmp_path, panel_file):
    stratcastd(*long_run(panel_file, tmp_path / "straight"), check_code=ExitCode.OK)
    out = tmp_path / "stopped"
    cmd = [sys.executable, "-m", "stratcast.daemon.cli", *long_run(panel_file, out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # the first validation line: training is under way
        if line.startswith("step "):
            proc.send_signal(signal.SIGTERM)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert f"stratcastd run --resume {out}" in err and not (out / "forecast.parquet").exists()
    stopped_at = load_checkpoint(sorted((out / "checkpoints").glob("step-*.pt"))[-1])["trainer"]["step"]
    assert 0 < stopped_at < 600
    proc2 = stratcastd("run", "--resume", str(out), "--json", check_code=ExitCode.OK)
    assert f"resumed from step-{stopped_at:08d}.pt at step {stopped_at}/600" in proc2.stderr
    a = pd.read_parquet(tmp_path / "straight" / "forecast.parquet")
    b = pd.read_parquet(out / "forecast.parquet")
    assert a.equals(b)
    assert (tmp_path / "straight" / "forecast.parquet").read_bytes() == (out / "forecast.parquet").read_bytes()


def test_resume_refuses_a_folder_without_a_spec_or_a_checkpoint(tmp_path, panel_file):
    proc = stratcastd("run", "--resume", str(tmp_path), check_code=ExitCode.BAD_INPUT)
    assert "spec.json" in proc.stderr and "not a resumable run folder" in proc.stderr
    out = tmp_path / "done"
    stratcastd(*run_args(panel_file, out), "--input-size", "24", *SMALL, check_code=ExitCode.OK)
    proc = stratcastd("run", "--resume", str(out), check_code=ExitCode.BAD_INPUT)
    assert "no usable checkpoint" in proc.stderr
    proc = stratcastd("run", "--resume", str(out), "--model", "mlp", check_code=ExitCode.USAGE)
    assert "drop --model" in proc.stderr


def test_a_run_where_nothing_fits_exits_76_proposing_the_memory_levers(tmp_path, panel_file):
    cmd = [sys.executable, "-m", "stratcast.daemon.cli", *run_args(panel_file, tmp_path / "o"), "--input-size", "24"]
    env = {**os.environ, "STRATCAST_FAULT_OOM_ABOVE": "0"}
    proc = subprocess.run([*cmd, *SMALL], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 76, proc.stderr
    assert "out of memory at step 1 (forward/backward, micro-batch 128): retrying with micro-batch 64" in proc.stdout
    assert "stratcastd: out of memory:" in proc.stderr and "precision=bf16" in proc.stderr


def test_the_recorded_spec_round_trips_tuples_and_per_strategy_options(tmp_path, panel_file):
    from stratcast.daemon.engine.spec.runspec import build_spec
    from stratcast.daemon.engine.spec.specfile import read_spec, write_spec

    spec = build_spec(
        data=str(panel_file),
        model="nhits",
        out=str(tmp_path),
        mode="per-strategy",
        device="cpu",
        horizon=4,
        input_size=8,
        holdout=4,
        sets=["mlp_units=16,16", "loss=quantile", "quantiles=0.2,0.5,0.8", "micro_batch_size=4"],
    )
    write_spec(tmp_path, spec)
    assert read_spec(tmp_path) == spec


def test_a_missing_data_file_is_reported_before_torch_is_imported(tmp_path):
    code = (
        "import sys\n"
        "from stratcast.daemon.cli import main\n"
        f"argv = ['run', '--data', '/nonexistent.parquet', '--model', 'dlinear', '--out', {str(tmp_path / 'o')!r}]\n"
        "code = main(argv)\n"
        "print('torch' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.BAD_INPUT
    assert proc.stdout.strip() == "False"
    assert proc.stderr.strip() == "stratcastd: error: /nonexistent.parquet: no such file. Check the path."
    assert not (tmp_path / "o").exists()


def test_a_run_that_fails_on_its_input_leaves_no_output_folder_but_keeps_one_that_was_there(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all" * 10)
    proc = stratcastd("run", "--data", str(bad), "--model", "dlinear", "--out", str(tmp_path / "new"), *SMALL)
    assert proc.returncode == ExitCode.BAD_INPUT and "cannot read it as parquet" in proc.stderr
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("mine")
    stratcastd("run", "--data", str(bad), "--model", "dlinear", "--out", str(tmp_path / "old"), *SMALL)
    assert (tmp_path / "old" / "notes.txt").read_text() == "mine"


def test_models_text_lists_the_training_options_and_demo_help_its_own_defaults():
    out = stratcastd("models", check_code=ExitCode.OK).stdout
    assert "training options" in out and "max_steps" in out and "learning_rate" in out
    assert re.search(r"^ +quantiles +0.1,0.5,0.9 ", out, flags=re.MULTILINE)  # as --set takes it, not a tuple
    help_text = " ".join(stratcastd("demo", "--help", check_code=ExitCode.OK).stdout.split())
    assert "(default 26)" in help_text and "(default 52)" in help_text and "max_steps=600" in help_text
    assert "nhits: mlp_units=128,128" in help_text
