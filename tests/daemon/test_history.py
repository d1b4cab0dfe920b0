"""A run's history file: what the daemon appends for each worker event, and how read_history thins it."""

import asyncio
import itertools
import json
from typing import Any

import msgspec
import pytest

from stratcast.daemon.executors.base import Ending
from stratcast.daemon.handlers import restart_run
from stratcast.daemon.history import HistoryWriter, Thinner, evenly, read_history
from stratcast.daemon.server import Daemon
from stratcast.daemon.store import Store
from stratcast.shared.events import (
    CheckpointSaved,
    MemorySampled,
    PlanChosen,
    ProgressReported,
    RanOutOfMemory,
    RunStopped,
    RunUpdated,
    WarningGiven,
    WorkerStarted,
    decode_line,
    encode_line,
    event_fields,
    event_kind,
)
from stratcast.shared.paths import resolve_home
from stratcast.shared.protocol import JobSpec, Placement, RestartRun
from stratcast.shared.runfiles import HISTORY
from tests.daemon.test_worker_events import EVERY_KIND

OOM = next(e for e in EVERY_KIND if isinstance(e, RanOutOfMemory))


@pytest.fixture(params=["writer", "other"])
def write_lines(request):
    """Writes records as HistoryWriter does (compact, kind last) or as another tool might (spaced, kind first)."""

    def write(path, records):
        if request.param == "writer":
            lines = [
                msgspec.json.encode({k: v for k, v in r.items() if k != "kind"} | {"kind": r["kind"]}) for r in records
            ]
        else:
            lines = [json.dumps(r).encode() for r in records]
        path.write_bytes(b"".join(line + b"\n" for line in lines))

    return write


def progress(step, val_loss=None):
    return {
        "kind": "progress",
        "time": 1000.0 + step,
        "step": step,
        "train_loss": 1.0 / (step + 1),
        "val_loss": val_loss,
        "best_val_loss": None,
    }


def steps(samples):
    return [s["step"] for s in samples]


def test_evenly_keeps_the_first_and_the_last_and_spaces_the_rest_evenly():
    items = [(i, {"i": i}) for i in range(101)]
    assert [i for i, _ in evenly(items, 5)] == [0, 25, 50, 75, 100]
    assert evenly(items[:3], 5) == items[:3]


def test_a_thinner_keeps_a_long_stream_evenly_in_bounded_memory():
    thinner = Thinner(50)
    for i in range(100_000):
        thinner.add((i, {}))
        assert len(thinner.kept) < 100
    kept = [i for i, _ in thinner.result(50)]
    gaps = {b - a for a, b in itertools.pairwise(kept)}
    assert len(kept) == 50
    assert (kept[0], kept[-1]) == (0, 99_999)
    assert max(gaps) <= 2 * min(gaps) + 1, gaps


def test_progress_is_thinned_around_every_validation_sample(tmp_path, write_lines):
    path = tmp_path / HISTORY
    write_lines(path, [progress(s, val_loss=0.5 if s % 500 == 250 else None) for s in range(10_000)])
    history = read_history(path, 50)
    got = history["progress"]
    assert len(got) == 50
    assert history["thinned"] is True
    assert steps(got) == sorted(steps(got))
    assert (got[0]["step"], got[-1]["step"]) == (0, 9_999)
    assert [s["step"] for s in got if s["val_loss"] is not None] == list(range(250, 10_000, 500))
    assert all("kind" not in s for s in got)


def test_too_many_validation_samples_are_thinned_too(tmp_path, write_lines):
    path = tmp_path / HISTORY
    write_lines(path, [progress(s, val_loss=0.5 if s % 2 else None) for s in range(1000)])
    got = read_history(path, 20)["progress"]
    assert len(got) == 20
    assert (got[0]["step"], got[-1]["step"]) == (0, 999)
    assert sum(s["val_loss"] is not None for s in got) == 18


def test_a_short_history_comes_back_whole_sorted_into_its_series(tmp_path, write_lines):
    path = tmp_path / HISTORY
    records = [
        {"kind": "plan", "time": 1.0, "micro_batch": 256, "source": "probe"},
        progress(0),
        {"kind": "memory", "time": 2.0, "peak": 123},
        {"kind": "checkpoint", "time": 3.0, "path": "/r/c1.pt", "step": 10},
        {"kind": "oom", "time": 4.0, "step": 11, "new_micro_batch": 128},
        {"kind": "stopped", "time": 5.0, "path": "/r/c2.pt", "step": 12},
    ]
    write_lines(path, records)
    history = read_history(path, 10)
    assert history == {
        "progress": [{"time": 1000.0, "step": 0, "train_loss": 1.0, "val_loss": None, "best_val_loss": None}],
        "memory": [{"time": 2.0, "peak": 123}],
        "ooms": [{"time": 4.0, "step": 11, "new_micro_batch": 128}],
        "plans": [{"time": 1.0, "micro_batch": 256, "source": "probe"}],
        "checkpoints": [
            {"time": 3.0, "path": "/r/c1.pt", "step": 10, "stopped": False},
            {"time": 5.0, "path": "/r/c2.pt", "step": 12, "stopped": True},
        ],
        "thinned": False,
    }


def test_bad_lines_and_a_torn_last_line_are_skipped(tmp_path, write_lines):
    path = tmp_path / HISTORY
    write_lines(path, [progress(0), progress(1)])
    with open(path, "a") as f:
        f.write("not json\n[1, 2]\n" + json.dumps({"kind": "weather", "rain": 1}) + "\n\n")
        f.write(json.dumps(progress(2)) + "\n" + json.dumps(progress(3))[:20])
    assert steps(read_history(path, 10)["progress"]) == [0, 1, 2]


def test_no_history_file_gives_empty_series(tmp_path):
    history = read_history(tmp_path / HISTORY, 10)
    assert history == {"progress": [], "memory": [], "ooms": [], "plans": [], "checkpoints": [], "thinned": False}


def progress_event(step, max_steps=100, val_loss=None):
    fields: dict[str, Any] = {
        "epoch": 0.1,
        "train_loss": 0.5,
        "val_loss": val_loss,
        "best_val_loss": None,
        "windows_per_s": 9.0,
    }
    fields |= {"eta_s": 1.0, "learning_rate": 0.001, "micro_batch": 8}
    return ProgressReported(step=step, max_steps=max_steps, **fields)


def memory_event(allocated):
    return MemorySampled(allocated=allocated, reserved=0, peak=0, oom_count=0, rss=0)


def test_the_writer_appends_across_restarts_and_ends_a_torn_line_first(tmp_path):
    (tmp_path / "7").mkdir()
    path = tmp_path / "7" / HISTORY
    first = HistoryWriter(tmp_path)
    first.append(7, progress_event(1))
    first.close_all()
    with open(path, "ab") as f:  # a daemon killed in the middle of a line
        f.write(b'{"time": 1.0, "step": 2, "val')
    second = HistoryWriter(tmp_path)
    second.append(7, progress_event(3))
    second.close(7)
    assert steps(read_history(path, 10)["progress"]) == [1, 3]
    lines = path.read_bytes().splitlines()
    assert len(lines) == 3
    last = json.loads(lines[-1])
    assert last.pop("kind") == "progress" and isinstance(last.pop("time"), float)
    assert last == event_fields(progress_event(3))  # the event's fields, its kind under "kind", not "event"


def test_the_writer_spaces_progress_and_memory_but_keeps_validation_and_the_last_step(tmp_path):
    (tmp_path / "3").mkdir()
    writer = HistoryWriter(tmp_path)
    for step in range(1, 11):  # ten reports within a few milliseconds
        writer.append(3, progress_event(step, max_steps=10, val_loss=0.5 if step == 6 else None))
        writer.append(3, memory_event(step))
        writer.append(3, WarningGiven(kind="loss", message="not a series: not written"))
    writer.append(3, OOM)
    writer.close(3)
    history = read_history(tmp_path / "3" / HISTORY, 100)
    assert steps(history["progress"]) == [1, 6, 10]
    assert [m["allocated"] for m in history["memory"]] == [1]
    assert len(history["ooms"]) == 1


def test_a_writer_that_cannot_write_logs_and_goes_on(tmp_path, caplog):
    writer = HistoryWriter(tmp_path / "missing")
    writer.append(1, progress_event(1, max_steps=2))
    writer.append(1, progress_event(2, max_steps=2))
    assert len([r for r in caplog.records if "cannot write its history" in r.message]) == 1


@pytest.fixture
def daemon_with_run(tmp_path):
    d = Daemon(resolve_home(tmp_path / "home"))
    d.home.ensure()
    d.store = Store(d.home.database)
    run = d.db.add_run(JobSpec(data="/x.parquet"), Placement(), runs_dir=d.home.runs)
    (d.home.runs / str(run.id)).mkdir()
    published = []
    d.publish = lambda event, run=None: published.append((event, run))  # type: ignore[method-assign]
    yield d, run.id, published
    d.history.close_all()
    d.db.close()


def test_worker_events_go_to_the_history_and_a_plan_is_also_an_event_and_published(daemon_with_run):
    d, run, published = daemon_with_run
    plan: dict[str, Any] = {
        "micro_batch": 256,
        "batch_size": 1024,
        "budget": None,
        "predicted_peak": None,
        "measured_peak": None,
    }
    plan |= {"probes": [{"micro_batch": 64, "peak": 9}], "oom_probes": [], "source": "cpu", "levers": []}
    plan |= {"device": "cpu", "seconds": 0.0}
    chosen = msgspec.convert(plan, PlanChosen)
    d._worker_event(run, chosen)
    d._worker_event(run, progress_event(5, max_steps=10))
    d._worker_event(run, MemorySampled(allocated=0, reserved=0, peak=7, oom_count=0, rss=1))
    d._worker_event(run, CheckpointSaved(path="/c.pt", step=5))
    d._worker_event(run, WorkerStarted(pid=1, device="cpu", resume=None))
    history = read_history(d.home.runs / str(run) / HISTORY, 10)
    assert history["plans"][0]["micro_batch"] == 256
    assert [s["step"] for s in history["progress"]] == [5]
    assert history["memory"][0]["peak"] == 7
    assert history["checkpoints"][0]["path"] == "/c.pt"
    assert all(
        isinstance(s["time"], float) for key in ("progress", "memory", "plans", "checkpoints") for s in history[key]
    )
    assert (chosen, run) in published
    assert [e["kind"] for e in d.db.events(run)].count("plan") == 1


def test_a_stop_records_its_checkpoint_once(daemon_with_run):
    d, run, _ = daemon_with_run
    d._worker_event(run, CheckpointSaved(path="/c1.pt", step=5))
    d._worker_event(run, CheckpointSaved(path="/c2.pt", step=8))  # saved by the stop
    d._worker_event(run, RunStopped(path="/c2.pt", step=8))
    d._worker_event(run, RunStopped(path="/c3.pt", step=9))  # a stop whose save sent no event
    paths = [e["data"]["path"] for e in d.db.events(run) if e["kind"] == "checkpoint"]
    assert paths == ["/c1.pt", "/c2.pt", "/c3.pt"]
    assert d.db.get_run(run).checkpoint == "/c3.pt"


def test_a_worker_exit_closes_its_runs_history_and_a_later_event_appends(daemon_with_run):
    d, run, _ = daemon_with_run
    d._worker_event(run, progress_event(1))
    asyncio.run(d._worker_exit(run, Ending(state="stopped", reason="", exit="exit 0")))
    assert run not in d.history._files

    async def late() -> None:  # the daemon handles events in its loop
        d._worker_event(run, progress_event(2))

    asyncio.run(late())
    assert steps(read_history(d.home.runs / str(run) / HISTORY, 10)["progress"]) == [1, 2]


def restart(d, run, *, from_scratch):
    d.db.update_run(run, state="succeeded")
    return asyncio.run(restart_run.handle(d, RestartRun(run=run, from_scratch=from_scratch)))


def test_a_restart_from_scratch_starts_a_fresh_history_and_one_from_a_checkpoint_appends(daemon_with_run):
    d, run, _ = daemon_with_run
    run_dir = d.home.runs / str(run)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "step-00000010.pt").write_bytes(b"")
    d._worker_event(run, progress_event(10))
    d.history.close(run)
    restart(d, run, from_scratch=False)
    assert (run_dir / HISTORY).exists()
    restart(d, run, from_scratch=True)
    assert not (run_dir / HISTORY).exists()


def test_a_worker_warning_is_kept_in_the_runs_events_and_published(daemon_with_run):
    d, run, published = daemon_with_run
    d._worker_event(run, WarningGiven(kind="loss", message="use loss=mse"))
    assert [(e["kind"], e["data"]) for e in d.db.events(run)][-1] == (
        "warning",
        {"kind": "loss", "message": "use loss=mse"},
    )
    assert (WarningGiven(kind="loss", message="use loss=mse"), run) in published


def test_the_daemon_keeps_and_publishes_each_worker_event_with_exactly_the_fields_of_its_line(daemon_with_run):
    d, run, published = daemon_with_run
    lines = [encode_line(event) for event in EVERY_KIND]
    for line in lines:
        d._worker_event(run, decode_line(line))
    fields = {json.loads(line)["event"]: {k: v for k, v in json.loads(line).items() if k != "event"} for line in lines}
    relayed = [(e, r) for e, r in published if not isinstance(e, RunUpdated)]  # not the run's own updates
    assert [(event_kind(e), r) for e, r in relayed] == [(k, run) for k in ("plan", "progress", "oom", "warning")]
    assert all(e in EVERY_KIND for e, _ in relayed)  # relayed as the worker sent them
    stored = {e["kind"]: e["data"] for e in d.db.events(run)}
    assert {kind: stored[kind] for kind in ("plan", "oom", "warning")} == {
        k: fields[k] for k in ("plan", "oom", "warning")
    }
    assert [e["data"] for e in d.db.events(run) if e["kind"] == "checkpoint"] == [
        fields["checkpoint"],
        fields["stopped"],
    ]
    history = read_history(d.home.runs / str(run) / HISTORY, 10)
    assert {k: v for k, v in history["progress"][0].items() if k != "time"} == fields["progress"]
    assert {k: v for k, v in history["memory"][0].items() if k != "time"} == fields["memory"]
    assert history["ooms"][0] == fields["oom"]  # an OOM keeps its own time


def test_the_last_progress_before_a_quiet_spell_reaches_the_store(daemon_with_run, monkeypatch):
    from stratcast.daemon import server

    d, run, _ = daemon_with_run
    monkeypatch.setattr(server, "PROGRESS_SAVE_S", 0.2)

    async def report() -> None:
        d._worker_event(run, progress_event(5, max_steps=60))  # saved at once
        d._worker_event(run, progress_event(60, max_steps=60))  # within the interval: saved when it has passed
        assert d.db.get_run(run).progress["step"] == 5
        await asyncio.sleep(0.4)  # no more reports: the worker evaluates for minutes

    asyncio.run(report())
    assert d.db.get_run(run).progress["step"] == 60
