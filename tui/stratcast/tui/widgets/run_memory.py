"""The run screen's memory tab: the memory plan, the OOM list and the checkpoints, as text tables."""

from __future__ import annotations

import math
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from stratcast.shared.report import table
from stratcast.tui.render import clock
from stratcast.tui.run_history import GIB, Plan, RunHistory, number
from stratcast.tui.widgets.run_curves import gib_label


def gib(value: float | None) -> str:
    """Bytes as the memory chart labels GiB (``41.2G``, ``358M``); ``-`` when unknown."""
    return "-" if value is None else gib_label(value / GIB)


def plan_text(plan: Plan | None, plans: int = 1) -> Text:
    """The plan: where it came from, the budget, the micro-batch chosen, predicted vs measured peak, probes, levers."""
    if plan is None:
        return Text("no memory plan yet: the planner runs when training starts on a GPU", style="dim")
    text = Text()
    where = f" on {plan.device}" if plan.device else ""
    when = f" at {clock(plan.time)}" if plan.time is not None else ""
    again = f" (plan {plans} of the run: it plans again on every start)" if plans > 1 else ""
    text.append(f"{plan.source or 'plan'}{where}{when}{again}\n", style="bold")
    text.append(f"budget {gib(plan.budget)} · {_micro_batch(plan)}\n")
    measured = "not measured" if plan.measured_peak is None else f"measured {gib(plan.measured_peak)}"
    text.append(f"peak predicted {gib(plan.predicted_peak)} · {measured}")
    if plan.predicted_peak and plan.measured_peak:
        text.append(f" ({(plan.measured_peak / plan.predicted_peak - 1) * 100:+.1f}%)", style="dim")
    if plan.probes:
        rows = [[m, "OOM" if peak is None else gib(peak), _fits(peak, plan.budget)] for m, peak in plan.probes]
        text.append("\n\n" + table(["micro-batch", "peak", "fits"], rows))
    for lever in plan.levers:
        text.append(f"\n• {lever}", style="yellow")
    return text


def _micro_batch(plan: Plan) -> str:
    if plan.micro_batch == 0:
        return "nothing fits, not even a micro-batch of 1"
    if plan.micro_batch is None:
        return "micro-batch ?"
    if not plan.batch_size:
        return f"micro-batch {plan.micro_batch}"
    steps = math.ceil(plan.batch_size / plan.micro_batch)
    return f"micro-batch {plan.micro_batch} of batch {plan.batch_size} ({steps} accumulation step{'s' * (steps > 1)})"


def _fits(peak: float | None, budget: float | None) -> str:
    if peak is None:
        return "no"
    return "?" if budget is None else "yes" if peak <= budget else "no"


def oom_text(ooms: Sequence[Mapping[str, Any]]) -> Text:
    """One row per OOM: when, the step, the phase, the micro-batch before and after, the memory at the error."""
    if not ooms:
        return Text("no out-of-memory errors", style="dim")
    rows = [
        [
            _clock(o.get("time")),
            o.get("step", "?"),
            o.get("phase", "?"),
            f"{o.get('old_micro_batch', '?')}→{o.get('new_micro_batch') or 'none'}",
            gib(number(o.get("allocated"))),
            gib(number(o.get("reserved"))),
            gib(number(o.get("rss"))),
        ]
        for o in ooms
    ]
    text = Text(table(["time", "step", "phase", "micro-batch", "alloc", "reserved", "rss"], rows))
    if error := ooms[-1].get("error"):
        text.append(f"\nlast error: {error}", style="red")
    return text


def checkpoints_text(saved: Iterable[Mapping[str, Any]], on_disk: Sequence[str]) -> Text:
    """Checkpoints the run wrote (time, step, why) and whether each is still on disk (older ones are rotated out).

    Args:
        saved: The history's checkpoint samples (``time``, ``step``, ``path``, ``stopped``).
        on_disk: ``show_run``'s checkpoint files.
    """
    kept = set(on_disk)
    rows, seen = [], set()
    for c in saved:
        path = str(c.get("path", ""))
        seen.add(path)
        why = "stop" if c.get("stopped") else "periodic"
        rows.append([_clock(c.get("time")), c.get("step", "?"), why, posixpath.basename(path), _yes(path in kept)])
    rows += [["-", "?", "?", posixpath.basename(path), "yes"] for path in on_disk if path not in seen]
    if not rows:
        return Text("no checkpoints yet", style="dim")
    paths = [str(c.get("path", "")) for c in saved] + list(on_disk)
    folder = posixpath.dirname(paths[-1]) if paths else ""
    return Text(f"in {folder}\n" + table(["time", "step", "why", "file", "on disk"], rows))


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _clock(value: Any) -> str:
    t = number(value)
    return "-" if t is None else clock(t)


class MemoryDetails(VerticalScroll):
    """The plan, the OOMs and the checkpoints, one titled box each."""

    def compose(self) -> ComposeResult:
        for id_, title in (("plan", "memory plan"), ("ooms", "OOMs"), ("checkpoints", "checkpoints")):
            box = Static(id=id_, classes="box")
            box.border_title = title
            yield box

    def show(self, history: RunHistory, on_disk: Sequence[str], metrics: Mapping[str, Any] | None) -> None:
        """Repaint from ``history``; a finished run's ``metrics.json`` plan stands in when the history has none."""
        plan = history.plan
        if plan is None and metrics and isinstance(metrics.get("memory_plan"), Mapping):
            plan = Plan.from_sample(metrics["memory_plan"])
        self.query_one("#plan", Static).update(plan_text(plan, len(history.plans)))
        ooms = self.query_one("#ooms", Static)
        ooms.update(oom_text(history.ooms))
        ooms.border_title = f"OOMs ({len(history.ooms)})" if history.ooms else "OOMs"
        self.query_one("#checkpoints", Static).update(checkpoints_text(history.checkpoints, on_disk))
