"""The daemon's PUB side: numbered typed events on every channel, and the new text of running runs' logs.

:class:`Publisher` wraps each event of :mod:`stratcast.shared.events` in its envelope (the session, a ``seq``
one higher than the last, the time, the run) and sends it without blocking: a subscriber that falls behind loses
events and sees the gap in ``seq``. :class:`LogTail` turns what running runs append to their logs into
``LogAppended`` events, read from where the last one ended.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import zmq

from stratcast.daemon.channels import Channel
from stratcast.shared.events import AnyEvent, Event, LogAppended, encode_event
from stratcast.shared.runfiles import RunFolder

LOG_CHUNK = 64 * 1024
"""Most bytes of one run's log sent in one ``log`` event."""

Publish = Callable[[AnyEvent, int | None], None]


class Publisher:
    """Numbers events and sends them on the PUB socket of each channel."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.seq = 0
        """The sequence number of the last event published."""
        self.channels: list[Channel] = []
        """Where events go: set once the sockets are open (none before: events are numbered all the same)."""

    def publish(self, event: AnyEvent, run: int | None = None) -> None:
        """Publish ``event`` (about ``run``, if any), after the state it describes is committed."""
        self.seq += 1
        frames = encode_event(Event(session=self.session, seq=self.seq, time=time.time(), run=run, data=event))
        for channel in self.channels:
            with contextlib.suppress(zmq.Again):
                channel.pub.send_multipart(frames, flags=zmq.NOBLOCK)


class LogTail:
    """Follows the logs of running runs and publishes what they append."""

    def __init__(self, runs_dir: Path, publish: Publish) -> None:
        self.runs_dir = runs_dir
        self.publish = publish
        self._offsets: dict[int, int] = {}

    def follow(self, run: int) -> None:
        """Publish what ``run`` writes to its log from now on (what it wrote before a resume is not repeated)."""
        self._offsets.setdefault(run, _size(self._log(run)))

    def forget(self, run: int) -> None:
        """Stop following ``run`` (its worker ended: publish first what it wrote last)."""
        self._offsets.pop(run, None)

    def publish_new(self) -> None:
        """New log bytes of followed runs, as ``log`` events (at most :data:`LOG_CHUNK` per run per call)."""
        for run, offset in list(self._offsets.items()):
            path = self._log(run)
            size = _size(path)
            if size <= offset:
                continue
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read(min(size - offset, LOG_CHUNK))
            self._offsets[run] = offset + len(chunk)
            self.publish(LogAppended(text=chunk.decode("utf-8", "replace"), offset=offset), run)

    def _log(self, run: int) -> Path:
        return RunFolder(self.runs_dir / str(run)).log


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
