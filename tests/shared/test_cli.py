import argparse
import importlib.metadata
import shutil
import subprocess

import pytest

from stratcast.daemon.cli import build_parser as daemon_parser
from stratcast.shared.cli import completion_script, version
from stratcast.tui.command_line import build_parser as client_parser

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def complete(parser: argparse.ArgumentParser, *words: str) -> list[str]:
    """What the generated bash completion offers for the command line ``words`` (the last one being typed)."""
    prog = parser.prog
    script = completion_script(parser, "bash")
    line = " ".join(f"'{w}'" for w in (prog, *words))
    probe = f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words)}; _{prog}; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()


@needs_bash
def test_the_bash_completion_of_stratcast_offers_subcommands_nested_commands_and_options():
    parser = client_parser()
    assert {"submit", "backtest", "show", "schedule", "completion"} <= set(complete(parser, ""))
    assert complete(parser, "sub") == ["submit"]
    assert {"--data", "--model", "--device", "--json"} <= set(complete(parser, "submit", "--"))
    assert set(complete(parser, "schedule", "")) == {"add", "ls", "rm", "pause", "resume", "run-now"}
    assert {"--cron", "--every"} <= set(complete(parser, "schedule", "add", "--"))


@needs_bash
def test_the_bash_completion_offers_an_options_choices_and_nothing_of_its_own_for_a_free_value():
    parser = daemon_parser()
    assert complete(parser, "run", "--mode", "") == ["batch", "per-strategy"]
    assert complete(parser, "completion", "") == ["bash", "zsh"]
    assert complete(parser, "run", "--data", "") == []  # the shell's own file completion takes over
    assert {"run", "demo", "models", "serve"} <= set(complete(parser, ""))
    assert {"--resume", "--out"} <= set(complete(parser, "run", "--"))


def test_the_zsh_completion_is_the_bash_one_through_bashcompinit():
    script = completion_script(client_parser(), "zsh")
    assert "bashcompinit" in script and "complete -o default -F _stratcast stratcast" in script


@pytest.mark.parametrize("main", ["stratcast.daemon.cli", "stratcast.tui.cli"])
def test_both_commands_print_the_package_version(main, capsys):
    module = __import__(main, fromlist=["main"])
    with pytest.raises(SystemExit) as exit_:
        module.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.split()[-1] == importlib.metadata.version("stratcast") == version()


def test_top_picks_reads_counts_and_shares_and_refuses_anything_else():
    from stratcast.shared.cli import top_picks

    assert top_picks("10,1%, 0.5%") == ["10", "1%", "0.5%"]
    for bad in ("0", "x", "1.5", "101%", "-3", "%", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            top_picks(bad)


def test_pick_sizes_resolve_shares_and_refuse_a_count_over_the_strategies():
    from stratcast.shared.protocol import BacktestOptions

    options = BacktestOptions(top=["10", "1%", "0.01%"])
    assert options.pick_sizes(6000) == {"10": 10, "1%": 60, "0.01%": 1}
    assert options.hold_periods == options.every
    with pytest.raises(ValueError, match="only 5 strategies"):
        options.pick_sizes(5)
    with pytest.raises(ValueError, match="above 0%"):
        BacktestOptions(top=["0%"]).pick_sizes(100)


def test_levels_read_percentages_and_a_level_outside_0_to_100_is_a_usage_error_naming_it(capsys):
    from stratcast.shared.cli import interval_levels

    assert interval_levels("80, 95") == [80.0, 95.0]
    assert interval_levels("97.5") == [97.5]
    for bad in ("0", "100", "120", "x", "80,80", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            interval_levels(bad)
    with pytest.raises(SystemExit) as info:
        client_parser().parse_args(["submit", "--data", "d.parquet", "--model", "nhits", "--levels", "80,120"])
    assert info.value.code == 2
    assert "got 120" in capsys.readouterr().err


def test_levels_and_rank_by_reach_the_job():
    from stratcast.shared.jobargs import job_from_args

    args = client_parser().parse_args(
        ["submit", "--data", "d", "--model", "nhits", "--levels", "90", "--rank-by", "lo90"]
    )
    job = job_from_args(args)
    assert (job.levels, job.rank_by) == ([90.0], "lo90")
    assert job_from_args(client_parser().parse_args(["submit", "--data", "d", "--model", "nhits"])).levels == [80, 95]
