"""Checks of what people type, shared by the command line and the TUI's new-run form.

``stratcast submit``, ``stratcast schedule add`` and the form refuse the same things with the same words. Each
function returns the parsed value or raises :class:`ValueError` whose message is meant for people.
"""

from __future__ import annotations

import argparse
import math
import re
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

from stratcast.tui.render import DURATION_UNITS

CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("weekday", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
"""The five crontab fields: name, lowest and highest number, and the names allowed instead of numbers."""
N = TypeVar("N", int, float)
T = TypeVar("T")
_CRON_ITEM = re.compile(r"(?P<base>\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>\d+))?")


def duration_seconds(text: str) -> int:
    """``30m``, ``6h``, ``7d``, ``1h30m``, ``90s``, ``2w`` as seconds."""
    parts = re.findall(r"(\d+)([smhdw])", text)
    seconds = sum(int(n) * DURATION_UNITS[unit] for n, unit in parts)
    if not parts or "".join(n + u for n, u in parts) != text or seconds == 0:
        raise ValueError(f"expected a duration such as 30m, 6h, 7d or 1h30m, got {text!r}")
    return seconds


def cron_expression(text: str) -> str:
    """A five-field crontab expression (numbers, ``*``, ranges, steps, lists, month and weekday names), normalized.

    The daemon reads weekdays as crontab does (0 and 7 are Sunday).
    """
    fields = text.split()
    if not fields:
        raise ValueError("give five crontab fields: minute hour day month weekday, such as 0 6 * * 1")
    if len(fields) != 5:
        raise ValueError(f"expected five crontab fields (minute hour day month weekday), got {text!r}")
    for field, (name, lo, hi, names) in zip(fields, CRON_FIELDS, strict=True):
        for item in field.lower().split(","):
            problem = _cron_item_problem(item, lo, hi, names)
            if problem:
                raise ValueError(f"cron {name} field {field!r}: {problem}")
    return " ".join(fields)


def _cron_item_problem(item: str, lo: int, hi: int, names: tuple[str, ...]) -> str | None:
    match = _CRON_ITEM.fullmatch(item)
    if match is None:
        return f"{item!r} is not *, a number, a range a-b or a step */n"
    if match["step"] is not None and int(match["step"]) < 1:
        return "a step must be at least 1"
    if match["base"] == "*":
        return None
    ends = match["base"].split("-")
    values = []
    for end in ends:
        if end.isdigit():
            values.append(int(end))
        elif end in names:
            values.append(names.index(end) + lo)
        else:
            allowed = f"a number or a name ({', '.join(names)})" if names else "a number"
            return f"{end!r} is not {allowed}"
        if not lo <= values[-1] <= hi:
            return f"{end} is not between {lo} and {hi}"
    if len(ends) == 2 and (values[0] > values[1] or ends[0].isdigit() != ends[1].isdigit()):
        return f"{item!r} is not a range from low to high in one spelling"
    return None


def time_zone(text: str) -> str:
    """An IANA time zone name; unchecked where this machine has no time zone database (the daemon checks)."""
    name = text.strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        if zoneinfo.available_timezones():
            raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/London or UTC") from None
    return name


def absolute_path(text: str) -> str:
    """A path on the daemon's machine, which must be absolute: the daemon runs in another folder."""
    path = text.strip()
    if not path:
        raise ValueError("give the data file's absolute path on the daemon's machine")
    if not path.startswith("/"):
        raise ValueError(f"{path!r} is not absolute: give the full path on the daemon's machine")
    return path


def whole_number(text: str, *, lo: float | None = None, hi: float | None = None) -> int:
    """An integer, within ``lo`` and ``hi`` when given."""
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text.strip()!r}") from None
    return _within(value, lo, hi)


def number(text: str, *, lo: float | None = None, hi: float | None = None) -> float:
    """A finite number, within ``lo`` and ``hi`` when given."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {text.strip()!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {text.strip()!r}")
    return _within(value, lo, hi)


def _within(value: N, lo: float | None, hi: float | None) -> N:
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise ValueError(f"expected {lo:g} to {hi:g}, got {value:g}")
    if lo is not None and value < lo:
        raise ValueError(f"expected {lo:g} or more, got {value:g}")
    if hi is not None and value > hi:
        raise ValueError(f"expected at most {hi:g}, got {value:g}")
    return value


def space_file(text: str) -> tuple[str, Literal["toml", "json"]]:
    """A search space file read here (the daemon gets its text): its text and format (``.toml`` or else JSON)."""
    path = Path(text.strip()).expanduser()
    try:
        space = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return space, "toml" if path.suffix == ".toml" else "json"


def from_option(check: Callable[[str], T]) -> Callable[[str], T]:
    """A command line option's check (``stratcast.shared.cli``'s), raising ValueError as the ones here do."""

    def parse(text: str) -> T:
        try:
            return check(text.strip())
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None

    return parse
