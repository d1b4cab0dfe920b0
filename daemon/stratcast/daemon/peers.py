"""The other ranks of a data-parallel worker (``--world-size N``): started, watched and ended by rank 0.

The worker the daemon starts is rank 0. It starts ranks ``1..N-1`` as its children (the same module with the hidden
``--rank`` and ``--master-port`` options), watches them from a thread, and kills them when it exits. Each child asks
the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``, :func:`die_with_parent`), so a rank 0 killed
with SIGKILL leaves no rank behind; a rank that dies makes rank 0's watcher fail the run naming it
(:meth:`Peers.watch`), and a peer that hangs fails the others' next collective at the process group's timeout.

This module imports no torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

PR_SET_PDEATHSIG = 1
POLL_S = 0.2
"""How often the watcher looks at the ranks."""
NORMAL_EXITS = (0, 75)
"""A rank's exits that are no failure: finished training (0), or stopped with its checkpoint (75, ``STOPPED``)."""


def exit_reason(code: int) -> str:
    """``exited with code 1`` or ``was killed by SIGKILL``."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (Linux; elsewhere nothing).

    A rank calls it first thing, not between fork and exec (``preexec_fn``): a forked child of a process with
    threads (torch's) must not load libraries before it execs. A rank 0 that dies in between leaves the rank
    waiting at most the group's rendezvous timeout.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Peers:
    """Ranks ``1..N-1`` of a worker, each a child process (index ``i`` is rank ``i + 1``)."""

    def __init__(self, procs: Sequence[subprocess.Popen[bytes]]) -> None:
        self.procs = list(procs)
        self.closing = False
        """Set once rank 0 has what it needs from them: the watcher stops reporting."""

    @classmethod
    def start(cls, command: Callable[[int], list[str]], world: int) -> Peers:
        """Start ranks ``1..world-1``: ``command(rank)`` is each one's command line (their stdout is discarded)."""
        procs = [
            subprocess.Popen(command(rank), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            for rank in range(1, world)
        ]
        return cls(procs)

    def failed(self, wait_s: float = 0.0) -> tuple[int, int] | None:
        """(rank, exit code) of the first rank that ended abnormally, waiting up to ``wait_s`` for one."""
        deadline = time.monotonic() + wait_s
        while True:
            for i, proc in enumerate(self.procs):
                code = proc.poll()
                if code is not None and code not in NORMAL_EXITS:
                    return i + 1, code
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)

    def watch(self, on_failure: Callable[[int, int], None]) -> None:
        """Call ``on_failure(rank, code)`` from a daemon thread as soon as a rank ends abnormally."""

        def loop() -> None:
            while not self.closing:
                found = self.failed()
                if found is not None:
                    on_failure(*found)
                    return
                if all(p.poll() is not None for p in self.procs):
                    return
                time.sleep(POLL_S)

        threading.Thread(target=loop, name="peers", daemon=True).start()

    def join(self, timeout_s: float) -> None:
        """Wait for every rank to end (up to ``timeout_s`` in all).

        Raises:
            RuntimeError: naming the first rank that failed or did not end in time (every rank is killed then).
        """
        deadline = time.monotonic() + timeout_s
        try:
            for i, proc in enumerate(self.procs):
                try:
                    code = proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise RuntimeError(f"rank {i + 1} did not end within {timeout_s:.0f}s of rank 0") from None
                if code not in NORMAL_EXITS:
                    raise RuntimeError(f"rank {i + 1} {exit_reason(code)}: see its lines in the log")
        except RuntimeError:
            self.kill()
            raise
        finally:
            self.closing = True

    def kill(self) -> None:
        """Kill every rank still running and reap it."""
        self.closing = True
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
