"""The TUI's line to the daemon: a :class:`Mirror` kept live by the Clone pattern, surviving daemon restarts.

:class:`Link` is what screens use (a :class:`ZmqLink` in the app, a fake in tests): ``mirror`` holds the state,
``version`` grows with every change so the app repaints at its own pace from buffered events (never once per
event), and ``call`` sends a request. :meth:`ZmqLink.run` subscribes first, then snapshots, then applies events;
on a gap or a new daemon session it snapshots again; when the daemon goes away it keeps the last state on screen,
says ``reconnecting`` and retries every :data:`RETRY_S` seconds.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal, Protocol

from stratcast.shared.aclient import AsyncClient, AsyncSubscriber
from stratcast.shared.client import DaemonUnavailable, OutOfSync, RequestFailed
from stratcast.shared.mirror import Mirror
from stratcast.shared.protocol import AnyRequest, ProtocolError, Snapshot

LinkState = Literal["connecting", "live", "reconnecting"]
RETRY_S = 1.0
"""Seconds between attempts to reach a daemon that went away."""


class Link(Protocol):
    """The daemon as screens see it."""

    mirror: Mirror
    """The live state (runs, schedules, telemetry)."""
    state: LinkState
    detail: str
    """Why the link is not live (the last connection error), for the status line."""
    version: int
    """Grows with every change to :attr:`mirror` or :attr:`state`."""

    async def call(self, request: AnyRequest) -> Any:
        """Send one request; its result.

        Raises:
            RequestFailed: the daemon refused it (its message is for people).
            DaemonUnavailable: no daemon answers.
        """
        ...

    async def run(self) -> None:
        """Keep :attr:`mirror` live until cancelled."""
        ...


def failure_text(exc: RequestFailed | DaemonUnavailable) -> str:
    """A failed :meth:`Link.call` in one line: the daemon's message, or why no daemon answers."""
    return exc.message if isinstance(exc, RequestFailed) else str(exc).splitlines()[0]


class ZmqLink:
    """A :class:`Link` over ZeroMQ; make it inside the running event loop.

    Args:
        client: The control connection (its sockets are made in the loop).
        retry_s: Seconds between reconnection attempts.
    """

    def __init__(self, client: AsyncClient, *, retry_s: float = RETRY_S) -> None:
        self.client = client
        self.retry_s = retry_s
        self.mirror = Mirror()
        self.state: LinkState = "connecting"
        self.detail = ""
        self.version = 0
        self.events = 0
        """Events applied since start (for the performance benchmark)."""

    async def call(self, request: AnyRequest) -> Any:
        """Send one request; its result (see :meth:`Link.call`)."""
        return await self.client.call(request)

    async def run(self) -> None:
        """Follow the daemon forever: connect, snapshot, apply events; on loss keep the state and retry."""
        while True:
            try:
                await self._follow()
            except (DaemonUnavailable, ProtocolError, RequestFailed, OSError) as exc:
                self.client.close()
                self._set_state("reconnecting" if self.mirror.session else "connecting", str(exc))
            await asyncio.sleep(self.retry_s)

    async def _follow(self) -> None:
        await self.client.connect()
        source: AsyncSubscriber = self.client.subscribe()  # before the snapshot: nothing falls between them
        try:
            await self._snapshot()
            while True:
                event = await source.recv()
                try:
                    fresh = self.mirror.apply(event)
                except OutOfSync:  # a gap or a new daemon session
                    await self._snapshot()
                    continue
                if fresh:
                    self.events += 1
                    self.version += 1
        finally:
            source.close()

    async def _snapshot(self) -> None:
        self.mirror.load(await self.client.call(Snapshot()))
        self._set_state("live", "")

    def _set_state(self, state: LinkState, detail: str) -> None:
        self.state = state
        self.detail = detail
        self.version += 1
