"""``submit_study``, ``list_studies``, ``show_study``, ``stop_study``, ``resume_study``, ``retrain_study``: studies.

The work is the study manager's (:mod:`stratcast.daemon.studies`); these only decode and encode.
"""

from __future__ import annotations

from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import (
    ListStudies,
    ResumeStudy,
    RetrainStudy,
    ShowStudy,
    StopStudy,
    SubmitStudy,
    to_builtins,
)


async def submit(d: DaemonContext, req: SubmitStudy) -> dict[str, Any]:
    """Check the study and start it; the result holds it (its ``id``)."""
    return {"study": to_builtins(await d.studies.submit(req.spec))}


async def list_studies(d: DaemonContext, req: ListStudies) -> dict[str, Any]:
    """Every study, newest first."""
    return {"studies": to_builtins(d.db.list_studies())}


async def show(d: DaemonContext, req: ShowStudy) -> dict[str, Any]:
    """A study, its trials, its best trials' numbers and its parameters' importances."""
    result: dict[str, Any] = to_builtins(await d.studies.show(req.study))
    return result


async def stop(d: DaemonContext, req: StopStudy) -> dict[str, Any]:
    """Stop asking trials; stop the running ones with a checkpoint."""
    return {"study": to_builtins(await d.studies.stop(req.study))}


async def resume(d: DaemonContext, req: ResumeStudy) -> dict[str, Any]:
    """Queue the stopped trials again and go on asking."""
    return {"study": to_builtins(await d.studies.resume(req.study))}


async def retrain(d: DaemonContext, req: RetrainStudy) -> dict[str, Any]:
    """Queue the study's final run (its best configuration, or trial ``trial``'s), saved when it succeeds."""
    run = await d.studies.retrain(req.study, req.keep, req.save_as, req.trial)
    return {"run": to_builtins(run)}
