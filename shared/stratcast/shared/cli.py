"""What ``stratcastd`` and ``stratcast`` share on the command line: the version, ``--set`` items, completion.

Shell completion is generated from the argparse parser itself, so it never drifts from the options: a bash
function that finds the (nested) subcommand typed so far and offers its subcommands and options, or an option's
choices after it, leaving an option's free value (a path, a number) to the shell's own file completion. zsh runs
the same function through ``bashcompinit``. No dependency: argcomplete would re-run the Python program (and for
``stratcastd`` import torch) on every TAB, where a static script answers at once.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import shlex
from collections.abc import Callable, Iterator

from stratcast.shared.protocol import MAX_MEMBERS, SAVED_NAME

SHELLS = ("bash", "zsh")


def version() -> str:
    """The installed package's version (``unknown`` when run from a tree that is not installed)."""
    try:
        return importlib.metadata.version("stratcast")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: the program's name and the package's version."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")


def add_completion_command(sub: argparse._SubParsersAction[argparse.ArgumentParser], prog: str) -> None:
    """``completion bash|zsh``: print the shell completion script (its key: ``completion``)."""
    setup = f'eval "$({prog} completion bash)" in ~/.bashrc (zsh: ~/.zshrc with zsh)'
    p = sub.add_parser("completion", help=f"print a shell completion script: {setup}", description=setup)
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(key="completion")


def key_value(text: str) -> str:
    """A ``--set KEY=VALUE`` item, checked for its shape (a usage error otherwise)."""
    if "=" not in text or text.startswith("="):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text}")
    return text


def ensemble_option(text: str) -> int | list[str]:
    """``--ensemble 3`` (seeds of ``--model``: 2 to :data:`MAX_MEMBERS`) or ``--ensemble nhits,dlinear`` (models).

    The model names are checked by the daemon, against its catalog.
    """
    text = text.strip()
    if text.isdigit():
        count = int(text)
        if not 2 <= count <= MAX_MEMBERS:
            raise argparse.ArgumentTypeError(
                f"{count} members: an ensemble needs 2 to {MAX_MEMBERS} (give a count such as 3, or model names)"
            )
        return count
    names = [part.strip().lower() for part in text.split(",")]
    if any(not name for name in names) or len(names) < 2:
        raise argparse.ArgumentTypeError(
            f"expected a count of seeds (such as 3) or 2 or more model names separated by commas, got {text!r}"
        )
    if len(names) > MAX_MEMBERS:
        raise argparse.ArgumentTypeError(f"{len(names)} members: an ensemble has at most {MAX_MEMBERS}")
    return names


def saved_name(text: str) -> str:
    """A saved model's or alias's name."""
    if not SAVED_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid name: use letters, digits, '-', '_' and '.' (at most 100, not starting with "
            "'.' or '-')"
        )
    return text


def whole_number(text: str) -> int:
    """An integer option (argparse alone would say "invalid int value: 'x'")."""
    return _int(text, "a whole number", lambda _: True)


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    return _int(text, "a positive whole number", lambda value: value >= 1)


def non_negative_int(text: str) -> int:
    """A whole number of at least 0."""
    return _int(text, "0 or more", lambda value: value >= 0)


def _int(text: str, what: str, allowed: Callable[[int], bool]) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not allowed(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number of at least 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {text}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {text}")
    return value


def top_picks(text: str) -> list[str]:
    """``--top 10,1%``: pick sizes, each a count of at least 1 or a share above 0% and at most 100%."""
    picks = [part.strip() for part in text.split(",") if part.strip()]
    for pick in picks:
        if not _is_pick(pick):
            raise argparse.ArgumentTypeError(
                f"expected counts such as 10 or shares such as 1%, separated by commas, got {pick!r}"
            )
    if not picks:
        raise argparse.ArgumentTypeError("expected at least one pick size, such as 10 or 1%")
    return picks


def _is_pick(pick: str) -> bool:
    if pick.endswith("%"):
        try:
            share = float(pick[:-1])
        except ValueError:
            return False
        return 0 < share <= 100 and pick[:-1].replace(".", "", 1).isdigit()
    return pick.isdigit() and int(pick) >= 1


def interval_levels(text: str) -> list[float]:
    """``--levels 80,95``: nominal coverages in percent, each strictly between 0 and 100, none repeated."""
    levels = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not 0 < value < 100:
            raise argparse.ArgumentTypeError(f"expected levels in percent between 0 and 100 such as 80,95, got {part}")
        if value in levels:
            raise argparse.ArgumentTypeError(f"level {part} is given twice")
        levels.append(value)
    if not levels:
        raise argparse.ArgumentTypeError("expected at least one level, such as 80,95")
    return levels


def positive_float(text: str) -> float:
    """A finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``parser``'s program for ``shell`` (bash or zsh)."""
    cases: dict[str, list[str]] = {"words": [], "options": [], "values": []}
    for path, command in _commands(parser, ""):
        cases["words"].append(_case(path, _words(command)))
        cases["options"].append(_case(path, [o for a in command._actions for o in a.option_strings]))
        for action in command._actions:
            if action.option_strings and action.nargs != 0:
                choices = [str(c) for c in action.choices or ()]
                cases["values"] += [_case(f"{path} {option}".strip(), choices) for option in action.option_strings]
    body = {kind: "\n".join(lines) for kind, lines in cases.items()}
    script = _BASH.format(name="_" + parser.prog.replace("-", "_"), prog=parser.prog, **body)
    return script if shell == "bash" else _ZSH_PREAMBLE + script


def _commands(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command as (the words that name it, its parser), the program itself first as ``""``."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{path} {name}".strip())


def _words(parser: argparse.ArgumentParser) -> list[str]:
    """A command's subcommands and the choices of its positional arguments."""
    return [str(c) for a in parser._actions if not a.option_strings for c in a.choices or ()]


def _case(key: str, words: list[str]) -> str:
    quoted = " ".join(map(shlex.quote, words))
    return f"        {shlex.quote(key)}) printf '%s\\n' {quoted} ;;"


_ZSH_PREAMBLE = """\
(( ${+_comps} )) || { autoload -U +X compinit && compinit }
autoload -U +X bashcompinit && bashcompinit
"""

# Words are walked with a counter, not indexed, so the function runs alike in bash and in zsh (1-based arrays).
_BASH = """\
{name}_words() {{
    case "$1" in
{words}
        *) return 1 ;;
    esac
}}
{name}_options() {{
    case "$1" in
{options}
        *) return 1 ;;
    esac
}}
{name}_values() {{
    case "$1" in
{values}
        *) return 1 ;;
    esac
}}
{name}() {{
    local cmd="" cur="" prev="" word values i=0
    for word in "${{COMP_WORDS[@]}}"; do
        if (( i == COMP_CWORD )); then
            cur=$word
        elif (( i > 0 && i < COMP_CWORD )); then
            if [[ $word != -* ]] && {name}_options "${{cmd:+$cmd }}$word" >/dev/null; then
                cmd="${{cmd:+$cmd }}$word"
            fi
            prev=$word
        fi
        i=$((i + 1))
    done
    if values=$({name}_values "${{cmd:+$cmd }}$prev"); then
        COMPREPLY=($(compgen -W "$values" -- "$cur"))
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$({name}_options "$cmd")" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$({name}_words "$cmd")" -- "$cur"))
    fi
}}
complete -o default -F {name} {prog}
"""
