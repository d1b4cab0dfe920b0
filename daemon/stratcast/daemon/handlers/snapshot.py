"""``snapshot``: the full state and the event sequence number it reflects (the Clone pattern's first step)."""

from __future__ import annotations

from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import Snapshot, to_builtins


async def handle(d: DaemonContext, req: Snapshot) -> dict[str, Any]:
    """Runs, schedules, GPUs and the telemetry history, all taken at ``seq`` (no await in between)."""
    return {
        "session": d.session,
        "seq": d.seq,
        "runs": to_builtins(d.db.list_runs()),
        "schedules": to_builtins(d.db.list_schedules()),
        "gpus": d.telemetry.latest_gpus(),
        "telemetry": d.telemetry.history(),
        "queue_paused": bool(d.db.get_meta("queue_paused", False)),
        "notices": list(d.notices),
    }
