"""One daemon per test module, in a short temporary home, and a client on it (a module may define its own)."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratcast.shared.client import Client
from tests.integration.daemon_process import DaemonProcess


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    home = Path(tempfile.mkdtemp(prefix="sc-"))  # unix socket paths are capped near 100 bytes
    process = DaemonProcess(home).start()
    try:
        yield process
    finally:
        process.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def client(daemon: DaemonProcess) -> Iterator[Client]:
    with Client(daemon.home) as c:
        yield c
