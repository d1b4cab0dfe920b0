"""An asyncio client of ``stratcastd`` (``zmq.asyncio``), for clients that live in an event loop: the TUI.

The same protocol and the same failure rules as the synchronous :class:`~stratcast.shared.client.Client`: one
``DEALER`` socket, one request in flight (callers queue on a lock), replies matched by ``id``, and a request that
gets no reply in time throws the socket away (lazy pirate) so a late reply can never answer a later request.
Sockets must be made inside the running loop, so make the client there (Textual: ``on_mount`` or a worker).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import zmq
import zmq.asyncio

from stratcast.shared.client import (
    CLIENT_NAME,
    HEARTBEAT_TIMEOUT_S,
    ClientBase,
    CurveKeys,
    DaemonUnavailable,
    RequestFailed,
    VersionMismatch,
    probe_endpoint,
)
from stratcast.shared.events import Event, decode_event
from stratcast.shared.paths import Home
from stratcast.shared.protocol import (
    PROTOCOL,
    AnyRequest,
    Hello,
    ProtocolError,
    decode_reply,
)


class AsyncClient(ClientBase):
    """An asyncio connection to one daemon's control socket (arguments: :class:`ClientBase`)."""

    def __init__(
        self,
        home: Home | None = None,
        *,
        endpoint: str | None = None,
        timeout_s: float = 10.0,
        curve: CurveKeys | None = None,
    ) -> None:
        super().__init__(home, endpoint=endpoint, timeout_s=timeout_s, curve=curve)
        self._ctx = zmq.asyncio.Context.instance()
        self._sock: zmq.asyncio.Socket | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> dict[str, Any]:
        """Open a fresh socket and shake hands; the ``hello`` result.

        Raises:
            DaemonUnavailable: no socket file, nothing listening, or no reply within ``timeout_s``.
            VersionMismatch: the daemon speaks another protocol version.
        """
        async with self._lock:
            return await self._connect()

    async def call(self, request: AnyRequest) -> Any:
        """Send ``request`` and return the reply's ``result``; greets a restarted daemon again once.

        Raises:
            DaemonUnavailable: no reply within ``timeout_s`` (the socket is rebuilt on the next call).
            RequestFailed: the daemon answered with an error.
            ProtocolError: the reply was not a valid message.
        """
        async with self._lock:
            if self._sock is None:
                await self._connect()
            try:
                return await self._exchange(request)
            except RequestFailed as exc:
                if exc.code != "handshake_required" or isinstance(request, Hello):
                    raise
            await self._connect()
            return await self._exchange(request)

    def subscribe(self, idle_timeout_s: float = HEARTBEAT_TIMEOUT_S) -> AsyncSubscriber:
        """An :class:`AsyncSubscriber` to every topic of the event endpoint (after a handshake)."""
        return AsyncSubscriber(self.events, context=self._ctx, curve=self.curve, idle_timeout_s=idle_timeout_s)

    def close(self) -> None:
        """Close the socket at once (linger 0); a later call connects again."""
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    async def _connect(self) -> dict[str, Any]:
        self.close()
        probe_endpoint(self.endpoint, self.home)
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        if self.curve is not None:
            self.curve.apply(sock)  # type: ignore[arg-type]
        sock.connect(self.endpoint)
        self._sock = sock
        try:
            result = await self._exchange(Hello(protocol=PROTOCOL, client=CLIENT_NAME))
        except RequestFailed as exc:
            self.close()
            if exc.code == "version_mismatch":
                raise VersionMismatch(exc.code, exc.message) from None
            raise
        return self._greeted(result)

    async def _exchange(self, request: AnyRequest) -> Any:
        sock = self._sock
        assert sock is not None, "not connected"
        rid, frame = self._frame(request)
        await sock.send(frame)
        deadline = time.monotonic() + self.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await sock.poll(max(1, int(remaining * 1000))):
                self.close()
                raise DaemonUnavailable(self.endpoint, f"no reply within {self.timeout_s:g} s", self.home)
            try:
                reply = decode_reply(await sock.recv())
            except ProtocolError:
                self.close()
                raise
            if self._answers(reply, rid):
                return self._result(reply)


class AsyncSubscriber:
    """A ``SUB`` socket on every topic of the event endpoint that notices a silent daemon.

    Args:
        endpoint: The event endpoint.
        context: The asyncio ZeroMQ context.
        curve: CURVE keys, for ``tcp://`` endpoints.
        idle_timeout_s: No event for this long raises :class:`DaemonUnavailable` (the daemon sends heartbeats).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        context: zmq.asyncio.Context,
        curve: CurveKeys | None = None,
        idle_timeout_s: float = HEARTBEAT_TIMEOUT_S,
    ) -> None:
        self.endpoint = endpoint
        self.idle_timeout_s = idle_timeout_s
        sock = context.socket(zmq.SUB)
        sock.linger = 0
        if curve is not None:
            curve.apply(sock)  # type: ignore[arg-type]
        sock.setsockopt(zmq.SUBSCRIBE, b"")  # every topic: seq runs across topics, so gaps show
        sock.connect(endpoint)
        self._sock: zmq.asyncio.Socket | None = sock

    async def recv(self) -> Event:
        """The next valid event.

        Raises:
            DaemonUnavailable: no event for ``idle_timeout_s``.
        """
        assert self._sock is not None, "subscriber closed"
        while True:
            if not await self._sock.poll(int(self.idle_timeout_s * 1000)):
                raise DaemonUnavailable(self.endpoint, f"no event for {self.idle_timeout_s:g} s")
            frames = await self._sock.recv_multipart()
            try:
                return decode_event(frames)
            except ProtocolError:  # a bad event still used up a seq: the gap will show
                continue

    def close(self) -> None:
        """Close the socket at once."""
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
