"""``show_run``: one run with its history, checkpoints and (when finished) metrics."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import ShowRun, to_builtins
from stratcast.shared.runfiles import RunFolder


async def handle(d: DaemonContext, req: ShowRun) -> dict[str, Any]:
    """The run's record, its events, checkpoint files and ``metrics.json`` when there is one."""
    run = d.db.get_run(req.run)
    folder = RunFolder(Path(run.out))
    metrics = None
    with contextlib.suppress(OSError, ValueError):
        metrics = json.loads(folder.out.metrics.read_text())
    checkpoints = [str(p) for p in folder.checkpoint_files()]
    return {"run": to_builtins(run), "events": d.db.events(run.id), "checkpoints": checkpoints, "metrics": metrics}
