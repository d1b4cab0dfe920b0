import asyncio

from textual.widgets import Log, Static, TabbedContent

from stratcast.shared.events import HostSample, MemorySampled, ProgressReported, TelemetrySampled
from stratcast.shared.protocol import ReadHistory, ReadLogs, ReadResults, StopRun
from stratcast.tui.app import StratcastApp
from stratcast.tui.screens.main import MainScreen
from stratcast.tui.screens.run import RunScreen
from stratcast.tui.widgets.chart import sparkline
from stratcast.tui.widgets.run_curves import LossChart, MemoryChart
from stratcast.tui.widgets.run_results import Results
from stratcast.tui.widgets.runs import RunsTable
from tests.tui.fake_daemon import (
    GIB,
    T0,
    FakeLink,
    demo_history,
    demo_results,
    frozen_clock,
    kill_declined_then_confirmed,
    progress,
    serve_runs,
)


def open_run(link, body, run=1, size=(120, 36)):
    """Open ``run`` from the main screen with enter, wait for the screen's first reads, then run ``body``."""

    async def go():
        app = StratcastApp(link, clock=frozen_clock)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            table = app.screen.query_one(RunsTable)
            table.move_cursor(row=table._order.index(run))
            await pilot.press("enter")
            await settle(app, pilot)
            await body(app, app.screen, pilot)

    asyncio.run(go())


async def settle(app, pilot):
    """Wait until the run screen is mounted and its reads are done (a read may start another).

    On a loaded machine the screen can mount late: wait up to 5 s for its title first.
    """
    for _ in range(100):
        if app.screen.query("#run-title"):
            break
        await pilot.pause(0.05)
    for _ in range(10):
        await pilot.pause()
        busy = [w for w in app.workers if w.group == "run-reads" and not w.is_finished]
        if not busy:
            return
        await app.workers.wait_for_complete(busy)
    raise AssertionError("the run screen kept reading")


def served():
    link = FakeLink()
    logs = serve_runs(link)
    return link, logs


def text_of(screen, selector):
    return str(screen.query_one(selector, Static).content)


def test_enter_opens_the_run_with_its_config_and_escape_goes_back_to_the_main_screen():
    async def body(app, screen, pilot):
        assert isinstance(screen, RunScreen) and screen.run_id == 1
        assert "run 1 eurusd-nhits · nhits · running on cuda:0" in text_of(screen, "#run-title")
        config = text_of(screen, "#config-text")
        assert "/data/eurusd.parquet" in config and "eurusd-nhits" in config and "submitted" in config
        assert "train options" not in config  # from metrics.json, once the run has finished
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)

    open_run(served()[0], body)


def test_loss_curves_come_from_the_history_move_with_live_progress_and_switch_to_a_log_scale():
    async def body(app, screen, pilot):
        chart = screen.query_one(LossChart)
        train, val = chart.series
        # the history has every 10th step to 420; the mirror adds its live reports of steps 360 to 419
        assert train.x[:3] == (0, 10, 20) and train.x[-1] == 420
        assert len(train.x) == 36 + 61
        assert val.x == (0, 100, 200, 300, 400)
        assert val.values[-1] == progress(400)["val_loss"]
        app.link.feed(ProgressReported(**progress(421)), 1)
        await pilot.pause(0.4)  # the app repaints at 5 Hz
        assert chart.series[0].x[-1] == 421
        assert chart.series[0].values[-1] == progress(421)["train_loss"]
        assert not chart.log_y
        await pilot.press("l")
        assert chart.log_y

    open_run(served()[0], body)


def test_an_oom_in_the_history_is_marked_and_listed_and_one_seen_live_reads_the_history_again():
    async def body(app, screen, pilot):
        chart = screen.query_one(MemoryChart)
        assert [s.name for s in chart.series] == ["allocated", "reserved", "peak"]
        assert chart.series[0].values[0] == 30.0  # GiB
        assert chart.markers == (T0 - 600 + 200,)
        assert [(h.y, h.label) for h in chart.hlines] == [(70.0, "budget")]
        assert chart.y_min == 0
        ooms = text_of(screen, "#ooms")
        assert "forward/backward" in ooms and "1024→512" in ooms and "62G" in ooms
        plan = text_of(screen, "#plan")
        assert "budget 70G" in plan and "1024  OOM" in plan and "a smaller input_size" in plan
        checkpoints = text_of(screen, "#checkpoints")
        assert "step-000200.pt" in checkpoints and "step-000400.pt" in checkpoints
        reads = sum(isinstance(c, ReadHistory) for c in app.link.calls)
        memory = MemorySampled(allocated=30 * GIB, reserved=34 * GIB, peak=41 * GIB, oom_count=2, rss=2 * GIB)
        host = HostSample(time=T0, cpu_percent=5.0, memory_used=GIB, memory_total=8 * GIB, daemon_rss=GIB)
        app.link.feed(TelemetrySampled(gpus=[], host=host, runs={1: memory}))
        await pilot.pause(0.4)
        await settle(app, pilot)
        assert sum(isinstance(c, ReadHistory) for c in app.link.calls) == reads + 1  # once, though it still lists 1
        assert chart.markers == (T0 - 600 + 200,)

    open_run(served()[0], body)


def test_a_succeeded_run_shows_the_skill_table_and_forecast_sparklines():
    async def body(app, screen, pilot):
        await pilot.press("4")
        assert [c.run for c in app.link.calls if isinstance(c, ReadResults)] == [3]
        skill = text_of(screen, "#skill")
        assert "trailing mean" in skill and "0.812" in skill and "best possible" in skill
        top = text_of(screen, "#top")
        first = demo_results()["top"][0]
        assert f"S101               1             52            0.5  {sparkline(first['forecast'], 16)}" in top
        assert "S105" in top
        assert "The model's RMSE is 13.8% lower than the zero forecast." in text_of(screen, "#summary")
        assert screen.query_one(Results).query_one("#top").display

    open_run(served()[0], body, run=3)


def test_the_verdict_shows_each_of_its_sentences_as_a_line_of_text():
    link, _ = served()
    sentences = [
        "The model LOSES to the zero forecast: its RMSE is 2.1% higher.",
        "Warning: loss=mae on a panel that is 80% zeros teaches the model to forecast zero.",
        "The top picks' trailing means are mostly negative.",
    ]
    results = demo_results()
    results["metrics"]["verdict"] = sentences
    link.handlers["read_results"] = lambda _request: results

    async def body(app, screen, pilot):
        lines = text_of(screen, "#summary").splitlines()
        assert lines[:3] == sentences
        assert not any("[" in line or "'" in line[:1] for line in lines)

    open_run(link, body, run=3)


def test_a_failing_read_results_shows_its_message_in_the_results_tab():
    link, _ = served()
    link.refuse("read_results", "run 3 has no readable results: metrics.json is missing")

    async def body(app, screen, pilot):
        assert "metrics.json is missing" in text_of(screen, "#summary")
        assert not screen.query_one(Results).query_one("#top").display

    open_run(link, body, run=3)


def test_results_are_read_when_the_run_succeeds_with_its_history_once_more():
    async def body(app, screen, pilot):
        assert not any(isinstance(c, ReadResults) for c in app.link.calls)
        assert "results appear here when the run succeeds; it is running" in text_of(screen, "#summary")
        reads = sum(isinstance(c, ReadHistory) for c in app.link.calls)
        app.link.set_run(1, state="succeeded")
        await pilot.pause(0.4)
        await settle(app, pilot)
        assert sum(isinstance(c, ReadHistory) for c in app.link.calls) == reads + 1
        assert [c.run for c in app.link.calls if isinstance(c, ReadResults)] == [1]
        assert "S101" in text_of(screen, "#top")

    open_run(served()[0], body)


def test_a_watched_run_that_succeeds_switches_to_its_results_with_a_notification():
    async def body(app, screen, pilot):
        tabs = screen.query_one(TabbedContent)
        assert tabs.active == "curves"
        app.link.set_run(1, state="succeeded")
        await pilot.pause(0.4)
        await settle(app, pilot)
        assert tabs.active == "results"
        assert any("run 1 succeeded" in n.message and "Results" in n.message for n in app._notifications)
        assert "S101" in text_of(screen, "#top")

    open_run(served()[0], body)


def test_a_run_that_had_succeeded_before_it_was_opened_opens_on_its_curves():
    async def body(app, screen, pilot):
        assert screen.query_one(TabbedContent).active == "curves"
        assert not list(app._notifications)

    open_run(served()[0], body, run=3)


def memory_axis(chart):
    """The memory chart's tick labels, top to bottom, and its legend's figures."""
    lines = [chart.render_line(y).text for y in range(chart.size.height)]
    ticks = [line.split("┤")[0].strip() for line in lines[1:] if "┤" in line]
    return ticks, lines[0]


def test_the_memory_axis_starts_at_zero_with_small_figures_in_mib():
    # a fixed 0 bottom on a 13-row chart: 0.32 GiB once labelled the bottom -5.55e-17G
    link, _ = served()

    async def body(app, screen, pilot):
        for rss_gib, unit in ((0.01, "M"), (0.32, "M"), (2.56, "G")):
            history = demo_history()
            history["memory"] = [{"time": T0 - 60 + s, "rss": rss_gib * GIB} for s in range(0, 60, 10)]
            history["plans"] = []  # no budget line: the range is the data's
            link.handlers["read_history"] = lambda _request, history=history: history
            screen.fetch("history")
            await settle(app, pilot)
            ticks, legend = memory_axis(screen.query_one(MemoryChart))
            assert ticks[-1] == "0G", ticks
            assert all(t.endswith(unit) and "e" not in t for t in ticks[:-1]), ticks
            assert f"rss {rss_gib * (1024 if unit == 'M' else 1):.3g}{unit}" in legend

    open_run(link, body)


def test_a_failing_history_read_is_shown_in_the_curves_tab_and_tried_again():
    link, _ = served()
    link.refuse("read_history", "cannot read run 1's history: permission denied")

    async def body(app, screen, pilot):
        problem = screen.query_one("#curves .problem-history", Static)
        assert problem.display and "permission denied" in str(problem.content)
        link.handlers.pop("read_history")
        serve_runs(link)
        screen.fetch("history")
        await settle(app, pilot)
        assert not problem.display
        assert screen.query_one(MemoryChart).markers

    open_run(link, body)


def test_the_log_tail_shows_the_log_grows_by_offset_and_starts_again_with_a_new_log():
    link, logs = served()

    async def body(app, screen, pilot):
        log = screen.query_one("#log-text", Log)
        assert "step 420 loss 0.32194" in log.lines
        size = len(logs[1])
        logs[1] += "step 421 loss 0.3212\n"
        screen.poll()
        await settle(app, pilot)
        assert "step 421 loss 0.3212" in log.lines
        assert log.lines.count("step 420 loss 0.32194") == 1
        offsets = [c.offset for c in app.link.calls if isinstance(c, ReadLogs)]  # the 1 s poll may add reads
        assert offsets[0] == 0 and size in offsets and offsets == sorted(offsets) and offsets.count(0) == 1
        logs[1] = "a new start\n"  # restarted from scratch: a shorter log
        screen.poll()
        await settle(app, pilot)
        assert log.lines == ["a new start", ""]

    open_run(link, body)


def test_a_long_log_is_shown_from_a_line_start_near_its_end(monkeypatch):
    monkeypatch.setattr(RunScreen, "LOG_TAIL_BYTES", 1000)
    link, logs = served()
    logs[1] = "".join(f"line {i:05d} of a long log\n" for i in range(500))

    async def body(app, screen, pilot):
        lines = [line for line in screen.query_one("#log-text", Log).lines if line]
        assert lines[0].startswith("[the log's first")
        assert lines[1].startswith("line ") and lines[1].endswith(" of a long log")
        assert lines[-1] == "line 00499 of a long log"
        assert len(lines) < 50

    open_run(link, body)


def test_stop_sends_stop_run_for_this_run_and_kill_needs_confirmation():
    async def body(app, screen, pilot):
        await pilot.press("s")
        await pilot.pause()
        assert [c.run for c in app.link.calls if isinstance(c, StopRun)] == [1]
        assert await kill_declined_then_confirmed(app.link, pilot) == [1]
        assert isinstance(app.screen, RunScreen)

    open_run(served()[0], body)


def test_charts_stack_on_a_small_terminal_and_stand_side_by_side_over_the_log_on_a_large_one():
    async def body(app, screen, pilot):
        loss, memory = screen.query_one(LossChart), screen.query_one(MemoryChart)
        assert memory.region.y >= loss.region.bottom and memory.region.x == loss.region.x
        assert loss.region.height >= 7 and not screen.query_one("#log-peek").display
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert memory.region.y == loss.region.y and memory.region.x >= loss.region.right
        peek = screen.query_one("#log-peek", Log)
        assert peek.display and peek.region.y >= loss.region.bottom
        assert "step 420 loss 0.32194" in peek.lines

    open_run(served()[0], body, size=(80, 24))


def test_a_watched_run_that_fails_switches_to_its_log_with_the_reason():
    async def body(app, screen, pilot):
        app.link.set_run(1, state="failed", reason="the worker died of SIGSEGV")
        await pilot.pause(0.4)
        await settle(app, pilot)
        assert screen.query_one(TabbedContent).active == "log"
        messages = [n.message for n in app._notifications]
        assert any("run 1 failed: the worker died of SIGSEGV" in m and "Log" in m for m in messages), messages

    open_run(served()[0], body)
