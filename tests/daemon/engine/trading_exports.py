"""Strategy reports written as trading tools export them (MetaTrader, StrategyQuant), for the data tests.

Those exports follow the desktop's locale: semicolon- or tab-separated, decimal commas, ``dd.mm.yyyy`` or
``yyyy.mm.dd`` dates, a UTF-8 byte order mark and CRLF line ends.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_export(
    frame: pd.DataFrame,
    path: Path,
    *,
    sep: str = ";",
    decimal: str = ",",
    date_format: str = "%d.%m.%Y",
    names: tuple[str, str, str] = ("No.", "Week", "Profit"),
) -> Path:
    """Write a long report (columns ``No.``, ``week``, ``profit``) as a tool would, with a BOM and CRLF."""
    export = pd.DataFrame(
        {
            names[0]: frame["No."],
            names[1]: pd.to_datetime(frame["week"]).dt.strftime(date_format),
            names[2]: frame["profit"],
        }
    )
    export.to_csv(path, sep=sep, decimal=decimal, index=False, encoding="utf-8-sig", lineterminator="\r\n")
    return path
