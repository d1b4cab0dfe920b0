"""The run actions the main screen (on the selected run) and the run screen (on its run) share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work

from stratcast.shared.protocol import (
    AnyRequest,
    ExportResults,
    HoldRun,
    KillRun,
    ReleaseRun,
    RestartRun,
    ResumeRun,
    StopRun,
)
from stratcast.tui.screens.base import AppScreen
from stratcast.tui.screens.dialogs import ConfirmDialog, PromptDialog, problem
from stratcast.tui.validate import absolute_path

if TYPE_CHECKING:
    pass


class RunActionScreen(AppScreen):
    """A screen whose keys act on one run: the one :meth:`_target` names."""

    def _target(self) -> int | None:
        """The run the actions apply to; None (after saying why) when there is none."""
        raise NotImplementedError

    def _send(self, request: AnyRequest, done: str) -> None:
        self.stratcast.send(request, done)

    def action_stop(self) -> None:
        """Checkpoint the run and free its device (a queued run is held)."""
        if (run := self._target()) is not None:
            self._send(StopRun(run=run), f"stopping run {run}")

    def action_resume(self) -> None:
        """Queue the stopped run again from its checkpoint."""
        if (run := self._target()) is not None:
            self._send(ResumeRun(run=run), f"resumed run {run}")

    def action_hold(self) -> None:
        """Hold the queued run, or release it when held."""
        if (run := self._target()) is None:
            return
        info = self.stratcast.link.mirror.runs.get(run)
        held = info is not None and info.state == "held"
        self._send(ReleaseRun(run=run) if held else HoldRun(run=run), f"{'released' if held else 'held'} run {run}")

    @work
    async def action_kill(self) -> None:
        """End the run now, without a checkpoint, after confirmation."""
        if (run := self._target()) is None:
            return
        if await self.app.push_screen_wait(ConfirmDialog(f"Kill run {run} now, without a checkpoint?", yes="Kill")):
            self._send(KillRun(run=run), f"killed run {run}")

    @work
    async def action_restart(self) -> None:
        """Start the run again (from its checkpoint when it has one), after confirmation."""
        if (run := self._target()) is None:
            return
        question = f"Restart run {run}? It continues from its last checkpoint when it has one."
        if await self.app.push_screen_wait(ConfirmDialog(question, yes="Restart")):
            self._send(RestartRun(run=run), f"restarted run {run}")

    @work
    async def action_export(self) -> None:
        """Write the run's results table to a parquet or CSV file on the daemon's machine."""
        if (run := self._target()) is None:
            return
        question = f"Export run {run}'s results to (absolute path, .parquet or .csv):"
        answer = await self.app.push_screen_wait(PromptDialog(question, check=problem(absolute_path)))
        if answer is not None:
            self._send(ExportResults(run=run, path=answer), f"exported run {run} to {answer}")
