"""``stratcastd saved ...`` and ``stratcastd forecast --saved``: the foreground commands on a home folder."""

import json

import pandas as pd
import pytest

from stratcast.daemon.cli import main
from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.shared.errors import ExitCode
from stratcast.shared.runfiles import Outputs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "panel.parquet"
    make_strategy_panel(6, 40, seed=4).to_parquet(data, index=False)
    spec = build_spec(
        data=str(data), model="mlp", out=str(root / "out"), device="cpu", horizon=4, input_size=8, holdout=4,
        sets=["max_steps=6", "batch_size=32", "val_check_steps=3", "hidden_size=8", "num_layers=1"],
    )  # fmt: skip
    run_job(spec, log=lambda line: None)
    return data, root / "out"


def saved(capsys, *argv):
    code = main(["saved", *argv])
    return code, capsys.readouterr()


def test_save_alias_forecast_export_import_and_remove_from_the_command_line(tmp_path, run, capsys):
    data, out = run
    home = ["--home", str(tmp_path / "home")]
    code, io = saved(capsys, "save", str(out), "weekly", "--json", *home)
    assert code == ExitCode.OK and json.loads(io.out)["ref"] == "weekly:1"
    code, io = saved(capsys, "alias", "weekly:1", "champion", *home)
    assert code == ExitCode.OK and io.out.strip() == "weekly@champion -> weekly:1"
    code, io = saved(capsys, "ls", "--json", *home)
    (listed,) = json.loads(io.out)
    summary = listed.pop("summary")
    assert listed == {"name": "weekly", "versions": [1], "latest": 1, "aliases": {"champion": 1}}
    assert (summary["model"], summary["mode"], summary["data"]["strategies"]) == ("mlp", "batch", 6)
    assert set(summary["metrics"]["errors"]) >= {"model", "zero", "trailing_mean"}
    code, io = saved(capsys, "ls", *home)  # the table: the latest version's evidence, with its verdict
    header, _, row = io.out.strip().splitlines()
    assert header.split()[:5] == ["name", "versions", "aliases", "latest", "model"]
    assert row.split()[:5] == ["weekly", "1", "champion=1", "mlp", "(batch)"]
    assert row.rstrip().endswith(("beats", "loses")) and " vs " in row
    code, io = saved(capsys, "show", "weekly@champion", *home)
    assert "weekly:1: mlp (batch)" in io.out and "6 strategies" in io.out

    argv = ["forecast", "--saved", "weekly@champion", "--data", str(data), "--out", str(tmp_path / "fc"), *home]
    assert main(argv) == ExitCode.OK
    pd.testing.assert_frame_equal(
        pd.read_parquet(Outputs(tmp_path / "fc").forecast), pd.read_parquet(Outputs(out).forecast), rtol=1e-6
    )
    capsys.readouterr()

    code, io = saved(capsys, "rm", "weekly:1", *home)
    assert code == ExitCode.BAD_INPUT and "champion" in io.err
    code, io = saved(capsys, "export", "weekly", str(tmp_path / "w.tar"), *home)
    assert code == ExitCode.OK and io.out.startswith("exported weekly:1 to ")  # a line for people, not JSON
    before = (tmp_path / "w.tar").read_bytes()
    code, io = saved(capsys, "export", "weekly", str(tmp_path / "w.tar"), *home)
    assert code == ExitCode.BAD_INPUT and "exists: export to a new file" in io.err
    assert (tmp_path / "w.tar").read_bytes() == before
    code, io = saved(capsys, "import", str(tmp_path / "w.tar"), "--json", *home)
    assert code == ExitCode.OK and json.loads(io.out)["ref"] == "weekly:2"
    assert saved(capsys, "rm", "weekly:1", "--force", *home)[0] == ExitCode.OK


def test_forecast_with_an_unknown_model_or_unfit_data_exits_3(tmp_path, run, capsys):
    data, out = run
    home = ["--home", str(tmp_path / "home")]
    assert main(["forecast", "--saved", "nothing", "--data", str(data), *home]) == ExitCode.BAD_INPUT
    assert "no saved model 'nothing'" in capsys.readouterr().err
    main(["saved", "save", str(out), "weekly", *home])
    frame = pd.read_parquet(data)
    frame[frame["week"] >= sorted(frame["week"].unique())[-3]].to_parquet(tmp_path / "short.parquet")
    argv = ["forecast", "--saved", "weekly", "--data", str(tmp_path / "short.parquet"), "--out", str(tmp_path / "o")]
    assert main([*argv, *home]) == ExitCode.BAD_INPUT
    assert "fewer than 8 periods" in capsys.readouterr().err
