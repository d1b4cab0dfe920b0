"""The run screen's config tab: the job spec, the placement, the run's record, train options and its timeline."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from stratcast.shared.protocol import RunInfo, to_builtins
from stratcast.tui.render import clock
from stratcast.tui.run_history import number

EVENT_WIDTH = 90
"""An event's data is cut to this many characters in the timeline."""


def fields_text(title: str, fields: Mapping[str, Any]) -> Text:
    """``title`` then one ``key  value`` line per field, keys aligned."""
    text = Text(title, style="bold")
    width = max((len(k) for k in fields), default=0)
    for key, value in fields.items():
        text.append(f"\n  {key.ljust(width)}  ", style="dim")
        text.append(_value(value))
    return text


def _value(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def record_fields(run: RunInfo) -> dict[str, Any]:
    """The run's record beyond its spec: times, device, process, attempts, folder, checkpoint."""
    return {
        "state": run.state + (f" ({run.reason})" if run.reason and run.reason != run.state else ""),
        "created": clock(run.created),
        "started": clock(run.started) if run.started else None,
        "finished": clock(run.finished) if run.finished else None,
        "device": run.device,
        "pid": run.pid,
        "attempts": run.attempts,
        "exit": run.exit,
        "folder": run.out,
        "checkpoint": run.checkpoint,
        "schedule": run.schedule,
    }


def timeline_text(events: Sequence[Mapping[str, Any]]) -> Text:
    """The run's events (submitted, started, checkpoint, oom, plan, ended, ...) one per line, oldest first."""
    text = Text("timeline", style="bold")
    if not events:
        text.append("\n  no events", style="dim")
    for event in events:
        t = number(event.get("time"))
        text.append(f"\n  {'-' if t is None else clock(t)}  ", style="dim")
        text.append(str(event.get("kind", "?")).ljust(10), style="bold")
        data = event.get("data") or {}
        brief = " ".join(f"{k}={_value(v)}" for k, v in data.items() if k not in ("time", "run", "probes", "levers"))
        text.append(brief if len(brief) <= EVENT_WIDTH else brief[: EVENT_WIDTH - 1] + "…")
    return text


def config_text(run: RunInfo, metrics: Mapping[str, Any] | None, events: Sequence[Mapping[str, Any]]) -> Text:
    """All of the config tab: job, placement, record, train options, model parameters and the timeline.

    The train options and model parameters come from ``metrics.json``, so they appear once the run has finished.
    """
    parts = [
        fields_text("job", to_builtins(run.job)),
        fields_text("placement", to_builtins(run.placement)),
        fields_text("run", record_fields(run)),
    ]
    spec: Mapping[str, Any] = (metrics or {}).get("spec") or {}
    if isinstance(spec.get("train"), Mapping):
        parts.append(fields_text("train options", spec["train"]))
    if isinstance(spec.get("model_params"), Mapping) and spec["model_params"]:
        parts.append(fields_text("model parameters", spec["model_params"]))
    parts.append(timeline_text(events))
    return Text("\n\n").join(parts)


class RunConfig(VerticalScroll):
    """The config text in a scrolling box."""

    def compose(self) -> ComposeResult:
        yield Static(id="config-text")

    def show(self, run: RunInfo, metrics: Mapping[str, Any] | None, events: Sequence[Mapping[str, Any]]) -> None:
        """Repaint."""
        self.query_one("#config-text", Static).update(config_text(run, metrics, events))
