"""A synchronous client of ``stratcastd`` over plain pyzmq.

:class:`Client` speaks the control protocol (``stratcast.shared.protocol``): one ``DEALER`` socket, one request
in flight, each reply matched by its ``id``. A request that gets no reply within ``timeout_s`` raises
:class:`DaemonUnavailable` and the socket is thrown away and rebuilt on the next call (the ZeroMQ guide's "lazy
pirate"), so a late reply can never be taken for the answer to a later request; the new socket shakes hands
again by itself.

The live mirror of the daemon's state (:class:`~stratcast.shared.mirror.Mirror`, the Clone pattern without
sockets) and the loops that drive it or the logs from a client (``stratcast watch``, ``stratcast logs -f``) are in
``stratcast.shared.mirror``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import socket
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import TracebackType
from typing import Any, NoReturn, Protocol, Self

import msgspec
import zmq

from stratcast.shared.cli import version
from stratcast.shared.events import Event, decode_event
from stratcast.shared.paths import Home, resolve_home
from stratcast.shared.protocol import (
    HEARTBEAT_S,
    PROTOCOL,
    AnyRequest,
    Error,
    Hello,
    ProtocolError,
    Reply,
    decode_reply,
    encode,
)
from stratcast.shared.runfiles import EVENTS

HEARTBEAT_TIMEOUT_S = 3 * HEARTBEAT_S
"""No event (heartbeats included) for this long means the daemon is gone."""


CLIENT_NAME = f"stratcast {version()}"


class DaemonUnavailable(ConnectionError):
    """No daemon answers at an endpoint: no socket file, nothing listening, or no reply in time.

    The message says which endpoint and how to start a daemon.
    """

    def __init__(self, endpoint: str, why: str, home: Home | None = None) -> None:
        serve = f"stratcastd serve --home {home.state}" if home is not None else "stratcastd serve"
        super().__init__(
            f"no stratcast daemon answers at {endpoint} ({why}).\n"
            f"Start one with `{serve}`, or `systemctl start stratcastd` where it is installed as a service."
        )
        self.endpoint = endpoint


class RequestFailed(Exception):
    """The daemon answered a request with an ``error``: ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class VersionMismatch(RequestFailed):
    """The daemon speaks another protocol version than this client."""


class OutOfSync(Exception):
    """A :class:`Mirror` missed events (a gap in ``seq``) or the daemon restarted: take a new snapshot."""


@dataclass(frozen=True)
class CurveKeys:
    """CURVE keys (Z85 text, as ``zmq.curve_keypair()`` makes them) for a ``tcp://`` daemon."""

    server_public: bytes
    """The daemon's public key."""
    public: bytes
    """This client's public key (the daemon's allow-list must hold it)."""
    secret: bytes
    """This client's secret key."""

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        """Make ``sock`` a CURVE client of the daemon (before ``connect``)."""
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret


class EventSource(Protocol):
    """Where events come from: a :class:`Subscriber`, or a fake in tests."""

    def recv(self, timeout_s: float | None = None) -> Event | None:
        """The next event, or None when ``timeout_s`` passes first."""
        ...

    def close(self) -> None:
        """Stop receiving."""
        ...


class DaemonClient(Protocol):
    """What the CLI needs of a client: :class:`Client`, or a fake in tests."""

    def call(self, request: AnyRequest) -> Any:
        """Send one request and return its result."""
        ...

    def subscribe(self, idle_timeout_s: float = HEARTBEAT_TIMEOUT_S) -> EventSource:
        """Receive every event from now on."""
        ...


class ClientBase:
    """What the synchronous :class:`Client` and the asyncio ``AsyncClient`` share (their socket I/O is their own).

    Where the daemon is, the handshake's result, request ids, and how a reply answers a request.

    Args:
        home: The daemon's home (its sockets); None: ``$STRATCAST_HOME`` or the default.
        endpoint: A control endpoint to use instead of the home's (``tcp://host:port`` needs ``curve``).
        timeout_s: How long to wait for each reply.
        curve: CURVE keys, for ``tcp://`` endpoints.
    """

    def __init__(
        self,
        home: Home | None = None,
        *,
        endpoint: str | None = None,
        timeout_s: float = 10.0,
        curve: CurveKeys | None = None,
    ) -> None:
        self.home = home if home is not None or endpoint is not None else resolve_home()
        self.endpoint = endpoint if endpoint is not None else _home(self.home).control
        self.timeout_s = timeout_s
        self.curve = curve
        self.hello: dict[str, Any] = {}
        """The result of the last handshake: protocol, daemon (version), session, events (endpoint)."""
        self._ids = itertools.count(1)

    @property
    def session(self) -> str | None:
        """The daemon's session (new at each daemon start), once connected."""
        value = self.hello.get("session")
        return value if isinstance(value, str) else None

    @property
    def events(self) -> str:
        """The daemon's event endpoint, as this client must connect to it."""
        named = self.hello.get("events")
        if isinstance(named, str):
            return reachable_events(named, self.endpoint)
        return _home(self.home).events

    def _frame(self, request: AnyRequest) -> tuple[str, bytes]:
        """A fresh request id and ``request`` encoded with it."""
        rid = str(next(self._ids))
        return rid, encode(msgspec.structs.replace(request, id=rid))

    @staticmethod
    def _answers(reply: Reply | Error, rid: str) -> bool:
        """Whether ``reply`` answers request ``rid`` (others are stale replies to abandoned requests)."""
        return reply.id == rid or (isinstance(reply, Error) and reply.id is None)  # no id: a frame it could not read

    @staticmethod
    def _result(reply: Reply | Error) -> Any:
        """The reply's result.

        Raises:
            RequestFailed: the daemon answered with an error.
        """
        if isinstance(reply, Error):
            raise RequestFailed(reply.code, reply.message)
        return reply.result

    def _greeted(self, result: Any) -> dict[str, Any]:
        """Keep the handshake's ``result`` as :attr:`hello`."""
        self.hello = result if isinstance(result, dict) else {}
        return self.hello


class Client(ClientBase):
    """A synchronous connection to one daemon's control socket (arguments: :class:`ClientBase`)."""

    def __init__(
        self,
        home: Home | None = None,
        *,
        endpoint: str | None = None,
        timeout_s: float = 10.0,
        curve: CurveKeys | None = None,
    ) -> None:
        super().__init__(home, endpoint=endpoint, timeout_s=timeout_s, curve=curve)
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._sock: zmq.Socket[bytes] | None = None

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def connect(self) -> dict[str, Any]:
        """Open a fresh socket and shake hands; the ``hello`` result.

        Raises:
            DaemonUnavailable: no socket file, nothing listening, or no reply within ``timeout_s``.
            VersionMismatch: the daemon speaks another protocol version.
        """
        self.close()
        self._probe()
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        if self.curve is not None:
            self.curve.apply(sock)
        sock.connect(self.endpoint)
        self._sock = sock
        try:
            result = self._exchange(Hello(protocol=PROTOCOL, client=CLIENT_NAME))
        except RequestFailed as exc:
            self.close()
            if exc.code == "version_mismatch":
                raise VersionMismatch(exc.code, exc.message) from None
            raise
        return self._greeted(result)

    def call(self, request: AnyRequest) -> Any:
        """Send ``request`` (its ``id`` is assigned here) and return the reply's ``result``.

        Connects first when needed. A daemon that restarted since the handshake (``handshake_required``) is
        greeted again and asked once more.

        Raises:
            DaemonUnavailable: no reply within ``timeout_s`` (the socket is rebuilt on the next call).
            RequestFailed: the daemon answered with an error.
            ProtocolError: the reply was not a valid message.
        """
        if self._sock is None:
            self.connect()
        try:
            return self._exchange(request)
        except RequestFailed as exc:
            if exc.code != "handshake_required" or isinstance(request, Hello):
                raise
        self.connect()
        return self._exchange(request)

    def subscribe(self, idle_timeout_s: float = HEARTBEAT_TIMEOUT_S) -> Subscriber:
        """A :class:`Subscriber` to every event topic (connects first when needed)."""
        if self._sock is None:
            self.connect()
        return Subscriber(self.events, context=self._ctx, curve=self.curve, idle_timeout_s=idle_timeout_s)

    def close(self) -> None:
        """Close the socket at once (linger 0); a later call connects again."""
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def _exchange(self, request: AnyRequest) -> Any:
        """Send one request on the open socket and wait for its reply, discarding stale ones."""
        sock = self._sock
        assert sock is not None, "not connected"
        rid, frame = self._frame(request)
        try:
            sock.send(frame, flags=zmq.NOBLOCK)
        except zmq.Again:
            self._give_up("cannot send")
        deadline = time.monotonic() + self.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sock.poll(max(1, int(remaining * 1000))):
                self._give_up(f"no reply within {self.timeout_s:g} s")
            try:
                reply = decode_reply(sock.recv())
            except ProtocolError:
                self.close()
                raise
            if self._answers(reply, rid):
                return self._result(reply)

    def _give_up(self, why: str) -> NoReturn:
        """Drop the socket (lazy pirate: a late reply dies with it) and raise."""
        self.close()
        raise DaemonUnavailable(self.endpoint, why, self.home)

    def _probe(self) -> None:
        probe_endpoint(self.endpoint, self.home)


class Subscriber:
    """A ``SUB`` socket on every topic of the event endpoint, which notices a silent daemon.

    Args:
        endpoint: The event endpoint.
        context: The ZeroMQ context to use.
        curve: CURVE keys, for ``tcp://`` endpoints.
        idle_timeout_s: No event for this long raises :class:`DaemonUnavailable` (the daemon sends heartbeats).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        curve: CurveKeys | None = None,
        idle_timeout_s: float = HEARTBEAT_TIMEOUT_S,
    ) -> None:
        self.endpoint = endpoint
        self.idle_timeout_s = idle_timeout_s
        sock = (context or zmq.Context.instance()).socket(zmq.SUB)
        sock.linger = 0
        if curve is not None:
            curve.apply(sock)
        sock.setsockopt(zmq.SUBSCRIBE, b"")  # every topic: seq runs across topics, so gaps show
        sock.connect(endpoint)
        self._sock: zmq.Socket[bytes] | None = sock
        self._last = time.monotonic()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def recv(self, timeout_s: float | None = None) -> Event | None:
        """The next valid event, or None when ``timeout_s`` passes first (None: wait for one).

        Events that queued up while the caller was busy elsewhere count as signs of life.

        Raises:
            DaemonUnavailable: no event for ``idle_timeout_s``.
        """
        assert self._sock is not None, "subscriber closed"
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            now = time.monotonic()
            wait = self._last + self.idle_timeout_s - now
            if deadline is not None:
                wait = min(wait, deadline - now)
            if self._sock.poll(math.ceil(max(0.0, wait) * 1000)):
                frames = self._sock.recv_multipart()
                self._last = time.monotonic()
                with contextlib.suppress(ProtocolError):  # a bad event still used up a seq: the gap will show
                    return decode_event(frames)
                continue
            now = time.monotonic()
            if now >= self._last + self.idle_timeout_s:
                raise DaemonUnavailable(self.endpoint, f"no event for {self.idle_timeout_s:g} s")
            if deadline is not None and now >= deadline:
                return None

    def close(self) -> None:
        """Close the socket at once."""
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None


def _home(home: Home | None) -> Home:
    return home if home is not None else resolve_home()


def reachable_events(events: str, control: str) -> str:
    """``events`` with a wildcard bind host (``*``, ``0.0.0.0``, ``[::]``) replaced by the control host.

    On ``ipc://`` the event socket is the control socket's sibling (both in the daemon's socket folder): a control
    socket forwarded elsewhere (``ssh -L``) has its forwarded events beside it, not at the path the daemon names.
    """
    if events.startswith("ipc://") and control.startswith("ipc://") and not control.startswith("ipc://@"):
        return f"ipc://{PurePosixPath(control.removeprefix('ipc://')).parent / EVENTS}"
    if not events.startswith("tcp://") or not control.startswith("tcp://"):
        return events
    host, _, port = events.removeprefix("tcp://").rpartition(":")
    if host not in {"*", "0.0.0.0", "[::]", "::"}:
        return events
    control_host = control.removeprefix("tcp://").rpartition(":")[0]
    return f"tcp://{control_host}:{port}"


def probe_endpoint(endpoint: str, home: Home | None = None) -> None:
    """Fail fast on an ``ipc://`` endpoint with no socket file or nothing listening on it.

    Raises:
        DaemonUnavailable: saying which of these it is.
    """
    if not endpoint.startswith("ipc://") or endpoint.startswith("ipc://@"):
        return
    path = endpoint.removeprefix("ipc://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except (FileNotFoundError, NotADirectoryError):
            why = "no socket file"
        except ConnectionRefusedError:
            why = "a stale socket file: nothing listens on it"
        except PermissionError:
            why = "permission denied: the socket belongs to another user"
        except OSError as exc:
            why = f"cannot connect: {exc.strerror}"
        else:
            return
    raise DaemonUnavailable(endpoint, why, home)
