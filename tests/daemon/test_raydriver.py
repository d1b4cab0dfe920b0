"""The Ray driver's line protocol: what the daemon and its driver process write to each other."""

import msgspec
import pytest

from stratcast.daemon.executors.raydriver import (
    CancelTask,
    ClusterHealth,
    SubmitTask,
    TaskEnded,
    decode_command,
    decode_report,
    encode,
)


def test_commands_and_reports_are_one_json_line_each_and_read_back_as_written():
    submit = SubmitTask(run=3, run_dir="/shared/runs/3", on_gpu=True, memory_gib=None, home=None, retries=3)
    for command in (submit, CancelTask(run=3)):
        line = encode(command)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert decode_command(line) == command
    for report in (
        ClusterHealth(resources={"CPU": 2.0, "GPU": 1.0}),
        ClusterHealth(problem="cannot reach the Ray cluster at head:6379: timed out"),
        TaskEnded(run=3, code=-9),
        TaskEnded(run=4, error="FileNotFoundError('/shared/runs/4')"),
        TaskEnded(run=5, lost="WorkerCrashedError"),
    ):
        assert decode_report(encode(report)) == report


@pytest.mark.parametrize(
    "line",
    [
        b"[2026-12-07 04:57:22,501 I 22550 22550] (raylet) worker_pool.cc:564: Started worker process\n",
        b'{"type": "submit", "run": 1}\n',  # a command is not a report
        b'{"type": "ended"}\n',
        b"\n",
    ],
)
def test_anything_else_on_the_report_channel_is_refused(line):
    with pytest.raises(msgspec.DecodeError):
        decode_report(line)
