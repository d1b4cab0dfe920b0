"""``shutdown``: reply first, then checkpoint running runs and exit, keeping the queue."""

from __future__ import annotations

import asyncio
from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import Shutdown


async def handle(d: DaemonContext, req: Shutdown) -> dict[str, Any]:
    """The reply names the runs being stopped; the shutdown begins just after it is sent."""
    stopping = sorted(d.runner.workers)
    asyncio.get_running_loop().call_later(0.05, d.request_shutdown)
    return {"stopping": stopping}
