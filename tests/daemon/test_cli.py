"""``stratcastd``'s command line: options of ``serve`` without the word, the demo's device."""

import contextlib
import json
from typing import ClassVar

import pandas as pd
import pytest

from stratcast.daemon import cli, embedded
from stratcast.shared.errors import ExitCode
from stratcast.shared.protocol import ShowRun, Submit


@pytest.fixture
def served(monkeypatch):
    """The arguments ``serve`` is called with (nothing is served)."""
    calls = []

    def serve(args):
        calls.append(args)
        return ExitCode.OK

    monkeypatch.setattr(cli, "serve", serve)
    return calls


def test_the_options_of_serve_without_the_word_serve_start_the_daemon(served):
    assert cli.main(["--home", "/srv/sc", "--cpu-slots", "3"]) == ExitCode.OK
    [args] = served
    assert (args.command, args.home, args.cpu_slots) == ("serve", "/srv/sc", 3)


def test_stratcastd_alone_serves_with_the_defaults(served):
    assert cli.main([]) == ExitCode.OK
    [args] = served
    assert (args.home, args.cpu_slots, args.detach) == (None, 1, False)


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_and_version_do_not_serve(argv, served, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0 and not served and "stratcastd" in capsys.readouterr().out


def test_an_unknown_option_is_a_usage_error_that_serves_nothing(served, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--hoem", "x"])
    assert exit_.value.code == ExitCode.USAGE and not served
    assert "--hoem" in capsys.readouterr().err


def test_the_demo_through_a_daemon_refuses_a_gpu_device_naming_no_daemon(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--out", str(tmp_path / "demo"), "--device", "cuda:0"])
    assert exit_.value.code == ExitCode.USAGE
    assert "--no-daemon" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


class FinishingClient:
    """A demo daemon whose run has already succeeded, with its outputs in ``run_dir``."""

    run_dir = None
    hello: ClassVar[dict[str, str]] = {"daemon": "0.0"}

    def __init__(self, home, timeout_s=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def subscribe(self, idle_timeout_s=None):
        return contextlib.nullcontext()

    def call(self, request):
        if isinstance(request, Submit):
            return {"run": {"id": 1}}
        assert isinstance(request, ShowRun)
        return {"run": {"id": 1, "state": "succeeded", "device": "cpu", "out": str(self.run_dir)}}


def test_the_demo_through_its_daemon_prints_only_json_on_stdout_with_json(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run" / "out"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({"mase": 0.9}))
    pd.DataFrame({"No.": [7], "score": [1.5]}).to_parquet(out / "summary.parquet")
    FinishingClient.run_dir = tmp_path / "run"
    monkeypatch.setattr(embedded, "answers", lambda home: True)
    monkeypatch.setattr(embedded, "Client", FinishingClient)
    argv = ["demo", "--out", str(tmp_path / "demo"), "--strategies", "3", "--weeks", "40", "--json"]
    assert cli.main(argv) == ExitCode.OK
    said = capsys.readouterr()
    result = json.loads(said.out)
    assert result == {"out": str(out), "device": "cpu", "metrics": {"mase": 0.9}, "top": [{"No.": 7, "score": 1.5}]}
    assert "run 1 queued" in said.err
