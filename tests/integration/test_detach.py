"""``stratcastd serve --detach``: returns once the daemon answers, so a script's next command finds it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from stratcast.shared.client import Client
from stratcast.shared.paths import resolve_home
from stratcast.shared.protocol import Shutdown, Status

pytestmark = pytest.mark.slow


@pytest.fixture
def short_home():
    """A home with a short path: unix socket paths are capped near 100 bytes, pytest's tmp paths run long."""
    home = Path(tempfile.mkdtemp(prefix="sc-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def _stratcastd(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "stratcast.daemon.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=os.environ.copy())


def _shutdown(home: Path, pid: int) -> None:
    with Client(resolve_home(home), timeout_s=10.0) as client:
        client.call(Shutdown())
    psutil.wait_procs([psutil.Process(pid)], timeout=60)


def test_detach_returns_with_a_daemon_that_answers_at_once(short_home):
    done = _stratcastd("serve", "--detach", "--home", str(short_home))
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split("(pid ")[1].split(";")[0])
    try:
        with Client(resolve_home(short_home), timeout_s=2.0) as client:  # no wait, no retry: it answers now
            assert client.call(Status())["pid"] == pid
        assert psutil.Process(pid).ppid() != os.getpid()  # in a session of its own, not a child of the caller
        assert (short_home / "daemon.log").stat().st_size > 0
    finally:
        _shutdown(short_home, pid)


def test_a_second_detached_daemon_on_the_same_home_fails_with_the_reason(short_home):
    first = _stratcastd("serve", "--detach", "--home", str(short_home))
    assert first.returncode == 0, first.stderr
    pid = int(first.stdout.split("(pid ")[1].split(";")[0])
    try:
        second = _stratcastd("serve", "--detach", "--home", str(short_home))
        assert second.returncode == 1
        assert "already serves" in second.stderr
        assert psutil.pid_exists(pid)
    finally:
        _shutdown(short_home, pid)
