"""A run's training history: its progress reports, allocator figures, memory plans, OOMs and checkpoints.

The daemon appends one JSON line per worker event to ``RUN_DIR/history.jsonl`` (:class:`HistoryWriter`): the
event's fields, its ``kind`` (the worker's event name) and ``time`` (the worker's when the event has one, else the
daemon's clock on arrival). The file is only ever appended to, so it outlives daemon restarts and resumes;
``restart_run`` deletes it when a run starts again from step 0.

:func:`read_history` reads it back in one pass and in O(points) memory, each series thinned evenly, so a week of
progress reports (three million lines at five a second) comes back as small as a minute's. A line torn by a crash
mid-write, or any other line that is not a JSON object with a known ``kind``, is skipped.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import msgspec

from stratcast.shared.events import ProgressReported, WorkerEvent, event_fields, event_kind
from stratcast.shared.runfiles import RunFolder

log = logging.getLogger("stratcastd")

SERIES = {
    "progress": "progress",
    "memory": "memory",
    "oom": "ooms",
    "plan": "plans",
    "checkpoint": "checkpoints",
    "stopped": "checkpoints",
}
"""Worker event kinds the history records, and the series of :func:`read_history`'s result each goes to."""

Sample = dict[str, Any]
Numbered = tuple[int, Any]
"""An item thinned (a line, not parsed yet) with its line number, so thinned series can be merged in file order."""

_encoder = msgspec.json.Encoder()


SPACING_S = {"progress": 1.0, "memory": 2.0}
"""Least seconds between two kept samples of these kinds: a day's run stays near 130,000 lines, which
``read_history`` reads in well under a second (progress with a validation loss, and the last step, are always
kept; clients fill the newest seconds from live events)."""


class HistoryWriter:
    """Appends worker events to their runs' history files, keeping one handle open per running run."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir
        self._files: dict[int, IO[bytes]] = {}
        self._last: dict[tuple[int, str], float] = {}
        self._failed: set[int] = set()
        """Runs whose history could not be written (logged once, not at every event)."""

    def append(self, run: int, event: WorkerEvent) -> None:
        """Write ``event`` of ``run`` as one line and flush it; a disk error is logged, never raised.

        Only the kinds of :data:`SERIES` are written, and samples closer than :data:`SPACING_S` to the previous one
        kept of their kind are skipped.
        """
        now, kind = time.time(), event_kind(event)
        if kind not in SERIES or not self._keep(run, kind, event, now):
            return
        line = _encoder.encode({"time": now, **event_fields(event), "kind": kind}) + b"\n"
        try:
            f = self._files.get(run) or self._open(run)
            f.write(line)
            f.flush()
        except OSError as exc:  # a full disk must not stop the daemon from following the run
            if run not in self._failed:
                log.warning("run %d: cannot write its history: %s", run, exc)
            self._failed.add(run)
            self.close(run)

    def _keep(self, run: int, kind: str, event: WorkerEvent, now: float) -> bool:
        spacing = SPACING_S.get(kind)
        if spacing is None or (
            isinstance(event, ProgressReported) and (event.val_loss is not None or event.step == event.max_steps)
        ):
            return True
        if now - self._last.get((run, kind), -math.inf) < spacing:
            return False
        self._last[run, kind] = now
        return True

    def close(self, run: int) -> None:
        """Close ``run``'s file (its worker ended); the next event opens it again."""
        self._last.pop((run, "progress"), None)
        self._last.pop((run, "memory"), None)
        f = self._files.pop(run, None)
        if f is not None:
            f.close()

    def close_all(self) -> None:
        """Close every open file (the daemon is stopping)."""
        for run in list(self._files):
            self.close(run)

    def _open(self, run: int) -> IO[bytes]:
        path = RunFolder(self.runs_dir / str(run)).history
        torn = _ends_torn(path)
        f = open(path, "ab")  # noqa: SIM115 (kept open while the run runs, closed by close())
        if torn:  # end the line a crash left unfinished, so that only it is lost, not the next one too
            f.write(b"\n")
        self._files[run] = f
        return f


def _ends_torn(path: Path) -> bool:
    """Whether ``path`` ends in an unfinished line (false for a missing or empty file)."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


# -- reading -------------------------------------------------------------------------------------------------


class Thinner:
    """Evenly spaced samples of a stream of unknown length, in O(points) memory.

    Every ``stride``-th sample is kept; once ``2 * points`` are kept every other one is dropped and the stride
    doubles, so those kept stay evenly spaced. The first and the last sample are always among the result.
    """

    def __init__(self, points: int) -> None:
        self.points = max(points, 1)
        self.stride = 1
        self.seen = 0
        self.kept: list[Numbered] = []
        self.last: Numbered | None = None

    def add(self, item: Numbered) -> None:
        """Offer the next sample of the stream."""
        if self.seen % self.stride == 0:
            self.kept.append(item)
            if len(self.kept) >= 2 * self.points:
                del self.kept[1::2]
                self.stride *= 2
        self.seen += 1
        self.last = item

    def result(self, points: int) -> list[Numbered]:
        """At most ``points`` (no more than the ``points`` given at creation) items, evenly spaced."""
        kept = self.kept
        if self.last is not None and kept[-1] is not self.last:
            kept = [*kept, self.last]
        return evenly(kept, points)


def evenly(items: list[Numbered], k: int) -> list[Numbered]:
    """``k`` of ``items`` at even spacing, the first and the last among them (all of them when not more)."""
    n = len(items)
    if n <= k:
        return list(items)
    if k <= 1:
        return items[-1:] if k == 1 else []
    return [items[round(i * (n - 1) / (k - 1))] for i in range(k)]


def read_history(path: Path, points: int) -> dict[str, Any]:
    """``path``'s series, each thinned to at most ``points`` samples (see :func:`thin_progress` for progress).

    Returns:
        ``{"progress", "memory", "ooms", "plans", "checkpoints": [sample], "thinned": bool}``, samples as
        written without ``kind``; a checkpoint sample has ``stopped``: whether a stop wrote it. Empty lists
        when there is no file yet.

    Raises:
        OSError: the file exists but cannot be read.
    """
    try:
        with open(path, "rb") as lines:
            thinners = _collect(lines, points)
    except FileNotFoundError:
        thinners = _collect([], points)
    seen = sum(t.seen for t in thinners.values())
    val, train = thinners.pop("val"), thinners.pop("train")
    result: dict[str, Any] = {"progress": _samples(thin_progress(val, train, points))}
    result |= {name: _samples(t.result(points)) for name, t in thinners.items()}
    result["thinned"] = seen > sum(len(v) for v in result.values())
    return result


class _Head(msgspec.Struct):
    """What sorts a line into its series: its kind and, for progress, whether it has a validation loss."""

    kind: str = ""
    val_loss: float | None = None


_head_decoder = msgspec.json.Decoder(_Head)


def _collect(lines: Iterable[bytes], points: int) -> dict[str, Thinner]:
    """Each line offered, unparsed, to its series' thinner (progress to ``val`` or ``train``).

    Parsing is most of the cost of a long history and most lines are thinned away, so a line is first read for
    its :class:`_Head` only (msgspec skips the other fields without building them, about as fast as searching
    the bytes) and parsed in full only if kept.
    """
    thinners = {name: Thinner(points) for name in ("val", "train", "memory", "ooms", "plans", "checkpoints")}
    for number, line in enumerate(lines):
        try:
            head = _head_decoder.decode(line)
        except msgspec.DecodeError:  # torn by a crash, or not a history line
            continue
        if head.kind == "progress":
            thinners["train" if head.val_loss is None else "val"].add((number, line))
        elif head.kind in SERIES:
            thinners[SERIES[head.kind]].add((number, line))
    return thinners


def _samples(items: list[Numbered]) -> list[Sample]:
    """The samples of thinned lines, parsed (dropping any that turn out bad)."""
    samples = [_parse(line)[1] for _, line in items]
    return [s for s in samples if s]


def thin_progress(val: Thinner, train: Thinner, points: int) -> list[Numbered]:
    """At most ``points`` progress samples in file order, validation samples first in line.

    Validation reports are rare and each is a point of the validation curve: all of them are kept when they
    fit beside the first and last training reports; training reports fill the rest of the ``points``.
    """
    vals = val.result(points - min(train.seen, 2))
    trains = train.result(points - len(vals))
    return sorted([*vals, *trains], key=lambda item: item[0])


def _parse(line: bytes) -> tuple[str | None, Sample]:
    """A line's kind (None for a line to skip) and its fields without the kind."""
    try:
        obj = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return None, {}
    if not isinstance(obj, dict) or obj.get("kind") not in SERIES:
        return None, {}
    kind = obj.pop("kind")
    if SERIES[kind] == "checkpoints":
        obj["stopped"] = kind == "stopped"
    return kind, obj
