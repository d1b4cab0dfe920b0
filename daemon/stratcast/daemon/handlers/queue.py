"""``pause_queue`` and ``resume_queue``: start no new runs, or start them again."""

from __future__ import annotations

from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.events import QueuePaused, QueueResumed
from stratcast.shared.protocol import PauseQueue, ResumeQueue


async def pause(d: DaemonContext, req: PauseQueue) -> dict[str, Any]:
    """Running runs go on; queued ones wait with the reason "queue paused"."""
    return _set(d, True)


async def resume(d: DaemonContext, req: ResumeQueue) -> dict[str, Any]:
    """Queued runs may start again."""
    return _set(d, False)


def _set(d: DaemonContext, paused: bool) -> dict[str, Any]:
    d.db.set_meta("queue_paused", paused)
    d.publish(QueuePaused() if paused else QueueResumed())
    d.kick()
    return {"queue_paused": paused}
