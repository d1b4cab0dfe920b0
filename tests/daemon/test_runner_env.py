"""The environment a worker runs in."""

import subprocess
import sys

from stratcast.daemon.executors.local import worker_env


def test_a_workers_home_is_its_daemons_whatever_the_daemons_environment_says(tmp_path):
    environ = {"PATH": "/usr/bin", "NOTIFY_SOCKET": "/run/systemd/notify", "STRATCAST_HOME": "/elsewhere"}
    env = worker_env(environ, "1", tmp_path / "home")
    assert "NOTIFY_SOCKET" not in env and env["CUDA_VISIBLE_DEVICES"] == "1"
    # the worker finds its memory plan cache through its home: the daemon's, not the default state folder
    code = "from stratcast.daemon.engine.run.runplan import default_plan_cache; print(default_plan_cache())"
    env = worker_env({"PATH": "/usr/bin", "PYTHONPATH": ":".join(sys.path)}, "", tmp_path / "home")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(tmp_path / "home" / "memory-plans.json")
