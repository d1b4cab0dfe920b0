"""``hello``: the handshake, first on every connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stratcast.daemon.handlers.common import HandlerError
from stratcast.shared.protocol import PROTOCOL, Hello

if TYPE_CHECKING:
    from stratcast.daemon.server import Daemon


class VersionMismatch(HandlerError):
    """The client speaks another protocol version."""

    code = "version_mismatch"


async def handle(d: Daemon, req: Hello) -> dict[str, Any]:
    """Check the client's protocol version; name the daemon, its session and its event endpoint."""
    from stratcast.daemon.server import VERSION

    if req.protocol != PROTOCOL:
        raise VersionMismatch(
            f"this daemon speaks protocol {PROTOCOL}, the client {req.protocol}: use a client of the same "
            f"stratcast version ({VERSION})"
        )
    return {"protocol": PROTOCOL, "daemon": VERSION, "session": d.session, "events": d.home.events}
