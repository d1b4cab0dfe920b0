"""What the study screens show of a ``list_studies`` or ``show_study`` reply, as pure functions of plain data.

The daemon replies plain data (:class:`~stratcast.shared.protocol.StudyInfo` and
:class:`~stratcast.shared.protocol.TrialInfo` as dicts); these turn it into table cells, the best-so-far line,
the Pareto front's scatter and the importances' bars, so the screens only lay them out and tests check the numbers
without a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from stratcast.shared.objectives import maximizes, values_text
from stratcast.shared.protocol import IMPORTANCE_MIN_TRIALS, study_ran_s
from stratcast.shared.report import duration_text
from stratcast.tui.render import params_text

Cell = str | Text
TRIAL_STYLES = {"COMPLETE": "green", "RUNNING": "bold green", "PRUNED": "yellow", "FAIL": "red", "WAITING": "dim"}
"""How each Optuna trial state is coloured."""
STUDY_STYLES = {"running": "bold green", "stopped": "cyan", "finished": "green", "failed": "bold red"}
"""How each study state is coloured."""


def objectives_text(objectives: Sequence[str]) -> str:
    """``holdout-rmse ↓, backtest-top-k ↑``: each objective with its direction."""
    return ", ".join(f"{o} {'↑' if maximizes(o) else '↓'}" for o in objectives)


def complete(trials: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The trials told a value (state ``COMPLETE`` with finite values)."""
    return [t for t in trials if t["state"] == "COMPLETE" and t.get("values") and all(map(math.isfinite, t["values"]))]


def best_value(trials: Sequence[Mapping[str, Any]], objective: str) -> float | None:
    """The best value of the first objective among the complete trials (None before one completes)."""
    values = [float(t["values"][0]) for t in complete(trials)]
    if not values:
        return None
    return max(values) if maximizes(objective) else min(values)


def elapsed_s(study: Mapping[str, Any], now: float) -> float:
    """Seconds the study (a ``StudyInfo`` as plain data) has run at ``now``."""
    return study_ran_s(float(study.get("elapsed_s") or 0.0), study.get("active_since"), now)


@dataclass(frozen=True)
class Summary:
    """What the studies list shows of a study's trials (from its ``show_study``)."""

    done: int
    """Trials told (complete, pruned or failed)."""
    best: float | None


def summarize(reply: Mapping[str, Any]) -> Summary:
    """The trials told and the best value of a ``show_study`` reply."""
    trials = reply.get("trials", [])
    done = sum(t["state"] in ("COMPLETE", "PRUNED", "FAIL") for t in trials)
    return Summary(done, best_value(trials, reply["study"]["spec"]["objectives"][0]))


def study_cells(study: Mapping[str, Any], summary: Summary | None, now: float) -> tuple[Cell, ...]:
    """One row of the studies list: id, name, state, models, objectives, trials done/asked/total, best, elapsed."""
    spec = study["spec"]
    done = "?" if summary is None else str(summary.done)
    best = "-" if summary is None or summary.best is None else values_text(spec["objectives"][:1], [summary.best], 4)
    name = study["name"] if len(study["name"]) <= 24 else study["name"][:23] + "…"
    return (
        str(study["id"]),
        name,
        Text(study["state"], style=STUDY_STYLES.get(study["state"], "")),
        ",".join(spec["models"]),
        objectives_text(spec["objectives"]),
        f"{done}/{study['asked']}/{spec['trials']}",
        best,
        duration_text(elapsed_s(study, now)),
    )


def trial_cells(trial: Mapping[str, Any], objectives: Sequence[str] = (), params_width: int = 40) -> tuple[Cell, ...]:
    """One row of a study's trials: number, state, values, child run, duration, parameters (cut), reason.

    Each value has its verdict against the naive baseline where its objective (of ``objectives``) has one.
    """
    params = params_text(trial.get("params") or {})
    if len(params) > params_width:
        params = params[: params_width - 1] + "…"
    values = values_text(objectives, trial["values"], 5) if trial.get("values") else "-"
    took = "-" if trial.get("duration_s") is None else duration_text(trial["duration_s"])
    reason = trial.get("reason") or ""
    return (
        str(trial["number"]),
        Text(trial["state"], style=TRIAL_STYLES.get(trial["state"], "")),
        values,
        "-" if trial.get("run") is None else str(trial["run"]),
        took,
        params,
        reason if len(reason) <= 32 else reason[:31] + "…",
    )


def best_so_far(trials: Sequence[Mapping[str, Any]], objective: str) -> tuple[list[float], list[float], str]:
    """The best first-objective value after each complete trial, in the order they completed.

    Returns:
        x (minutes since the first trial completed, or trial numbers when a trial has no completion time), the best
        values so far, and what x is (``minutes`` or ``trial number``).
    """
    done = complete(trials)
    timed = all(t.get("completed") is not None for t in done)
    done.sort(key=lambda t: (t["completed"], t["number"]) if timed else (t["number"], 0.0))
    pick = max if maximizes(objective) else min
    xs: list[float] = []
    ys: list[float] = []
    for t in done:
        value = float(t["values"][0])
        ys.append(value if not ys else pick(ys[-1], value))
        xs.append(float(t["completed"] if timed else t["number"]))
    if timed and xs:
        xs = [(x - xs[0]) / 60 for x in xs]
    return xs, ys, "minutes" if timed else "trial number"


def steps(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """A best-so-far line drawn as steps: it keeps its value until the next better trial, then drops (or rises)."""
    sx: list[float] = []
    sy: list[float] = []
    for x, y in zip(xs, ys, strict=True):
        if sy and y != sy[-1]:
            sx.append(x)
            sy.append(sy[-1])
        sx.append(x)
        sy.append(y)
    return sx, sy


def scatter(points: Sequence[tuple[float, float]]) -> tuple[list[float], list[float | None]]:
    """Points as a braille series of lone dots: each point followed by a gap, so no line joins them."""
    xs: list[float] = []
    ys: list[float | None] = []
    for x, y in points:
        xs += [x, x]
        ys += [y, None]
    return xs, ys


def pareto(
    trials: Sequence[Mapping[str, Any]], front: Sequence[int]
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The complete trials' first two objectives as points, and the front's (trial numbers ``front``) by x."""
    done = [t for t in complete(trials) if len(t["values"]) >= 2]
    numbers = set(front)
    everyone = [(float(t["values"][0]), float(t["values"][1])) for t in done]
    on_front = sorted((float(t["values"][0]), float(t["values"][1])) for t in done if t["number"] in numbers)
    return everyone, on_front


def importance_bars(importances: Mapping[str, float], width: int, *, complete_trials: int = 0) -> Text:
    """Each parameter's importance as a bar, largest first; without importances, a line saying why."""
    if not importances:
        need = max(0, IMPORTANCE_MIN_TRIALS - complete_trials)
        why = f"{need} more complete trial{'s' if need != 1 else ''}" if need else "a parameter that varies"
        return Text(f"parameter importances: need {why}", style="dim")
    items = sorted(importances.items(), key=lambda kv: -kv[1])
    label = min(24, max(len(name) for name, _ in items))
    bar_width = max(4, width - label - 8)
    text = Text("importance for the first objective", style="bold")
    for name, share in items:
        eighths = round(max(0.0, min(1.0, share)) * bar_width * 8)
        bar = "█" * (eighths // 8) + ("" if eighths % 8 == 0 else chr(0x2590 - eighths % 8))
        text.append(f"\n{name[:label]:<{label}} ")
        text.append(f"{bar:<{bar_width}}", style="cyan")
        text.append(f" {share:5.1%}")
    return text


def trial_detail(trial: Mapping[str, Any]) -> Text:
    """The selected trial in full: its parameters, values and reason."""
    text = Text(f"trial {trial['number']} ", style="bold")
    text.append(trial["state"], style=TRIAL_STYLES.get(trial["state"], ""))
    if trial.get("values"):
        text.append(" · " + " ".join(f"{v:.6g}" for v in trial["values"]))
    if trial.get("reason"):
        text.append(f" · {trial['reason']}")
    text.append(f"\n{params_text(trial.get('params') or {}) or 'no parameters'}", style="dim")
    return text
