"""A real ``stratcastd`` subprocess on ipc sockets in a test folder, and the readiness helper to reach it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from stratcast.shared.paths import Home, resolve_home
from stratcast.shared.protocol import PROTOCOL, Hello, decode_reply, encode

STARTUP_S = 60.0


class DaemonProcess:
    """Start, wait for, signal and stop one daemon serving ``home``."""

    def __init__(self, home: Path, *extra: str) -> None:
        self.home: Home = resolve_home(home)
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / "daemon.log"

    def start(self) -> DaemonProcess:
        """Launch the daemon and return once it answers ``hello``."""
        self.home.state.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("STRATCAST_HOME", None)
        cmd = [sys.executable, "-m", "stratcast.daemon.cli", "serve", "--home", str(self.home.state), *self.extra]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_ready(self.home.control, STARTUP_S, self)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the daemon (its workers live on in their own sessions until they notice)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful shutdown) and wait; SIGKILL if it does not exit in ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"daemon did not stop in {timeout}s; log:\n{self.output()}") from None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-5000:]
        except OSError:
            return ""


def wait_ready(endpoint: str, timeout: float, daemon: Any = None) -> None:
    """Poll with ``hello`` until the daemon at ``endpoint`` answers.

    Raises:
        AssertionError: when it does not answer within ``timeout`` seconds or its process exits.
    """
    deadline = time.monotonic() + timeout
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    while time.monotonic() < deadline:
        if daemon is not None and not daemon.alive():
            raise AssertionError(f"daemon exited with {daemon.proc.returncode}; log:\n{daemon.output()}")
        if Path(endpoint.removeprefix("ipc://")).exists():
            sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.connect(endpoint)
            sock.send(encode(Hello(id="ready", protocol=PROTOCOL)))
            ok = sock.poll(500)
            reply = decode_reply(sock.recv()) if ok else None
            sock.close()
            if reply is not None:
                return
        time.sleep(0.1)
    raise AssertionError(f"daemon at {endpoint} not ready in {timeout}s")
