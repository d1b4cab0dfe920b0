"""One job definition: every command that takes a job has the same options and builds the same run from them."""

import argparse
import dataclasses
from typing import ClassVar

import pytest

from stratcast.daemon import cli as stratcastd
from stratcast.daemon import embedded
from stratcast.daemon.engine.spec.runspec import spec_from_job
from stratcast.shared.client import RequestFailed
from stratcast.shared.protocol import JobSpec, Submit
from stratcast.tui.command_line import build_parser as stratcast_parser
from stratcast.tui.command_line import build_requests

JOB_COMMANDS = [
    (stratcastd.build_parser, ["run"]),
    (stratcastd.build_parser, ["demo"]),
    (stratcast_parser, ["submit"]),
    (stratcast_parser, ["backtest"]),
    (stratcast_parser, ["check"]),
    (stratcast_parser, ["schedule", "add"]),
]
OWN_FIELDS = ("data", "model", "sets", "backtest", "saved", "save_as", "report_cutoffs")
SHARED_FIELDS = {f for f in JobSpec.__struct_fields__ if f not in OWN_FIELDS} | {"set"}
"""The job options every command has with one meaning (``--data`` and ``--model`` vary: the demo makes its data;
the backtest's own options are only on the backtest commands, ``--saved`` and ``--save-as`` only on commands that
queue work in a daemon; ``report_cutoffs`` is set by studies, on no command)."""


def subcommand(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    for word in words:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


def job_options(parser: argparse.ArgumentParser) -> dict[str, object]:
    """Each job option's strings with its default and type."""
    return {", ".join(a.option_strings): (a.default, a.type) for a in parser._actions if a.dest in SHARED_FIELDS}


@pytest.mark.parametrize(("build", "words"), JOB_COMMANDS[1:], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_command_that_takes_a_job_has_the_options_of_run_with_their_defaults(build, words):
    run = job_options(subcommand(stratcastd.build_parser(), ["run"]))
    assert len(run) == len(SHARED_FIELDS)
    assert job_options(subcommand(build(), words)) == run


@pytest.mark.parametrize(("build", "words"), JOB_COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_command_that_takes_a_job_has_a_model_option(build, words):
    assert "--model" in subcommand(build(), words)._option_string_actions


OPTIONS = [
    *["--horizon", "6", "--input-size", "12", "--holdout", "6", "--mode", "per-strategy", "--device", "cpu"],
    *["--fill-missing", "zero", "--id-col", "No.", "--time-col", "week", "--target-col", "profit", "--dayfirst"],
    *["--set", "max_steps=3", "--set", "moving_avg=5"],
]


def test_a_foreground_run_gets_the_spec_a_daemon_run_of_the_same_options_gets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = ["--data", "panel.parquet", "--model", "dlinear", *OPTIONS]
    foreground = stratcastd.make_spec(stratcastd.build_parser().parse_args(["run", *job, "--out", "o"]))
    [submit] = build_requests(stratcast_parser().parse_args(["submit", *job]))
    assert isinstance(submit, Submit)
    daemon = spec_from_job(submit.job, out="o", device="cpu")  # as the worker on the CPU builds it
    assert foreground == daemon


class RecordingClient:
    """A demo daemon that records the job submitted to it, then refuses it."""

    jobs: ClassVar[list[JobSpec]] = []

    def __init__(self, home, timeout_s=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def call(self, request):
        assert isinstance(request, Submit)
        self.jobs.append(request.job)
        raise RequestFailed("invalid_spec", "recorded")


@pytest.fixture
def demo_daemon(monkeypatch):
    monkeypatch.setattr(embedded, "answers", lambda home: True)  # a daemon "serves" the demo's home: none started
    monkeypatch.setattr(embedded, "Client", RecordingClient)
    RecordingClient.jobs = []
    return RecordingClient.jobs


def demo_argv(out, *options):
    return ["demo", "--out", str(out), "--strategies", "3", "--weeks", "40", "--no-tui", *options]


def test_the_demo_submits_every_job_option_it_accepts(tmp_path, demo_daemon):
    stratcastd.main(demo_argv(tmp_path / "demo", "--model", "dlinear", *OPTIONS, "--date-format", "%Y-%m-%d"))
    [job] = demo_daemon
    given = (job.device, job.fill_missing, job.mode, job.id_col, job.time_col, job.target_col, job.dayfirst)
    assert given == ("cpu", "zero", "per-strategy", "No.", "week", "profit", True)
    assert (job.horizon, job.input_size, job.holdout, job.date_format) == (6, 12, 6, "%Y-%m-%d")
    assert job.sets[-2:] == ["max_steps=3", "moving_avg=5"]


def test_the_demo_gets_the_same_spec_in_this_process_as_through_its_daemon(tmp_path, demo_daemon):
    args = stratcastd.build_parser().parse_args(
        demo_argv(tmp_path / "demo", "--model", "dlinear", *OPTIONS, "--no-daemon")
    )
    foreground = stratcastd.make_spec(args)
    stratcastd.main(demo_argv(tmp_path / "demo", "--model", "dlinear", *OPTIONS))
    [job] = demo_daemon
    assert foreground == dataclasses.replace(spec_from_job(job, out="-", device="cpu"), out=foreground.out)


def test_the_demo_defaults_hold_through_the_daemon_and_in_this_process(tmp_path, demo_daemon):
    args = stratcastd.build_parser().parse_args(demo_argv(tmp_path / "demo", "--no-daemon"))
    foreground = stratcastd.make_spec(args)
    stratcastd.main(demo_argv(tmp_path / "demo"))
    [job] = demo_daemon
    daemon = spec_from_job(job, out=foreground.out, device=foreground.device)
    assert foreground == daemon
    assert (daemon.train.horizon, daemon.train.input_size, daemon.holdout, daemon.train.max_steps) == (26, 52, 26, 600)
    assert daemon.model_params == {"mlp_units": (128, 128)}
