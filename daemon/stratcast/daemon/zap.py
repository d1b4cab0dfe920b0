"""Who may talk to the daemon: a ZAP handler (ZeroMQ's authentication protocol, RFC 27).

On ``ipc://`` sockets libzmq hands the handler the peer's credentials from ``SO_PEERCRED`` as the address
``localhost:<uid>:<gid>:<pid>``; only the daemon's own UID (plus any UIDs configured) is admitted. pyzmq's
ready-made authenticator only knows IP allow-lists, which do not cover ipc peers. CURVE connections (TCP) are
admitted when the client's public key is in the allow-list. Anything else is denied, and a denied peer is logged
by address only, never with what it sent.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import zmq
import zmq.asyncio

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
DOMAIN = b"stratcast"
"""Sockets set ``zap_domain`` to this; libzmq only consults the handler for sockets with a domain."""

log = logging.getLogger("stratcastd.zap")


def admit(
    mechanism: bytes, address: bytes, credentials: list[bytes], uids: Collection[int], keys: Collection[bytes]
) -> bool:
    """Whether a connecting peer may in: ipc peers by UID, CURVE peers by public key."""
    if mechanism == b"NULL":
        parts = address.decode("ascii", "replace").split(":")
        if len(parts) == 4 and parts[0] == "localhost" and parts[1].isdigit():
            return int(parts[1]) in uids
        return False  # a NULL-mechanism TCP peer is never admitted
    if mechanism == b"CURVE":
        return bool(credentials) and credentials[0] in keys
    return False


async def serve_zap(ctx: zmq.asyncio.Context, uids: Collection[int], keys: Collection[bytes] = ()) -> None:
    """Answer ZAP requests until cancelled. Bind before any socket with a ZAP domain binds."""
    sock = ctx.socket(zmq.REP)
    sock.linger = 0
    sock.bind(ZAP_ENDPOINT)
    try:
        while True:
            frames = await sock.recv_multipart()
            await sock.send_multipart(_answer(frames, uids, keys))
    finally:
        sock.close()


def _answer(frames: list[bytes], uids: Collection[int], keys: Collection[bytes]) -> list[bytes]:
    """The ZAP reply to one request: ``[version, request id, status, text, user id, metadata]``."""
    if len(frames) < 6:
        return [b"1.0", frames[1] if len(frames) > 1 else b"", b"400", b"malformed ZAP request", b"", b""]
    version, request_id, _domain, address, _identity, mechanism, *credentials = frames
    if admit(mechanism, address, credentials, uids, keys):
        return [version, request_id, b"200", b"OK", address, b""]
    log.warning(
        "refused a %s connection from %s", mechanism.decode("ascii", "replace"), address[:64].decode("ascii", "replace")
    )
    return [version, request_id, b"400", b"not allowed", b"", b""]
