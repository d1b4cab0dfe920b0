"""``set_priority``: change a waiting run's priority."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from stratcast.daemon.handlers.common import require
from stratcast.shared.protocol import SetPriority, to_builtins

if TYPE_CHECKING:
    from stratcast.daemon.server import Daemon


async def handle(d: Daemon, req: SetPriority) -> dict[str, Any]:
    """Only queued and held runs have a priority that still matters."""
    run = d.db.get_run(req.run)
    require(run, ("queued", "held"), "reprioritise")
    placement = msgspec.structs.replace(run.placement, priority=req.priority)
    return {"run": to_builtins(d.update_run(run.id, placement=placement))}
