"""Where one daemon keeps its state and its sockets, found the same way by the daemon, the CLI and the TUI.

``--home DIR`` (or ``STRATCAST_HOME``) puts everything of one daemon under ``DIR``: state in ``DIR`` itself,
sockets in ``DIR/sock``. Without it, state goes to the XDG state directory (``~/.local/state/stratcast``) and
sockets to ``$XDG_RUNTIME_DIR/stratcast`` (platformdirs), falling back to the state directory where there is no
runtime directory. Socket folders are created mode 0700: only the owner can reach the sockets inside.

``--sockets DIR`` (or ``STRATCAST_SOCKETS``) puts the sockets in ``DIR`` instead, whatever decides the state
folder: the system unit keeps state in ``/var/lib/stratcast`` and sockets in its ``RuntimeDirectory``,
``/run/stratcast``, and clients of that daemon set ``STRATCAST_SOCKETS=/run/stratcast``. Options beat
environment variables; at the same level the sockets setting beats the home's ``sock`` folder, so ``--home DIR``
alone still means ``DIR/sock`` even where ``STRATCAST_SOCKETS`` is set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from stratcast.shared import runfiles

HOME_ENV = "STRATCAST_HOME"
SOCKETS_ENV = "STRATCAST_SOCKETS"
APP = "stratcast"
MAX_IPC_PATH = 100
"""Unix socket paths are capped at 107 bytes on Linux (``sun_path``); keep a margin."""


class HomeError(ValueError):
    """A home or socket folder that cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Home:
    """One daemon's folders and endpoints."""

    state: Path
    """Database, run folders, logs."""
    sockets: Path
    """The 0700 folder holding the ipc socket files."""
    shared: Path | None = None
    """Storage every node of a cluster reaches (``stratcastd serve --shared-dir``): it holds the run folders."""

    @property
    def control(self) -> str:
        """Endpoint of the control (ROUTER) socket."""
        return f"ipc://{self.control_socket}"

    @property
    def events(self) -> str:
        """Endpoint of the event (PUB) socket."""
        return f"ipc://{self.sockets / runfiles.EVENTS}"

    @property
    def workspace(self) -> Path:
        """The workers' home: the shared folder where there is one, else the state folder.

        It holds the run folders, the saved models and the memory plan cache.
        """
        return self.shared or self.state

    @property
    def runs(self) -> Path:
        """Folder holding one subfolder per run: in the shared folder where there is one, else in the state's."""
        return self.workspace / runfiles.RUNS

    @property
    def database(self) -> Path:
        """The SQLite state file."""
        return self.state / runfiles.DATABASE

    @property
    def control_socket(self) -> Path:
        """The control socket's file (its path length is capped)."""
        return self.sockets / runfiles.CONTROL

    @property
    def lock(self) -> Path:
        """The lock file the serving daemon holds: one daemon per home."""
        return self.state / runfiles.LOCK

    @property
    def daemon_log(self) -> Path:
        """A background daemon's output."""
        return self.state / runfiles.DAEMON_LOG

    @property
    def plan_cache(self) -> Path:
        """The memory plan cache of workers and foreground runs."""
        return self.state / runfiles.PLAN_CACHE

    def ensure(self) -> Home:
        """Create the folders (sockets 0700, checked) and return self.

        Raises:
            HomeError: when a folder cannot be created, a socket path is too long, or the socket folder is
                reachable by other users.
        """
        try:
            self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.runs.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.sockets.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise HomeError(f"cannot create the stratcast folders under {self.state}: {exc}") from None
        mode = self.sockets.stat().st_mode & 0o777
        if mode & 0o077:
            raise HomeError(
                f"socket folder {self.sockets} has mode {mode:o}: other users could reach the daemon; "
                f"run `chmod 700 {self.sockets}` or use another --home"
            )
        longest = len(str(self.control_socket))
        if longest > MAX_IPC_PATH:
            raise HomeError(
                f"socket path {self.control_socket} is {longest} bytes, over the {MAX_IPC_PATH}-byte limit "
                f"of unix sockets; use a shorter --home"
            )
        return self


def resolve_home(home: str | os.PathLike[str] | None = None, sockets: str | os.PathLike[str] | None = None) -> Home:
    """The folders for the ``home`` and ``sockets`` option values, else the environment, else the XDG defaults.

    State: ``home``, else ``$STRATCAST_HOME``, else the XDG state folder. Sockets: ``sockets``, else ``home/sock``,
    else ``$STRATCAST_SOCKETS``, else ``$STRATCAST_HOME/sock``, else the XDG runtime folder.
    """
    if home is not None:
        root = _absolute(home)
        return Home(state=root, sockets=_absolute(sockets) if sockets is not None else root / runfiles.SOCKETS)
    sockets = sockets if sockets is not None else os.environ.get(SOCKETS_ENV) or None
    found = _from_environment()
    return found if sockets is None else Home(state=found.state, sockets=_absolute(sockets))


def _from_environment() -> Home:
    """``$STRATCAST_HOME`` and its ``sock`` folder, else the XDG defaults."""
    chosen = os.environ.get(HOME_ENV) or None
    if chosen is not None:
        root = _absolute(chosen)
        return Home(state=root, sockets=root / runfiles.SOCKETS)
    state = Path(platformdirs.user_state_dir(APP))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    sockets = Path(platformdirs.user_runtime_dir(APP)) if runtime else state / runfiles.SOCKETS
    return Home(state=state, sockets=sockets)


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().absolute()
