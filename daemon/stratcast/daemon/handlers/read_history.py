"""``read_history``: a run's training history, each series thinned to the points asked for."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stratcast.daemon.handlers.common import HandlerError
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.daemon.history import read_history
from stratcast.shared.protocol import ReadHistory
from stratcast.shared.runfiles import RunFolder


async def handle(d: DaemonContext, req: ReadHistory) -> dict[str, Any]:
    """The run's ``history.jsonl`` read in a thread (empty series when the run has not reported yet)."""
    run = d.db.get_run(req.run)
    path = RunFolder(Path(run.out)).history
    try:
        return await asyncio.to_thread(read_history, path, req.points)
    except OSError as exc:
        raise HandlerError(f"cannot read run {run.id}'s history {path}: {exc.strerror or exc}") from None
