"""The run screen: one run's curves, memory, log, results and config, with every run action on a key.

Data comes from three places. The mirror (kept live by the app's link) gives the run's record and its recent
progress and allocator samples, and the app calls :meth:`RunScreen.refresh_from` when it changed. The daemon's
history (``read_history``) gives the whole run, thinned: it is read on mount, every :attr:`RunScreen.HISTORY_EVERY_S`
seconds while the run runs and once more when it ends; between reads the mirror's newer samples are appended, so
the curves move at the repaint rate. The log is read on by byte offset every :attr:`RunScreen.LOG_EVERY_S` seconds
while the run runs, and the results once the run has succeeded.

Every read runs in a worker, one per kind at a time: a read asked for while one of its kind is in flight is done
again right after it (never cancelled midway, never dropped), so the last read always sees the latest state.
A failed read is shown in its tab and tried again at the next poll.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Log, Static, TabbedContent, TabPane

from stratcast.shared.client import DaemonUnavailable, RequestFailed
from stratcast.shared.protocol import (
    AnyRequest,
    ProtocolError,
    ReadHistory,
    ReadLogs,
    ReadResults,
    RunInfo,
    ShowRun,
)
from stratcast.shared.report import progress_text
from stratcast.tui.render import model_label
from stratcast.tui.run_history import RunHistory
from stratcast.tui.screens.run_actions import RunActionScreen
from stratcast.tui.widgets.run_backtest import BacktestView
from stratcast.tui.widgets.run_config import RunConfig, record_fields
from stratcast.tui.widgets.run_curves import Curves, LossChart
from stratcast.tui.widgets.run_memory import MemoryDetails, gib
from stratcast.tui.widgets.run_results import Results
from stratcast.tui.widgets.runs import STATE_STYLES

if TYPE_CHECKING:
    from stratcast.tui.link import Link

Read = Literal["show", "history", "log", "results"]
"""What the screen reads from the daemon."""
WIDE = (140, 40)
"""From this size (columns, rows) the loss and memory charts stand side by side, over the log's last lines."""
TABS = ("curves", "memory", "log", "results", "config", "backtest")
"""The tabs, in order; keys 1 to 6 show them (the backtest tab is there for a backtest run only)."""


FAILED_STATES = ("failed", "oom-failed", "killed")
"""Endings a watched run is shown its log for."""


class RunScreen(RunActionScreen):
    """One run (see the module docstring); ``escape`` goes back to the main screen."""

    CSS_PATH = "run.tcss"
    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("h", "hold", "Hold"),
        Binding("k", "kill", "Kill"),
        Binding("R", "restart", "Restart"),
        Binding("e", "export", "Export"),
        Binding("l", "log_scale", "Log y"),
        *(Binding(str(i), f"tab('{tab}')", tab.title(), show=False) for i, tab in enumerate(TABS, 1)),
    ]
    HISTORY_EVERY_S = 15.0
    """Seconds between history reads while the run runs (the daemon reads the whole file; live samples fill in)."""
    LOG_EVERY_S = 1.0
    """Seconds between log reads while the run runs."""
    HISTORY_POINTS = 500
    """Points per series asked of ``read_history`` (about two per column of a wide chart)."""
    LOG_LINES = 2000
    """Log lines kept on screen."""
    PEEK_LINES = 200
    """Log lines kept under the charts on a wide terminal."""
    LOG_TAIL_BYTES = 256 * 1024
    """A longer log is shown from this many bytes before its end."""
    TOP = 20
    """Strategies asked of ``read_results``."""

    def __init__(self, run: int) -> None:
        super().__init__()
        self.run_id = run
        self.history = RunHistory()
        """The history as last read (without the live samples)."""
        self.shown: Mapping[str, Any] = {}
        """The last ``show_run`` result (events, checkpoint files, metrics)."""
        self.log_offset = 0
        """Byte offset in the run's log up to which it is on screen."""
        self._state: str | None = None
        self._record: tuple[Any, ...] = ()
        self._history_at = -float("inf")
        self._ooms_asked = 0
        """The OOM count of the last history read made for an OOM seen live (read once per new OOM)."""
        self._reading: set[Read] = set()
        self._again: set[Read] = set()
        self._mounted = False
        self._cut = False
        """Whether the log was entered mid-line (a long log's tail), so text up to the next line end is skipped."""
        self._backtest: bool | None = None
        """Whether the run is a backtest (its tab shown); None before the run's record is known."""

    def compose(self) -> ComposeResult:
        yield Static(id="run-title")
        with TabbedContent(id="tabs", initial="curves"):
            with TabPane("1 Curves", id="curves"):
                yield Static(classes="problem problem-history")
                yield Curves()
                log_peek = Log(max_lines=self.PEEK_LINES, id="log-peek")
                log_peek.border_title = "log"
                yield log_peek
            with TabPane("2 Memory", id="memory"):
                yield Static(classes="problem problem-history")
                yield MemoryDetails()
            with TabPane("3 Log", id="log"):
                yield Static(classes="problem problem-log")
                yield Log(max_lines=self.LOG_LINES, id="log-text")
            with TabPane("4 Results", id="results"):
                yield Results()
            with TabPane("5 Config", id="config"):
                yield Static(classes="problem problem-show")
                yield RunConfig()
            with TabPane("6 Backtest", id="backtest"):
                yield BacktestView()
        yield Footer()

    def on_mount(self) -> None:
        self._mounted = True
        for note in self.query(".problem"):
            note.display = False
        self.refresh_from(self.stratcast.link)
        self.fetch("show")
        self.fetch("history")
        self.set_interval(self.LOG_EVERY_S, self.poll)

    @on(TabbedContent.TabActivated)
    def _focus_pane(self, event: TabbedContent.TabActivated) -> None:
        """Focus what scrolls in the tab just shown, so the arrow and page keys scroll it."""
        for widget in event.pane.query("*"):
            if widget.focusable and widget.display:
                widget.focus()
                return

    def on_resize(self) -> None:
        self.set_class(self.size.width >= WIDE[0] and self.size.height >= WIDE[1], "-wide")

    # -- painting ------------------------------------------------------------------------------------------------

    def refresh_from(self, link: Link) -> None:
        """Repaint from the mirror (called by the app at its fixed rate, when something changed)."""
        if not self._mounted:
            return
        run = link.mirror.runs.get(self.run_id)
        self.query_one("#run-title", Static).update(title_text(self.run_id, run))
        if run is None:
            return
        self._show_backtest_tab(run.job.backtest is not None)
        live = self.history.with_live(link.mirror.run_history.get(self.run_id, ()))
        self.query_one(Curves).show(live, run.progress)
        if live.oom_count > max(len(self.history.ooms), self._ooms_asked):  # an OOM the history does not list yet
            self._ooms_asked = live.oom_count
            self.fetch("history")
        record = tuple(record_fields(run).values())
        if record != self._record:
            self._record = record
            self._show_config(run)
        if run.state != self._state:
            self._state_changed(run)

    def _state_changed(self, run: RunInfo) -> None:
        """Read what a new state changes: the record's events, the history's end, the log's end, the results."""
        first = self._state is None
        self._state = run.state
        if not first:
            self.fetch("show")
            self.fetch("history")
        if run.state != "queued" and run.state != "held":
            self.fetch("log")
        if run.state != "succeeded":
            self.query_one(Results).say(f"results appear here when the run succeeds; it is {run.state}")
            self.query_one(BacktestView).say(f"the backtest appears here when the run succeeds; it is {run.state}")
            if not first and run.state in FAILED_STATES:  # it failed while watched: show why
                self.action_tab("log")
                why = f": {run.reason}" if run.reason else ""
                self.notify(f"run {run.id} {run.state}{why}; its log is in the Log tab (3)", severity="error")
            return
        self.fetch("results")
        if not first:  # it finished while watched: show what it found (a run opened finished opens on its curves)
            tab, key = ("backtest", 6) if self._backtest else ("results", 4)
            self.action_tab(tab)
            self.notify(
                f"run {run.id} succeeded: its results are in the {tab.title()} tab ({key})", title="run finished"
            )

    def _show_backtest_tab(self, backtest: bool) -> None:
        """Show the backtest tab for a backtest run only."""
        if backtest == self._backtest:
            return
        self._backtest = backtest
        tabs = self.query_one(TabbedContent)
        (tabs.show_tab if backtest else tabs.hide_tab)("backtest")

    def _show_details(self) -> None:
        metrics = self.shown.get("metrics")
        self.query_one(MemoryDetails).show(self.history, self.shown.get("checkpoints") or [], metrics)
        self.refresh_from(self.stratcast.link)

    def _show_config(self, run: RunInfo) -> None:
        self.query_one(RunConfig).show(run, self.shown.get("metrics"), self.shown.get("events") or [])

    def _problem(self, what: Read, message: str) -> None:
        """Show (or, with an empty ``message``, clear) why reading ``what`` failed, in the tabs that show it."""
        if what == "results":
            if message:
                self.query_one(Results).say(message, "red")
                self.query_one(BacktestView).say(message, "red")
            return
        for widget in self.query(f".problem-{what}").results(Static):
            widget.update(Text(message))
            widget.display = bool(message)

    # -- reading -------------------------------------------------------------------------------------------------

    def poll(self) -> None:
        """Read the log (and, every few seconds, the history) of a running run."""
        run = self.stratcast.link.mirror.runs.get(self.run_id)
        if run is None or run.state != "running":
            return
        self.fetch("log")
        if time.monotonic() - self._history_at >= self.HISTORY_EVERY_S:
            self.fetch("history")

    def fetch(self, what: Read) -> None:
        """Read ``what`` in a worker; when a read of it is in flight, read again once that one is done."""
        if what in self._reading:
            self._again.add(what)
            return
        self._reading.add(what)
        self._fetch(what)

    @work(group="run-reads")
    async def _fetch(self, what: Read) -> None:
        try:
            while True:
                self._again.discard(what)
                try:
                    await getattr(self, f"_read_{what}")()
                except (KeyError, TypeError, ValueError) as exc:  # a reply of another shape: say so, keep going
                    self._problem(what, f"unexpected reply to the {what} request: {exc!r}")
                if what not in self._again:
                    return
        finally:
            self._reading.discard(what)

    async def _ask(self, what: Read, request: AnyRequest) -> Any:
        """``request``'s result; None, with the reason shown, when it failed."""
        try:
            result = await self.stratcast.link.call(request)
        except RequestFailed as exc:
            self._problem(what, exc.message)
            return None
        except (DaemonUnavailable, ProtocolError) as exc:
            self._problem(what, str(exc).splitlines()[0])
            return None
        self._problem(what, "")
        return result

    async def _read_show(self) -> None:
        result = await self._ask("show", ShowRun(run=self.run_id))
        if result is not None:
            self.shown = result
            if (run := self.stratcast.link.mirror.runs.get(self.run_id)) is not None:
                self._show_config(run)
            self._show_details()

    async def _read_history(self) -> None:
        self._history_at = time.monotonic()
        result = await self._ask("history", ReadHistory(run=self.run_id, points=self.HISTORY_POINTS))
        if result is not None:
            self.history = RunHistory.from_result(result)
            self._show_details()

    async def _read_log(self) -> None:
        logs = list(self.query(Log))  # the log tab's, and the one under the charts on a wide terminal
        while True:
            result = await self._ask("log", ReadLogs(run=self.run_id, offset=self.log_offset))
            if result is None:
                return
            text, after, size = str(result["text"]), int(result["offset"]), int(result["size"])
            if size < self.log_offset:  # the log began again (a restart from scratch): so does the screen's
                for log in logs:
                    log.clear()
                self.log_offset, self._cut = 0, False
                continue
            if self.log_offset == 0 and size > self.LOG_TAIL_BYTES:  # a long log: show its tail only
                self.log_offset = size - self.LOG_TAIL_BYTES
                for log in logs:
                    log.write_line(f"[the log's first {self.log_offset // 1024} KiB are not shown]")
                self._cut = True
                continue
            if self._cut and text:  # after a jump, start at the next whole line
                self._cut = "\n" not in text
                text = text.split("\n", 1)[1] if not self._cut else ""
            for log in logs:
                log.write(text)
            if after <= self.log_offset or after >= size:
                self.log_offset = max(self.log_offset, after)
                return
            self.log_offset = after

    async def _read_results(self) -> None:
        self.query_one(Results).say("reading the results…")
        result = await self._ask("results", ReadResults(run=self.run_id, top=self.TOP))
        if result is None:
            return
        if "backtest" in result:  # a backtest run: its table instead of a run's results
            self.query_one(BacktestView).show(result["backtest"])
            self.query_one(Results).say("a backtest: its chart and table are in the Backtest tab (6)")
        else:
            self.query_one(Results).show(result)

    # -- actions -------------------------------------------------------------------------------------------------

    def _target(self) -> int:
        return self.run_id

    def action_back(self) -> None:
        """Back to the main screen."""
        self.dismiss()

    def action_tab(self, tab: str) -> None:
        """Show the tab ``tab`` (the backtest tab of a backtest run only)."""
        if tab == "backtest" and not self._backtest:
            return
        self.query_one(TabbedContent).active = tab

    def action_log_scale(self) -> None:
        """Switch the loss chart between a linear and a log scale."""
        chart = self.query_one(LossChart)
        chart.log_y = not chart.log_y
        chart.border_title = f"loss ({'log' if chart.log_y else 'linear'}; l to switch)"


def title_text(run_id: int, run: RunInfo | None) -> Text:
    """Two lines: the run, its model and state (with the reason); then its progress, micro-batch and peak memory."""
    if run is None:
        return Text(f"run {run_id}: the daemon has no such run (removed?)", style="bold red")
    text = Text(f"run {run.id}", style="bold")
    if run.name:
        text.append(f" {run.name}", style="bold")
    text.append(f" · {model_label(run.job)} · ")
    text.append(run.state, style=STATE_STYLES.get(run.state, ""))
    if run.state == "running" and run.device:
        text.append(f" on {run.device}")
    if run.reason and run.reason != run.state:
        text.append(f" · {run.reason}", style="dim")
    progress = run.progress if run.state == "running" else {k: v for k, v in run.progress.items() if k != "eta_s"}
    text.append("\n" + (progress_text(progress) if progress else "no progress yet"))
    if (micro := run.progress.get("micro_batch")) is not None:
        text.append(f" · micro-batch {micro}")
    if peak := run.memory.get("peak"):
        text.append(f" · peak {gib(peak)}")
    return text
