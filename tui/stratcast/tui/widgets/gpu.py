"""The GPU panel of the main screen: per GPU a summary line, its processes, and memory/utilization history.

On a machine without GPUs the panel shows the host (CPU and memory) the same way, since runs go to the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from stratcast.shared.mirror import Mirror
from stratcast.shared.protocol import RunInfo
from stratcast.tui.widgets.chart import BrailleChart

GIB = 2**30
MEMORY_STYLE = "cyan"
UTIL_STYLE = "green"


def bar(fraction: float | None, width: int) -> Text:
    """A meter ``██████░░░░`` of ``width`` cells, red above 90%, yellow above 75%."""
    if fraction is None:
        return Text("?" * width, style="dim")
    fraction = min(1.0, max(0.0, fraction))
    full = round(fraction * width)
    style = "red" if fraction > 0.9 else "yellow" if fraction > 0.75 else "green"
    return Text("█" * full, style=style) + Text("░" * (width - full), style="dim")


def gib(value: Any) -> str:
    """Bytes as GiB with one decimal, ``?`` when unknown."""
    return f"{value / GIB:.1f}" if isinstance(value, int | float) else "?"


def gpu_summary(gpu: Mapping[str, Any], bar_width: int = 20) -> Text:
    """``GPU 0 NVIDIA H100  [bar] 41.2/79.6 GiB  util 87%  61°C  312/700 W``: unsupported fields left out."""
    used, total = gpu.get("memory_used"), gpu.get("memory_total")
    fraction = used / total if isinstance(used, int | float) and isinstance(total, int | float) and total else None
    line = Text.assemble((f"GPU {gpu.get('index', '?')} ", "bold"), (str(gpu.get("name", "")), ""), " ")
    line += bar(fraction, bar_width)
    line.append(f" {gib(used)}/{gib(total)} GiB")
    if (util := gpu.get("utilization")) is not None:
        line.append(f"  util {util}%", style=UTIL_STYLE)
    if (temp := gpu.get("temperature")) is not None:
        line.append(f"  {temp}°C")
    if (power := gpu.get("power_w")) is not None:
        limit = gpu.get("power_limit_w")
        line.append(f"  {power:.0f}/{limit:.0f} W" if limit else f"  {power:.0f} W")
    return line


def processes_line(gpu: Mapping[str, Any], runs_by_pid: Mapping[int, RunInfo]) -> Text:
    """The GPU's processes with their memory: the daemon's own runs by id and name, the rest as foreign pids."""
    procs: Sequence[Mapping[str, Any]] = gpu.get("processes") or []
    if not procs:
        return Text("no processes", style="dim")
    line = Text()
    for i, proc in enumerate(procs):
        if i:
            line.append(" · ", style="dim")
        used = f" {gib(proc.get('used'))}G" if proc.get("used") is not None else ""
        run = runs_by_pid.get(int(proc.get("pid", -1))) or runs_by_pid.get(int(proc.get("session") or -1))
        if run is not None:
            line.append(f"run {run.id}", style="bold")
            line.append(f" {run.name or run.job.model}{used}")
        else:
            line.append(f"pid {proc.get('pid')} (not stratcast){used}", style="yellow")
    return line


def host_summary(host: Mapping[str, Any], bar_width: int = 20) -> Text:
    """``CPU [bar] 34%  RAM [bar] 12.1/31.3 GiB  daemon 0.1G  workers 2.1G`` for machines without GPUs.

    ``workers -`` when no worker runs on this machine (none, or a cluster executor's, which run elsewhere).
    """
    cpu = host.get("cpu_percent")
    used, total = host.get("memory_used"), host.get("memory_total")
    line = Text("CPU ", style="bold") + bar(cpu / 100 if isinstance(cpu, int | float) else None, bar_width)
    line.append(f" {cpu:.0f}%" if isinstance(cpu, int | float) else " ?")
    fraction = used / total if isinstance(used, int | float) and isinstance(total, int | float) and total else None
    line += Text("  RAM ", style="bold") + bar(fraction, bar_width)
    line.append(f" {gib(used)}/{gib(total)} GiB")
    rss = host.get("workers_rss") or {}
    workers = f"{gib(sum(rss.values()))}G" if rss else "-"
    line.append(f"  daemon {gib(host.get('daemon_rss'))}G  workers {workers}", style="dim")
    return line


class DeviceCard(Vertical):
    """One GPU (or the host): its summary and processes, and a history chart of memory and utilization %."""

    DEFAULT_CSS = """
    DeviceCard { height: auto; }
    DeviceCard > Static { height: 1; }
    DeviceCard > BrailleChart { height: 4; }
    """

    def __init__(self, index: int | None) -> None:
        super().__init__()
        self.index = index
        """The GPU's index; None for the host."""

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        if self.index is not None:
            yield Static(id="processes")
        yield BrailleChart(y_min=0, y_max=100, formatter=lambda v: f"{v:.0f}%")

    def show(self, mirror: Mirror, runs_by_pid: Mapping[int, RunInfo]) -> None:
        """Repaint from the mirror's latest samples and history."""
        chart = self.query_one(BrailleChart)
        summary = self.query_one("#summary", Static)
        if self.index is None:
            summary.update(host_summary(mirror.host))
            history = list(mirror.host_history)
            chart.set_series("cpu", [s.get("cpu_percent") for s in history], style=UTIL_STYLE)
            chart.set_series("ram", [_percent(s, "memory_used", "memory_total") for s in history], style=MEMORY_STYLE)
            return
        gpu = next((g for g in mirror.gpus if g.get("index") == self.index), {"index": self.index, "name": "gone"})
        summary.update(gpu_summary(gpu))
        self.query_one("#processes", Static).update(processes_line(gpu, runs_by_pid))
        history = list(mirror.gpu_history.get(self.index, ()))
        chart.set_series("mem", [_percent(s, "memory_used", "memory_total") for s in history], style=MEMORY_STYLE)
        chart.set_series("util", [s.get("utilization") for s in history], style=UTIL_STYLE)


def _percent(sample: Mapping[str, Any], used: str, total: str) -> float | None:
    u, t = sample.get(used), sample.get(total)
    return 100.0 * u / t if isinstance(u, int | float) and isinstance(t, int | float) and t else None


class DevicePanel(Vertical):
    """A :class:`DeviceCard` per GPU the daemon sees, or one for the host when there are none."""

    DEFAULT_CSS = """
    DevicePanel { height: auto; max-height: 50%; overflow-y: auto; }
    """

    def show(self, mirror: Mirror) -> None:
        """Repaint; adds or removes cards when the set of GPUs changed."""
        indexes: list[int | None] = [int(g["index"]) for g in sorted(mirror.gpus, key=lambda g: int(g["index"]))]
        wanted = indexes or [None]
        cards = list(self.query(DeviceCard))
        if [c.index for c in cards] != wanted:
            for card in cards:
                card.remove()
            self.mount_all([DeviceCard(i) for i in wanted])
            return  # the new cards paint on the next tick, once mounted
        runs_by_pid = {r.pid: r for r in mirror.runs.values() if r.pid is not None}
        for card in cards:
            card.show(mirror, runs_by_pid)
