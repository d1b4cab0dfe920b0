"""What every screen of the app shares: the app itself, typed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen

if TYPE_CHECKING:
    from stratcast.tui.app import StratcastApp


class AppScreen(Screen[None]):
    """A screen of :class:`~stratcast.tui.app.StratcastApp`."""

    @property
    def stratcast(self) -> StratcastApp:
        """The app, typed."""
        from stratcast.tui.app import StratcastApp

        assert isinstance(self.app, StratcastApp)
        return self.app
