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
        raise VersionMismatch(_mismatch(req.protocol))
    return {"protocol": PROTOCOL, "daemon": version(), "session": d.session, "events": d.home.events}


def _mismatch(client: int) -> str:
    """What a client speaking protocol ``client`` is told: both versions, and which side to upgrade."""
    versions = f"this daemon (stratcast {version()}) speaks protocol {PROTOCOL}, the client protocol {client}"
    if client < PROTOCOL:
        return f"{versions}: the client is older; upgrade it to stratcast {version()} (pip install -U stratcast)"
    return f"{versions}: the client is newer; upgrade the daemon (pip install -U stratcast), then restart stratcastd"
