"""``hello``: the handshake, first on every connection."""

from __future__ import annotations

from typing import Any

from stratcast.daemon.handlers.common import HandlerError
from stratcast.daemon.handlers.context import DaemonContext
from stratcast.shared.cli import version
from stratcast.shared.protocol import PROTOCOL, Hello


class VersionMismatch(HandlerError):
    """The client speaks another protocol version."""

    code = "version_mismatch"


async def handle(d: DaemonContext, req: Hello) -> dict[str, Any]:
    """Check the client's protocol version; name the daemon, its session and its event endpoint."""
    if req.protocol != PROTOCOL:
        raise VersionMismatch(
            f"this daemon speaks protocol {PROTOCOL}, the client {req.protocol}: use a client of the same "
            f"stratcast version ({version()})"
        )
    return {"protocol": PROTOCOL, "daemon": version(), "session": d.session, "events": d.home.events}
