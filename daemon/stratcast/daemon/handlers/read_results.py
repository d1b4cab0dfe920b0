"""``read_results``: a finished run's metrics and its best strategies with their forecasts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.daemon.results import ResultsMissing, no_results, read_results
from stratcast.shared.protocol import ReadResults
from stratcast.shared.runfiles import RunFolder


async def handle(d: DaemonContext, req: ReadResults) -> dict[str, Any]:
    """``metrics.json`` and the ``top`` strategies of the run's results, read in a thread."""
    run = d.db.get_run(req.run)
    try:
        return await asyncio.to_thread(read_results, RunFolder(Path(run.out)).out.path, req.top)
    except ResultsMissing as exc:
        raise no_results(run, exc) from None
