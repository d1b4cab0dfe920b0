"""What a daemon start does with the runs the last daemon left: crashed ones and those its shutdown stopped."""

from stratcast.daemon.executors.base import SHUTDOWN_REASON, classify
from stratcast.daemon.executors.local import LocalWorker
from stratcast.daemon.server import Daemon
from stratcast.daemon.store import Store
from stratcast.daemon.worker import EXIT_STOPPED
from stratcast.shared.paths import resolve_home
from stratcast.shared.protocol import JobSpec, Placement


def stopped_daemon(tmp_path) -> Daemon:
    """A daemon with its store open but nothing served, as at the start of ``serve``."""
    d = Daemon(resolve_home(tmp_path / "home"))
    d.home.ensure()
    d.store = Store(d.home.database)
    return d


def submit(d: Daemon, **fields):
    run = d.db.add_run(JobSpec(data="/x.parquet"), Placement(), runs_dir=d.home.runs)
    return d.db.update_run(run.id, **fields) if fields else run


def requeues(d: Daemon, run_id: int) -> list[str]:
    return [e["data"]["why"] for e in d.db.events(run_id) if e["kind"] == "requeued"]


def test_a_run_the_shutdown_stopped_is_queued_again_at_the_next_start(tmp_path):
    d = stopped_daemon(tmp_path)
    run = submit(d, state="interrupted", reason=SHUTDOWN_REASON, attempts=1)
    other = submit(d, state="interrupted", reason="interrupted 4 times; `stratcast resume 2` to retry", attempts=4)
    d._recover()
    again = d.db.get_run(run.id)
    assert (again.state, again.reason) == ("queued", "the daemon shut down; resumes from scratch (no checkpoint yet)")
    assert requeues(d, run.id) == ["shutdown"]
    assert d.db.get_run(other.id).state == "interrupted"  # left for the user: not the shutdown's to resume


def test_shutdowns_do_not_use_up_the_restart_budget_for_crashes(tmp_path):
    d = stopped_daemon(tmp_path)
    run = submit(d, state="running", attempts=5)
    for _ in range(4):
        d.db.add_event(run.id, "requeued", {"why": "shutdown", "how": "from its last checkpoint"})
    d._recover()
    assert d.db.get_run(run.id).state == "queued"
    assert requeues(d, run.id)[-1] == "interrupted"


def test_a_run_that_crashed_more_often_than_the_budget_allows_is_left_for_the_user(tmp_path):
    d = stopped_daemon(tmp_path)
    run = submit(d, state="running", attempts=4)
    for _ in range(d.options.restart_budget):
        d.db.add_event(run.id, "requeued", {"why": "interrupted", "how": "from its last checkpoint"})
    d._recover()
    left = d.db.get_run(run.id)
    assert (left.state, left.reason) == ("interrupted", f"interrupted 4 times; `stratcast resume {run.id}` to retry")


def test_a_resume_by_the_user_gives_a_run_a_fresh_restart_budget(tmp_path):
    d = stopped_daemon(tmp_path)
    run = submit(d, state="running", attempts=5)
    for _ in range(d.options.restart_budget):
        d.db.add_event(run.id, "requeued", {"why": "interrupted", "how": "from its last checkpoint"})
    d.db.add_event(run.id, "resumed", {})  # the user resumed it after the budget ran out
    d._recover()
    assert d.db.get_run(run.id).state == "queued"
    assert requeues(d, run.id)[-1] == "interrupted"


def test_a_worker_the_shutdown_had_to_kill_is_interrupted_not_killed():
    by_shutdown = LocalWorker(run=1, proc=None, device="cpu", kill_requested=True, shutdown=True)  # type: ignore[arg-type]
    by_user = LocalWorker(run=2, proc=None, device="cpu", kill_requested=True)  # type: ignore[arg-type]
    assert classify(-9, by_shutdown).state == "interrupted"
    assert classify(-9, by_user).state == "killed"
    assert classify(EXIT_STOPPED, LocalWorker(run=3, proc=None, device="cpu", shutdown=True)).reason == SHUTDOWN_REASON  # type: ignore[arg-type]
