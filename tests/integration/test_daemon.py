"""A real ``stratcastd`` subprocess on ipc sockets in tmp_path: runs, stops, crashes, restarts, bad messages."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.shared.client import Client, RequestFailed
from stratcast.shared.events import ProgressReported, RunUpdated
from stratcast.shared.protocol import (
    PROTOCOL,
    AddSchedule,
    Error,
    Hello,
    JobSpec,
    KillRun,
    ListRuns,
    ListSchedules,
    PauseSchedule,
    Placement,
    ReadHistory,
    ReadLogs,
    ResumeRun,
    ShowRun,
    Shutdown,
    Status,
    StopRun,
    Submit,
    decode_reply,
    encode,
)
from tests.integration.daemon_process import DaemonProcess

pytestmark = pytest.mark.slow

WAIT_S = 120.0
SHUTDOWN_STEPS = 3000
"""Long enough to shut the daemon down while the run trains, short enough to finish after the restart."""


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "panel.parquet"
    make_strategy_panel(40, 60, seed=3).to_parquet(path, index=False)
    return str(path)


@pytest.fixture
def short_home():
    """A home with a short path: unix socket paths are capped near 100 bytes, pytest's tmp paths run long."""
    home = Path(tempfile.mkdtemp(prefix="sc-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def daemon(short_home):
    d = DaemonProcess(short_home).start()
    yield d
    d.stop()


def job(panel: str, steps: int, *extra: str) -> JobSpec:
    sets = [f"max_steps={steps}", "batch_size=64", "val_size=0", "checkpoint_every_s=0.5", *extra]
    return JobSpec(data=panel, model="dlinear", horizon=4, input_size=8, device="cpu", sets=sets)


def wait_for(client: Client, run: int, states: tuple[str, ...], timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    info = {}
    while time.monotonic() < deadline:
        info = client.call(ShowRun(run=run))["run"]
        if info["state"] in states:
            return info
        time.sleep(0.1)
    log = client.call(ReadLogs(run=run))["text"]
    raise AssertionError(f"run {run} is {info.get('state')} ({info.get('reason')}), not {states}; log:\n{log}")


def test_a_submitted_run_succeeds_and_streams_progress(daemon, panel):
    with Client(daemon.home) as client, client.subscribe() as events:
        run = client.call(Submit(job=job(panel, 60)))["run"]
        assert run["state"] == "queued"
        info = wait_for(client, run["id"], ("succeeded", "failed"))
        assert info["state"] == "succeeded", info
        shown = client.call(ShowRun(run=run["id"]))
        assert shown["metrics"]["run"]["steps"] == 60
        topics = set()
        while (event := events.recv(timeout_s=0.2)) is not None:
            topics.add(event.topic)
        assert {"run", "progress", "heartbeat", "telemetry"} <= topics
    assert (Path(info["out"]) / "out" / "forecast.parquet").exists()


def test_a_run_after_another_starts_once_that_one_succeeded(daemon, panel):
    with Client(daemon.home) as client:
        first = client.call(Submit(job=job(panel, 300)))["run"]["id"]
        second = client.call(Submit(job=job(panel, 20), placement=Placement(after=[first])))["run"]["id"]
        assert client.call(ShowRun(run=second))["run"]["state"] == "queued"
        done = wait_for(client, second, ("succeeded", "failed"))
        assert done["state"] == "succeeded", done
        before = client.call(ShowRun(run=first))["run"]
        assert before["state"] == "succeeded" and done["started"] >= before["finished"]


def first_progress_of_attempt(events, run: int, attempt: int, timeout: float = WAIT_S):
    """The first progress event of the given attempt (events before it started are skipped)."""
    deadline, started = time.monotonic() + timeout, False
    while time.monotonic() < deadline:
        event = events.recv(timeout_s=1.0)
        if event is None:
            continue
        if event.run != run:
            continue
        if isinstance(event.data, RunUpdated) and event.data.run.attempts == attempt:
            started = True
        elif started and isinstance(event.data, ProgressReported):
            return event.data
    raise AssertionError(f"no progress from attempt {attempt} of run {run} in {timeout}s")


def test_stop_checkpoints_and_resume_continues_from_the_checkpoint(daemon, panel):
    with Client(daemon.home) as client, client.subscribe() as events:
        run = client.call(Submit(job=job(panel, 200_000)))["run"]["id"]
        wait_for(client, run, ("running",))
        deadline = time.monotonic() + WAIT_S
        while not client.call(ShowRun(run=run))["checkpoints"] and time.monotonic() < deadline:
            time.sleep(0.2)
        client.call(StopRun(run=run))
        stopped = wait_for(client, run, ("stopped", "failed"))
        assert stopped["state"] == "stopped", stopped
        checkpoints = client.call(ShowRun(run=run))["checkpoints"]
        step = int(Path(checkpoints[-1]).stem.removeprefix("step-"))  # the newest: where the stop saved it
        assert stopped["progress"]["step"] == step
        client.call(ResumeRun(run=run))
        again = wait_for(client, run, ("running",))
        assert again["attempts"] == 2
        first = first_progress_of_attempt(events, run, 2)
        log = client.call(ReadLogs(run=run))["text"]
        assert step < first.step <= step + 10, log  # continued from the checkpoint, not from step 0
        client.call(KillRun(run=run))
        killed = wait_for(client, run, ("killed",))
        assert killed["progress"].get("step", 0) >= step
        assert "resum" in client.call(ReadLogs(run=run))["text"].lower()
        history = client.call(ReadHistory(run=run, points=5000))
        stops = [c for c in history["checkpoints"] if c["stopped"]]
        assert [c["step"] for c in stops] == [step]
        resumed = [p["step"] for p in history["progress"] if p["time"] > stops[0]["time"]]
        assert resumed and resumed == sorted(resumed) and resumed[0] > step  # appended after the stop


def test_workers_killed_by_signals_fail_their_runs_with_the_cause_and_the_daemon_goes_on(daemon, panel):
    with Client(daemon.home) as client:
        for sig in (signal.SIGSEGV, signal.SIGKILL):
            run = client.call(Submit(job=job(panel, 200_000)))["run"]["id"]
            pid = wait_for(client, run, ("running",))["pid"]
            os.kill(pid, sig)
            failed = wait_for(client, run, ("failed",))
            assert sig.name in failed["exit"] and sig.name in failed["reason"]
        assert client.call(Status())["counts"]["failed"] == 2


def test_kill9_of_the_daemon_keeps_the_queue_and_resumes_interrupted_runs(short_home, panel):
    daemon = DaemonProcess(short_home).start()
    try:
        with Client(daemon.home) as client:
            running = client.call(Submit(job=job(panel, 200_000)))["run"]["id"]
            old_worker = wait_for(client, running, ("running",))["pid"]
            held = client.call(Submit(job=job(panel, 10), placement=Placement(hold=True)))["run"]["id"]
            client.call(AddSchedule(job=job(panel, 10), cron="0 22 * * 0", timezone="Europe/London"))
        daemon.kill9()
        daemon.start()
        with Client(daemon.home) as client:
            again = wait_for(client, running, ("running",))
            assert again["attempts"] == 2
            assert again["pid"] != old_worker and not alive(old_worker)  # never two workers on one run
            assert client.call(ShowRun(run=held))["run"]["state"] == "held"
            schedules = client.call(ListSchedules())["schedules"]
            assert [s["timezone"] for s in schedules] == ["Europe/London"]
            assert schedules[0]["next_run"] is not None
            client.call(PauseSchedule(schedule=schedules[0]["id"]))
            client.call(KillRun(run=running))
            wait_for(client, running, ("killed",))
    finally:
        daemon.stop()


def test_a_run_stopped_by_a_shutdown_resumes_from_its_checkpoint_at_the_next_start(short_home, panel):
    daemon = DaemonProcess(short_home).start()
    try:
        with Client(daemon.home) as client:
            run = client.call(Submit(job=job(panel, SHUTDOWN_STEPS)))["run"]["id"]
            wait_for(client, run, ("running",))
            deadline = time.monotonic() + WAIT_S
            while not client.call(ShowRun(run=run))["checkpoints"] and time.monotonic() < deadline:
                time.sleep(0.1)
            assert client.call(Shutdown())["stopping"] == [run]
        assert daemon.proc is not None and daemon.proc.wait(WAIT_S) == 0
        daemon.start()
        with Client(daemon.home) as client:
            done = wait_for(client, run, ("succeeded", "failed", "interrupted"))
            log = client.call(ReadLogs(run=run))["text"]
            assert done["state"] == "succeeded", log
            assert done["attempts"] == 2 and "resumed from step-" in log
            events = client.call(ShowRun(run=run))["events"]
            changes = [(e["data"].get("from"), e["data"]["to"]) for e in events if e["kind"] == "state"]
            assert changes[-4:] == [
                ("running", "interrupted"),
                ("interrupted", "queued"),
                ("queued", "running"),
                ("running", "succeeded"),
            ]
    finally:
        daemon.stop()


def test_bad_messages_get_error_replies_and_the_daemon_keeps_serving(daemon):
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(daemon.home.control)
    try:
        cases = {
            b"not json": "bad_request",
            b'{"type": "stop_run", "id": "1", "run": 3}': "handshake_required",
            b'{"type": "launch_missiles", "id": "2"}': "bad_request",
            b"x" * (2 << 20): "too_large",
            encode(Hello(id="3", protocol=PROTOCOL + 1)): "version_mismatch",
        }
        for frame, code in cases.items():
            sock.send(frame)
            assert sock.poll(10_000), f"no reply to {frame[:40]!r}"
            reply = decode_reply(sock.recv())
            assert isinstance(reply, Error) and reply.code == code, reply
        sock.send_multipart([b"a", b"b"])
        assert sock.poll(10_000)
        reply = decode_reply(sock.recv())
        assert isinstance(reply, Error) and reply.code == "bad_request"
    finally:
        sock.close()
    with Client(daemon.home) as client:
        assert client.call(ListRuns()) == {"runs": []}
        with pytest.raises(RequestFailed) as err:
            client.call(StopRun(run=99))
        assert err.value.code == "not_found"


def test_sockets_are_reachable_by_the_owner_only(daemon):
    sockets = daemon.home.sockets
    assert stat.S_IMODE(sockets.stat().st_mode) == 0o700
    for name in ("control", "events"):
        assert stat.S_IMODE((sockets / name).stat().st_mode) & 0o077 == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=300), st.builds(lambda n: encode(Hello(id="x", protocol=PROTOCOL))[:n], st.integers(0, 40))
    )
)
def test_random_frames_on_the_live_socket_never_break_the_daemon(daemon, frame):
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(daemon.home.control)
    try:
        sock.send(frame)
        assert sock.poll(10_000), "the daemon stopped answering"
        decode_reply(sock.recv())
    finally:
        sock.close()
    assert daemon.alive()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def free_port_pair():
    import socket

    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        with socket.socket() as b:
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free consecutive ports")


def test_tcp_admits_only_listed_curve_clients(short_home, tmp_path):
    import zmq.auth

    from stratcast.daemon.channels import make_keys
    from stratcast.shared.client import CurveKeys, DaemonUnavailable

    server_cert, client_cert = make_keys(tmp_path / "curve", "alice")
    port = free_port_pair()
    endpoint = f"tcp://127.0.0.1:{port}"
    daemon = DaemonProcess(short_home, "--tcp", endpoint, "--curve-dir", str(tmp_path / "curve")).start()
    try:
        server_public, _ = zmq.auth.load_certificate(server_cert)
        public, secret = zmq.auth.load_certificate(client_cert)
        assert secret is not None
        keys = CurveKeys(server_public=server_public, public=public, secret=secret)
        with Client(endpoint=endpoint, curve=keys, timeout_s=10) as client:
            assert client.hello["events"] == f"tcp://127.0.0.1:{port + 1}"
            assert "counts" in client.call(Status())
            with client.subscribe() as events:
                assert events.recv(timeout_s=5) is not None  # heartbeats arrive over CURVE too
        stranger_public, stranger_secret = zmq.curve_keypair()
        stranger = CurveKeys(server_public=server_public, public=stranger_public, secret=stranger_secret)
        with pytest.raises(DaemonUnavailable):
            Client(endpoint=endpoint, curve=stranger, timeout_s=2).connect()
        with pytest.raises(DaemonUnavailable):
            Client(endpoint=endpoint, timeout_s=2).connect()  # plain TCP, no CURVE
        assert daemon.alive()
    finally:
        daemon.stop()
