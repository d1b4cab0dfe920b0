"""The exit codes of ``stratcastd`` and ``stratcast``: one table in the README, the same code for the same cause."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from stratcast.shared.client import RequestFailed
from stratcast.shared.errors import ExitCode
from stratcast.tui.cli import main as stratcast

README = Path(__file__).parents[1] / "README.md"


def documented_codes() -> dict[int, str]:
    """The exit-code table of the README: code -> its row."""
    rows = re.findall(r"^\| (\d+) \|(.*)$", README.read_text(), flags=re.MULTILINE)
    return {int(code): rest for code, rest in rows}


def stratcastd(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "stratcast.daemon.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


class Refusing:
    """A daemon client that refuses every request with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        self.error = RequestFailed(code, message)

    def call(self, request):
        raise self.error

    def subscribe(self, idle_timeout_s=3.0):
        raise AssertionError("no command here subscribes")


def test_the_readme_table_lists_every_exit_code_by_name():
    table = documented_codes()
    assert set(table) == {int(code) for code in ExitCode}
    for code in ExitCode:
        assert code.name in table[code], f"the row of {int(code)} does not name {code.name}"


def test_a_usage_error_exits_2_from_both_commands(capsys):
    assert stratcastd("run", "--data", "d", "--model", "m", "--out", "o", "--set", "max_steps").returncode == 2
    with pytest.raises(SystemExit) as exit_:
        stratcast(["submit", "--data", "d", "--model", "m", "--set", "max_steps"], client=Refusing("x", "x"))
    assert exit_.value.code == ExitCode.USAGE
    assert int(ExitCode.USAGE) == 2


def test_bad_input_exits_3_from_both_commands_in_plain_words(tmp_path, capsys):
    proc = stratcastd("run", "--data", "d.parquet", "--model", "dlinear", "--out", str(tmp_path / "o"))
    assert proc.returncode == ExitCode.BAD_INPUT
    assert int(ExitCode.BAD_INPUT) == 3
    refused = Refusing("invalid_spec", "--set max_steps=abc: expected a whole number, got abc")
    argv = ["--data", "d.parquet", "--model", "dlinear", "--set", "max_steps=abc"]
    assert stratcast(["submit", *argv], client=refused) == ExitCode.BAD_INPUT
    assert stratcast(["check", *argv], client=refused) == ExitCode.BAD_INPUT
    assert "expected a whole number, got abc" in capsys.readouterr().err


def test_a_refusal_other_than_bad_input_exits_1(capsys):
    assert stratcast(["show", "9"], client=Refusing("not_found", "no run 9")) == ExitCode.FAILED


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "--data", "d", "--model", "m", "--priority", "high"],
        ["priority", "3", "x"],
        ["results", "7", "--top", "ten"],
    ],
)
def test_a_number_option_given_words_is_a_usage_error_in_plain_words(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        stratcast(argv, client=Refusing("x", "x"))
    assert exit_.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "expected a" in err and "invalid int value" not in err


def test_the_daemon_commands_number_options_given_words_are_usage_errors_in_plain_words():
    for args in (("run", "--horizon", "abc"), ("demo", "--weeks", "many"), ("serve", "--cpu-slots", "two")):
        proc = stratcastd(*args)
        assert proc.returncode == ExitCode.USAGE, args
        assert "expected a" in proc.stderr and "invalid int value" not in proc.stderr, proc.stderr
