"""``list_models``: the model catalog and the training options, for the client's forms."""

from __future__ import annotations

import json
from typing import Any

from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.protocol import ListModels


async def handle(d: DaemonContext, req: ListModels) -> dict[str, Any]:
    """Each model's parameters, defaults and ranges (as ``stratcastd models --json``)."""
    from stratcast.daemon.engine.spec.config import describe_train_config
    from stratcast.daemon.zoo.catalog import describe_models

    # through JSON with default=str, exactly as `stratcastd models --json` prints it
    result: dict[str, Any] = json.loads(
        json.dumps({"models": describe_models(), "train_options": describe_train_config()}, default=str)
    )
    return result
