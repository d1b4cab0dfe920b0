"""``resume_run``: queue a stopped, interrupted or held run again; it continues from its checkpoint."""

from __future__ import annotations

from typing import Any

from stratcast.daemon.handlers.common import require
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import ResumeRun, to_builtins


async def handle(d: DaemonContext, req: ResumeRun) -> dict[str, Any]:
    """Back to ``queued``; the worker resumes from the newest good checkpoint on whichever device is free.

    A held run (``stop`` of a queued run holds it) is released: resume undoes a stop whenever it came.
    """
    run = d.db.get_run(req.run)
    require(run, ("stopped", "interrupted", "held"), "resume")
    if run.state == "held":
        return {"run": to_builtins(d.update_run(run.id, state="queued", reason="released"))}
    d.db.add_event(run.id, "resumed", {})
    return {"run": to_builtins(d.update_run(run.id, state="queued", reason="resuming"))}
