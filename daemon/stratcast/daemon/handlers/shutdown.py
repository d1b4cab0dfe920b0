"""``shutdown``: reply first, then checkpoint running runs and exit, keeping the queue."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from stratcast.shared.protocol import Shutdown

if TYPE_CHECKING:
    from stratcast.daemon.server import Daemon


async def handle(d: Daemon, req: Shutdown) -> dict[str, Any]:
    """The reply names the runs being stopped; the shutdown begins just after it is sent."""
    stopping = sorted(d.runner.workers)
    asyncio.get_running_loop().call_later(0.05, d.request_shutdown)
    return {"stopping": stopping}
