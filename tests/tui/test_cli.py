import io
import json
from typing import Any

import msgspec
import pytest

from stratcast.shared.client import DaemonUnavailable, RequestFailed
from stratcast.shared.errors import ExitCode
from stratcast.shared.events import Event, HeartbeatSent, PlanChosen, ProgressReported, RunUpdated, ShutdownStarted
from stratcast.shared.protocol import (
    DEFAULT_MODEL,
    AddSchedule,
    CheckData,
    ExportResults,
    HoldRun,
    JobSpec,
    KillRun,
    ListRuns,
    ListSchedules,
    PauseQueue,
    Placement,
    ReadLogs,
    ReadResults,
    ReleaseRun,
    RemoveRun,
    RemoveSchedule,
    RestartRun,
    ResumeQueue,
    ResumeRun,
    RunInfo,
    RunScheduleNow,
    SetPriority,
    ShowRun,
    Shutdown,
    Status,
    StopRun,
    Submit,
    convert,
    to_builtins,
)
from stratcast.tui.cli import main
from stratcast.tui.command_line import build_parser, build_requests


def requests_for(*argv: str):
    return build_requests(build_parser().parse_args(argv))


def run_info(run_id, state="queued", **fields):
    info = RunInfo(
        id=run_id, name=f"r{run_id}", state=state, job=JobSpec(data="/d.parquet"), placement=Placement(), created=1.0
    )
    return to_builtins(info) | fields


def run_updated(seq, run_id, state, **fields):
    """The ``run`` event with :func:`run_info`'s record."""
    return Event(session="s", seq=seq, time=0.0, run=run_id, data=RunUpdated(run=run_record(run_id, state, **fields)))


def run_record(run_id, state, **fields):
    record: RunInfo = convert(run_info(run_id, state, **fields), RunInfo)
    return record


def heartbeat(seq):
    return Event(session="s", seq=seq, time=0.0, data=HeartbeatSent())


STATUS = {
    "daemon": "0.1.0",
    "session": "9f00",
    "pid": 4242,
    "uptime_s": 3725.0,
    "home": "/srv/stratcast",
    "queue_paused": False,
    "counts": {"running": 1, "queued": 2, "failed": 0},
    "devices": ["cuda:0"],
    "notices": [],
}


class FakeSource:
    def __init__(self, events: list[Event]):
        self.events = events

    def recv(self, timeout_s=None):
        if not self.events:
            raise DaemonUnavailable("ipc:///fake/events", "no more scripted events")
        return self.events.pop(0)

    def close(self):
        pass


class FakeClient:
    """Answers from ``results`` (request type -> result, a callable of the request, or a RequestFailed)."""

    def __init__(self, results: dict[str, Any], events: list[Event] | None = None):
        self.results = results
        self.events = events or []
        self.requests: list[Any] = []

    def call(self, request):
        self.requests.append(request)
        answer = self.results[type(request).__struct_config__.tag]
        answer = answer(request) if callable(answer) else answer
        if isinstance(answer, RequestFailed):
            raise answer
        return answer

    def subscribe(self, idle_timeout_s=3.0):
        return FakeSource(self.events)


# -- parsing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["ls"], [ListRuns()]),
        (["ls", "--state", "running", "queued", "--state", "held"], [ListRuns(states=["running", "queued", "held"])]),
        (["show", "7"], [ShowRun(run=7)]),
        (["stop", "1", "2"], [StopRun(run=1), StopRun(run=2)]),
        (["resume", "3"], [ResumeRun(run=3)]),
        (["hold", "3"], [HoldRun(run=3)]),
        (["release", "3"], [ReleaseRun(run=3)]),
        (["kill", "4", "5", "--yes"], [KillRun(run=4), KillRun(run=5)]),
        (["rm", "6"], [RemoveRun(run=6)]),
        (["restart", "8", "--from-scratch"], [RestartRun(run=8, from_scratch=True)]),
        (["restart", "8"], [RestartRun(run=8)]),
        (["priority", "9", "-3"], [SetPriority(run=9, priority=-3)]),
        (["logs", "1", "2", "--offset", "10"], [ReadLogs(run=1, offset=10), ReadLogs(run=2, offset=10)]),
        (["status"], [Status()]),
        ([], [Status()]),
        (["queue", "pause"], [PauseQueue()]),
        (["queue", "resume"], [ResumeQueue()]),
        (["shutdown"], [Shutdown()]),
        (["schedule", "ls"], [ListSchedules()]),
        (["schedule", "rm", "2"], [RemoveSchedule(schedule=2)]),
        (["schedule", "run-now", "2"], [RunScheduleNow(schedule=2)]),
        (["export", "7", "/srv/s.csv"], [ExportResults(run=7, path="/srv/s.csv")]),
        (
            ["export", "7", "/srv/f.out", "--what", "forecast", "--format", "csv"],
            [ExportResults(run=7, path="/srv/f.out", what="forecast", format="csv")],
        ),
    ],
)
def test_a_command_line_becomes_its_requests(argv, expected):
    assert requests_for(*argv) == expected


def test_submit_carries_every_job_and_placement_option_with_an_absolute_data_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (request,) = requests_for(
        *["submit", "--data", "panel.parquet", "--model", "nhits", "--mode", "per-strategy", "--horizon", "13"],
        *["--input-size", "26", "--holdout", "4", "--id-col", "No.", "--time-col", "week", "--target-col", "profit"],
        *["--fill-missing", "zero", "--set", "max_steps=50", "--set", "lr=0.01", "--name", "weekly"],
        *["--priority", "5", "--after", "3", "--after", "4", "--gpu", "1", "--memory-gib", "2.5", "--hold"],
    )
    job = JobSpec(
        data=str(tmp_path / "panel.parquet"),
        model="nhits",
        mode="per-strategy",
        horizon=13,
        input_size=26,
        holdout=4,
        id_col="No.",
        time_col="week",
        target_col="profit",
        fill_missing="zero",
        sets=["max_steps=50", "lr=0.01"],
    )
    place = Placement(name="weekly", priority=5, after=[3, 4], gpu=1, memory_gib=2.5, hold=True)
    assert request == Submit(job=job, placement=place)


def test_gpus_per_run_asks_for_a_data_parallel_run_over_that_many_devices():
    (request,) = requests_for("submit", "--data", "/d.parquet", "--model", "nhits", "--gpus-per-run", "4")
    assert request.placement.gpus == 4
    (request,) = requests_for("submit", "--data", "/d.parquet", "--model", "nhits")
    assert request.placement.gpus == 1


def test_after_takes_several_ids_repeated_or_comma_separated():
    (request,) = requests_for(
        "submit", "--data", "/d.csv", "--model", "m", "--after", "3,4", "--after", "5", "--after", "3"
    )
    assert isinstance(request, Submit)
    assert request.placement.after == [3, 4, 5]


def test_the_help_of_after_says_it_takes_several_ids(capsys):
    with pytest.raises(SystemExit):
        main(["submit", "--help"], client=FakeClient({}))
    assert "--after 3,4" in " ".join(capsys.readouterr().out.split())


def test_export_and_check_make_their_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (export,) = requests_for("export", "3", "out/top.csv")
    (check,) = requests_for("check", "--data", "panel.csv", "--model", "mlp", "--holdout", "4", "--set", "lr=0.1")
    assert export == ExportResults(run=3, path=str(tmp_path / "out" / "top.csv"))
    job = JobSpec(data=str(tmp_path / "panel.csv"), model="mlp", holdout=4, sets=["lr=0.1"])
    assert check == CheckData(job=job)


def test_check_needs_no_model_and_checks_for_the_demos():
    (check,) = requests_for("check", "--data", "/srv/panel.parquet")
    assert check.job.model == DEFAULT_MODEL
    with pytest.raises(SystemExit):
        requests_for("submit", "--data", "/srv/panel.parquet")  # a run needs its model named


def test_submit_and_check_carry_the_date_format_and_day_first_options():
    argv = ["--data", "/srv/export.csv", "--model", "mlp", "--date-format", "%d.%m.%Y", "--dayfirst"]
    (submit,) = requests_for("submit", *argv)
    (check,) = requests_for("check", *argv)
    job = JobSpec(data="/srv/export.csv", model="mlp", date_format="%d.%m.%Y", dayfirst=True)
    assert submit.job == job and check == CheckData(job=job)


@pytest.mark.parametrize(
    ("when", "cron", "every_s"),
    [
        (["--every", "30m"], None, 1800),
        (["--every", "6h"], None, 21600),
        (["--every", "7d"], None, 604800),
        (["--every", "1h30m"], None, 5400),
        (["--cron", "0 6 * * MON"], "0 6 * * MON", None),
    ],
)
def test_schedule_add_takes_a_cron_expression_or_an_interval(when, cron, every_s):
    argv = ["schedule", "add", *when, "--tz", "Europe/Zurich", "--data", "/d.csv", "--model", "dlinear", "--name", "n"]
    (request,) = requests_for(*argv)
    assert request == AddSchedule(
        job=JobSpec(data="/d.csv", model="dlinear"), name="n", cron=cron, every_s=every_s, timezone="Europe/Zurich"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["schedule", "add", "--every", "5x", "--data", "d", "--model", "m"],
        ["schedule", "add", "--every", "0m", "--data", "d", "--model", "m"],
        ["schedule", "add", "--data", "d", "--model", "m"],
        ["schedule", "add", "--every", "1h", "--cron", "0 * * * *", "--data", "d", "--model", "m"],
        ["schedule", "add", "--cron", "0 * * *", "--data", "d", "--model", "m"],
        ["submit", "--data", "d", "--model", "m", "--set", "novalue"],
        ["submit", "--data", "d", "--model", "m", "--memory-gib", "0"],
        ["submit", "--data", "d", "--model", "m", "--gpus-per-run", "0"],
        ["submit", "--data", "d", "--model", "m", "--gpus-per-run", "65"],
        ["submit", "--data", "d", "--model", "m", "--after", "3,x"],
        ["submit", "--data", "d", "--model", "m", "--after", "3,"],
        ["submit", "--model", "m"],
        ["check", "--data", "d", "--model", "m", "--priority", "3"],
        ["export", "1"],
        ["export", "1", "/x.csv", "--format", "xlsx"],
        ["stop"],
        ["ls", "--state", "sleeping"],
        ["priority", "1"],
        ["queue"],
        ["frobnicate"],
    ],
)
def test_bad_options_exit_with_code_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv, client=FakeClient({}))
    assert exit_.value.code == ExitCode.USAGE


def test_connection_options_work_before_and_after_the_subcommand():
    parser = build_parser()
    before = parser.parse_args(["--home", "/a", "--timeout", "3", "ls"])
    after = parser.parse_args(["ls", "--home", "/b", "--timeout", "4"])
    neither = parser.parse_args(["ls"])
    assert (before.home, before.timeout) == ("/a", 3.0)
    assert (after.home, after.timeout) == ("/b", 4.0)
    assert (neither.home, neither.timeout) == (None, 10.0)


# -- no daemon -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], ["status"], ["ls"], ["logs", "-f", "1"], ["watch"]])
def test_no_daemon_prints_how_to_start_one_and_exits_69(tmp_path, capsys, argv):
    code = main(["--home", str(tmp_path), *argv])
    assert code == ExitCode.UNAVAILABLE
    assert code == 69
    err = capsys.readouterr().err
    assert "no stratcast daemon answers" in err
    assert f"stratcastd serve --home {tmp_path}" in err
    assert "systemctl start stratcastd" in err


def test_the_home_comes_from_stratcast_home_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STRATCAST_HOME", str(tmp_path))
    assert main(["status"]) == ExitCode.UNAVAILABLE
    assert str(tmp_path / "sock" / "control") in capsys.readouterr().err


# -- output --------------------------------------------------------------------------------------------------


def test_json_prints_the_raw_result(capsys):
    result = {"runs": [run_info(1, "running"), run_info(2)]}
    client = FakeClient({"list_runs": result})
    assert main(["ls", "--json"], client=client) == ExitCode.OK
    assert json.loads(capsys.readouterr().out) == result


def test_json_of_a_several_id_command_is_a_list_of_results(capsys):
    client = FakeClient({"stop_run": lambda r: {"run": run_info(r.run, "stopped")}})
    assert main(["stop", "1", "2", "--json"], client=client) == ExitCode.OK
    assert [r["run"]["id"] for r in json.loads(capsys.readouterr().out)] == [1, 2]


def test_no_subcommand_prints_the_status(capsys):
    assert main([], client=FakeClient({"status": STATUS})) == ExitCode.OK
    out = capsys.readouterr().out
    assert "stratcastd 0.1.0 (pid 4242, up 1h 02m" in out
    assert "1 running, 2 queued" in out


def test_ls_prints_a_table_of_runs(capsys):
    runs = [run_info(12, "running", device="cuda:0", progress={"step": 40, "max_steps": 100}), run_info(11)]
    assert main(["ls"], client=FakeClient({"list_runs": {"runs": runs}})) == ExitCode.OK
    header, _rule, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == ["id", "name", "state", "model", "device", "step", "age", "reason"]
    assert first.split()[:6] == ["12", "r12", "running", "dlinear", "cuda:0", "40/100"]
    assert second.split()[:3] == ["11", "r11", "queued"]


def test_a_refused_request_exits_1_with_the_daemons_message_and_the_other_ids_go_on(capsys):
    def stop(request):
        if request.run == 1:
            return RequestFailed("bad_state", "run 1 has finished; nothing to stop")
        return {"run": run_info(request.run, "stopped")}

    client = FakeClient({"stop_run": stop})
    assert main(["stop", "1", "2"], client=client) == ExitCode.FAILED
    captured = capsys.readouterr()
    assert "run 1 has finished; nothing to stop" in captured.err
    assert "run 2 r2: stopped" in captured.out


def test_export_says_what_it_wrote_where(capsys):
    written = {"path": "/srv/top.csv", "rows": 1234, "format": "csv", "what": "summary"}
    assert main(["export", "7", "/srv/top.csv"], client=FakeClient({"export_results": written})) == ExitCode.OK
    assert capsys.readouterr().out == "wrote 1,234 summary rows to /srv/top.csv (csv)\n"


def test_check_prints_the_panel_and_its_notes(capsys):
    described = {
        "data": "/srv/panel.parquet",
        "columns": {"id": "No.", "time": "week", "target": "profit"},
        "strategies": 11,
        "dropped": 1,
        "periods": 40,
        "first": "2016-01-04",
        "last": "2016-10-03",
        "observations": 440,
        "zero_share": 0.25,
        "filled": 0,
        "required_periods": 17,
        "notes": ["skipped 1 series shorter than input_size + 1 + val_size + holdout = 17: 12"],
    }
    argv = ["check", "--data", "/srv/panel.parquet", "--model", "dlinear"]
    assert main(argv, client=FakeClient({"check_data": described})) == ExitCode.OK
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "data        /srv/panel.parquet (columns No., week, profit)"
    assert out[1] == "strategies  11 kept, 1 dropped as too short"
    assert out[2] == "periods     40, 2016-01-04 to 2016-10-03 (a strategy needs 17)"
    assert out[3] == "zeros       25.0% of 440 values"
    assert out[4].startswith("note        skipped 1 series")
    assert out[-1] == "submit would accept this job"


def test_check_of_a_bad_file_exits_3_with_the_daemons_message(capsys):
    refused = RequestFailed("invalid_spec", "/srv/bad.csv: column profit, row 2: 'lots' is not a number")
    argv = ["check", "--data", "/srv/bad.csv", "--model", "dlinear"]
    assert main(argv, client=FakeClient({"check_data": refused})) == ExitCode.BAD_INPUT
    assert "'lots' is not a number" in capsys.readouterr().err


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(("answer", "code", "sent"), [("n\n", ExitCode.FAILED, 0), ("y\n", ExitCode.OK, 2)])
def test_kill_asks_on_a_terminal(monkeypatch, capsys, answer, code, sent):
    monkeypatch.setattr("sys.stdin", FakeTerminal(answer))
    client = FakeClient({"kill_run": lambda r: {"run": run_info(r.run, "killed")}})
    assert main(["kill", "1", "2"], client=client) == code
    assert len(client.requests) == sent


def test_kill_off_a_terminal_does_not_ask(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    client = FakeClient({"kill_run": lambda r: {"run": run_info(r.run, "killed")}})
    assert main(["kill", "3"], client=client) == ExitCode.OK
    assert client.requests == [KillRun(run=3)]


def logs_answer(logs: dict[int, str]):
    def read(request):
        text = logs[request.run][request.offset : request.offset + 4]
        return {"text": text, "offset": request.offset + len(text), "size": len(logs[request.run])}

    return read


def test_logs_of_several_runs_prefix_each_line_with_its_run(capsys):
    client = FakeClient({"read_logs": logs_answer({1: "alpha\nbeta\n", 2: "gamma\ndelta"})})
    assert main(["logs", "1", "2"], client=client) == ExitCode.OK
    assert capsys.readouterr().out.splitlines() == ["1 | alpha", "1 | beta", "2 | gamma", "2 | delta"]


def test_logs_follow_reads_until_every_run_has_ended(capsys):
    states = {1: "running", 2: "running"}
    events = [heartbeat(i) for i in (1, 2)]
    for seq, run_id in ((3, 1), (4, 2)):
        events.append(run_updated(seq, run_id, "succeeded"))
    client = FakeClient(
        {
            "show_run": lambda r: {"run": run_info(r.run, states[r.run])},
            "read_logs": logs_answer({1: "one\n", 2: "two\n"}),
        },
        events,
    )
    assert main(["logs", "-f", "1", "2"], client=client) == ExitCode.OK
    assert sorted(capsys.readouterr().out.splitlines()) == ["1 | one", "2 | two"]


PLAN = {
    "micro_batch": 256,
    "batch_size": 1024,
    "budget": 60 * 2**30,
    "predicted_peak": 4 * 2**30,
    "measured_peak": 3 * 2**30,
    "probes": [{"micro_batch": 64, "peak": 2**30}],
    "oom_probes": [],
    "source": "probe",
    "levers": [],
    "device": "cuda:0",
    "seconds": 0.5,
}
PROGRESS = ProgressReported(
    step=5,
    max_steps=10,
    epoch=0.5,
    train_loss=0.25,
    val_loss=None,
    best_val_loss=None,
    windows_per_s=1000.0,
    eta_s=3.0,
    learning_rate=0.001,
    micro_batch=256,
)


def test_watch_prints_state_changes_progress_and_plans_until_the_daemon_shuts_down(capsys):
    snapshot = {"session": "s", "seq": 0, "runs": [run_info(1)], "schedules": []}
    events = [
        run_updated(1, 1, "running", device="cuda:0"),
        Event(session="s", seq=2, time=0.0, run=1, data=PROGRESS),
        heartbeat(3),
        Event(session="s", seq=4, time=0.0, run=1, data=msgspec.convert(PLAN, PlanChosen)),
        Event(session="s", seq=5, time=0.0, data=ShutdownStarted()),
    ]
    client = FakeClient({"snapshot": snapshot}, events)
    assert main(["watch"], client=client) == ExitCode.OK
    lines = [line.split("  ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        "watching stratcastd (session s): 1 queued",
        "run 1 r1: queued -> running on cuda:0",
        "run 1  step 5/10 epoch 0.50 loss 0.25 1,000 win/s eta 3s",
        "run 1 memory plan: micro-batch 256 of 1024 (probe) on cuda:0, peak 3.0 of 60.0 GiB",
        "daemon: shutting down",
    ]


# -- discoverability and plain messages ----------------------------------------------------------------------


def test_submit_takes_the_device_as_the_form_does():
    (request,) = requests_for("submit", "--data", "/d.parquet", "--model", "m", "--device", "cpu")
    assert request.job.device == "cpu"
    (request,) = requests_for("submit", "--data", "/d.parquet", "--model", "m")
    assert request.job.device == "auto"


def test_a_non_numeric_count_is_a_usage_error_in_plain_words(capsys):
    with pytest.raises(SystemExit):
        main(["submit", "--data", "d", "--model", "m", "--horizon", "abc"], client=FakeClient({}))
    err = capsys.readouterr().err
    assert "expected a positive whole number, got abc" in err and "_positive_int" not in err


def test_results_of_no_folder_is_bad_input_in_plain_words(tmp_path, capsys):
    assert main(["results", str(tmp_path / "nope")]) == ExitCode.BAD_INPUT
    assert f"{tmp_path / 'nope'}: no such folder" in capsys.readouterr().err


def test_results_of_an_unfinished_run_folder_says_so_in_plain_words_with_the_code_of_an_unfinished_run_id(
    tmp_path, capsys
):
    assert main(["results", str(tmp_path)]) == ExitCode.FAILED
    refused = FakeClient({"read_results": RequestFailed("bad_state", "run 4 has no results: it is held")})
    assert main(["results", "4"], client=refused) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert f"{tmp_path} has no results" in err and "metrics.json" in err
    assert "Errno" not in err and "No such file" not in err


FINISHED = {
    "metrics": {"best_strategy": {"strategy": 4, "forecast_mean": 2.5}},
    "top": [{"rank": 1, "strategy": 4, "forecast_mean": 2.5, "forecast_sum": 5.0, "trailing_mean": 1.0}],
    "horizon": 2,
}


def test_results_of_a_run_id_are_asked_of_the_daemon(capsys):
    client = FakeClient({"read_results": FINISHED})
    assert main(["results", "7", "--top", "3"], client=client) == ExitCode.OK
    assert client.requests == [ReadResults(run=7, top=3)]
    out = capsys.readouterr().out
    assert ["1", "4"] in [line.split()[:2] for line in out.splitlines()]
    assert "Best strategy: 4" in out
    assert main(["results", "7", "--json"], client=client) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["top"][0]["strategy"] == 4


def test_show_prints_the_runs_events_as_lines_in_words(capsys):
    events = [
        {"id": 1, "time": 1.0, "run": 7, "kind": "submitted", "data": {"schedule": None}},
        {"id": 2, "time": 2.0, "run": 7, "kind": "started", "data": {"device": "cuda:0", "pid": 4242}},
        {"id": 3, "time": 3.0, "run": 7, "kind": "checkpoint", "data": {"step": 150, "path": "/r/7/step.pt"}},
        {"id": 4, "time": 4.0, "run": 7, "kind": "ended", "data": {"state": "succeeded", "exit": "exit 0"}},
        {"id": 5, "time": 5.0, "run": 7, "kind": "new_kind", "data": {"top_value": 3, "what": ["a", "b"], "e": ""}},
        {"id": 6, "time": 6.0, "run": 7, "kind": "state", "data": {"from": "queued", "to": "running", "reason": ""}},
    ]
    shown = {"run": run_info(7, "succeeded"), "events": events, "checkpoints": [], "metrics": None}
    assert main(["show", "7"], client=FakeClient({"show_run": shown})) == ExitCode.OK
    out = capsys.readouterr().out
    assert "{" not in out and "[" not in out and "None" not in out
    lines = out.split("events:\n")[1].splitlines()
    assert lines[0].split()[2:] == ["submitted"]
    assert lines[1].split()[2:] == ["started", "on", "cuda:0,", "pid", "4242"]
    assert lines[2].split()[2:] == ["checkpoint", "at", "step", "150:", "/r/7/step.pt"]
    assert lines[3].split()[2:] == ["ended", "succeeded", "(exit", "0)"]
    assert lines[4].split()[2:] == ["new", "kind:", "top", "value", "3,", "what", "a,", "b"]
    assert lines[5].split()[2:] == ["state", "queued", "->", "running"]
    assert main(["show", "7", "--json"], client=FakeClient({"show_run": shown})) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["events"] == events


def test_stop_waits_until_a_running_run_has_checkpointed_and_stopped(capsys):
    stopped = run_info(1, "stopped", reason="stopped at step 157")
    events = [
        heartbeat(1),
        run_updated(2, 2, "succeeded"),
        Event(session="s", seq=3, time=0.0, run=1, data=RunUpdated(run=convert(stopped, RunInfo))),
    ]
    client = FakeClient(
        {
            "stop_run": lambda r: {"run": run_info(r.run, "running", reason="stopping: checkpointing")},
            "show_run": lambda r: {"run": run_info(r.run, "running")},
        },
        events=events,
    )
    assert main(["stop", "1"], client=client) == ExitCode.OK
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "run 1 r1: stopped (stopped at step 157)"
    assert not events  # it read up to the run's own change of state


def test_stop_no_wait_returns_once_the_stop_is_asked(capsys):
    client = FakeClient({"stop_run": lambda r: {"run": run_info(r.run, "running", reason="stopping")}})
    assert main(["stop", "1", "--no-wait"], client=client) == ExitCode.OK
    assert capsys.readouterr().out.strip() == "run 1 r1: running (stopping)"


@pytest.mark.parametrize(
    ("stopping", "said"),
    [
        ([], "stratcastd is shutting down"),
        ([3], "stratcastd is shutting down after checkpointing run 3 (the next start resumes them)"),
        ([3, 4], "stratcastd is shutting down after checkpointing runs 3, 4 (the next start resumes them)"),
    ],
)
def test_shutdown_says_which_runs_it_checkpoints_for_the_next_start(stopping, said, capsys):
    assert main(["shutdown"], client=FakeClient({"shutdown": {"stopping": stopping}})) == ExitCode.OK
    assert capsys.readouterr().out.strip() == said


def test_schedule_run_now_of_a_retuning_schedule_says_which_study_it_started(capsys):
    started = {"study": {"id": 6, "name": "weekly-retune-20261207-0600", "state": "running"}}
    assert main(["schedule", "run-now", "3"], client=FakeClient({"run_schedule_now": started})) == ExitCode.OK
    assert capsys.readouterr().out.strip() == "study 6 weekly-retune-20261207-0600: running"
