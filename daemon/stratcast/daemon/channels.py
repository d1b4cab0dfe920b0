"""Where clients reach the daemon: a control ROUTER and an event PUB per channel.

The ``ipc`` channel is always there: socket files (0600) in the 0700 socket folder, peers admitted by UID. The
``tcp`` channel is off unless configured, and then only with CURVE: the daemon's secret certificate and an
allow-list of client public certificates (``CURVE_DIR/server.key_secret``, ``CURVE_DIR/clients/*.key``, the
files ``stratcastd keys`` writes). CURVE is a per-socket setting, so TCP gets sockets of its own; the events of
both channels are the same stream.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.asyncio
import zmq.auth

from stratcast.daemon.zap import DOMAIN
from stratcast.shared.paths import Home

PUB_HWM = 100_000
"""Events queued per slow subscriber before PUB drops (the client notices the gap and re-snapshots)."""


class ChannelError(ValueError):
    """A TCP channel that cannot be opened as configured; the message says what to fix."""


@dataclass
class Channel:
    """One transport's control and event sockets."""

    name: str
    router: zmq.asyncio.Socket
    pub: zmq.asyncio.Socket
    events: str
    """The event endpoint, as ``hello`` tells clients of this channel."""
    files: tuple[Path, ...] = ()
    """Socket files to remove on close."""

    def close(self) -> None:
        """Close both sockets at once and remove their files."""
        for sock in (self.router, self.pub):
            sock.close(linger=0)
        for path in self.files:
            with contextlib.suppress(OSError):
                path.unlink()


def open_ipc(ctx: zmq.asyncio.Context, home: Home) -> Channel:
    """Bind the ipc sockets (a stale socket file left by a dead daemon is replaced: the lock says none runs)."""
    router, pub = _pair(ctx)
    files = []
    for sock, endpoint in ((router, home.control), (pub, home.events)):
        path = Path(endpoint.removeprefix("ipc://"))
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock.bind(endpoint)
        path.chmod(0o600)
        files.append(path)
    return Channel("ipc", router, pub, home.events, tuple(files))


def open_tcp(ctx: zmq.asyncio.Context, control: str, curve_dir: Path) -> tuple[Channel, set[bytes]]:
    """Bind CURVE-secured TCP sockets: control on ``control``'s port, events on the next port.

    Returns the channel and the allowed client public keys (binary, as ZAP hands them over).

    Raises:
        ChannelError: for an endpoint that is not ``tcp://host:port``, missing or unreadable certificates, or
            an empty allow-list.
    """
    host, _, port = control.removeprefix("tcp://").rpartition(":")
    if not control.startswith("tcp://") or not host or not port.isdigit():
        raise ChannelError(f"--tcp {control!r}: give tcp://HOST:PORT (events use PORT+1)")
    public, secret = _server_keys(curve_dir)
    keys = allowed_keys(curve_dir / "clients")
    router, pub = _pair(ctx)
    events = f"tcp://{host}:{int(port) + 1}"
    for sock, endpoint in ((router, control), (pub, events)):
        sock.curve_server = True
        sock.curve_publickey, sock.curve_secretkey = public, secret
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            router.close(linger=0)
            pub.close(linger=0)
            raise ChannelError(f"cannot bind {endpoint}: {exc}") from None
    return Channel("tcp", router, pub, events), keys


def allowed_keys(folder: Path) -> set[bytes]:
    """Binary public keys of the client certificates in ``folder``.

    Raises:
        ChannelError: when there are none (TCP without an allow-list would admit no one, or anyone).
    """
    keys = set()
    for path in sorted(folder.glob("*.key")):
        public, _secret = zmq.auth.load_certificate(path)
        keys.add(zmq.utils.z85.decode(public))
    if not keys:
        raise ChannelError(f"no client certificates in {folder}: add one with `stratcastd keys --client NAME`")
    return keys


def _server_keys(curve_dir: Path) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(curve_dir / "server.key_secret")
    except (OSError, ValueError) as exc:
        raise ChannelError(f"cannot read the daemon's CURVE certificate in {curve_dir}: {exc}") from None
    if secret is None:
        raise ChannelError(f"{curve_dir / 'server.key_secret'} holds no secret key")
    return public, secret


def _pair(ctx: zmq.asyncio.Context) -> tuple[zmq.asyncio.Socket, zmq.asyncio.Socket]:
    router, pub = ctx.socket(zmq.ROUTER), ctx.socket(zmq.PUB)
    for sock in (router, pub):
        sock.zap_domain = DOMAIN  # every connection goes through the ZAP handler
        sock.linger = 0
    pub.sndhwm = PUB_HWM
    return router, pub


def make_keys(curve_dir: Path, client: str) -> tuple[Path, Path]:
    """Create the daemon's certificate (once) and a client's pair; the client's public one joins the allow-list.

    Returns the server's public certificate and the client's secret certificate: both go to the client machine.
    """
    (curve_dir / "clients").mkdir(parents=True, exist_ok=True, mode=0o700)
    (curve_dir / "client-secrets").mkdir(exist_ok=True, mode=0o700)
    if not (curve_dir / "server.key_secret").exists():
        zmq.auth.create_certificates(curve_dir, "server")
    public, secret = zmq.auth.create_certificates(curve_dir / "client-secrets", client)
    Path(public).replace(curve_dir / "clients" / Path(public).name)
    return curve_dir / "server.key", Path(secret)
