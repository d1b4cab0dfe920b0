"""What the request handlers share: their errors and run-state checks."""

from __future__ import annotations

from collections.abc import Collection

from stratcast.shared.protocol import RunInfo


class HandlerError(Exception):
    """A request that cannot be done; ``code`` goes on the wire, the message says why and what to do."""

    code = "bad_request"


class BadState(HandlerError):
    """The run or schedule is in a state that does not allow the request."""

    code = "bad_state"


class InvalidSpec(HandlerError):
    """The submitted job or schedule is not valid; nothing was queued."""

    code = "invalid_spec"


def require(run: RunInfo, states: Collection[str], action: str) -> None:
    """Raise :class:`BadState` unless ``run`` is in one of ``states``.

    Raises:
        BadState: naming the run's state and the states that allow ``action``.
    """
    if run.state not in states:
        *others, last = sorted(states)
        allowed = f"{', '.join(others)} or {last}" if others else last
        raise BadState(f"cannot {action} run {run.id}: it is {run.state}; {action} works on {allowed} runs")


STOPPING = "checkpointing at its next training step (a run already past training finishes its outputs)"
"""What a stopped running run does, in its reason until its worker exits."""
