"""One daemon per home, and the workers a dead daemon left behind: what the daemon asks of the operating system.

A daemon holds an exclusive ``flock`` on its home's lock file while it serves (the file holds its pid, for the
message another daemon gets); a worker still running from a daemon that died is stopped before its run is
queued again, so two workers never write one run's folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import psutil

log = logging.getLogger("stratcastd")


class DaemonRunning(RuntimeError):
    """Another daemon already serves this home."""


def end_orphan(pid: int, timeout: float) -> None:
    """SIGTERM a worker left by a dead daemon (only if ``pid`` still is a stratcast worker), SIGKILL it if it hangs."""
    try:
        proc = psutil.Process(pid)
        if "stratcast.daemon.worker" not in " ".join(proc.cmdline()):
            return  # the pid was reused by something else
        log.warning("stopping worker %d left running by the previous daemon", pid)
        proc.terminate()
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        proc.kill()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass


@contextlib.contextmanager
def single_instance(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` while serving.

    Raises:
        DaemonRunning: when another daemon holds it.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise DaemonRunning(
                f"another stratcastd (pid {other or '?'}) already serves {lock_path.parent}; "
                f"stop it first or use another --home"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
