import os
from pathlib import Path

import pytest

from stratcast.shared.paths import HOME_ENV, MAX_IPC_PATH, SOCKETS_ENV, Home, HomeError, resolve_home


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    for name in (HOME_ENV, SOCKETS_ENV, "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))


def test_defaults_follow_xdg_state_and_runtime_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    home = resolve_home()
    assert home == Home(state=tmp_path / "state" / "stratcast", sockets=tmp_path / "run" / "stratcast")
    assert home.control == f"ipc://{tmp_path}/run/stratcast/control"
    assert home.events == f"ipc://{tmp_path}/run/stratcast/events"
    assert home.database == tmp_path / "state" / "stratcast" / "stratcast.db"


def test_without_a_runtime_folder_sockets_go_under_the_state_folder(tmp_path):
    state = tmp_path / "user" / ".local" / "state" / "stratcast"
    assert resolve_home() == Home(state=state, sockets=state / "sock")


def test_home_option_holds_state_and_sockets(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert resolve_home(tmp_path / "d") == Home(state=tmp_path / "d", sockets=tmp_path / "d" / "sock")


def test_home_option_is_made_absolute_and_expands_the_user(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert resolve_home("rel").state == tmp_path / "rel"
    assert resolve_home("~/x").state == tmp_path / "user" / "x"


def test_stratcast_home_environment_is_used_without_the_option(monkeypatch, tmp_path):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "env"))
    assert resolve_home() == Home(state=tmp_path / "env", sockets=tmp_path / "env" / "sock")
    assert resolve_home(tmp_path / "opt").state == tmp_path / "opt"  # the option beats the variable


def test_an_empty_stratcast_home_means_unset(monkeypatch, tmp_path):
    monkeypatch.setenv(HOME_ENV, "")
    assert resolve_home().state == tmp_path / "user" / ".local" / "state" / "stratcast"


def test_sockets_environment_moves_only_the_sockets(monkeypatch, tmp_path):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "lib"))
    monkeypatch.setenv(SOCKETS_ENV, str(tmp_path / "run"))
    assert resolve_home() == Home(state=tmp_path / "lib", sockets=tmp_path / "run")


def test_sockets_environment_with_xdg_state(monkeypatch, tmp_path):
    monkeypatch.setenv(SOCKETS_ENV, str(tmp_path / "run"))
    assert resolve_home() == Home(state=tmp_path / "user" / ".local" / "state" / "stratcast", sockets=tmp_path / "run")


def test_home_option_keeps_its_own_sockets_even_with_the_sockets_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(SOCKETS_ENV, str(tmp_path / "run"))  # e.g. exported for the system daemon
    assert resolve_home(tmp_path / "test").sockets == tmp_path / "test" / "sock"


def test_sockets_option_beats_everything(monkeypatch, tmp_path):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "lib"))
    monkeypatch.setenv(SOCKETS_ENV, str(tmp_path / "env-run"))
    assert resolve_home(sockets=tmp_path / "opt-run") == Home(state=tmp_path / "lib", sockets=tmp_path / "opt-run")
    assert resolve_home(tmp_path / "h", tmp_path / "s") == Home(state=tmp_path / "h", sockets=tmp_path / "s")


def test_ensure_creates_private_folders(tmp_path):
    home = Home(state=tmp_path / "state", sockets=tmp_path / "sockets").ensure()
    assert home.runs.is_dir()
    for folder in (home.state, home.runs, home.sockets):
        assert folder.stat().st_mode & 0o777 == 0o700


def test_ensure_refuses_a_socket_folder_others_can_reach(tmp_path):
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    os.chmod(sockets, 0o755)
    with pytest.raises(HomeError, match=r"mode 755.*chmod 700"):
        Home(state=tmp_path / "state", sockets=sockets).ensure()


def test_ensure_refuses_a_socket_path_too_long_for_unix_sockets(tmp_path):
    deep = tmp_path / ("d" * (MAX_IPC_PATH - len(str(tmp_path))))
    with pytest.raises(HomeError, match="over the 100-byte limit"):
        Home(state=tmp_path / "state", sockets=deep).ensure()


def test_ensure_reports_a_folder_it_cannot_create(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HomeError, match="cannot create the stratcast folders"):
        Home(state=blocker / "state", sockets=tmp_path / "sockets").ensure()


def test_system_unit_layout_fits_the_socket_limit():
    home = resolve_home("/var/lib/stratcast", "/run/stratcast")
    assert (home.state, home.sockets) == (Path("/var/lib/stratcast"), Path("/run/stratcast"))
    assert home.control == "ipc:///run/stratcast/control"


def test_a_home_names_its_lock_daemon_log_plan_cache_and_control_socket(tmp_path):
    home = resolve_home(tmp_path)
    assert (home.lock, home.daemon_log) == (tmp_path / "stratcastd.lock", tmp_path / "daemon.log")
    assert home.plan_cache == tmp_path / "memory-plans.json"
    assert home.control_socket == tmp_path / "sock" / "control"
