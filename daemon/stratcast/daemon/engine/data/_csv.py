"""Reading a CSV strategy report in the dialect it was written in: the delimiter and the decimal mark.

Trading tools export in the desktop's locale: MetaTrader and StrategyQuant on a German or French system write
``No.;Week;Profit`` with decimal commas (``-12,5``, ``1.234,56``), some tools separate with tabs. csv.Sniffer
is unreliable there (a decimal comma looks like one more delimiter), so the delimiter is the candidate that
splits the header and every sampled line into the same number of fields (the most fields on a tie), and the
decimal mark is a comma when the delimiter is not one and a sampled field is a number written with one.
A byte order mark and CRLF line ends are read as such by Arrow.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv

_SAMPLE_BYTES = 1 << 20
"""Arrow infers the column types from its first block, 1 MiB: the decimal mark is read off as much."""
_SAMPLE_LINES = 50
_DELIMITERS = (",", ";", "\t")
_COMMA_NUMBER = re.compile(r"(?:^|[;\t])\s*[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+),\d+\s*(?=[;\t]|$)", re.MULTILINE)


@dataclass(frozen=True)
class Dialect:
    """How a CSV file is written."""

    delimiter: str = ","
    decimal: str = "."


def read_csv(path: Path) -> tuple[pa.Table, Dialect]:
    """The file as a table (numbers with its decimal mark parsed), and its dialect.

    Raises:
        pa.ArrowException, OSError: the file cannot be read as CSV.
    """
    dialect = sniff(path)
    table = pa_csv.read_csv(
        path,
        parse_options=pa_csv.ParseOptions(delimiter=dialect.delimiter),
        convert_options=pa_csv.ConvertOptions(decimal_point=dialect.decimal),
    )
    return table, dialect


def sniff(path: Path) -> Dialect:
    """The dialect of the file's first lines (a ``.gz`` file decompressed)."""
    with pa.input_stream(str(path), compression="detect") as stream:
        head = stream.read(_SAMPLE_BYTES)
    lines = head.decode("utf-8-sig", errors="replace").splitlines()
    if len(head) == _SAMPLE_BYTES:
        lines = lines[:-1]  # it may be cut short
    delimiter = _delimiter(lines[:_SAMPLE_LINES])
    comma = delimiter != "," and _COMMA_NUMBER.search("\n".join(lines)) is not None
    return Dialect(delimiter, "," if comma else ".")


def _delimiter(lines: list[str]) -> str:
    """The candidate that gives every line the same number of fields, more than one; a comma when none does."""
    fields = {}
    for candidate in _DELIMITERS:
        counts = {len(row) for row in csv.reader(lines, delimiter=candidate) if row}
        if len(counts) == 1 and (count := counts.pop()) > 1:
            fields[candidate] = count
    return max(fields, key=fields.__getitem__, default=",")
