"""The handshake: a client of another protocol version is told both versions and what to upgrade."""

import asyncio
from types import SimpleNamespace
from typing import Any

from stratcast.daemon.dispatch import _answer
from stratcast.shared.cli import version
from stratcast.shared.protocol import PROTOCOL, Error, Hello


def answer(protocol: int) -> Error:
    daemon: Any = SimpleNamespace()  # a hello of another version touches nothing of the daemon
    channel: Any = SimpleNamespace(name="ipc")
    reply = asyncio.run(_answer(daemon, channel, b"me", Hello(id="1", protocol=protocol)))
    assert isinstance(reply, Error)
    return reply


def test_an_older_client_gets_version_mismatch_naming_both_versions_and_how_to_upgrade_it():
    reply = answer(PROTOCOL - 1)
    assert (reply.id, reply.code) == ("1", "version_mismatch")
    assert f"protocol {PROTOCOL}" in reply.message and f"client protocol {PROTOCOL - 1}" in reply.message
    assert "the client is older" in reply.message and "pip install -U stratcast" in reply.message
    assert version() in reply.message


def test_a_newer_client_is_told_to_upgrade_the_daemon():
    reply = answer(PROTOCOL + 1)
    assert reply.code == "version_mismatch"
    assert f"client protocol {PROTOCOL + 1}" in reply.message and "upgrade the daemon" in reply.message
