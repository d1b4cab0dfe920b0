"""How ``stratcast`` prints the daemon's results: tables and lines for people (``--json`` prints them raw)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stratcast.shared.events import (
    Event,
    NoticeGiven,
    PlanChosen,
    ProgressReported,
    RanOutOfMemory,
    RunRemoved,
    RunUpdated,
    ShutdownStarted,
    WarningGiven,
    event_fields,
)
from stratcast.shared.mirror import Mirror
from stratcast.shared.objectives import values_text
from stratcast.shared.protocol import JobSpec, RunInfo
from stratcast.shared.report import SAVED_TEXT, duration_text, models_text, progress_text, skill_table, table

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
"""Units of ``--every`` durations, in seconds."""
# -- rendering -----------------------------------------------------------------------------------------------


def state_text(run: RunInfo) -> str:
    """A run's state with its device while running and its reason, e.g. ``queued (GPU 0 busy with run 3)``."""
    where = f" on {run.device}" if run.state == "running" and run.device else ""
    why = f" ({run.reason})" if run.reason else ""
    return f"{run.state}{where}{why}"


def run_line(result: Mapping[str, Any]) -> str:
    """One run after an action: ``run 7 nightly: stopped (checkpoint at step 400)``."""
    run = result["run"]
    name = f" {run['name']}" if run.get("name") else ""
    why = f" ({run['reason']})" if run.get("reason") else ""
    return f"run {run['id']}{name}: {run['state']}{why}"


def runs_table(result: Mapping[str, Any]) -> str:
    """``ls``: id, name, state, model, device, progress, age, reason."""
    rows = []
    for run in result["runs"]:
        p = run.get("progress") or {}
        step = f"{p['step']}/{p.get('max_steps', '?')}" if "step" in p else "-"
        job = run["job"]
        rows.append([run["id"], run["name"], run["state"], job_model(job), run.get("device") or "-", step])
        rows[-1] += [_ago(run["created"]), run.get("reason") or ""]
    if not rows:
        return "no runs"
    return table(["id", "name", "state", "model", "device", "step", "age", "reason"], rows)


def job_model(job: Mapping[str, Any]) -> str:
    """The model column of a job (as plain data): its model, or ``saved:REF`` for a scoring job."""
    return f"saved:{job['saved']}" if job.get("saved") else str(job["model"])


def schedule_model(s: Mapping[str, Any]) -> str:
    """What a schedule (as plain data) does: its job's :func:`job_model`, or ``tune nhits,tft x20 -> NAME``.

    A re-tuning schedule shows its models, its trials and the saved model each firing's best becomes.
    """
    study = s.get("study")
    if not study:
        return job_model(s["job"])
    return f"tune {','.join(study['models'])} x{study.get('trials', 20)} -> {study.get('save_as')}"


def schedule_last(s: Mapping[str, Any]) -> str:
    """What a schedule last fired: ``run 17``, ``study 4`` (re-tuning), or ``-``."""
    if s.get("study"):
        return f"study {s['last_study_id']}" if s.get("last_study_id") is not None else "-"
    return f"run {s['last_run_id']}" if s.get("last_run_id") is not None else "-"


def model_label(job: JobSpec) -> str:
    """:func:`job_model` of a job struct."""
    return f"saved:{job.saved}" if job.saved else job.model


def job_what(job: Mapping[str, Any]) -> str:
    """What a job does, for ``show``: ``nhits (batch)``, ``... saved as NAME``, or ``scoring with saved REF``."""
    if job.get("saved"):
        return f"scoring with saved model {job['saved']}"
    return f"{job['model']} ({job['mode']})" + (f", saved as {job['save_as']}" if job.get("save_as") else "")


def show_text(result: Mapping[str, Any]) -> str:
    """``show``: a run's record, progress, checkpoints, metrics and recent events."""
    run, job, place = result["run"], result["run"]["job"], result["run"]["placement"]
    after = ", ".join(map(str, place["after"])) or "-"
    gpu = "any" if place.get("gpu") is None else place["gpu"]
    memory = "own GPU" if place.get("memory_gib") is None else f"{place['memory_gib']:g} GiB shared"
    if place.get("gpus", 1) > 1:
        memory = f"{place['gpus']} devices of its own (data-parallel)"
    lines = [
        f"run {run['id']} {run['name']}",
        f"state       {run['state']}" + (f" ({run['reason']})" if run.get("reason") else ""),
        f"job         {job_what(job)} on {job['data']}" + "".join(f" --set {s}" for s in job["sets"]),
        f"placement   priority {place['priority']}, gpu {gpu}, {memory}, after {after}",
        f"worker      {run.get('device') or '-'}, pid {run.get('pid') or '-'}, attempts {run['attempts']}, "
        f"exit {run.get('exit') or '-'}",
        f"times       created {_when(run['created'])}, started {_when(run.get('started'))}, "
        f"finished {_when(run.get('finished'))}",
        f"progress    {progress_text(run.get('progress') or {})}",
        f"folder      {run.get('out') or '-'}",
    ]
    lines += [f"checkpoint  {c}" for c in result.get("checkpoints", [])]
    metrics = result.get("metrics")
    if isinstance(metrics, dict) and "errors" in metrics:
        lines += ["", skill_table(metrics)]
    events = result.get("events", [])
    lines += ["", "events:", *(f"  {_when(e.get('time'))}  {event_text(e)}" for e in events)] if events else []
    return "\n".join(lines)


EVENT_WORDS = {
    "submitted": "submitted",
    "started": "started on {device}, pid {pid}",
    "checkpoint": "checkpoint at step {step}: {path}",
    "stop_requested": "stop requested",
    "kill_requested": "kill requested",
    "resumed": "resume requested",
    "restarted": "restarted ({how})",
    "requeued": "requeued: {why}, {how}",
    "ended": "ended {state} ({exit})",
    "oom": "out of memory at step {step} ({phase}): micro-batch {old_micro_batch}, then {new_micro_batch}",
    "schedule_skipped": "schedule {schedule} skipped a run: this one had not ended",
    "warning": "warning: {message}",
    "cutoff": "cutoff {cutoff} scored {value}",
    "pruned": "pruned by its study: {reason}",
}
"""A run event (``show``) in words by its kind; other kinds list their fields."""


def event_text(event: Mapping[str, Any]) -> str:
    """One stored run event in words: ``started on cuda:0, pid 4242``; ``kind: field value, ...`` otherwise."""
    kind, data = str(event.get("kind")), event.get("data") or {}
    if kind == "submitted" and data.get("schedule") is not None:
        return f"submitted by schedule {data['schedule']}"
    if kind == "plan":
        return f"memory plan: {plan_text(data)}"
    if kind == "state":
        reason = f" ({data['reason']})" if data.get("reason") else ""
        return f"state {data.get('from') or 'new'} -> {data.get('to')}{reason}"
    if kind in EVENT_WORDS:
        return EVENT_WORDS[kind].format_map(_Blank({k: _words(v) for k, v in data.items()}))
    fields = ", ".join(f"{k.replace('_', ' ')} {_words(v)}" for k, v in data.items() if v != "")
    return f"{kind.replace('_', ' ')}: {fields}" if fields else kind.replace("_", " ")


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "-"


def _words(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(map(_words, value)) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {_words(v)}" for k, v in value.items()) or "-"
    return str(value)


def gpus_table(result: Mapping[str, Any]) -> str:
    """``gpus``: index, name, memory, load, temperature, power, runs."""
    rows = []
    for g in result["gpus"]:
        runs = ", ".join(str(p.get("run") or f"pid {p['pid']}") for p in g.get("processes", [])) or "-"
        memory = f"{_gib(g.get('memory_used'))}/{_gib(g.get('memory_total'))}"
        rows.append([g["index"], g["name"], memory, _num(g.get("utilization")), _num(g.get("temperature"))])
        rows[-1] += [_num(g.get("power_w")), runs]
    text = table(["gpu", "name", "memory GiB", "util %", "temp C", "power W", "runs"], rows) if rows else "no GPUs"
    return text + (f"\n{result['notice']}" if result.get("notice") else "")


def schedule_line(result: Mapping[str, Any]) -> str:
    """One schedule after an action."""
    s = result["schedule"]
    paused = ", paused" if s.get("paused") else f", next {_when(s.get('next_run'))}"
    tune = f" ({schedule_model(s)})" if s.get("study") else ""
    return f"schedule {s['id']} {s['name']}{tune}: {_timetable(s)}{paused}"


def schedules_table(result: Mapping[str, Any]) -> str:
    """``schedule ls``: id, name, timetable, model, next firing, last run."""
    rows = []
    for s in result["schedules"]:
        state = "paused" if s.get("paused") else "active"
        rows.append([s["id"], s["name"], _timetable(s), schedule_model(s), state, _when(s.get("next_run"))])
        rows[-1].append(schedule_last(s))
    return table(["id", "name", "when", "model", "state", "next", "last"], rows) if rows else "no schedules"


def _timetable(s: Mapping[str, Any]) -> str:
    zone = s.get("timezone", "UTC")
    return f"cron {s['cron']} ({zone})" if s.get("cron") else f"every {interval_text(s.get('every_s') or 0)}"


def status_text(result: Mapping[str, Any]) -> str:
    """``status`` (and no subcommand): version, uptime, queue, devices, the executor and its health, notices."""
    counts = ", ".join(f"{n} {state}" for state, n in result.get("counts", {}).items() if n) or "none"
    lines = [
        f"stratcastd {result['daemon']} (pid {result['pid']}, up {duration_text(result['uptime_s'])}, "
        f"session {result['session']})",
        f"home     {result['home']}",
        f"queue    {'paused (stratcast queue resume)' if result['queue_paused'] else 'running'}",
        f"runs     {counts}",
        f"devices  {', '.join(result.get('devices', [])) or 'none'}",
    ]
    if "executor" in result:  # a daemon older than the executors does not say
        health = result.get("executor_health", "ok")
        wait = "" if health == "ok" else "; queued runs wait for it"
        lines.append(f"executor {result['executor']} ({health}{wait})")
    return "\n".join(lines + [f"notice   {n}" for n in result.get("notices", [])])


def check_text(result: Mapping[str, Any]) -> str:
    """``check``: the panel a job would train on, as the daemon read it."""
    cols = result["columns"]
    dropped = f", {result['dropped']} dropped as too short" if result["dropped"] else ""
    filled = f", {result['filled']:,} of them filled in" if result["filled"] else ""
    lines = [
        f"data        {result['data']} (columns {cols['id']}, {cols['time']}, {cols['target']})",
        f"strategies  {result['strategies']:,} kept{dropped}",
        f"periods     {result['periods']:,}, {result['first']} to {result['last']} "
        f"(a strategy needs {result['required_periods']})",
        f"zeros       {result['zero_share']:.1%} of {result['observations']:,} values{filled}",
    ]
    lines += [f"note        {note}" for note in result.get("notes", [])]
    return "\n".join([*lines, "submit would accept this job"])


def _shutdown_text(result: Mapping[str, Any]) -> str:
    stopping = result.get("stopping", [])
    if not stopping:
        return "stratcastd is shutting down"
    return f"stratcastd is shutting down after checkpointing {runs_phrase(stopping)} (the next start resumes them)"


def runs_phrase(ids: Sequence[int]) -> str:
    """``run 3`` or ``runs 3, 4``."""
    return f"run {ids[0]}" if len(ids) == 1 else "runs " + ", ".join(map(str, ids))


def study_line(result: Mapping[str, Any]) -> str:
    """One study after an action: ``study 3 stratcast-study-3: running (resumed)``."""
    s = result["study"]
    why = f" ({s['reason']})" if s.get("reason") else ""
    return f"study {s['id']} {s['name']}: {s['state']}{why}"


def studies_table(result: Mapping[str, Any]) -> str:
    """``studies``: id, name, state, models, objectives, trials asked of all, age, reason."""
    rows = []
    for s in result["studies"]:
        spec = s["spec"]
        asked = f"{s['asked']}/{spec['trials']}"
        rows.append([s["id"], s["name"], s["state"], ",".join(spec["models"]), ",".join(spec["objectives"]), asked])
        rows[-1] += [_ago(s["created"]), s.get("reason") or ""]
    if not rows:
        return "no studies"
    return table(["id", "name", "state", "models", "objectives", "trials", "age", "reason"], rows)


def params_text(params: Mapping[str, Any]) -> str:
    """A trial's parameters in one line: ``model=nhits lr=0.00123 dropout=0.1``."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def study_text(result: Mapping[str, Any]) -> str:
    """``study ID``: the study, its trials, its best, its parameters' importances and its final run.

    Trials: number, state, values, run, duration, reason, parameters; importances most important first.
    """
    s = result["study"]
    lines = [study_line(result), f"objectives: {', '.join(s['spec']['objectives'])}; trials asked {s['asked']}"]
    rows = []
    for t in result["trials"]:
        values = values_text(s["spec"]["objectives"], t["values"]) if t.get("values") else "-"
        seconds = duration_text(t["duration_s"]) if t.get("duration_s") is not None else "-"
        params = params_text(t["params"])
        run = "-" if t.get("run") is None else t["run"]
        rows.append([t["number"], t["state"], values, run, seconds, t.get("reason") or "", params])
    lines.append(table(["trial", "state", "value", "run", "took", "reason", "params"], rows) if rows else "no trials")
    if result.get("note"):
        lines.append(str(result["note"]))
    best = result.get("best") or []
    label = "Pareto front" if len(s["spec"]["objectives"]) > 1 else "best"
    lines.append(f"{label}: {', '.join(f'trial {n}' for n in best) if best else 'none completed'}")
    importances = result.get("importances") or {}
    if importances:
        ranked = sorted(importances.items(), key=lambda kv: -kv[1])
        lines.append("importances: " + ", ".join(f"{name} {value:.2f}" for name, value in ranked))
    if s.get("final_run") is not None:
        lines.append(f"final run: {s['final_run']} (study-{s['id']}/best; `stratcast show {s['final_run']}`)")
    return "\n".join(lines)


RENDER: dict[str, Callable[[Any], str]] = {
    **dict.fromkeys(
        ("submit", "backtest", "stop", "resume", "hold", "release", "kill", "restart", "priority"), run_line
    ),
    "schedule run-now": lambda r: study_line(r) if "study" in r else run_line(r),
    "ls": runs_table,
    "show": show_text,
    "rm": lambda r: f"removed run {r['removed']}",
    "gpus": gpus_table,
    "models": models_text,
    "status": status_text,
    "queue pause": lambda r: "queue paused: running runs go on, no new ones start",
    "queue resume": lambda r: "queue running",
    "shutdown": _shutdown_text,
    **dict.fromkeys(("schedule add", "schedule pause", "schedule resume"), schedule_line),
    "export": lambda r: f"wrote {r['rows']:,} {r['what']} rows to {r['path']} ({r['format']})",
    "check": check_text,
    "schedule ls": schedules_table,
    "schedule rm": lambda r: f"removed schedule {r['removed']}",
    "forecast": run_line,
    **{f"saved {command}": text for command, text in SAVED_TEXT.items()},
    "save": lambda r: f"saved run {r['run']} as {r['ref']} ({r['path']})",
    "tune": study_line,
    "studies": studies_table,
    "study": lambda r: study_text(r) if "trials" in r else run_line(r) if "run" in r else study_line(r),
}


def clock(ts: float) -> str:
    """Local wall-clock time of an epoch timestamp, ``HH:MM:SS``."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _ago(ts: float) -> str:
    return duration_text(max(0.0, time.time() - ts))


def interval_text(seconds: int) -> str:
    """An interval as ``--every`` takes it: ``1h30m``, ``7d``."""
    parts = []
    for unit, size in sorted(DURATION_UNITS.items(), key=lambda kv: -kv[1]):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def _gib(value: Any) -> str:
    return f"{value / 2**30:.1f}" if isinstance(value, int | float) else "?"


def _num(value: Any) -> Any:
    return value if isinstance(value, int | float) else "-"


# -- watch ---------------------------------------------------------------------------------------------------


def plan_text(plan: Mapping[str, Any]) -> str:
    """A memory plan in a line: ``micro-batch 256 of 1024 (probe) on cuda:0, peak 3.2 of 70.0 GiB``."""
    text = f"micro-batch {plan.get('micro_batch')} of {plan.get('batch_size')} ({plan.get('source')})"
    text += f" on {plan.get('device')}"
    peak, budget = plan.get("measured_peak") or plan.get("predicted_peak"), plan.get("budget")
    if isinstance(peak, int | float) and isinstance(budget, int | float):
        text += f", peak {_gib(peak)} of {_gib(budget)} GiB"
    return text


class Watcher:
    """Turns a :class:`Mirror`'s events into ``watch``'s lines, remembering each run's last printed state."""

    def __init__(self) -> None:
        self.mirror = Mirror()
        self.states: dict[int, str] = {}
        self.loaded = False

    def lines(self, event: Event | None) -> list[str]:
        """What to print for one event (None: the mirror was just loaded from a snapshot)."""
        if event is None:
            return self._loaded(time.time())
        at, run = clock(event.time), f"run {event.run}"
        match event.data:
            case RunUpdated(run=info):
                return self._changes(event.time, [info.id])
            case RunRemoved() if event.run is not None:
                return self._changes(event.time, [event.run])
            case ProgressReported() as progress:
                return [f"{at}  {run}  {progress_text(event_fields(progress))}"]
            case PlanChosen() as plan:
                return [f"{at}  {run} memory plan: {plan_text(event_fields(plan))}"]
            case RanOutOfMemory() as oom:
                rest = ", ".join(f"{k} {v}" for k, v in event_fields(oom).items())
                return [f"{at}  {run} ran out of GPU memory: {rest}"]
            case WarningGiven(message=message):
                return [f"{at}  {run} warning: {message}"]
            case NoticeGiven(message=message):
                return [f"{at}  daemon: {message}"]
            case ShutdownStarted():
                return [f"{at}  daemon: shutting down"]
        return []

    def _loaded(self, now: float) -> list[str]:
        if self.loaded:  # a re-snapshot after a gap or a daemon restart: print what changed meanwhile
            return [f"{clock(now)}  resynchronized (session {self.mirror.session})", *self._changes(now)]
        self.loaded = True
        self.states = {run.id: run.state for run in self.mirror.runs.values()}
        counts: dict[str, int] = {}
        for state in self.states.values():
            counts[state] = counts.get(state, 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in counts.items()) or "no runs"
        return [f"{clock(now)}  watching stratcastd (session {self.mirror.session}): {summary}"]

    def _changes(self, when: float, ids: Sequence[int] | None = None) -> list[str]:
        """Lines for runs whose state differs from the last printed one."""
        lines = []
        for run_id in ids if ids is not None else sorted(set(self.states) | set(self.mirror.runs)):
            run, old = self.mirror.runs.get(run_id), self.states.get(run_id)
            if run is None:
                if self.states.pop(run_id, None) is not None:
                    lines.append(f"{clock(when)}  run {run_id} removed")
            elif run.state != old:
                self.states[run_id] = run.state
                lines.append(f"{clock(when)}  run {run_id} {run.name}: {old or 'new'} -> {state_text(run)}")
        return lines
