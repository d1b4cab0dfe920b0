"""``status``: the daemon at a glance."""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.cli import version
from stratcast.shared.protocol import Status


async def handle(d: DaemonContext, req: Status) -> dict[str, Any]:
    """Version, session, uptime, home, queue counts by state, the devices runs can use and the executor's health."""
    runs = d.db.list_runs()
    return {
        "daemon": version(),
        "session": d.session,
        "pid": os.getpid(),
        "uptime_s": time.time() - d.started,
        "home": str(d.home.state),
        "queue_paused": bool(d.db.get_meta("queue_paused", False)),
        "counts": dict(Counter(r.state for r in runs)),
        "devices": [v.name for v in d.devices(runs)],
        "notices": list(d.notices),
        "executor": d.runner.name,
        "executor_health": d.runner.health(),
    }
