"""``read_logs``: a slice of a run's log, from a byte offset."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stratcast.daemon.handlers.common import HandlerError
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import ReadLogs
from stratcast.shared.runfiles import RunFolder

MAX_LIMIT = 1 << 20


async def handle(d: DaemonContext, req: ReadLogs) -> dict[str, Any]:
    """Up to ``limit`` bytes from ``offset`` (read in a thread), the next offset and the file's size."""
    run = d.db.get_run(req.run)
    if req.offset < 0 or not 0 < req.limit <= MAX_LIMIT:
        raise HandlerError(f"offset must be >= 0 and limit between 1 and {MAX_LIMIT}")
    return await asyncio.to_thread(_read, RunFolder(Path(run.out)).log, req.offset, req.limit)


def _read(path: Path, offset: int, limit: int) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(min(offset, size))
            chunk = f.read(limit)
    except FileNotFoundError:
        return {"text": "", "offset": 0, "size": 0}
    return {"text": chunk.decode("utf-8", "replace"), "offset": min(offset, size) + len(chunk), "size": size}
