"""``restart_run``: run a finished, stopped, killed or interrupted run again."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from stratcast.daemon.handlers.common import require
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import FINAL_STATES, RestartRun, to_builtins
from stratcast.shared.runfiles import RunFolder


async def handle(d: DaemonContext, req: RestartRun) -> dict[str, Any]:
    """Back to ``queued``: from the newest checkpoint, or from scratch (checkpoints, outputs and history deleted)."""
    run = d.db.get_run(req.run)
    require(run, (*FINAL_STATES, "stopped", "interrupted"), "restart")
    folder = RunFolder(Path(run.out))
    if req.from_scratch:
        for sub in (folder.checkpoints, folder.out.path):
            shutil.rmtree(sub, ignore_errors=True)
    how = "from scratch" if req.from_scratch or not folder.has_checkpoint() else "from its checkpoint"
    if how == "from scratch":  # training starts at step 0 again: the old curves would only confuse the new ones
        folder.history.unlink(missing_ok=True)
    d.db.add_event(run.id, "restarted", {"how": how})
    fields: dict[str, Any] = {"state": "queued", "reason": f"restarting {how}", "finished": None, "exit": ""}
    if req.from_scratch:
        fields.update(progress={}, checkpoint=None)
    return {"run": to_builtins(d.update_run(run.id, **fields))}
