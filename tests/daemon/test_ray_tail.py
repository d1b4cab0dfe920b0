"""The ray executor's reading of a worker's events from its run folder: whole lines only, as they grow."""

from stratcast.daemon.executors import remote as ray_executor
from stratcast.shared.events import WarningGiven, decode_line, encode_line


def test_event_lines_are_read_whole_as_the_file_grows_and_an_over_long_line_is_dropped(tmp_path, monkeypatch):
    path = tmp_path / ray_executor.EVENTS_FILE
    tail = ray_executor.Tail(path)
    assert tail.lines() == []  # the task has not started the worker yet
    first, second = (encode_line(WarningGiven(kind="k", message=m)) for m in ("one", "two"))
    path.write_bytes(first + second[:7])
    assert [decode_line(line) for line in tail.lines()] == [WarningGiven(kind="k", message="one")]
    with open(path, "ab") as f:
        f.write(second[7:])
    assert [decode_line(line) for line in tail.lines()] == [WarningGiven(kind="k", message="two")]
    monkeypatch.setattr(ray_executor, "MAX_LINE", 10)
    with open(path, "ab") as f:
        f.write(b"x" * 20)
    assert tail.lines() == [] and tail.rest == b""


def test_the_daemons_ray_driver_outlives_a_head_that_is_away_longer_than_rays_minute():
    from stratcast.daemon.executors.raydriver import RECONNECT_S, driver_environment

    environ = {"RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "0"}
    driver_environment(environ)
    assert environ["RAY_gcs_rpc_server_reconnect_timeout_s"] == str(RECONNECT_S) and RECONNECT_S > 24 * 3600
    assert environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] == "0"  # what the daemon's environment sets stays
