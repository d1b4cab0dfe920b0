"""The terminal UI: ``stratcast`` with no arguments.

The app owns one :class:`~stratcast.tui.link.Link`. Events are applied to the link's mirror as they arrive, but
screens repaint on a fixed timer (:attr:`StratcastApp.fps`, at most 10 Hz) and only when the mirror changed, so a
busy daemon costs the same repaint work as a quiet one. Screens that show live data implement
``refresh_from(link)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding

from stratcast.shared.client import DaemonUnavailable, RequestFailed
from stratcast.shared.protocol import AnyRequest
from stratcast.tui.link import Link
from stratcast.tui.screens.main import MainScreen

MAX_FPS = 10.0
"""Repaints per second at most."""


class StratcastApp(App[None]):
    """The stratcast terminal UI.

    Args:
        link: The daemon (a :class:`~stratcast.tui.link.ZmqLink`, or a fake in tests).
        fps: Repaints per second (capped at :data:`MAX_FPS`).
        clock: Wall-clock time, replaceable so snapshot tests are stable.
        open_run: A run to open at start.
    """

    CSS_PATH = "app.tcss"
    TITLE = "stratcast"
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("question_mark", "help_panel", "Keys", show=False)]

    def __init__(
        self,
        link: Link,
        *,
        fps: float = 5.0,
        clock: Callable[[], float] = time.time,
        open_run: int | None = None,
    ) -> None:
        super().__init__()
        self.link = link
        self.fps = min(MAX_FPS, max(0.5, fps))
        self.clock = clock
        self.start_run = open_run
        self._painted = -1
        self.paints = 0
        """Repaints done (for the performance benchmark)."""

    def on_mount(self) -> None:
        self.run_worker(self.link.run(), name="link", group="link", exclusive=True)
        self.push_screen(MainScreen())
        if self.start_run is not None:
            self.open_run(self.start_run)
        self.set_interval(1 / self.fps, self.repaint)

    def repaint(self, *, force: bool = False) -> None:
        """Repaint the current screen when the link changed since the last repaint."""
        if not force and self.link.version == self._painted:
            return
        if not self.screen.is_mounted:
            return  # a screen just pushed has no widgets yet: it paints itself on mount, this tick comes again
        if not self.is_running or not self.screen.is_attached:
            return  # the app is closing: its screens' widgets are being removed while this timer still ticks
        self._painted = self.link.version
        refresh: Callable[[Link], None] | None = getattr(self.screen, "refresh_from", None)
        if refresh is not None:
            refresh(self.link)
            self.paints += 1

    # -- navigation ----------------------------------------------------------------------------------------------

    def open_run(self, run: int) -> None:
        """Show one run's screen."""
        from stratcast.tui.screens.run import RunScreen

        self.push_screen(RunScreen(run))

    def open_new_run(self) -> None:
        """Show the new-run form."""
        from stratcast.tui.screens.new_run import NewRunScreen

        self.push_screen(NewRunScreen())

    def open_schedules(self) -> None:
        """Show the schedules screen."""
        from stratcast.tui.screens.schedules import SchedulesScreen

        self.push_screen(SchedulesScreen())

    def open_studies(self) -> None:
        """Show the studies screen."""
        from stratcast.tui.screens.studies import StudiesScreen

        self.push_screen(StudiesScreen())

    def open_study(self, study: int) -> None:
        """Show one study's screen."""
        from stratcast.tui.screens.study import StudyScreen

        self.push_screen(StudyScreen(study))

    def open_saved(self) -> None:
        """Show the saved models screen."""
        from stratcast.tui.screens.saved import SavedScreen

        self.push_screen(SavedScreen())

    # -- requests ------------------------------------------------------------------------------------------------

    def send(self, request: AnyRequest, done: str | None = None) -> None:
        """Send ``request`` in the background; say ``done`` when it worked, the daemon's message when not."""
        self._send(request, done)

    @work(group="requests")
    async def _send(self, request: AnyRequest, done: str | None) -> None:
        await self.call(request, done)

    async def call(self, request: AnyRequest, done: str | None = None) -> Any:
        """Send ``request`` and return its result; None (and a notification) when it failed."""
        try:
            result = await self.link.call(request)
        except RequestFailed as exc:
            self.notify(exc.message, title="refused", severity="error", timeout=8)
            return None
        except DaemonUnavailable as exc:
            self.notify(str(exc).splitlines()[0], title="no daemon", severity="error", timeout=8)
            return None
        if done:
            self.notify(done, timeout=3)
        self.repaint(force=True)
        return result
