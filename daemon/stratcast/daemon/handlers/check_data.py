"""``check_data``: check a job as ``submit`` would, queue nothing, and describe the panel it would train on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.daemon.handlers.submit import check_job
from stratcast.shared.protocol import CheckData, JobSpec

if TYPE_CHECKING:
    import numpy as np


async def handle(d: DaemonContext, req: CheckData) -> dict[str, Any]:
    """The panel's figures once the job passes ``submit``'s checks (one of two validations at a time)."""
    async with d.validation:
        return await asyncio.to_thread(describe_job, req.job, d.home.workspace)


def describe_job(job: JobSpec, home: Path | None = None) -> dict[str, Any]:
    """Check ``job`` (a scoring job against the saved models in ``home``) and describe its panel.

    Raises:
        InvalidSpec: with the engine's message, as ``submit``.
    """
    checked = check_job(job, home)
    panel = checked.panel
    return {
        "data": panel.source,
        "columns": {"id": panel.id_col, "time": panel.time_col, "target": panel.target_col},
        "strategies": panel.n_series,
        "dropped": checked.loaded - panel.n_series,
        "periods": panel.n_times,
        "first": time_text(panel.times[0]),
        "last": time_text(panel.times[-1]),
        "observations": int(panel.lengths.sum()),
        "zero_share": panel.zero_share,
        "filled": panel.filled,
        "required_periods": checked.required,
        "notes": list(panel.notes),
    }


def time_text(t: np.generic) -> str | int:
    """A grid time for JSON: an ISO date (with the time of day when it has one), or an integer position."""
    import numpy as np

    if isinstance(t, np.datetime64):
        text = str(np.datetime_as_string(t, unit="s"))
        return text.removesuffix("T00:00:00")
    return int(t)
