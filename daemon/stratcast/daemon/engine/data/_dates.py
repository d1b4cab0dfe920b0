"""Dates written as text: as the user says (``--date-format``), else ISO, else day/month order read off the values.

Strategy reports come from tools that write dates in the desktop's locale: ``31.12.2019`` (StrategyQuant on a
German system), ``2019.12.31`` (MetaTrader), ``31/12/2019`` or ``12/31/2019``. A per-value guess reads
``04.01.2016`` as April 4th but ``18.01.2016`` as January 18th, scattering a weekly report off its grid, so
the dates with the day and month as the first two fields (``dd.mm.yyyy``, ``mm/dd/yy``, ...) are read in one
order for the whole column:

* ``dayfirst`` (``--dayfirst``) says day first;
* else a first field over 12 says day first, a second field over 12 says month first;
* else nothing in the values says which: day first with dots (no locale writes month first with dots), month
  first otherwise.

Unless the user said, a note names the order taken, an example and the option that changes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

_DAY_MONTH = re.compile(
    r"^\s*(?P<a>\d{1,2})(?P<sep>[./-])(?P<b>\d{1,2})(?P=sep)(?P<year>\d{4}|\d{2})"
    r"(?P<clock>[ T]\d{2}:\d{2}(?::\d{2})?)?\s*$"
)
"""A date with the day and the month, in either order, as its first two fields; perhaps a time of day after."""


@dataclass(frozen=True)
class TextFormat:
    """How numbers and dates written as text are read."""

    decimal: str = "."
    """The decimal mark of numbers (``,`` in many European exports)."""
    date_format: str | None = None
    """The exact format of dates (``%d.%m.%Y``); None: ISO, or the day/month order read off the values."""
    dayfirst: bool = False
    """Read dates with the day and month as the first two fields day first, whatever the values say."""


@dataclass(frozen=True)
class Dates:
    """Text dates as read."""

    stamps: pd.Series
    """The timestamps (UTC), NaT where a text is no date."""
    note: str | None = None
    """What order was assumed, for the user, when the values decided it."""
    guessed: bool = False
    """Whether anything but ISO dates was read, so that a misread date format may explain a bad grid."""


def parse_dates(text: pd.Series, fmt: TextFormat, column: str) -> Dates:
    """Read ``text`` as dates (see the module docstring).

    Raises:
        ValueError: ``fmt.date_format`` is not a date format.
    """
    if fmt.date_format is not None:
        return Dates(pd.to_datetime(text, format=fmt.date_format, errors="coerce", utc=True), guessed=True)
    stamps = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    rest = stamps.isna()
    if not rest.any():
        return Dates(stamps)
    fields = text[rest].str.extract(_DAY_MONTH)
    ordered = fields.dropna(subset=["a"])
    note = None
    if len(ordered):
        dayfirst, why = _day_first(ordered, fmt.dayfirst)
        stamps[ordered.index] = _iso_stamps(ordered, dayfirst)
        note = _note(text, ordered, stamps, column, dayfirst, why) if why else None
    others = rest & ~text.index.isin(ordered.index)
    if others.any():
        stamps[others] = pd.to_datetime(text[others], format="mixed", errors="coerce", utc=True)
    return Dates(stamps, note, guessed=True)


def show_date(stamp: pd.Timestamp) -> str:
    """``2016-01-04``, with the time of day when there is one."""
    return stamp.tz_localize(None).isoformat().removesuffix("T00:00:00")


def _day_first(fields: pd.DataFrame, forced: bool) -> tuple[bool, str]:
    """Whether the day comes first and why ('' when the user said so)."""
    if forced:
        return True, ""
    if (fields["a"].astype(int) > 12).any():
        return True, "some first fields go past 12"
    if (fields["b"].astype(int) > 12).any():
        return False, "some second fields go past 12"
    if (fields["sep"] == ".").all():
        return True, "no field goes past 12 and day first is the usual order with dots"
    return False, "no field goes past 12 and month first is the usual order with slashes or dashes"


def _iso_stamps(fields: pd.DataFrame, dayfirst: bool) -> pd.Series:
    """The dates rewritten as ISO text and parsed strictly: a month over 12 or a 30th of February is NaT."""
    day, month = (fields["a"], fields["b"]) if dayfirst else (fields["b"], fields["a"])
    year = fields["year"].astype(int)
    year = year.where(year >= 100, year + np.where(year < 69, 2000, 1900))  # two digits as strftime's %y
    iso = year.astype(str) + "-" + month.str.zfill(2) + "-" + day.str.zfill(2) + fields["clock"].fillna("")
    return pd.to_datetime(iso, format="ISO8601", errors="coerce", utc=True)


def _note(text: pd.Series, fields: pd.DataFrame, stamps: pd.Series, column: str, dayfirst: bool, why: str) -> str:
    first, second = fields["a"].astype(int), fields["b"].astype(int)
    telling = first > 12 if dayfirst else second > 12
    at = fields.index[telling.to_numpy()][0] if telling.any() else fields.index[0]
    example = f"{text[at].strip()} -> {show_date(stamps[at])}" if pd.notna(stamps[at]) else text[at].strip()
    sep = fields["sep"][at]
    other = f"%m{sep}%d{sep}%Y" if dayfirst else f"%d{sep}%m{sep}%Y"
    fix = f"pass --date-format {other}" if dayfirst else f"pass --dayfirst or --date-format {other}"
    order = "day first" if dayfirst else "month first"
    return f"read the dates in column {column!r} {order} ({example}) as {why}; {fix} if that is wrong"
