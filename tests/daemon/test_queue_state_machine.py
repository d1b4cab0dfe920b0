"""The store and the admission logic driven together through every run transition the daemon makes."""

import shutil
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from stratcast.daemon.queue import MIB_PER_GIB, DeviceView, Plan, plan
from stratcast.daemon.store import Store
from stratcast.shared.protocol import FINAL_STATES, RUN_STATES, JobSpec, Placement, RunInfo

GPU_GIB = 16.0
FOREIGN_PID = 4321
SPECS = st.tuples(
    st.integers(0, 2),  # priority
    st.sampled_from([None, 4.0, 6.0, 10.0, 20.0]),  # memory_gib
    st.sampled_from([None, None, None, 0, 1, 3]),  # gpu
    st.sampled_from([False, False, False, True]),  # hold
)


class QueueMachine(RuleBasedStateMachine):
    """A model of every run's state next to a real Store; ``plan`` decides the starts."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="stratcast-queue-"))
        self.store = Store(self.dir / "stratcast.db")
        self.model: dict[int, str] = {}
        self.gpus = 0
        self.cpu_slots = 1
        self.foreign: set[int] = set()
        self.paused = False
        self.clock = 1000.0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------------------

    def tick(self) -> float:
        self.clock += 1.0
        return self.clock

    def ids_in(self, *states: str) -> list[int]:
        return sorted(i for i, s in self.model.items() if s in states)

    def set_state(self, run_id: int, state: str, **fields) -> None:
        self.store.update_run(run_id, state=state, now=self.tick(), **fields)
        self.model[run_id] = state

    def devices(self, runs: list[RunInfo]) -> list[DeviceView]:
        running = [r for r in runs if r.state == "running"]
        if self.gpus == 0:
            ids = tuple(r.id for r in running)
            return [DeviceView("cpu", None, 64 * MIB_PER_GIB, 32 * MIB_PER_GIB, (), ids, (None,) * len(ids))]
        return [self.gpu_view(i, [r for r in running if r.device == f"cuda:{i}"]) for i in range(self.gpus)]

    def gpu_view(self, index: int, on_it: list[RunInfo]) -> DeviceView:
        caps = tuple(r.placement.memory_gib for r in on_it)
        # exclusive runs fill the GPU; sharing runs have grown to half their cap; a foreign process holds 2 GiB
        used = sum(GPU_GIB - 0.3 if cap is None else cap / 2 for cap in caps) + (2.0 if index in self.foreign else 0)
        free = max(GPU_GIB - used, 0.0) * MIB_PER_GIB
        foreign = (FOREIGN_PID,) if index in self.foreign else ()
        return DeviceView(
            f"cuda:{index}", index, GPU_GIB * MIB_PER_GIB, free, foreign, tuple(r.id for r in on_it), caps
        )

    def checked_plan(self) -> Plan:
        """Plan from the store's runs and the machine's devices, and check the plan."""
        runs = self.store.list_runs()
        devices = self.devices(runs)
        result = plan(runs, devices, paused=self.paused, cpu_slots=self.cpu_slots)
        check_plan(result, runs, self.paused)
        check_devices(result, {r.id: r for r in runs}, devices, self.cpu_slots)
        return result

    # -- rules: each ends with start_per_plan, as the daemon plans after every change ----------------------

    @initialize(
        gpus=st.sampled_from([0, 1, 2, 2, 3]),
        cpu_slots=st.integers(1, 3),
        data=st.data(),
        specs=st.lists(SPECS, min_size=1, max_size=6),
    )
    def machine(self, gpus, cpu_slots, data, specs):
        # every example starts with runs: Hypothesis's simplest rule sequences would otherwise leave it empty
        self.gpus, self.cpu_slots = gpus, cpu_slots
        self.submit(data, specs)

    @rule(data=st.data(), specs=st.lists(SPECS, min_size=1, max_size=3))
    def submit(self, data, specs):
        for priority, memory_gib, gpu, hold in specs:
            known = sorted(self.model)
            depends = known and data.draw(st.sampled_from([False, False, True]))  # most runs depend on nothing
            after = data.draw(st.lists(st.sampled_from(known), min_size=1, max_size=2, unique=True)) if depends else []
            placement = Placement(priority=priority, after=after, gpu=gpu, memory_gib=memory_gib, hold=hold)
            run = self.store.add_run(JobSpec(data="x.parquet"), placement, runs_dir=self.dir / "runs", now=self.tick())
            assert run.id not in self.model
            assert run.state == ("held" if hold else "queued")
            self.model[run.id] = run.state
        self.start_per_plan()

    def start_per_plan(self):
        result = self.checked_plan()
        for run_id, device in result.starts:
            self.set_state(run_id, "running", device=device, started=self.clock, attempts=1, reason="")

    def move(self, data, moves: dict[str, str], **fields) -> None:
        """Move one run from a state in ``moves`` to the state it maps to (when there is one), then plan.

        No preconditions: Hypothesis falls back to the first always-enabled rule when a drawn rule is disabled,
        which skews the rule mix; a rule with nothing to act on just plans again.
        """
        candidates = self.ids_in(*moves)
        if candidates:
            run_id = data.draw(st.sampled_from(candidates))
            self.set_state(run_id, moves[self.model[run_id]], **fields)
        self.start_per_plan()

    @rule(data=st.data())
    def hold(self, data):
        self.move(data, {"queued": "held"})

    @rule(data=st.data())
    def release(self, data):
        self.move(data, {"held": "queued"})

    @rule(data=st.data(), outcome=st.sampled_from(["succeeded", "failed", "oom-failed"]))
    def finish(self, data, outcome):
        self.move(data, {"running": outcome}, finished=self.clock)

    @rule(data=st.data())
    def stop(self, data):
        self.move(data, {"running": "stopped", "queued": "held"})

    @rule(data=st.data())
    def resume(self, data):
        self.move(data, {"stopped": "queued", "interrupted": "queued"})

    @rule(data=st.data())
    def kill(self, data):
        self.move(data, {"running": "killed"}, finished=self.clock)

    @rule(data=st.data())
    def restart(self, data):
        self.move(data, dict.fromkeys(FINAL_STATES, "queued"), device=None, finished=None)

    @rule(data=st.data())
    def remove(self, data):
        candidates = [i for i, state in self.model.items() if state != "running"]
        if candidates:
            run_id = data.draw(st.sampled_from(sorted(candidates)))
            self.store.remove_run(run_id)
            del self.model[run_id]
        self.start_per_plan()

    @rule(crash=st.booleans())
    def restart_daemon(self, crash):
        # a crash opens the file again while the old connection is still open, as after a killed daemon
        old = self.store
        if not crash:
            old.close()
        self.store = Store(self.dir / "stratcast.db")
        old.close()
        self.paused = bool(self.store.get_meta("queue_paused", False))
        recovered = self.store.recover(now=self.tick())
        assert sorted(r.id for r in recovered) == self.ids_in("running")
        for run in recovered:
            self.model[run.id] = "interrupted"
        self.start_per_plan()

    @rule(paused=st.booleans())
    def set_pause(self, paused):
        self.paused = paused
        self.store.set_meta("queue_paused", self.paused)
        self.start_per_plan()

    @rule(index=st.integers(0, 2))
    def toggle_foreign_process(self, index):
        self.foreign ^= {index % self.gpus} if self.gpus else set()
        self.start_per_plan()

    # -- invariants ----------------------------------------------------------------------------------------

    @invariant()
    def store_matches_model(self):
        runs = self.store.list_runs()
        assert len(runs) == len({r.id for r in runs})
        assert {r.id: r.state for r in runs} == self.model
        assert all(r.state in RUN_STATES for r in runs)

    @invariant()
    def plan_is_sound(self):
        self.checked_plan()


def check_plan(result: Plan, runs: list[RunInfo], paused: bool) -> None:
    """Only queued runs start, once, after their dependencies, on their pinned GPU; every other waiting run
    has a reason."""
    by_id = {r.id: r for r in runs}
    started = [run_id for run_id, _ in result.starts]
    waiting = {r.id for r in runs if r.state in ("queued", "held")}
    assert len(started) == len(set(started)), "a run started twice"
    assert all(by_id[i].state == "queued" for i in started), "started a run that is not queued"
    assert not (paused and started), "started a run while paused"
    assert set(result.reasons) == waiting - set(started), "a waiting run without a reason, or a reason too many"
    assert all(result.reasons.values()), "an empty reason"
    for run_id, device in result.starts:
        placement = by_id[run_id].placement
        assert all(by_id[d].state == "succeeded" for d in placement.after), "started before its dependencies"
        assert placement.gpu is None or device == f"cuda:{placement.gpu}", "ignored a pin"


def check_devices(result: Plan, by_id: dict[int, RunInfo], devices: list[DeviceView], cpu_slots: int) -> None:
    """After the plan's starts: an exclusive run is alone on its GPU, caps fit, CPU slots hold, no foreign GPU."""
    views = {d.name: d for d in devices}
    placed = {name: list(d.runs) for name, d in views.items()}
    for run_id, device in result.starts:
        assert device in views, f"unknown device {device}"
        assert not views[device].foreign, "started on a GPU with foreign processes"
        placed[device].append(run_id)
    for name, ids in placed.items():
        if name == "cpu":
            assert len(ids) <= cpu_slots or not any(i in ids for i, _ in result.starts), "too many runs on the CPU"
            continue
        caps = [by_id[i].placement.memory_gib for i in ids]
        assert None not in caps or len(ids) == 1, f"an exclusive run shares {name}: {Counter(caps)}"
        assert sum(c for c in caps if c is not None) <= GPU_GIB, f"caps on {name} exceed its memory"
        new_caps = [by_id[i].placement.memory_gib or 0.0 for i, d in result.starts if d == name]
        assert sum(new_caps) * MIB_PER_GIB <= views[name].free_mib, f"promised more than is free on {name}"


QueueMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
TestQueueStateMachine = QueueMachine.TestCase
