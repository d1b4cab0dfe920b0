"""The saved-model commands of ``stratcast``: the requests they send, and what the client prints (a fake daemon).

``save``, ``saved ...``, ``forecast --saved``, ``submit --save-as`` and ``schedule add --saved``.
"""

import pytest

from stratcast.shared.client import RequestFailed
from stratcast.shared.errors import ExitCode
from stratcast.shared.protocol import (
    AddSchedule,
    ExportSaved,
    ImportSaved,
    JobSpec,
    ListSaved,
    RemoveSaved,
    SaveRun,
    SetAlias,
    ShowSaved,
    Submit,
    to_builtins,
)
from stratcast.tui.cli import main
from tests.tui.test_cli import FakeClient, requests_for, run_info


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["save", "7", "weekly"], [SaveRun(run=7, name="weekly")]),
        (["saved", "ls"], [ListSaved()]),
        (["saved", "show", "weekly@champion"], [ShowSaved(ref="weekly@champion")]),
        (["saved", "alias", "weekly:3", "champion"], [SetAlias(ref="weekly:3", alias="champion")]),
        (["saved", "alias", "weekly", "champion", "--remove"], [SetAlias(ref="weekly", alias="champion", remove=True)]),
        (["saved", "rm", "weekly:1", "--force"], [RemoveSaved(ref="weekly:1", force=True)]),
        (["saved", "export", "weekly", "/srv/w.tar"], [ExportSaved(ref="weekly", path="/srv/w.tar")]),
        (["saved", "import", "/srv/w.tar", "--name", "copy"], [ImportSaved(path="/srv/w.tar", name="copy")]),
        (
            ["forecast", "--saved", "weekly@champion", "--data", "/srv/new.parquet"],
            [Submit(job=JobSpec(data="/srv/new.parquet", saved="weekly@champion"))],
        ),
    ],
)
def test_a_saved_model_command_line_becomes_its_request(argv, expected):
    assert requests_for(*argv) == expected


def test_submit_save_as_and_schedule_saved_carry_the_names(tmp_path):
    (submit,) = requests_for("submit", "--data", "/d.parquet", "--model", "nhits", "--save-as", "weekly")
    assert (submit.job.model, submit.job.save_as, submit.job.saved) == ("nhits", "weekly", None)
    (add,) = requests_for("schedule", "add", "--every", "7d", "--data", "/d.parquet", "--saved", "weekly@champion")
    assert isinstance(add, AddSchedule)
    assert add.job is not None
    assert (add.job.saved, add.job.data, add.every_s) == ("weekly@champion", "/d.parquet", 7 * 86400)


@pytest.mark.parametrize(
    "argv",
    [
        ["schedule", "add", "--every", "7d", "--data", "/d"],  # neither --model nor --saved
        ["schedule", "add", "--every", "7d", "--data", "/d", "--model", "nhits", "--saved", "w"],  # both
        ["save", "7", "-bad"],
        ["saved", "show", "w@"],
        ["saved", "show", "w:0"],
        ["forecast", "--saved", "w"],  # no --data
        ["submit", "--data", "/d", "--model", "m", "--save-as", "a/b"],
    ],
)
def test_bad_saved_model_options_exit_with_code_2(argv):
    with pytest.raises(SystemExit) as exit_:
        main(argv, client=FakeClient({}))
    assert exit_.value.code == ExitCode.USAGE


def test_saved_ls_show_and_refusals_print_for_people(capsys):
    listed = [{"name": "weekly", "versions": [1, 2], "latest": 2, "aliases": {"champion": 1}}]
    assert main(["saved", "ls"], client=FakeClient({"list_saved": listed})) == ExitCode.OK
    out = capsys.readouterr().out
    assert "weekly" in out and "1,2" in out and "champion=1" in out
    refused = RequestFailed("bad_saved_model", "no saved model 'nope' in /h/models (saved models: weekly)")
    assert main(["saved", "show", "nope"], client=FakeClient({"show_saved": refused})) == ExitCode.FAILED
    assert "no saved model 'nope'" in capsys.readouterr().err


def test_forecast_without_wait_queues_the_job_and_says_how_to_read_it(capsys):
    client = FakeClient({"submit": {"run": run_info(4)}})
    assert main(["forecast", "--saved", "weekly@champion", "--data", "/d"], client=client) == ExitCode.OK
    out = capsys.readouterr().out
    assert "run 4 r4: queued" in out and "stratcast results 4" in out


def test_ls_shows_a_scoring_jobs_saved_model_in_the_model_column(capsys):
    scoring = run_info(5, "succeeded", job=to_builtins(JobSpec(data="/d", saved="weekly@champion")))
    runs = {"runs": [run_info(4, "running"), scoring]}
    assert main(["ls"], client=FakeClient({"list_runs": runs})) == ExitCode.OK
    lines = capsys.readouterr().out.splitlines()
    assert "saved:weekly@champion" in lines[-1] and "dlinear" in lines[-2]
