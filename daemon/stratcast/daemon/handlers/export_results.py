"""``export_results``: write a finished run's summary or forecast table to a new file, as parquet or CSV."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.daemon.results import TABLES, ResultsMissing, export, no_results
from stratcast.shared.protocol import ExportResults
from stratcast.shared.runfiles import RunFolder


async def handle(d: DaemonContext, req: ExportResults) -> dict[str, Any]:
    """Copy ``summary.parquet`` or ``forecast.parquet`` to ``req.path`` (in a thread), never over a file."""
    run = d.db.get_run(req.run)
    src = RunFolder(Path(run.out)).out.path / TABLES[req.what]
    try:
        written = await asyncio.to_thread(export, src, req.path, req.format)
    except ResultsMissing as exc:
        raise no_results(run, exc) from None
    return {**written, "what": req.what}
