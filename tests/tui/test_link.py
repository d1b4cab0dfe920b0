"""The TUI's link against a real daemon: snapshot, live events, and surviving a daemon restart."""

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from stratcast.shared.aclient import AsyncClient
from stratcast.shared.client import DaemonUnavailable
from stratcast.shared.protocol import HoldRun, JobSpec, Placement, ShowRun, Submit
from stratcast.tui.link import ZmqLink
from tests.integration.daemon_process import DaemonProcess


@pytest.fixture
def home():
    path = Path(tempfile.mkdtemp(prefix="sc-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def held_job(tmp: Path) -> Submit:
    data = tmp / "panel.csv"
    data.write_text("unique_id,ds,y\n" + "".join(f"a,{t},{t % 3}\n" for t in range(200)))
    return Submit(job=JobSpec(data=str(data), horizon=4, holdout=0), placement=Placement(name="kept", hold=True))


def test_link_follows_the_daemon_and_comes_back_after_a_restart(home):
    daemon = DaemonProcess(home).start()

    async def scenario():
        link = ZmqLink(AsyncClient(daemon.home, timeout_s=5.0), retry_s=0.2)
        task = asyncio.create_task(link.run())
        try:
            await wait_for(lambda: link.state == "live")
            result = await link.call(held_job(home))
            run_id = result["run"]["id"]
            await wait_for(lambda: run_id in link.mirror.runs)  # through a `run` event
            assert link.mirror.runs[run_id].state == "held"
            session = link.mirror.session

            daemon.kill9()
            await wait_for(lambda: link.state == "reconnecting")
            assert run_id in link.mirror.runs, "the last state stays on screen while the daemon is away"
            daemon.start()
            await wait_for(lambda: link.state == "live" and link.mirror.session != session)
            assert link.mirror.runs[run_id].name == "kept"
            shown = await link.call(ShowRun(run=run_id))  # requests work again on the new connection
            assert shown["run"]["state"] == "held"
        finally:
            task.cancel()
            link.client.close()

    try:
        asyncio.run(scenario())
    finally:
        daemon.stop()


def test_link_without_a_daemon_says_connecting_and_why(home):
    async def scenario():
        from stratcast.shared.paths import resolve_home

        link = ZmqLink(AsyncClient(resolve_home(home), timeout_s=1.0), retry_s=0.1)
        task = asyncio.create_task(link.run())
        await asyncio.sleep(0.5)
        task.cancel()
        assert link.state == "connecting"
        assert "no socket file" in link.detail
        with pytest.raises(DaemonUnavailable):
            await link.call(HoldRun(run=1))

    asyncio.run(scenario())
