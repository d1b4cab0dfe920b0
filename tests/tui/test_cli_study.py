"""The study commands' options: declared once for ``stratcast tune`` and ``stratcastd tune``, and ``study retrain``."""

import pytest

from stratcast.daemon.cli import build_parser as daemon_parser
from stratcast.shared.protocol import (
    JobSpec,
    RetrainStudy,
    ShowStudy,
    StopStudy,
    StudyInfo,
    StudySpec,
    SubmitStudy,
    TrialInfo,
    to_builtins,
)
from stratcast.tui.cli import main
from stratcast.tui.command_line import build_parser
from stratcast.tui.render import RENDER
from tests.tui.test_cli import requests_for

STUDY = ["--trials", "7", "--objective", "holdout-rmse", "--sampler", "random", "--pruner", "none", "--seed", "3"]
STUDY += ["--study", "weekly-tune", "--keep", "holdout", "--save-as", "weekly", "--storage", "sqlite:///s.db"]


def test_both_tune_commands_take_the_same_study_options():
    job = ["--data", "/srv/panel.parquet", "--model", "mlp,nhits"]
    client = build_parser().parse_args(["tune", *job, *STUDY, "--timeout", "60"])
    foreground = daemon_parser().parse_args(["tune", *job, *STUDY, "--timeout", "60"])
    for name in ("trials", "objective", "sampler", "pruner", "seed", "study", "keep", "save_as", "storage"):
        assert getattr(client, name) == getattr(foreground, name), name
    assert client.study_timeout == foreground.timeout == 60.0  # the client's own --timeout is the reply's
    [request] = requests_for("tune", *job, *STUDY)
    assert isinstance(request, SubmitStudy)
    spec = request.spec
    assert (spec.keep, spec.save_as, spec.trials, spec.models, spec.name) == (
        "holdout",
        "weekly",
        7,
        ["mlp", "nhits"],
        "weekly-tune",
    )
    assert spec.job.save_as is None  # the trials save nothing: --save-as names the kept best
    [default] = requests_for("tune", *job)
    assert isinstance(default, SubmitStudy) and (default.spec.keep, default.spec.save_as) == ("all-data", None)


@pytest.mark.parametrize("program", [build_parser, daemon_parser])
@pytest.mark.parametrize("bad", [["--keep", "some"], ["--save-as", ".hidden"], ["--trials", "0"]])
def test_a_bad_study_option_is_a_usage_error(program, bad, capsys):
    with pytest.raises(SystemExit) as info:
        program().parse_args(["tune", "--data", "/srv/p.parquet", "--model", "mlp", *bad])
    assert info.value.code == 2 and bad[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["study", "4"], ShowStudy(study=4)),
        (["study", "stop", "4"], StopStudy(study=4)),
        (["study", "retrain", "4"], RetrainStudy(study=4)),
        (
            ["study", "retrain", "4", "--trial", "0", "--keep", "holdout", "--save-as", "w"],
            RetrainStudy(study=4, trial=0, keep="holdout", save_as="w"),
        ),
    ],
)
def test_study_actions_become_their_requests(argv, expected):
    assert requests_for(*argv) == [expected]


def test_retrain_options_go_with_retrain_only():
    with pytest.raises(ValueError, match="--trial go with `study retrain ID`"):
        requests_for("study", "stop", "4", "--trial", "1")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["study", "retrain", "4", "--keep", "none"])  # retrain keeps something


def test_a_study_shows_its_importances_most_important_first_and_its_final_run():
    spec = StudySpec(models=["mlp"], job=JobSpec(data="/d.parquet"))
    study = StudyInfo(id=3, name="s", state="finished", reason="", spec=spec, created=1.0, final_run=12)
    trial = TrialInfo(number=0, state="COMPLETE", params={"learning_rate": 0.01}, values=[0.5], run=11)
    shown = {
        "study": study,
        "trials": [trial],
        "best": [0],
        "importances": {"mlp.dropout": 0.25, "learning_rate": 0.75},
    }
    text = RENDER["study"](to_builtins(shown))
    assert "importances: learning_rate 0.75, mlp.dropout 0.25" in text
    assert "final run: 12 (study-3/best" in text
    none_yet = RENDER["study"](
        to_builtins({**shown, "importances": {}, "study": {**to_builtins(study), "final_run": None}})
    )
    assert "importances" not in none_yet and "final run" not in none_yet
    retrained = {"run": {"id": 12, "name": "study-3/best", "state": "queued", "reason": ""}}
    assert RENDER["study"](retrained) == "run 12 study-3/best: queued"


def test_a_retuning_schedule_takes_the_backtest_options_under_their_own_names(capsys):
    job = ["--data", "/srv/panel.parquet", "--model", "nhits", "--save-as", "weekly"]
    backtest = ["--backtest-cutoffs", "6", "--backtest-every", "2", "--backtest-hold", "3", "--backtest-top", "5"]
    argv = ["schedule", "add", "--every", "7d", "--hold", "--tune", *job, "--objective", "backtest-diff", *backtest]
    [request] = requests_for(*argv)
    spec = request.study
    assert spec is not None and request.every_s == 7 * 86400 and spec.placement.hold  # its own --every and --hold
    options = spec.job.backtest
    assert options is not None and (options.cutoffs, options.every, options.hold, options.top) == (6, 2, 3, ["5"])
    [plain] = requests_for("schedule", "add", "--every", "7d", "--tune", *job)  # a holdout objective: no backtest
    assert plain.study is not None and plain.study.job.backtest is None
    with pytest.raises(SystemExit):  # backtest options without --tune are refused, not ignored
        main(["schedule", "add", "--every", "7d", "--data", "/srv/p.parquet", "--model", "nhits", *backtest])
    assert (
        "--backtest-cutoffs, --backtest-every, --backtest-hold, --backtest-top go with --tune"
        in capsys.readouterr().err
    )
