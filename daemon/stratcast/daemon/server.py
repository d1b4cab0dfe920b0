"""``stratcastd serve``: the daemon's event loop, sockets, events and run lifecycle.

One asyncio loop owns everything: the control ROUTER (each request handled in its own task, slow work in
threads, so a stop or kill is never queued behind a slow request), the event PUB, the ZAP handler, the admission
loop that starts queued runs on free devices, the telemetry sampler, the schedule timetable and the workers'
pipes. Every state change is committed to SQLite before it is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, assert_never

import msgspec
import zmq
import zmq.asyncio

from stratcast.daemon import sdnotify
from stratcast.daemon.channels import Channel, open_ipc, open_tcp
from stratcast.daemon.dispatch import handle_request
from stratcast.daemon.engine.study.objectives import intermediate_value
from stratcast.daemon.executors.base import HEALTHY, SHUTDOWN_REASON, Ending, open_executor
from stratcast.daemon.executors.ray import RayOptions
from stratcast.daemon.executors.slurm import SlurmOptions
from stratcast.daemon.history import HistoryWriter
from stratcast.daemon.instance import end_orphan, single_instance
from stratcast.daemon.publisher import LogTail, Publisher
from stratcast.daemon.queue import DeviceView, plan
from stratcast.daemon.schedules import Timetable
from stratcast.daemon.store import Store
from stratcast.daemon.studies import StudyManager
from stratcast.daemon.telemetry import GpuId, Telemetry, session_of
from stratcast.daemon.zap import serve_zap
from stratcast.shared.cli import version
from stratcast.shared.events import (
    AnyEvent,
    CheckpointSaved,
    CutoffScored,
    HeartbeatSent,
    MemorySampled,
    NoticeGiven,
    PlanChosen,
    ProgressReported,
    RanOutOfMemory,
    RunFailed,
    RunFinished,
    RunStopped,
    RunUpdated,
    ShutdownStarted,
    WarningGiven,
    WorkerEvent,
    WorkerStarted,
    event_fields,
    event_kind,
)
from stratcast.shared.paths import Home
from stratcast.shared.protocol import HEARTBEAT_S, RunInfo
from stratcast.shared.runfiles import RunFolder

log = logging.getLogger("stratcastd")

MAX_PEERS = 10_000
"""Handshaken client identities remembered (oldest forgotten first)."""
PROGRESS_SAVE_S = 5.0
"""ProgressReported is published at once but written to the store at most this often per run."""
NOTICES_KEPT = 100
"""Notices a new client is shown (the latest last); older ones are only in the daemon's log."""


@dataclass(frozen=True)
class Options:
    """How the daemon runs."""

    cpu_slots: int = 1
    """Concurrent runs on a machine without GPUs."""
    telemetry_hz: float = 5.0
    restart_budget: int = 3
    """Automatic resumes of a run after daemon crashes before it is left for the user (shutdowns do not count)."""
    stop_timeout_s: float = 240.0
    """How long shutdown waits for running runs to checkpoint before killing them."""
    min_free_gib: float = 1.0
    """A GPU with less free memory than this gets no exclusive run."""
    gpus: tuple[GpuId, ...] | None = None
    """The GPUs (NVML indices or UUIDs) the daemon may use; None: every GPU of the machine."""
    executor: str = "local"
    """What runs the runs (:data:`stratcast.daemon.executors.base.EXECUTORS`)."""
    ray: RayOptions | None = None
    """The Ray cluster of the ``ray`` executor (None: :class:`RayOptions`'s defaults)."""
    slurm: SlurmOptions | None = None
    """The cluster and job sizes of the ``slurm`` executor (None: :class:`SlurmOptions`'s defaults)."""
    uids: tuple[int, ...] = ()
    """Further UIDs admitted on the ipc sockets (the daemon's own always is)."""
    tcp: str | None = None
    """``tcp://HOST:PORT`` to also serve over TCP (events on PORT+1), CURVE only; None: ipc only."""
    curve_dir: Path | None = None
    """The daemon's CURVE certificate and the client allow-list (``stratcastd keys``), for ``tcp``."""


class Daemon:
    """The daemon's state and services; handlers act on it as a ``DaemonContext`` (``handlers/context.py``)."""

    def __init__(self, home: Home, options: Options | None = None) -> None:
        self.home, self.options = home, options or Options()
        self.publisher = Publisher(secrets.token_hex(8))
        self.started = time.time()
        self.store: Store | None = None
        self.telemetry = Telemetry(rate_hz=self.options.telemetry_hz, gpus=self.options.gpus)
        self.runner = open_executor(
            self.options.executor,
            self._worker_event,
            self._worker_exit,
            home.workspace,
            ray=self.options.ray,
            slurm=self.options.slurm,
            cpu_slots=self.options.cpu_slots,
        )
        """The executor: whatever runs the runs (local worker processes, a Ray cluster, Slurm)."""
        self.history = HistoryWriter(home.runs)
        self.timetable = Timetable(self._fire_schedule)
        self.peers: OrderedDict[tuple[str, bytes], float] = OrderedDict()
        self.notices: list[str] = []
        self._health: str | None = None
        """The executor's health at the last admission (None before the first)."""
        self.shutting_down = asyncio.Event()
        self.force_exit = False
        self._kick = asyncio.Event()
        self._saved: dict[int, float] = {}
        self.logs = LogTail(home.runs, self.publish)
        self._requests: set[asyncio.Task[None]] = set()
        self._memory: dict[int, MemorySampled] = {}
        """Latest allocator figures of each running run's worker."""
        self._progress: dict[int, dict[str, Any]] = {}
        """Latest progress of each running run (the store holds one at most PROGRESS_SAVE_S old)."""
        self._save_later: dict[int, asyncio.TimerHandle] = {}
        """Runs whose latest progress the store gets when PROGRESS_SAVE_S has passed since it got their last."""
        self.validation = asyncio.Semaphore(2)
        self.studies = StudyManager(self)
        self.ctx: zmq.asyncio.Context | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run until a shutdown request or signal; leave the queue and checkpoints for the next start."""
        self.home.ensure()
        with single_instance(self.home.lock):
            self.store = Store(self.home.database)
            try:
                await self._serve()
            finally:
                self.store.close()

    @property
    def session(self) -> str:
        """This daemon process's id: clients see a restart as a new session."""
        return self.publisher.session

    @property
    def seq(self) -> int:
        """The sequence number of the last published event."""
        return self.publisher.seq

    @property
    def channels(self) -> list[Channel]:
        """The open channels (ipc, and tcp when configured)."""
        return self.publisher.channels

    async def _serve(self) -> None:
        self._recover()
        self.ctx = zmq.asyncio.Context()
        keys: set[bytes] = set()
        self.publisher.channels = [open_ipc(self.ctx, self.home)]
        if self.options.tcp is not None:
            assert self.options.curve_dir is not None, "--tcp needs --curve-dir"
            tcp, keys = open_tcp(self.ctx, self.options.tcp, self.options.curve_dir)
            self.channels.append(tcp)
        # the ZAP handler must be bound before the first connection arrives: start it before any other await
        tasks = [asyncio.create_task(serve_zap(self.ctx, {os.getuid(), *self.options.uids}, keys))]
        self.timetable.start()
        for s in self.db.list_schedules():
            self.timetable.put(s)
        for channel in self.channels:
            tasks.append(asyncio.create_task(self._control_loop(channel)))
        for loop in (self._heartbeat_loop, self._telemetry_loop, self._admission_loop, self.studies.loop):
            tasks.append(asyncio.create_task(loop()))
        self._install_signals()
        # import the engine (torch, pandas: ~1.5 s) now, not inside the first submit's validation
        tasks.append(asyncio.create_task(asyncio.to_thread(_warm_imports)))
        sdnotify.notify("READY=1")
        log.info("stratcastd %s serving %s (session %s)", version(), self.home.control, self.session)
        try:
            await self.shutting_down.wait()
            await self._drain()
        finally:
            self.timetable.shutdown()
            self.history.close_all()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.runner.close()
            self._close_sockets()

    def _close_sockets(self) -> None:
        for channel in self.channels:
            channel.close()
        if self.ctx is not None:
            self.ctx.term()

    def _install_signals(self) -> None:
        """First SIGTERM/SIGINT: graceful shutdown; a second one: kill the workers and exit."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_shutdown)

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown, or force it when one is under way."""
        if self.shutting_down.is_set():
            self.force_exit = True
            for run in list(self.runner.workers):
                self.runner.kill(run, shutdown=True)
        self.shutting_down.set()

    async def _drain(self) -> None:
        """Shutdown: stop running runs with a checkpoint (they resume at the next start), keep the queue."""
        sdnotify.notify("STOPPING=1")
        self.publish(ShutdownStarted())
        running = list(self.runner.workers)
        for run in running:
            self.runner.stop(run, shutdown=True)
        if running:
            sdnotify.notify(f"EXTEND_TIMEOUT_USEC={int(self.options.stop_timeout_s * 1e6) + 10_000_000}")
            await self.runner.wait_all(self.options.stop_timeout_s)

    def _recover(self) -> None:
        """Queue again the runs the last daemon stopped at its shutdown, and those it left running (a crash).

        Runs left running are ``interrupted``; those within the restart budget are requeued. A worker that
        outlived its daemon is stopped first (it checkpoints on SIGTERM), so two workers never write one run's
        folder. A shutdown is not a crash: its runs are always requeued and do not use up the budget.
        """
        for run in self.db.list_runs(("interrupted",)):
            if run.reason == SHUTDOWN_REASON:
                self._requeue(run, "shutdown", "the daemon shut down")
        for run in self.db.recover(time.time()):
            if run.pid is not None:
                end_orphan(run.pid, self.options.stop_timeout_s)
            self._maybe_requeue(run)

    def _maybe_requeue(self, run: RunInfo) -> None:
        # crashes since the user last resumed or restarted the run: a resume gives it a fresh budget
        crashes = self.db.count_events(run.id, "requeued", since=("resumed", "restarted"), why="interrupted") + 1
        if crashes > self.options.restart_budget:
            self.db.update_run(run.id, reason=f"interrupted {crashes} times; `stratcast resume {run.id}` to retry")
            return
        self._requeue(run, "interrupted", "interrupted")

    def _requeue(self, run: RunInfo, why: str, what: str) -> None:
        """Queue ``run`` again, to resume from its checkpoint; ``why`` is recorded, ``what`` opens its reason."""
        how = (
            "from its last checkpoint"
            if RunFolder(Path(run.out)).has_checkpoint()
            else "from scratch (no checkpoint yet)"
        )
        self.db.update_run(run.id, state="queued", reason=f"{what}; resumes {how}")
        self.db.add_event(run.id, "requeued", {"why": why, "how": how})

    # -- events ------------------------------------------------------------------------------------------------

    @property
    def db(self) -> Store:
        """The open store."""
        assert self.store is not None, "the daemon is not serving"
        return self.store

    def publish(self, event: AnyEvent, run: int | None = None) -> None:
        """Publish ``event`` about ``run`` (None: the daemon), after the state it describes is committed."""
        self.publisher.publish(event, run)

    def run_changed(self, run: RunInfo) -> RunInfo:
        """Announce a run's new record and let the queue reconsider."""
        self.publish(RunUpdated(run=run), run.id)
        self.kick()
        return run

    def update_run(self, run_id: int, **fields: Any) -> RunInfo:
        """Commit a change to a run, then announce it."""
        return self.run_changed(self.db.update_run(run_id, **fields))

    def kick(self) -> None:
        """Ask the admission loop to look at the queue now."""
        self._kick.set()

    # -- loops -------------------------------------------------------------------------------------------------

    async def _control_loop(self, channel: Channel) -> None:
        while True:
            frames = await channel.router.recv_multipart()
            if len(frames) < 2:
                continue
            identity, body = frames[0], frames[1:]
            task = asyncio.create_task(handle_request(self, channel, identity, body))
            self._requests.add(task)  # keep a reference until done (the loop holds only weak ones)
            task.add_done_callback(self._requests.discard)

    def greet(self, peer: tuple[str, bytes]) -> None:
        """Remember a client (channel name, identity) that completed the handshake."""
        self.peers[peer] = time.time()
        self.peers.move_to_end(peer)
        while len(self.peers) > MAX_PEERS:
            self.peers.popitem(last=False)

    async def _heartbeat_loop(self) -> None:
        interval = sdnotify.watchdog_interval()
        last_ping = 0.0
        while True:
            self.publish(HeartbeatSent())
            if interval is not None and time.monotonic() - last_ping >= interval:
                sdnotify.notify("WATCHDOG=1")
                last_ping = time.monotonic()
            await asyncio.sleep(HEARTBEAT_S if interval is None else min(HEARTBEAT_S, interval))

    async def _telemetry_loop(self) -> None:
        period = 1.0 / self.options.telemetry_hz
        while True:
            self.telemetry.watch_pids([w.pid for w in self.runner.workers.values() if w.pid is not None])
            sample = await asyncio.to_thread(self.telemetry.sample)
            runs = {r: self._memory[r] for r in self.runner.workers if r in self._memory}
            self.publish(msgspec.structs.replace(sample, runs=runs))
            for notice in self.telemetry.take_notices():  # a GPU lost or back: tell clients too
                self.notice(notice)
            self.logs.publish_new()
            await asyncio.sleep(period)

    async def _admission_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=2.0)
            self._kick.clear()
            if self.shutting_down.is_set():
                return
            try:
                await self.admit()
            except Exception:  # a bug here must not stop the queue for good: log it and try again
                log.exception("admission failed")

    def notice(self, message: str) -> None:
        """Keep ``message`` for new clients (the last :data:`NOTICES_KEPT`) and tell connected ones."""
        self.notices.append(message)
        del self.notices[:-NOTICES_KEPT]
        self.publish(NoticeGiven(message=message))

    def _health_notice(self, health: str) -> None:
        """A notice when the executor's health changes (the TUI's status line shows the last notice)."""
        if health == self._health:
            return
        if health != HEALTHY:
            self.notice(f"{self.runner.name} executor: {health}")
        elif self._health is not None:  # a healthy start says nothing
            self.notice(f"{self.runner.name} executor: ok, runs start again")
        self._health = health

    async def admit(self) -> None:
        """Start what the queue allows now; record why every other queued run waits.

        Runs that asked for ``device: cpu`` are planned against the CPU's slots; the rest against the GPUs, or
        the CPU where there are none. While the executor is unreachable, nothing starts and queued runs say why.
        """
        runs = self.db.list_runs(("queued", "held", "running"))
        self._health_notice(health := self.runner.health())
        if health != HEALTHY:  # the runs wait for it; none fails
            for run in runs:
                reason = f"waiting for the {self.runner.name} executor: {health}"
                if run.state == "queued" and run.reason != reason:
                    self.update_run(run.id, reason=reason)
            return
        paused = bool(self.db.get_meta("queue_paused", False))
        if (slots := self.runner.slots()) is not None:  # a cluster places each task: plan against its slots
            groups = [(runs, [self.cpu_device(runs, self.runner.name)])]
        else:
            gpus = self.gpu_devices(runs)
            on_cpu = [r for r in runs if not gpus or r.job.device == "cpu"]
            groups = [(on_cpu, [self.cpu_device(on_cpu)])]
            if gpus:
                groups.append(([r for r in runs if r.job.device != "cpu"], gpus))
        by_id = {r.id: r for r in runs}
        dependencies = [*runs, *self._finished_dependencies(runs)]  # a group's runs may wait for another's
        for group, devices in groups:
            decision = plan(
                group,
                devices,
                paused=paused,
                cpu_slots=self.options.cpu_slots if slots is None else max(1, slots),
                min_free_mib=self.options.min_free_gib * 1024,
                dependencies=dependencies,
            )
            for run_id, reason in decision.reasons.items():
                if by_id[run_id].reason != reason:
                    self.update_run(run_id, reason=reason)
            for run_id, device in decision.starts:
                await self.start_run(by_id[run_id], device)

    def _finished_dependencies(self, runs: list[RunInfo]) -> list[RunInfo]:
        """The runs that queued runs of ``runs`` wait for and ``runs`` lacks: read by id, not every finished run."""
        known = {r.id for r in runs}
        return self.db.get_runs({dep for r in runs if r.state == "queued" for dep in r.placement.after} - known)

    def devices(self, runs: list[RunInfo]) -> list[DeviceView]:
        """The devices runs can go to: the GPUs (NVML) and the CPU, or a cluster executor's slots."""
        if self.runner.slots() is not None:
            return [self.cpu_device(runs, self.runner.name)]
        return [*self.gpu_devices(runs), self.cpu_device(runs)]

    def gpu_devices(self, runs: list[RunInfo]) -> list[DeviceView]:
        """The GPUs NVML sees, with the daemon's runs on each and the processes it does not own."""
        running = [r for r in runs if r.state == "running"]
        ours = {w.pid for w in self.runner.workers.values()}
        views = []
        for g in self.telemetry.gpu_views():
            on = [r for r in running if f"cuda:{g['index']}" in (r.device or "").split(",")]  # may span several
            views.append(
                DeviceView(
                    name=f"cuda:{g['index']}",
                    index=g["index"],
                    total_mib=g["total_mib"],
                    free_mib=g["free_mib"],
                    # a data-parallel run's other ranks are its worker's children, in the worker's session
                    foreign=tuple(p for p in g["pids"] if p not in ours and session_of(p) not in ours),
                    runs=tuple(r.id for r in on),
                    caps_gib=tuple(r.placement.memory_gib for r in on),
                )
            )
        return views

    def cpu_device(self, runs: list[RunInfo], name: str = "cpu") -> DeviceView:
        """The CPU (or a cluster's slots: ``name`` is its executor's), with the runs of ``runs`` running on it."""
        on = [r for r in runs if r.state == "running" and r.device == name]
        slots = [r for r in on for _ in range(r.placement.gpus)]  # a data-parallel run takes a slot per process
        total, available = self.telemetry.host_memory()
        return DeviceView(
            name=name,
            index=None,
            total_mib=total / 2**20,
            free_mib=available / 2**20,
            runs=tuple(r.id for r in slots),
            caps_gib=tuple(r.placement.memory_gib for r in slots),
        )

    async def start_run(self, run: RunInfo, device: str) -> None:
        """Start a worker for ``run`` on ``device``; a failure to start fails the run, not the daemon."""
        run_dir = Path(run.out)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            w = await self.runner.start(run.id, run_dir, device, run.placement.memory_gib, run.placement.gpus)
        except OSError as exc:
            self.update_run(run.id, state="failed", reason=f"could not start its worker: {exc}", finished=time.time())
            return
        self.logs.follow(run.id)
        self.db.add_event(run.id, "started", {"device": device, "pid": w.pid})
        self.update_run(
            run.id,
            state="running",
            reason="",
            device=device,
            pid=w.pid,
            started=time.time(),
            finished=None,
            attempts=run.attempts + 1,
            exit="",
        )

    # -- workers -----------------------------------------------------------------------------------------------

    def _worker_event(self, run: int, event: WorkerEvent) -> None:
        kind, fields = event_kind(event), event_fields(event)
        self.history.append(run, event)
        match event:
            case ProgressReported():
                self._progress_reported(run, event, fields)
            case MemorySampled():
                self._memory[run] = event
                self.telemetry.add_run_sample(run, {"kind": "memory", **fields})
            case CheckpointSaved(path=path):
                self.db.add_event(run, "checkpoint", fields)
                self.update_run(run, checkpoint=path)
            case RunStopped(path=path, step=step):  # progress is throttled: record the step the run really stopped at
                self._progress[run] = {**self._progress.get(run, {}), "step": step}
                if path != self.db.get_run(run).checkpoint:  # the stop's checkpoint came as its own event already
                    self.db.add_event(run, "checkpoint", fields)
                self.update_run(run, checkpoint=path)
            case RanOutOfMemory() | PlanChosen() | WarningGiven():
                self.db.add_event(run, kind, fields)
                self.publish(event, run)
            case CutoffScored(cutoff=cutoff, value=value):
                self.db.add_event(run, kind, fields)
                self.publish(event, run)
                if self.studies.live and (info := self.db.get_run(run)).study is not None:
                    self.studies.cutoff(info, cutoff, value)
            case WorkerStarted() | RunFinished() | RunFailed():
                pass  # the daemon records a start and an ending itself, from the process
            case _:
                assert_never(event)  # mypy: a new event kind must be handled here

    def _progress_reported(self, run: int, event: ProgressReported, fields: dict[str, Any]) -> None:
        self.publish(event, run)
        if self.studies.live and (point := intermediate_value(event)) is not None:
            info = self.db.get_run(run)
            if info.study is not None:
                self.studies.progress(info, *point)
        self.telemetry.add_run_sample(run, {"kind": "progress", **fields})
        self._progress[run] = fields
        wait = PROGRESS_SAVE_S - (time.monotonic() - self._saved.get(run, 0.0))
        if wait <= 0:
            self._save_progress(run)
        elif run not in self._save_later:  # the last report before a quiet spell (evaluation) is saved too
            self._save_later[run] = asyncio.get_running_loop().call_later(wait, self._save_progress, run)

    def _save_progress(self, run: int) -> None:
        """Give the store a running run's latest progress (``list_runs`` reads it there)."""
        self._save_later.pop(run, None)
        if (fields := self._progress.get(run)) is not None:  # None: the run ended, its ending saved it
            self._saved[run] = time.monotonic()
            self.db.update_run(run, progress=fields)

    async def _worker_exit(self, run: int, ending: Ending) -> None:
        fields: dict[str, Any] = {"state": ending.state, "reason": ending.reason, "exit": ending.exit, "pid": None}
        if ending.state != "interrupted":
            fields["finished"] = time.time()
        if run in self._progress:
            fields["progress"] = self._progress.pop(run)
        if (later := self._save_later.pop(run, None)) is not None:
            later.cancel()
        if run in self._memory:
            fields["memory"] = event_fields(self._memory.pop(run))
        self.logs.publish_new()
        self.logs.forget(run)
        self.history.close(run)
        self.db.add_event(run, "ended", {"state": ending.state, "exit": ending.exit})
        self.update_run(run, **fields)
        self.studies.kick()

    # -- schedules ---------------------------------------------------------------------------------------------

    async def _fire_schedule(self, schedule_id: int) -> None:
        from stratcast.daemon.handlers.run_schedule_now import enqueue_from_schedule

        await enqueue_from_schedule(self, schedule_id, timed=True)


def _warm_imports() -> None:
    """Import what validating a job needs (the daemon never touches a GPU itself: importing torch does not)."""
    import stratcast.daemon.engine.data.load
    import stratcast.daemon.engine.spec.runspec  # noqa: F401
