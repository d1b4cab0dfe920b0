import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from stratcast.shared.paths import HOME_ENV, SOCKETS_ENV, Home, resolve_home

UNITS = Path(__file__).parent.parent / "systemd"
SYSTEM = UNITS / "stratcastd.service"
USER = UNITS / "stratcastd-user.service"

COMMON = {
    "Type": "notify",
    "NotifyAccess": "main",
    "WatchdogSec": "30",
    "KillMode": "mixed",
    "TimeoutStopSec": "300",
    "Restart": "on-failure",
    "RuntimeDirectory": "stratcast",
    "RuntimeDirectoryMode": "0700",
    "StateDirectory": "stratcast",
    "StateDirectoryMode": "0700",
    "UMask": "0077",
    "NoNewPrivileges": "yes",
}
SYSTEM_ONLY = {
    "User": "stratcast",
    "ExecStart": "/opt/stratcast/.venv/bin/stratcastd serve",
    "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/stratcast",
    "PrivateTmp": "yes",
}
DEVICE_HIDING = ("PrivateDevices", "DevicePolicy", "DeviceAllow")


def parse(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # unit keys are case-sensitive
    unit.read(path)
    return unit


def environment(path: Path) -> dict[str, str]:
    """Every Environment= line (configparser keeps only the last of a repeated key)."""
    lines = re.findall(r"^Environment=(\S+?)=(.*)$", path.read_text(), flags=re.MULTILINE)
    return dict(lines)


@pytest.mark.parametrize(("key", "value"), [*COMMON.items(), *SYSTEM_ONLY.items()])
def test_system_unit_sets(key, value):
    assert parse(SYSTEM)["Service"][key] == value


@pytest.mark.parametrize(("key", "value"), COMMON.items())
def test_user_unit_sets(key, value):
    assert parse(USER)["Service"][key] == value


def test_install_targets():
    assert parse(SYSTEM)["Install"]["WantedBy"] == "multi-user.target"
    assert parse(USER)["Install"]["WantedBy"] == "default.target"


def test_user_unit_runs_as_whoever_owns_it_and_warns_about_logout():
    service = parse(USER)["Service"]
    assert "User" not in service
    assert service["ExecStart"].endswith("stratcastd serve")
    assert "loginctl enable-linger $USER" in USER.read_text()


@pytest.mark.parametrize("path", [SYSTEM, USER], ids=["system", "user"])
def test_no_setting_hides_the_gpus(path):
    assert not set(DEVICE_HIDING) & set(parse(path)["Service"])


def test_system_unit_keeps_state_in_var_lib_and_sockets_in_its_runtime_directory(monkeypatch):
    service, env = parse(SYSTEM)["Service"], environment(SYSTEM)
    state, sockets = f"/var/lib/{service['StateDirectory']}", f"/run/{service['RuntimeDirectory']}"
    assert (env[HOME_ENV], env[SOCKETS_ENV]) == (state, sockets)
    assert state in service["ReadWritePaths"].split()
    monkeypatch.setenv(HOME_ENV, env[HOME_ENV])
    monkeypatch.setenv(SOCKETS_ENV, env[SOCKETS_ENV])
    assert resolve_home() == Home(state=Path(state), sockets=Path(sockets))  # what `stratcastd serve` will use


def test_user_unit_names_its_state_and_runtime_directories_with_specifiers():
    service, env = parse(USER)["Service"], environment(USER)
    assert env[HOME_ENV] == f"%S/{service['StateDirectory']}"
    assert env[SOCKETS_ENV] == f"%t/{service['RuntimeDirectory']}"


def test_system_unit_puts_caches_where_it_may_write():
    service, env = parse(SYSTEM)["Service"], environment(SYSTEM)
    cache = f"/var/cache/{service['CacheDirectory']}"
    assert env["XDG_CACHE_HOME"] == cache
    assert env["CUDA_CACHE_PATH"].startswith(cache + "/")
    assert env["TRITON_CACHE_DIR"].startswith(cache + "/")


@pytest.mark.parametrize("path", [SYSTEM, USER], ids=["system", "user"])
def test_systemd_analyze_verify_accepts_the_unit(path, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    # The installed binary does not exist on a test machine, and verify checks it: point ExecStart elsewhere.
    text = re.sub(r"^ExecStart=.*$", "ExecStart=/bin/true", path.read_text(), flags=re.MULTILINE)
    unit = tmp_path / "stratcastd.service"
    unit.write_text(text)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    scope = ["--user"] if path == USER else []
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    done = subprocess.run([analyze, *scope, "verify", str(unit)], capture_output=True, text=True, env=env, check=False)
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if "stratcastd" in line]
    assert done.returncode == 0, done.stderr
    assert complaints == []  # unknown keys and bad values are only warned about
