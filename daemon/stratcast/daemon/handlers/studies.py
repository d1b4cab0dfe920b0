"""``submit_study``, ``list_studies``, ``show_study``, ``stop_study``, ``resume_study``: the daemon's Optuna studies.

The work is the study manager's (:mod:`stratcast.daemon.studies`); these only decode and encode.
"""

from __future__ import annotations

from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import ListStudies, ResumeStudy, ShowStudy, StopStudy, SubmitStudy, to_builtins


async def submit(d: DaemonContext, req: SubmitStudy) -> dict[str, Any]:
    """Check the study and start it; the result holds it (its ``id``)."""
    return {"study": to_builtins(await d.studies.submit(req.spec))}


async def list_studies(d: DaemonContext, req: ListStudies) -> dict[str, Any]:
    """Every study, newest first."""
    return {"studies": to_builtins(d.db.list_studies())}


async def show(d: DaemonContext, req: ShowStudy) -> dict[str, Any]:
    """A study, its trials and its best trials' numbers."""
    result: dict[str, Any] = to_builtins(await d.studies.show(req.study))
    return result


async def stop(d: DaemonContext, req: StopStudy) -> dict[str, Any]:
    """Stop asking trials; stop the running ones with a checkpoint."""
    return {"study": to_builtins(await d.studies.stop(req.study))}


async def resume(d: DaemonContext, req: ResumeStudy) -> dict[str, Any]:
    """Queue the stopped trials again and go on asking."""
    return {"study": to_builtins(await d.studies.resume(req.study))}
