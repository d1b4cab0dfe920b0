"""The GPU card's processes line: the daemon's runs by id, a data-parallel run's other ranks by their session."""

from stratcast.shared.protocol import JobSpec, Placement, RunInfo
from stratcast.tui.widgets.gpu import host_summary, processes_line


def test_a_ranks_process_is_shown_as_its_run_and_a_strangers_as_a_foreign_pid():
    run = RunInfo(id=9, name="wide", state="running", job=JobSpec(data="/d"), placement=Placement(gpus=2), created=0.0)
    gpu = {
        "processes": [
            {"pid": 501, "used": 2 * 2**30, "session": 500},  # rank 1 of run 9, whose worker (rank 0) is pid 500
            {"pid": 777, "used": 2**30, "session": 777},
        ]
    }
    text = processes_line(gpu, {500: run}).plain
    assert text == "run 9 wide 2.0G · pid 777 (not stratcast) 1.0G"


def test_the_host_line_sums_the_local_workers_and_says_none_when_they_run_elsewhere():
    host = {"cpu_percent": 50.0, "memory_used": 4 * 2**30, "memory_total": 16 * 2**30, "daemon_rss": 2**29}
    two = host_summary(host | {"workers_rss": {"11": 2**30, "12": 2**30}}).plain
    assert two.endswith("daemon 0.5G  workers 2.0G")
    assert host_summary(host | {"workers_rss": {}}).plain.endswith("daemon 0.5G  workers -")  # a Ray or Slurm run
