"""Where one daemon keeps its state and its sockets, found the same way by the daemon, the CLI and the TUI.

``--home DIR`` (or ``STRATCAST_HOME``) puts everything of one daemon under ``DIR``: state in ``DIR`` itself,
sockets in ``DIR/sock``. Without it, state goes to the XDG state directory (``~/.local/state/stratcast``) and
sockets to ``$XDG_RUNTIME_DIR/stratcast`` (platformdirs), falling back to the state directory where there is no
runtime directory. Socket folders are created mode 0700: only the owner can reach the sockets inside.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

HOME_ENV = "STRATCAST_HOME"
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

    @property
    def control(self) -> str:
        """Endpoint of the control (ROUTER) socket."""
        return f"ipc://{self.sockets / 'control'}"

    @property
    def events(self) -> str:
        """Endpoint of the event (PUB) socket."""
        return f"ipc://{self.sockets / 'events'}"

    @property
    def runs(self) -> Path:
        """Folder holding one subfolder per run."""
        return self.state / "runs"

    @property
    def database(self) -> Path:
        """The SQLite state file."""
        return self.state / "stratcast.db"

    def ensure(self) -> Home:
        """Create the folders (sockets 0700, checked) and return self.

        Raises:
            HomeError: when a folder cannot be created, a socket path is too long, or the socket folder is
                reachable by other users.
        """
        try:
            self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.runs.mkdir(exist_ok=True, mode=0o700)
            self.sockets.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise HomeError(f"cannot create the stratcast folders under {self.state}: {exc}") from None
        mode = self.sockets.stat().st_mode & 0o777
        if mode & 0o077:
            raise HomeError(
                f"socket folder {self.sockets} has mode {mode:o}: other users could reach the daemon; "
                f"run `chmod 700 {self.sockets}` or use another --home"
            )
        longest = len(str(self.sockets / "control"))
        if longest > MAX_IPC_PATH:
            raise HomeError(
                f"socket path {self.sockets / 'control'} is {longest} bytes, over the {MAX_IPC_PATH}-byte limit "
                f"of unix sockets; use a shorter --home"
            )
        return self


def resolve_home(home: str | os.PathLike[str] | None = None) -> Home:
    """The folders for ``home`` (an option value), else ``$STRATCAST_HOME``, else the XDG defaults."""
    chosen = home if home is not None else os.environ.get(HOME_ENV) or None
    if chosen is not None:
        root = Path(chosen).expanduser().absolute()
        return Home(state=root, sockets=root / "sock")
    state = Path(platformdirs.user_state_dir(APP))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    sockets = Path(platformdirs.user_runtime_dir(APP)) if runtime else state / "sock"
    return Home(state=state, sockets=sockets)
