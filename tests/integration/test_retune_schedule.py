"""Schedules that re-tune, on a real daemon: each firing starts a study of its own, whose best is saved.

One daemon for the module; tiny mlp trials on a tiny panel (as ``test_study_daemon``), two trials per firing.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import msgspec
import pytest

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.shared.client import Client, RequestFailed
from stratcast.shared.errors import ExitCode
from stratcast.shared.protocol import (
    AddSchedule,
    ListSaved,
    ListSchedules,
    Placement,
    RunScheduleNow,
    ShowRun,
)
from stratcast.tui.cli import main
from tests.daemon.engine.small_jobs import MLP_SPACE as SPACE
from tests.integration.test_study_daemon import spec, wait_study

pytestmark = pytest.mark.slow

WAIT_S = 180.0


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "panel.parquet"
    make_strategy_panel(6, 40, seed=4).to_parquet(path, index=False)
    return str(path)


def wait_final(client: Client, study: int) -> dict[str, Any]:
    """The study's final run once it ended (the study finished first)."""
    deadline = time.monotonic() + WAIT_S
    shown = wait_study(client, study, ("finished", "failed"), timeout=WAIT_S)
    while time.monotonic() < deadline:
        final = shown["study"].get("final_run")
        if final is not None:
            run = client.call(ShowRun(run=final))["run"]
            if run["state"] in ("succeeded", "failed", "killed"):
                return dict(run)
        time.sleep(0.3)
        shown = wait_study(client, study, ("finished", "failed"))
    raise AssertionError(f"study {study} kept no best: {shown['study']}")


def test_a_retuning_schedule_fired_now_tunes_afresh_and_saves_its_best(client, panel):
    study = spec(panel, trials=2, save_as="weekly-tuned")
    added = client.call(AddSchedule(study=study, name="weekly retune", every_s=7 * 86400))["schedule"]
    assert added["study"]["save_as"] == "weekly-tuned" and added["job"] == msgspec.to_builtins(study.job)
    before = time.time()
    started = client.call(RunScheduleNow(schedule=added["id"]))["study"]
    stamp = re.fullmatch(r"weekly-retune-(\d{8}-\d{4})", started["name"])
    assert stamp is not None, started["name"]  # the schedule's name, made an Optuna name, and the firing's minute
    fired = dt.datetime.strptime(stamp.group(1), "%Y%m%d-%H%M").replace(tzinfo=dt.UTC).timestamp()
    assert before - 60 < fired <= time.time()
    assert started["spec"]["trials"] == 2 and started["state"] == "running"
    with pytest.raises(RequestFailed) as info:  # its study still runs: not a second one
        client.call(RunScheduleNow(schedule=added["id"]))
    assert info.value.code == "bad_state"
    assert f"previous study {started['id']} is still running" in info.value.message
    final = wait_final(client, started["id"])
    assert final["state"] == "succeeded"
    saved = {m["name"]: m for m in client.call(ListSaved())}
    assert saved["weekly-tuned"]["versions"] == [1]
    listed = {s["id"]: s for s in client.call(ListSchedules())["schedules"]}[added["id"]]
    assert listed["last_study_id"] == started["id"] and listed["last_run_id"] is None
    again = client.call(RunScheduleNow(schedule=added["id"]))["study"]  # ended: the next firing tunes afresh
    assert again["id"] != started["id"] and again["name"] != started["name"]  # never the first's trials
    assert re.fullmatch(r"weekly-retune-\d{8}-\d{4}(-2)?", again["name"])  # the same minute: -2
    assert wait_final(client, again["id"])["state"] == "succeeded"
    assert {m["name"]: m for m in client.call(ListSaved())}["weekly-tuned"]["versions"] == [1, 2]


def test_a_retuning_schedule_without_save_as_is_refused(client, panel):
    before = client.call(ListSchedules())["schedules"]
    for bad, field in ((spec(panel, trials=2), "--save-as"), (spec(panel, save_as="w", keep="none"), "--keep none")):
        with pytest.raises(RequestFailed) as info:
            client.call(AddSchedule(study=bad, every_s=3600))
        assert info.value.code == "invalid_spec" and field in info.value.message
    with pytest.raises(RequestFailed) as info:  # a job and a study: which one?
        client.call(AddSchedule(study=spec(panel, save_as="w"), job=spec(panel).job, every_s=3600))
    assert info.value.code == "invalid_spec" and "exactly one" in info.value.message
    with pytest.raises(RequestFailed) as info:
        client.call(AddSchedule(study=spec(panel, save_as="w"), every_s=3600, placement=Placement(priority=3)))
    assert info.value.code == "invalid_spec" and "study.placement" in info.value.message
    assert client.call(ListSchedules())["schedules"] == before  # nothing refused was stored


def test_the_command_line_adds_and_lists_a_retuning_schedule(daemon, client, panel, tmp_path, capsys):
    home = ["--home", str(daemon.home.state)]
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    job = ["--data", panel, "--horizon", "4", "--input-size", "8", "--holdout", "4", "--device", "cpu"]
    sets = ["--set", "max_steps=6", "--set", "batch_size=32", "--set", "val_check_steps=3"]
    argv = ["schedule", "add", "--cron", "0 6 * * 1", "--tune", *job, *sets, "--model", "mlp", "--trials", "2"]
    argv += ["--pruner", "none", "--space", str(space), "--study-timeout", "900", "--name", "cli-retune"]
    assert main([*argv, *home]) == ExitCode.BAD_INPUT  # no --save-as: the daemon says what to give
    assert "--save-as" in capsys.readouterr().err
    assert main([*argv, "--save-as", "cli-tuned", *home]) == ExitCode.OK
    assert "cli-retune (tune mlp x2 -> cli-tuned): cron 0 6 * * 1" in capsys.readouterr().out
    added = next(s for s in client.call(ListSchedules())["schedules"] if s["name"] == "cli-retune")
    assert added["study"]["space"] == SPACE and added["study"]["timeout_s"] == 900
    assert added["study"]["job"]["sets"][0] == "max_steps=6" and added["study"]["job"]["save_as"] is None
    assert main(["schedule", "ls", *home]) == ExitCode.OK
    assert "tune mlp x2 -> cli-tuned" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # study options without --tune are refused, not ignored
        main(["schedule", "add", "--every", "7d", *job, "--model", "mlp", "--trials", "3", *home])
    assert "--trials go with --tune" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["schedule", "add", "--every", "7d", "--tune", *job, "--saved", "w@champion", *home])
