import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import zmq

from stratcast.shared.client import (
    Client,
    CurveKeys,
    DaemonUnavailable,
    OutOfSync,
    RequestFailed,
    Subscriber,
    VersionMismatch,
)
from stratcast.shared.events import (
    AnyEvent,
    Event,
    GpuSample,
    HeartbeatSent,
    HostSample,
    LogAppended,
    MemorySampled,
    NoticeGiven,
    ProgressReported,
    RunRemoved,
    RunUpdated,
    TelemetrySampled,
    encode_event,
    event_fields,
)
from stratcast.shared.mirror import Mirror, follow_events, follow_logs
from stratcast.shared.paths import Home
from stratcast.shared.protocol import (
    PROTOCOL,
    Error,
    Hello,
    JobSpec,
    ListRuns,
    Placement,
    Reply,
    RunInfo,
    Snapshot,
    Status,
    convert,
    decode_request,
    encode,
    to_builtins,
)

Answer = Callable[[Any], Any]


def run_info(run_id, state="queued", **fields):
    info = RunInfo(
        id=run_id, name=f"r{run_id}", state=state, job=JobSpec(data="/d.parquet"), placement=Placement(), created=1.0
    )
    return to_builtins(info) | fields


def run_record(run_id, state="queued", **fields) -> RunInfo:
    """:func:`run_info` as the struct a ``run`` event carries."""
    record: RunInfo = convert(run_info(run_id, state, **fields), RunInfo)
    return record


class FakeDaemon:
    """A ROUTER and a PUB in a thread, answering like stratcastd from ``answers`` (request type -> result).

    An answer may return an ``Error`` (sent as is), a ``list`` of frames to send before the reply, or raise
    ``NoReply``. ``delays`` holds a reply back for some seconds. Events queued with ``publish`` get the next seq.
    """

    def __init__(self, home: Home, *, control: str | None = None, events: str | None = None, curve_secret=None):
        self.home = home
        self.control = control or home.control
        self.events = events or home.events
        self.curve_secret = curve_secret
        self.session, self.seq = "s1", 0
        self.runs: dict[int, dict[str, Any]] = {}
        self.logs: dict[int, str] = {}
        self.answers: dict[str, Answer] = {}
        self.delays: dict[str, float] = {}
        self.heartbeat_s: float | None = 0.05
        self.requests: list[tuple[bytes, Any]] = []
        self.greeted: set[bytes] = set()
        self._outbox: list[tuple[float, str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def publish(self, data: AnyEvent, run: int | None = None, *, seq: int | None = None) -> None:
        """Queue an event about ``run``; ``seq`` forces its number (to make a gap)."""
        with self._lock:
            self._outbox.append((0.0, "event", (data, run, seq)))

    def restart(self, session: str) -> None:
        """A new daemon session: seq starts again, nobody is greeted."""
        with self._lock:
            self._outbox.append((0.0, "restart", session))

    def snapshot(self) -> dict[str, Any]:
        return {"session": self.session, "seq": self.seq, "runs": list(self.runs.values()), "schedules": []}

    # -- the thread --------------------------------------------------------------------------------------------

    def _serve(self) -> None:
        ctx = zmq.Context()
        router, pub = ctx.socket(zmq.ROUTER), ctx.socket(zmq.PUB)
        for sock, endpoint in ((router, self.control), (pub, self.events)):
            sock.linger = 0
            if self.curve_secret is not None:
                sock.curve_server, sock.curve_secretkey = True, self.curve_secret
            sock.bind(endpoint.replace("tcp://*", "tcp://127.0.0.1"))
        self._ready.set()
        next_beat = time.monotonic()
        try:
            while not self._stop.is_set():
                if router.poll(5):
                    identity, frame = router.recv_multipart()
                    self._answer(identity, frame)
                self._flush(router, pub)
                beat = self.heartbeat_s  # read once: a test may turn heartbeats off from its own thread meanwhile
                if beat is not None and time.monotonic() >= next_beat:
                    self._send_event(pub, HeartbeatSent(), None, None)
                    next_beat = time.monotonic() + beat
        finally:
            router.close(0)
            pub.close(0)
            ctx.term()

    def _answer(self, identity: bytes, frame: bytes) -> None:
        request = decode_request(frame)
        self.requests.append((identity, request))
        kind = str(type(request).__struct_config__.tag)
        if not isinstance(request, Hello) and identity not in self.greeted:
            self._queue_reply(identity, Error(id=request.id, code="handshake_required", message="hello first"), 0.0)
            return
        answer = self.answers.get(kind, self._default(kind))
        try:
            result = answer(request)
        except NoReply:
            return
        if isinstance(request, Hello) and not isinstance(result, Error):
            self.greeted.add(identity)
        if isinstance(result, list):
            for extra in result[:-1]:
                self._queue_reply(identity, extra, 0.0)
            result = result[-1]
        reply = result if isinstance(result, Error) else Reply(id=request.id, result=result)
        self._queue_reply(identity, reply, self.delays.get(kind, 0.0))

    def _default(self, kind: str) -> Answer:
        defaults: dict[str, Answer] = {
            "hello": lambda r: {
                "protocol": PROTOCOL,
                "daemon": "0-test",
                "session": self.session,
                "events": self.events,
            },
            "snapshot": lambda r: self.snapshot(),
            "show_run": lambda r: {"run": self.runs[r.run], "metrics": None, "events": [], "checkpoints": []},
            "read_logs": self._read_logs,
        }
        return defaults.get(kind, lambda r: {"ok": kind})

    def _read_logs(self, request) -> dict[str, Any]:
        log = self.logs.get(request.run, "")
        text = log[request.offset : request.offset + request.limit]
        return {"text": text, "offset": request.offset + len(text), "size": len(log)}

    def _queue_reply(self, identity: bytes, reply, delay: float) -> None:
        with self._lock:
            self._outbox.append((time.monotonic() + delay, "reply", (identity, encode(reply))))

    def _flush(self, router, pub) -> None:
        now = time.monotonic()
        with self._lock:
            due = [item for item in self._outbox if item[0] <= now]
            self._outbox = [item for item in self._outbox if item[0] > now]
        for _, kind, payload in due:
            if kind == "reply":
                router.send_multipart(list(payload))
            elif kind == "event":
                self._send_event(pub, *payload)
            else:
                self.session, self.seq = payload, 0
                self.greeted.clear()

    def _send_event(self, pub, data: AnyEvent, run: int | None, seq: int | None) -> None:
        self.seq = self.seq + 1 if seq is None else seq
        pub.send_multipart(
            encode_event(Event(session=self.session, seq=self.seq, time=time.time(), run=run, data=data))
        )


class NoReply(Exception):
    """Raised by an answer: the fake daemon stays silent."""


@pytest.fixture
def home(tmp_path) -> Home:
    return Home(state=tmp_path, sockets=tmp_path / "sock").ensure()


@pytest.fixture
def daemon(home):
    with FakeDaemon(home) as fake:
        yield fake


@pytest.fixture
def client(home, daemon):
    with Client(home, timeout_s=2.0) as c:
        yield c


def test_connect_sends_hello_with_the_protocol_version(daemon, home):
    with Client(home) as client:
        assert client.session == "s1"
        assert client.events == home.events
    (_, hello), *_ = daemon.requests
    assert isinstance(hello, Hello)
    assert hello.protocol == PROTOCOL
    assert hello.client.startswith("stratcast")


def test_call_returns_the_result_of_the_matching_reply(daemon, client):
    daemon.answers["status"] = lambda r: {"daemon": "0-test", "pid": 42}
    assert client.call(Status()) == {"daemon": "0-test", "pid": 42}
    ids = [request.id for _, request in daemon.requests]
    assert len(set(ids)) == len(ids)


def test_an_error_reply_raises_request_failed_with_its_code_and_message(daemon, client):
    daemon.answers["stop_run"] = lambda r: Error(id=r.id, code="bad_state", message=f"run {r.run} is queued")
    from stratcast.shared.protocol import StopRun

    with pytest.raises(RequestFailed) as err:
        client.call(StopRun(run=7))
    assert (err.value.code, err.value.message) == ("bad_state", "run 7 is queued")


def test_a_version_error_on_hello_raises_version_mismatch(daemon, home):
    daemon.answers["hello"] = lambda r: Error(id=r.id, code="version_mismatch", message="daemon speaks 2")
    with pytest.raises(VersionMismatch, match="daemon speaks 2"), Client(home):
        pass


def test_no_socket_file_says_so_at_once_and_how_to_start_a_daemon(tmp_path):
    empty = Home(state=tmp_path, sockets=tmp_path / "sock")
    started = time.monotonic()
    with pytest.raises(DaemonUnavailable) as err:
        Client(empty, timeout_s=5).connect()
    assert time.monotonic() - started < 1
    assert isinstance(err.value, ConnectionError)
    message = str(err.value)
    assert empty.control in message
    assert f"stratcastd serve --home {tmp_path}" in message
    assert "systemctl start stratcastd" in message


def test_a_stale_socket_file_fails_fast(home):
    path = home.control.removeprefix("ipc://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)  # bound, never listening: what a crashed daemon leaves behind
        with pytest.raises(DaemonUnavailable, match="nothing listens"):
            Client(home, timeout_s=5).connect()


def test_a_timeout_rebuilds_the_socket_so_a_late_reply_cannot_answer_the_next_call(daemon, home):
    daemon.answers["status"] = lambda r: {"late": True}
    daemon.answers["list_runs"] = lambda r: {"runs": []}
    daemon.delays["status"] = 0.4
    with Client(home, timeout_s=0.2) as client:
        started = time.monotonic()
        with pytest.raises(DaemonUnavailable, match=r"no reply within 0\.2 s"):
            client.call(Status())
        assert time.monotonic() - started < 0.35
        time.sleep(0.4)  # the late reply is sent now, to the old socket
        assert client.call(ListRuns()) == {"runs": []}
    hellos = [identity for identity, request in daemon.requests if isinstance(request, Hello)]
    assert len(set(hellos)) == 2  # a new socket (a new peer), greeted again


def test_stale_replies_are_discarded(daemon, client):
    stale = Reply(id="not-this-one", result={"stale": True})
    daemon.answers["status"] = lambda r: [stale, {"fresh": True}]
    assert client.call(Status()) == {"fresh": True}


def test_a_restarted_daemon_is_greeted_again_transparently(daemon, client):
    daemon.restart("s2")
    time.sleep(0.05)
    assert client.call(Status()) == {"ok": "status"}
    assert client.session == "s2"


def test_a_silent_daemon_is_gone_after_the_idle_timeout(daemon, client):
    daemon.heartbeat_s = None
    with Subscriber(client.events, idle_timeout_s=0.3) as sub:
        started = time.monotonic()
        with pytest.raises(DaemonUnavailable, match=r"no event for 0\.3 s"):
            while True:
                sub.recv()
    assert 0.25 < time.monotonic() - started < 1.0


def test_events_that_queued_while_the_caller_was_busy_are_signs_of_life(daemon, client):
    with client.subscribe(idle_timeout_s=0.3) as sub:
        time.sleep(0.5)  # busy elsewhere; heartbeats queue up meanwhile
        assert sub.recv(timeout_s=0.1) is not None


def test_recv_returns_none_when_its_own_timeout_passes_first(daemon, client):
    daemon.heartbeat_s = None
    with client.subscribe(idle_timeout_s=5) as sub:
        assert sub.recv(timeout_s=0.05) is None


# -- the mirror ----------------------------------------------------------------------------------------------


def event(seq: int, data: AnyEvent | None = None, run: int | None = None, session: str = "s1") -> Event:
    return Event(session=session, seq=seq, time=100.0, run=run, data=data or HeartbeatSent())


def progress(step: int, max_steps: int) -> ProgressReported:
    return ProgressReported(
        step=step,
        max_steps=max_steps,
        epoch=0.1,
        train_loss=0.5,
        val_loss=None,
        best_val_loss=None,
        windows_per_s=9.0,
        eta_s=1.0,
        learning_rate=0.001,
        micro_batch=8,
    )


def gpu_sample(index: int, utilization: int) -> GpuSample:
    none: dict[str, Any] = dict.fromkeys(("memory_used", "memory_total", "temperature", "power_w", "power_limit_w"))
    return GpuSample(time=100.0, index=index, name="H100", uuid="GPU-1", utilization=utilization, **none)


def host_sample(cpu_percent: float) -> HostSample:
    return HostSample(time=100.0, cpu_percent=cpu_percent, memory_used=1, memory_total=2, daemon_rss=3)


def loaded_mirror() -> Mirror:
    mirror = Mirror()
    mirror.load(
        {
            "session": "s1",
            "seq": 5,
            "runs": [run_info(1, "running"), run_info(2)],
            "schedules": [],
            "gpus": [],
            "telemetry": {"gpus": {"0": [{"utilization": 50}]}, "host": [{"cpu": 10}], "runs": {"1": []}},
            "queue_paused": False,
            "notices": [],
        }
    )
    return mirror


def test_mirror_applies_run_progress_and_telemetry_events_in_order():
    mirror = loaded_mirror()
    assert mirror.apply(event(6, RunUpdated(run=run_record(2, "running", device="cuda:1")), run=2))
    assert mirror.apply(event(7, progress(10, 100), run=2))
    memory = MemorySampled(allocated=1, reserved=2, peak=3, oom_count=0, rss=4)
    telemetry = TelemetrySampled(gpus=[gpu_sample(0, 90)], host=host_sample(20.0), runs={2: memory})
    assert mirror.apply(event(8, telemetry))
    assert mirror.apply(event(9, RunRemoved(), run=1))
    assert mirror.apply(event(10, NoticeGiven(message="GPU 1 has no driver")))
    assert mirror.seq == 10
    assert set(mirror.runs) == {2}
    assert mirror.runs[2].state == "running"
    assert mirror.runs[2].progress == event_fields(progress(10, 100))
    assert mirror.runs[2].memory == {"allocated": 1, "reserved": 2, "peak": 3, "oom_count": 0, "rss": 4}
    assert [s["utilization"] for s in mirror.gpu_history[0]] == [50, 90]
    assert [s["kind"] for s in mirror.run_history[2]] == ["progress", "memory"]
    assert mirror.host == host_sample(20.0).to_dict() and mirror.host["cpu_percent"] == 20.0
    assert mirror.notices == ["GPU 1 has no driver"]


def test_mirror_ignores_events_the_snapshot_already_reflects():
    mirror = loaded_mirror()
    assert not mirror.apply(event(5, RunRemoved(), run=1))
    assert set(mirror.runs) == {1, 2}


@pytest.mark.parametrize(
    ("bad", "why"), [(event(7), "missed events 6..6"), (event(6, session="s2"), "new daemon session s2")]
)
def test_mirror_asks_for_a_new_snapshot_on_a_gap_or_a_new_session(bad, why):
    mirror = loaded_mirror()
    with pytest.raises(OutOfSync, match=why):
        mirror.apply(bad)
    assert mirror.seq == 5


def test_mirror_needs_a_snapshot_first():
    with pytest.raises(OutOfSync, match="no snapshot"):
        Mirror().apply(event(1))


# -- following -----------------------------------------------------------------------------------------------


def until(events, predicate, limit: int = 200):
    """Advance a follow generator until ``predicate(item)``; every item seen on the way."""
    seen = []
    for item in events:
        seen.append(item)
        if predicate(item) or len(seen) >= limit:
            return seen
    return seen


def is_kind(kind: type):
    return lambda item: item is not None and isinstance(item.data, kind)


def test_follow_events_takes_a_new_snapshot_when_the_daemon_restarts(daemon, client):
    daemon.runs[1] = run_info(1)
    mirror = Mirror()
    events = follow_events(client, mirror, idle_timeout_s=2)
    until(events, is_kind(HeartbeatSent))  # subscribed for sure: later events cannot be lost to a slow join
    daemon.publish(RunUpdated(run=run_record(1, "running")), 1)
    until(events, is_kind(RunUpdated))
    assert mirror.runs[1].state == "running"
    daemon.runs = {2: run_info(2)}
    daemon.restart("s2")
    seen = until(events, lambda item: item is None)
    assert seen[-1] is None
    assert mirror.session == "s2"
    assert set(mirror.runs) == {2}
    assert sum(isinstance(r, Snapshot) for _, r in daemon.requests) >= 2
    events.close()


def test_follow_events_takes_a_new_snapshot_after_a_gap(daemon, client):
    mirror = Mirror()
    events = follow_events(client, mirror, idle_timeout_s=2)
    until(events, is_kind(HeartbeatSent))
    snapshots = sum(isinstance(r, Snapshot) for _, r in daemon.requests)
    daemon.runs[3] = run_info(3, "running")
    daemon.publish(RunUpdated(run=run_record(3, "running")), 3, seq=daemon.seq + 5)
    seen = until(events, lambda item: item is None)
    assert seen[-1] is None
    assert 3 in mirror.runs
    assert sum(isinstance(r, Snapshot) for _, r in daemon.requests) == snapshots + 1
    events.close()


def test_follow_logs_reads_new_text_until_every_run_has_ended(daemon, home):
    daemon.runs = {1: run_info(1, "running"), 2: run_info(2, "running")}
    daemon.logs = {1: "one\n", 2: "two\n"}
    chunks: list[tuple[int, str]] = []

    def consume():
        with Client(home) as client:
            chunks.extend(follow_logs(client, [1, 2], idle_timeout_s=2))

    consumer = threading.Thread(target=consume)
    consumer.start()
    time.sleep(0.2)
    daemon.logs[1] += "more\n"
    daemon.publish(LogAppended(text="more\n", offset=4), 1)
    time.sleep(0.1)
    for run_id in (1, 2):
        daemon.logs[run_id] += "done\n"
        daemon.runs[run_id] = run_info(run_id, "succeeded")
        daemon.publish(RunUpdated(run=convert(daemon.runs[run_id], RunInfo)), run_id)
    consumer.join(5)
    assert not consumer.is_alive()
    assert "".join(text for run, text in chunks if run == 1) == "one\nmore\ndone\n"
    assert "".join(text for run, text in chunks if run == 2) == "two\ndone\n"


def test_follow_logs_of_a_finished_run_prints_it_and_ends(daemon, client):
    daemon.runs = {4: run_info(4, "failed")}
    daemon.logs = {4: "x" * 100_000}
    text = "".join(chunk for _, chunk in follow_logs(client, [4], offset=10, idle_timeout_s=2))
    assert text == "x" * 99_990


def test_a_curve_client_reaches_a_tcp_daemon_and_finds_its_events(home):
    server_public, server_secret = zmq.curve_keypair()
    public, secret = zmq.curve_keypair()
    ports = [_free_port(), _free_port()]
    fake = FakeDaemon(
        home, control=f"tcp://127.0.0.1:{ports[0]}", events=f"tcp://*:{ports[1]}", curve_secret=server_secret
    )
    keys = CurveKeys(server_public=server_public, public=public, secret=secret)
    with fake, Client(endpoint=fake.control, curve=keys, timeout_s=2) as client:
        assert client.events == f"tcp://127.0.0.1:{ports[1]}"  # the wildcard bind host replaced
        with client.subscribe(idle_timeout_s=2) as sub:
            assert sub.recv() is not None
        wrong = CurveKeys(server_public=zmq.curve_keypair()[0], public=public, secret=secret)
        with pytest.raises(DaemonUnavailable):
            Client(endpoint=fake.control, curve=wrong, timeout_s=0.3).connect()


def test_a_forwarded_ipc_socket_finds_its_events_beside_it_not_where_the_daemon_named_them(home, tmp_path):
    forwarded = tmp_path / "fwd"  # as `ssh -L` makes them: both sockets reached through other paths
    forwarded.mkdir(mode=0o700)
    for name in ("control", "events"):
        (forwarded / name).symlink_to(home.sockets / name)
    with FakeDaemon(home), Client(endpoint=f"ipc://{forwarded / 'control'}", timeout_s=2) as client:
        client.connect()
        assert client.hello["events"] == home.events
        assert client.events == f"ipc://{forwarded / 'events'}"
        with client.subscribe(idle_timeout_s=2) as sub:
            assert sub.recv() is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_socket_folder_of_another_user_is_reported_as_such(home):
    home.sockets.chmod(0o000)
    try:
        if _can_enter(home.sockets):
            pytest.skip("running as root: permissions do not apply")
        with pytest.raises(DaemonUnavailable, match="permission denied"):
            Client(home).connect()
    finally:
        home.sockets.chmod(0o700)


def _can_enter(folder) -> bool:
    import os

    return os.access(folder, os.X_OK)
