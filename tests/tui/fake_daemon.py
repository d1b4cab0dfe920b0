"""A fake daemon for the TUI's tests: a deterministic snapshot, events fed by the test, requests recorded.

``FakeLink`` implements :class:`stratcast.tui.link.Link`. Its state is a real :class:`Mirror` loaded from
:func:`demo_snapshot`; :meth:`FakeLink.feed` applies events in order exactly as the real link does; requests are
answered by ``handlers`` (by request type tag) and recorded in ``calls``. Everything depends only on ``T0``, so
screens render identically on every run (SVG snapshots).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import msgspec

from stratcast.shared.client import RequestFailed
from stratcast.shared.events import AnyEvent, Event, RunUpdated, ScheduleUpdated
from stratcast.shared.mirror import Mirror
from stratcast.shared.protocol import AnyRequest, KillRun, ScheduleInfo, to_builtins
from stratcast.tui.link import LinkState

T0 = 1_763_900_000.0
"""The fake's "now": 2025-11-23 12:13:20 UTC."""
GIB = 2**30
SESSION = "fake-session"


def frozen_clock() -> float:
    """The clock the TUI gets in tests."""
    return T0


def job(model: str = "nhits", **fields: Any) -> dict[str, Any]:
    return {"data": "/data/eurusd.parquet", "model": model, "horizon": 52, "holdout": 26, **fields}


def run(run_id: int, state: str, *, name: str = "", model: str = "nhits", **fields: Any) -> dict[str, Any]:
    record = {
        "id": run_id,
        "name": name,
        "state": state,
        "job": job(model),
        "placement": {"name": name},
        "created": T0 - 3600 + run_id * 60,
        "out": f"/home/q/.local/state/stratcast/runs/{run_id}",
    }
    record.update(fields)
    return record


def progress(step: int, max_steps: int = 1000, *, micro_batch: int = 512) -> dict[str, Any]:
    """A progress report as a worker sends it, deterministic in ``step``."""
    loss = 0.9 * math.exp(-step / 300) + 0.1
    return {
        "step": step,
        "max_steps": max_steps,
        "epoch": step / 125,
        "train_loss": round(loss, 5),
        "val_loss": round(loss * 1.1, 5) if step % 100 == 0 else None,
        "best_val_loss": round(loss * 1.1, 5),
        "windows_per_s": 51234.0,
        "eta_s": (max_steps - step) * 0.12,
        "learning_rate": 0.001,
        "micro_batch": micro_batch,
    }


def demo_runs() -> list[dict[str, Any]]:
    """Runs in every interesting state, with their reasons."""
    memory = {"allocated": 30 * GIB, "reserved": 34 * GIB, "peak": 41 * GIB, "oom_count": 1, "rss": 2 * GIB}
    return [
        run(
            1,
            "running",
            name="eurusd-nhits",
            device="cuda:0",
            pid=4242,
            started=T0 - 600,
            attempts=1,
            progress=progress(420),
            memory=memory,
        ),
        run(2, "queued", name="eurusd-tide", model="tide", reason="GPU 0 busy with run 1"),
        run(
            3,
            "succeeded",
            name="nightly",
            model="dlinear",
            started=T0 - 3000,
            finished=T0 - 2400,
            progress=progress(1000),
            memory={"peak": 3 * GIB},
        ),
        run(
            4,
            "stopped",
            name="big-patchtst",
            model="patchtst",
            started=T0 - 2000,
            progress=progress(300),
            reason="stopped on request; `stratcast resume` continues from the checkpoint",
        ),
        run(5, "held", name="later", model="nbeats", reason="held"),
        run(
            6,
            "oom-failed",
            name="too-big",
            model="itransformer",
            started=T0 - 1500,
            finished=T0 - 1400,
            reason="out of memory; see `stratcast logs 6`",
        ),
    ]


def gpu(index: int, t: float, *, used: float, util: int, pids: list[tuple[int, float]]) -> dict[str, Any]:
    return {
        "time": t,
        "index": index,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": f"GPU-{index}",
        "memory_used": int(used * GIB),
        "memory_total": int(79.6 * GIB),
        "utilization": util,
        "temperature": 61 - 20 * index,
        "power_w": 312.0 - 250 * index,
        "power_limit_w": 700.0,
        "processes": [{"pid": pid, "used": int(u * GIB)} for pid, u in pids],
    }


def gpu_samples(t: float, i: int) -> list[dict[str, Any]]:
    wave = math.sin(i / 9)
    return [
        gpu(0, t, used=36 + 4 * wave, util=int(80 + 15 * wave), pids=[(4242, 35.5)]),
        gpu(1, t, used=1.2, util=0, pids=[(999, 1.0)]),
    ]


def host_sample(t: float, i: int) -> dict[str, Any]:
    return {
        "time": t,
        "cpu_percent": 30 + 10 * math.sin(i / 7),
        "memory_used": 40 * GIB,
        "memory_total": 128 * GIB,
        "daemon_rss": GIB // 8,
        "workers_rss": {"4242": 2 * GIB},
    }


def demo_snapshot(*, gpus: bool = True, samples: int = 120) -> dict[str, Any]:
    """A snapshot as the daemon sends it: runs, two GPUs (or none) with ``samples`` of history at 5 Hz."""
    times = [T0 - (samples - i) * 0.2 for i in range(samples)]
    gpu_history: dict[str, list[dict[str, Any]]] = {"0": [], "1": []}
    for i, t in enumerate(times):
        for g in gpu_samples(t, i):
            gpu_history[str(g["index"])].append(g)
    run_history = [{"time": T0 - 60 + s, "kind": "progress", **progress(360 + s)} for s in range(60)]
    return {
        "session": SESSION,
        "seq": 100,
        "runs": demo_runs(),
        "schedules": [],
        "gpus": gpu_samples(T0, samples) if gpus else [],
        "telemetry": {
            "gpus": gpu_history if gpus else {},
            "host": [host_sample(t, i) for i, t in enumerate(times)],
            "runs": {"1": run_history},
        },
        "queue_paused": False,
        "notices": [],
    }


class FakeLink:
    """A :class:`~stratcast.tui.link.Link` over a fake daemon (see the module docstring)."""

    def __init__(self, snapshot: dict[str, Any] | None = None) -> None:
        self.mirror = Mirror()
        self.mirror.load(snapshot if snapshot is not None else demo_snapshot())
        self.state: LinkState = "live"
        self.detail = ""
        self.version = 1
        self.calls: list[AnyRequest] = []
        self.handlers: dict[str, Callable[[Any], Any]] = {}
        """Answers by request tag (``"stop_run"``); an answer that is an Exception is raised."""
        self._stopped = asyncio.Event()

    async def call(self, request: AnyRequest) -> Any:
        self.calls.append(request)
        tag = type(request).__struct_config__.tag
        handler = self.handlers.get(str(tag))
        if handler is None:
            return {"run": to_builtins(self.mirror.runs[request.run])} if hasattr(request, "run") else {}
        answer = handler(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def run(self) -> None:
        await self._stopped.wait()

    def feed(self, data: AnyEvent, run: int | None = None) -> Event:
        """Apply one event about ``run`` with the next ``seq`` (as the real link does) and return it."""
        event = Event(session=SESSION, seq=self.mirror.seq + 1, time=T0, run=run, data=data)
        self.mirror.apply(event)
        self.version += 1
        return event

    def set_run(self, run_id: int, **fields: Any) -> None:
        """Change a run as the daemon would announce it (a ``run`` event)."""
        record = msgspec.structs.replace(self.mirror.runs[run_id], **fields)
        self.feed(RunUpdated(run=record), run_id)

    def refuse(self, tag: str, message: str, code: str = "bad_state") -> None:
        """Make requests of kind ``tag`` fail with ``message``."""
        self.handlers[tag] = lambda _request: RequestFailed(code, message)


# -- the run screen's reads (show_run, read_history, read_results, read_logs) ---------------------------------


def demo_history(steps: int = 420, *, oom_step: int | None = 200) -> dict[str, Any]:
    """A ``read_history`` result for run 1: a progress report every 10 steps (validation every 100), memory every
    10 s, one plan (budget 70 GiB), an OOM at ``oom_step`` (micro-batch 1024 -> 512) and checkpoints every 200."""
    t0 = T0 - 600

    def at(step: int) -> float:
        return t0 + step

    probes = [{"micro_batch": m, "peak": int(m * 0.08 * GIB)} for m in (64, 128, 256, 512)]
    plan = {
        "time": t0,
        "micro_batch": 1024,
        "batch_size": 1024,
        "budget": 70 * GIB,
        "predicted_peak": int(69 * GIB),
        "measured_peak": None,
        "probes": [*probes, {"micro_batch": 1024, "peak": None}],
        "source": "planner",
        "levers": ["a smaller input_size cuts activation memory"],
        "device": "cuda:0",
    }
    ooms: list[dict[str, Any]] = []
    if oom_step is not None:
        ooms.append(
            {
                "time": at(oom_step),
                "step": oom_step,
                "phase": "forward/backward",
                "old_micro_batch": 1024,
                "new_micro_batch": 512,
                "allocated": 62 * GIB,
                "reserved": 71 * GIB,
                "rss": 3 * GIB,
                "error": "CUDA out of memory. Tried to allocate 8.00 GiB",
            }
        )
    memory: list[dict[str, Any]] = [
        {"time": at(s), "allocated": 30 * GIB, "reserved": 34 * GIB, "peak": 41 * GIB, "oom_count": 0, "rss": GIB}
        for s in range(0, steps + 1, 10)
    ]
    for sample in memory:
        sample["oom_count"] = sum(1 for o in ooms if o["time"] <= sample["time"])
    checkpoints = [
        {"time": at(s), "step": s, "path": f"/runs/1/checkpoints/step-{s:06d}.pt", "stopped": False}
        for s in range(200, steps + 1, 200)
    ]
    return {
        "progress": [{"time": at(s), **progress(s)} for s in range(0, steps + 1, 10)],
        "memory": memory,
        "ooms": ooms,
        "plans": [plan],
        "checkpoints": checkpoints,
        "thinned": False,
    }


def demo_metrics() -> dict[str, Any]:
    """``metrics.json`` of a succeeded run: the skill table's keys, the training summary and the spec."""
    errors = {
        "model": {"mae": 0.812, "rmse": 1.31, "total_mae": 12.4},
        "zero": {"mae": 0.95, "rmse": 1.52, "total_mae": 15.1},
        "trailing_mean": {"mae": 0.88, "rmse": 1.41, "total_mae": 13.9},
    }
    picks = {"model": {"top10": 0.41, "top1pct": 0.52}, "trailing_mean": {"top10": 0.22, "top1pct": 0.3}}
    ranking = {"k": {"top10": 10, "top1pct": 3}, "picks": {**picks, "oracle": {"top10": 1.9}}, "universe_mean": 0.01}
    train = {"max_steps": 1000, "batch_size": 1024, "learning_rate": 0.001}
    summary = {"model": "dlinear", "device": "cpu", "steps": 1000, "best_step": 900, "best_val_loss": 0.1234}
    return {
        "errors": errors,
        "ranking": ranking,
        "verdict": [
            "The model's RMSE is 13.8% lower than the zero forecast.",
            "Its top 1% picks earned 0.52 per period and beat the trailing-mean picks (0.3).",
        ],
        "holdout": {"periods": 26, "strategies": 300, "origin": 100},
        "run": {**summary, "stopped_early": False, "train_seconds": 600.0},
        "spec": {"data": "/data/eurusd.parquet", "holdout": 26, "train": train, "model_params": {"input_size": 104}},
    }


def demo_results(top: int = 5) -> dict[str, Any]:
    """A ``read_results`` result: :func:`demo_metrics` and ``top`` strategies with 52-period forecasts."""
    rows = [
        {
            "strategy": f"S{100 + r}",
            "rank": r,
            "forecast_mean": 1.0 / r,
            "forecast_sum": 52.0 / r,
            "trailing_mean": 0.5 / r,
            "zero_share": 0.1,
            "forecast": [math.sin(i / 4 + r) / r for i in range(52)],
        }
        for r in range(1, top + 1)
    ]
    return {"metrics": demo_metrics(), "top": rows, "horizon": 52}


def serve_runs(link: FakeLink) -> dict[int, str]:
    """Answer the run screen's reads on ``link``; the logs by run (append to one to grow it) are returned.

    Run 1 has :func:`demo_history`; run 3 (succeeded) has :func:`demo_results`; other runs refuse ``read_results``
    as the daemon does, and have an empty history.
    """
    logs = {1: "".join(f"step {s} loss {progress(s)['train_loss']}\n" for s in range(0, 421, 10)), 3: "done\n"}

    def show_run(request: Any) -> dict[str, Any]:
        run = link.mirror.runs[request.run]
        events = [{"id": 1, "time": run.created, "run": run.id, "kind": "submitted", "data": {}}]
        finished = run.state == "succeeded"
        files = [f"/runs/{run.id}/checkpoints/step-000400.pt"] if run.id == 1 else []
        return {
            "run": to_builtins(run),
            "events": events,
            "checkpoints": files,
            "metrics": demo_metrics() if finished else None,
        }

    def read_history(request: Any) -> dict[str, Any]:
        empty = {"progress": [], "memory": [], "ooms": [], "plans": [], "checkpoints": [], "thinned": False}
        return demo_history() if request.run == 1 else empty

    def read_results(request: Any) -> Any:
        run = link.mirror.runs[request.run]
        if run.state != "succeeded":
            return RequestFailed("bad_state", f"run {run.id} has no results: it is {run.state}")
        return demo_results(min(request.top, 5))

    def read_logs(request: Any) -> dict[str, Any]:
        data = logs.get(request.run, "").encode()
        chunk = data[request.offset : request.offset + request.limit]
        return {"text": chunk.decode(), "offset": request.offset + len(chunk), "size": len(data)}

    link.handlers.update(show_run=show_run, read_history=read_history, read_results=read_results, read_logs=read_logs)
    return logs


# -- the new-run form's and the schedules screen's answers (list_models, check_data, schedules) ---------------


def demo_models() -> dict[str, Any]:
    """A ``list_models`` result in the daemon's shape: three models (one batch-only) and six training options.

    ``itransformer-x`` trains at ``learning_rate`` 1e-4 by default (its ``train_defaults``), the others at the
    option's 1e-3.
    """

    def param(name: str, kind: str, default: Any, **fields: Any) -> dict[str, Any]:
        return {"name": name, "type": kind, "default": default, "lo": None, "hi": None, "choices": None} | fields

    acts = ["relu", "gelu", "silu", "tanh"]
    models = [
        ("dlinear", True, [param("moving_avg", "int", 25, lo=1, hi=1001, help="trend window (odd)")]),
        (
            "nhits",
            True,
            [
                param("n_blocks", "int", 1, lo=1, hi=16, help="blocks per stack"),
                param("mlp_units", "tuple[int, ...]", [512, 512], lo=1, help="widths of each block's MLP"),
                param("dropout", "float", 0.0, lo=0.0, hi=0.9, help="dropout in the MLPs"),
                param("activation", "str", "relu", choices=acts, help="activation function"),
            ],
        ),
        ("itransformer-x", False, [param("d_model", "int", 128, lo=1, hi=4096, help="width of the tokens")]),
    ]
    train = [
        param("input_size", "int", 104, lo=1, hi=100000, help="periods of history each window sees"),
        param("horizon", "int", 52, lo=1, hi=10000, help="periods forecast ahead"),
        param("max_steps", "int", 1000, lo=1, hi=10000000, help="optimizer steps at most"),
        param("learning_rate", "float", 0.001, lo=1e-07, hi=10.0, help="peak learning rate of AdamW"),
        param("loss", "str", "mse", choices=["mse", "mae", "huber", "quantile"], help="training loss"),
        param("pad_start", "bool", False, choices=[False, True], help="windows before a series' start"),
    ]
    train_defaults = {"itransformer-x": {"learning_rate": 0.0001}}
    return {
        "models": [
            {"name": name, "summary": f"{name} model", "paper": "Someone et al., 2024", "stackable": stackable}
            | {"good_for": f"what {name} does best"}
            | {"checkpointing": False, "train_defaults": train_defaults.get(name, {}), "params": params}
            for name, stackable, params in models
        ],
        "train_options": train,
    }


def demo_check(data: str = "/data/eurusd.parquet") -> dict[str, Any]:
    """A ``check_data`` result: the panel the daemon read from ``data``."""
    return {
        "data": data,
        "columns": {"id": "No.", "time": "week", "target": "profit"},
        "strategies": 1234,
        "dropped": 12,
        "periods": 520,
        "first": "2015-01-04",
        "last": "2024-12-29",
        "observations": 600000,
        "zero_share": 0.38,
        "filled": 0,
        "required_periods": 183,
        "notes": ["12 strategies with fewer than 183 periods were dropped"],
    }


def serve_models(link: FakeLink) -> FakeLink:
    """Answer ``list_models`` with :func:`demo_models` and ``check_data`` with :func:`demo_check` of the job."""
    link.handlers["list_models"] = lambda _request: demo_models()
    link.handlers["check_data"] = lambda request: demo_check(request.job.data)
    return link


def schedule(schedule_id: int, name: str, *, model: str = "dlinear", **fields: Any) -> dict[str, Any]:
    """A ``schedule`` record (``cron`` or ``every_s`` among ``fields``) as the daemon publishes it."""
    record = {
        "id": schedule_id,
        "name": name,
        "timezone": "UTC",
        "job": job(model),
        "placement": {},
        "next_run": T0 + 3 * 3600 + 600,
    }
    return record | fields


def schedule_updated(record: dict[str, Any]) -> ScheduleUpdated:
    """A ``schedule`` event about a :func:`schedule` record."""
    return ScheduleUpdated(schedule=msgspec.convert(record, ScheduleInfo))


async def kill_declined_then_confirmed(link: FakeLink, pilot: Any) -> list[int]:
    """Press ``k`` and decline (nothing may be sent), then ``k`` and confirm; the runs a ``KillRun`` went to."""
    await pilot.press("k")
    await pilot.pause()
    await pilot.press("n")
    await pilot.pause()
    assert not any(isinstance(c, KillRun) for c in link.calls)
    await pilot.press("k")
    await pilot.pause()
    await pilot.press("y")
    await pilot.pause()
    return [c.run for c in link.calls if isinstance(c, KillRun)]


# -- the study screens' answers (list_studies, show_study, stop/resume/retrain_study, submit_study) ------------


def study(
    study_id: int, state: str, *, objectives: tuple[str, ...] = ("holdout-rmse",), **fields: Any
) -> dict[str, Any]:
    """A ``StudyInfo`` as the daemon replies it (``fields`` override the record's)."""
    spec = {
        "models": ["nhits", "tide"],
        "trials": 20,
        "objectives": list(objectives),
        "job": job(),
        "keep": "all-data",
        "save_as": None,
    }
    record = {
        "id": study_id,
        "name": f"stratcast-study-{study_id}",
        "state": state,
        "spec": spec,
        "created": T0 - 1000,
        "asked": 5,
        "elapsed_s": 0.0,
        "active_since": T0 - 1000 if state == "running" else None,
    }
    return record | fields


def trial(number: int, state: str, values: list[float] | None = None, **fields: Any) -> dict[str, Any]:
    """A ``TrialInfo``: started 100 s apart from ``T0 - 900``, told 90 s after (unless running)."""
    started = T0 - 900 + 100 * number
    record = {
        "number": number,
        "state": state,
        "params": {"model": "nhits" if number % 2 == 0 else "tide", "learning_rate": 0.001 * (number + 1)},
        "values": values,
        "duration_s": None if state == "RUNNING" else 90.0,
        "run": number + 1,
        "started": started,
        "completed": None if state == "RUNNING" else started + 90,
    }
    return record | fields


def demo_studies() -> dict[int, dict[str, Any]]:
    """``show_study`` replies of two studies.

    Study 1 runs with one objective (minimized): trials 0, 1, 3 complete (0.95, 0.91, 0.97), 2 pruned, 4 running;
    the best is trial 1. Study 2 finished with two backtest objectives (maximized) and final run 3: its front is
    trials 0 and 2.
    """
    single = {
        "study": study(1, "running"),
        "trials": [
            trial(0, "COMPLETE", [0.95]),
            trial(1, "COMPLETE", [0.91]),
            trial(2, "PRUNED", reason="pruned at step 200"),
            trial(3, "COMPLETE", [0.97]),
            trial(4, "RUNNING"),
        ],
        "best": [1],
        "importances": {"learning_rate": 0.7, "model": 0.3},
    }
    two = ("backtest-top-k", "backtest-diff")
    multi = {
        "study": study(2, "finished", objectives=two, asked=4, final_run=3, elapsed_s=1234.0, finished=T0 - 10),
        "trials": [
            trial(0, "COMPLETE", [0.5, 0.1]),
            trial(1, "COMPLETE", [0.3, 0.05]),
            trial(2, "COMPLETE", [0.2, 0.3]),
            trial(3, "FAIL", reason="oom: out of memory at micro-batch 64", run=None),
        ],
        "best": [0, 2],
        "importances": {},
    }
    return {1: single, 2: multi}


def serve_studies(link: FakeLink) -> dict[int, dict[str, Any]]:
    """Answer the study requests on ``link`` from :func:`demo_studies` (returned: change it to change the replies).

    ``stop_study`` and ``resume_study`` change the study's state; ``retrain_study`` queues run 7;
    ``submit_study`` starts study 3.
    """
    studies = demo_studies()

    def show(request: Any) -> Any:
        if request.study not in studies:
            return RequestFailed("not_found", f"no study {request.study}")
        return studies[request.study]

    def set_state(state: str) -> Callable[[Any], Any]:
        def act(request: Any) -> Any:
            studies[request.study]["study"]["state"] = state
            return {"study": studies[request.study]["study"]}

        return act

    def submit(request: Any) -> dict[str, Any]:
        return {"study": study(3, "running", asked=0) | {"spec": to_builtins(request.spec)}}

    link.handlers.update(
        list_studies=lambda _r: {
            "studies": [s["study"] for s in sorted(studies.values(), key=lambda s: -s["study"]["id"])]
        },
        show_study=show,
        stop_study=set_state("stopped"),
        resume_study=set_state("running"),
        retrain_study=lambda request: {"run": run(7, "queued", name=f"study-{request.study}/final")},
        submit_study=submit,
    )
    return studies


# -- the saved models screen's answers (list_saved, show_saved, set_alias, remove_saved) -----------------------


def saved_manifest(name: str, version: int) -> dict[str, Any]:
    """A ``show_saved`` reply: a dlinear trained by run 3 on 300 weekly strategies, with :func:`demo_metrics`."""
    metrics = demo_metrics()
    signature = {
        "id_col": "No.",
        "time_col": "week",
        "target_col": "profit",
        "frequency": "7 days 00:00:00",
        "own_positions": False,
        "input_size": 104,
        "horizon": 52,
        "strategies": 300,
        "fingerprint": "3f2a9c1e77d0b4aa",
    }
    training = {
        "steps": 1000,
        "best_step": 900,
        "best_val_loss": 0.1234,
        "stopped_early": False,
        "train_seconds": 600.0,
    }
    manifest = {
        "name": name,
        "model": "dlinear",
        "mode": "batch",
        "members": ["dlinear"],
        "source_run": "run 3",
        "created": f"2025-11-2{version}T10:00:00+00:00",
        "training": training,
        "data": signature,
        "intervals": None,
        "metrics": {"errors": metrics["errors"], "verdict": metrics["verdict"]},
    }
    ref = f"{name}:{version}"
    return {
        "name": name,
        "version": version,
        "ref": ref,
        "path": f"/home/q/models/{name}/{version}",
        "manifest": manifest,
    }


def serve_saved(link: FakeLink) -> dict[str, dict[str, Any]]:
    """Answer the saved-model requests on ``link``: ``eurusd`` (versions 1, 2, 3; champion 2) and ``audjpy`` (1).

    ``set_alias`` and ``remove_saved`` (refused for an aliased version unless forced, as the store does) change the
    returned models; ``submit`` queues run 8.
    """
    models: dict[str, dict[str, Any]] = {
        "audjpy": {"name": "audjpy", "versions": [1], "latest": 1, "aliases": {}},
        "eurusd": {"name": "eurusd", "versions": [1, 2, 3], "latest": 3, "aliases": {"champion": 2}},
    }

    def set_alias(request: Any) -> dict[str, Any]:
        name, version = request.ref.split(":")
        models[name]["aliases"][request.alias] = int(version)
        return {"name": name, "version": int(version), "ref": request.ref, "alias": request.alias}

    def remove(request: Any) -> Any:
        name, version = request.ref.split(":")
        m = models[name]
        pointing = [a for a, v in m["aliases"].items() if v == int(version)]
        if pointing and not request.force:
            return RequestFailed("bad_saved_model", f"saved model {request.ref} is aliased as {pointing[0]}")
        m["versions"].remove(int(version))
        m["aliases"] = {a: v for a, v in m["aliases"].items() if a not in pointing}
        m["latest"] = m["versions"][-1]
        return {"name": name, "version": int(version), "ref": request.ref, "removed": True}

    def show(request: Any) -> dict[str, Any]:
        name, version = request.ref.split(":")
        return saved_manifest(name, int(version))

    link.handlers.update(
        list_saved=lambda _r: [models[n] for n in sorted(models)],
        show_saved=show,
        set_alias=set_alias,
        remove_saved=remove,
        submit=lambda request: {"run": run(8, "queued")},
    )
    return models
