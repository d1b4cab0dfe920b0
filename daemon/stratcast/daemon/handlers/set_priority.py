"""``set_priority``: change a waiting run's priority."""

from __future__ import annotations

from typing import Any

import msgspec

from stratcast.daemon.handlers.common import require
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import SetPriority, to_builtins


async def handle(d: DaemonContext, req: SetPriority) -> dict[str, Any]:
    """Only queued and held runs have a priority that still matters."""
    run = d.db.get_run(req.run)
    require(run, ("queued", "held"), "reprioritise")
    placement = msgspec.structs.replace(run.placement, priority=req.priority)
    return {"run": to_builtins(d.update_run(run.id, placement=placement))}
