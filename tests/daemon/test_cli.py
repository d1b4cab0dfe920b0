"""``stratcastd``'s command line: options of ``serve`` without the word, the demo's device."""

import pytest

from stratcast.daemon import cli
from stratcast.shared.errors import ExitCode


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
