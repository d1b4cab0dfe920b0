"""Score new data with a saved model, without retraining: the same outputs a run writes.

:func:`score` reads the new panel with the columns the model was trained on, checks that it fits (the columns are
there, the periods are as far apart, there is enough history for the model's inputs), and forecasts every strategy
from its own last period through the run's own functions: the members' forecasters (an ensemble's mean), the saved
combination with the zero forecast and the trailing mean, the blend, the saved interval calibration put around the
new forecast (as a run puts its bands around its future forecast), and a distribution model's quantiles.

Strategies the model trained on keep the run's scaler statistics, interval quantiles and score scales; a new
strategy gets scaler statistics fitted on its own history (as the run fits a strategy's on its training part), the
pooled interval quantiles and its own score scale. A model with per-series parameters, a per-strategy (stacked) run
and a multivariate model cannot forecast a strategy they never saw: such strategies, and those with too little
history, are listed in ``metrics.json["scored"]["skipped"]`` with the reason. The files are ``forecast.parquet``,
``summary.parquet`` and ``metrics.json`` (see :mod:`stratcast.daemon.engine.run.outputs`), the metrics with a
``scored`` section: the saved model, whether the data matches its signature, the new and skipped strategies.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stratcast.daemon.engine.data.panel import DataError, Panel
from stratcast.daemon.engine.data.scalers import SeriesScaler, fit_scaler
from stratcast.daemon.engine.data.windows import PanelWindows, Split
from stratcast.daemon.engine.evaluation.conformal import Conformal, series_scale
from stratcast.daemon.engine.memory.device import describe_device, resolve_device
from stratcast.daemon.engine.prediction.combine import Combination, CombinedForecaster
from stratcast.daemon.engine.run.build import Forecaster, Log, Prepared, load_spec_panel
from stratcast.daemon.engine.run.combining import combination_info, future_rank_score, trailing_fn
from stratcast.daemon.engine.run.intervals import JobIntervals, ScoreScale, future_bands
from stratcast.daemon.engine.run.job import member_forecaster
from stratcast.daemon.engine.run.members import Member
from stratcast.daemon.engine.run.outputs import finite_numbers, forecast_future, write_outputs
from stratcast.daemon.engine.run.quantiles import drawn_members, future_quantiles, job_distribution, quantiles_info
from stratcast.daemon.engine.run.serving import frequency
from stratcast.daemon.engine.saved.manifest import SCALER_LOC, SCALER_SCALE
from stratcast.daemon.engine.saved.store import SavedModelError
from stratcast.daemon.engine.saved.versions import SavedModel, fingerprint
from stratcast.daemon.engine.spec.ensemble import member_specs
from stratcast.daemon.engine.spec.runspec import RunSpec
from stratcast.daemon.engine.training.checkpoint import write_json_atomic
from stratcast.daemon.engine.training.trainparts import FitResult
from stratcast.daemon.zoo.catalog import get_entry
from stratcast.shared.runfiles import Outputs


@dataclass
class Scored:
    """What :func:`score` wrote and found."""

    out_dir: Path
    metrics: dict[str, Any]
    new: list[str]
    """Strategies the model never saw, forecast."""
    skipped: dict[str, str]
    """Strategies not forecast, with the reason."""
    seconds: float


def score(saved: SavedModel, data: Path | str, out_dir: Path | str, *, device: str = "cpu", log: Log = print) -> Scored:
    """Forecast every strategy of the panel in ``data`` with ``saved`` and write a run's outputs to ``out_dir``.

    Raises:
        SavedModelError: when the data does not fit the model (a column missing, another frequency, no strategy
            with enough history), naming the problem and what to do.
    """
    t0 = time.perf_counter()
    sig = saved.manifest.data
    torch_device = resolve_device(device)
    fitted = check_fit(saved, data, out_dir, device)
    spec, panel, model_rows, new, skipped, found = (
        fitted.spec, fitted.panel, fitted.model_rows, fitted.new, fitted.skipped, fitted.frequency,
    )  # fmt: skip
    log(f"scoring {panel.n_series} strategies with {saved.version.ref} ({len(new)} new, {len(skipped)} skipped)")
    prep = _prepared(saved, spec, panel, model_rows, torch_device)
    models = [m.to(torch_device) for m in saved.models]
    fit = FitResult(0, None, None, False, False, 0.0)
    members = [
        Member(lbl, s, m, fit) for lbl, s, m in zip(saved.manifest.members, member_specs(spec), models, strict=True)
    ]
    with torch.no_grad():
        drawn = drawn_members(members, prep)
        forecast_fn = _combined(saved, spec, member_forecaster(spec, members, prep, drawn=drawn), prep)
        future = forecast_future(spec, prep, forecast_fn)
        ji = _intervals(saved, prep, model_rows)
        bands = None if ji is None else future_bands(ji, prep, future)
        distribution = job_distribution(spec, members, prep, drawn)
        quantiles = future_quantiles(spec, prep, distribution, future)
        rank_score = future_rank_score(forecast_fn, prep)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = write_outputs(out, spec, prep, future, None, rank_score, bands, quantiles)
    best = finite_numbers({str(k): v for k, v in summary.head(1).to_dict("records")[0].items()})
    seconds = time.perf_counter() - t0
    scored = {
        "saved_model": saved.version.ref,
        "source_run": saved.manifest.source_run,
        "data": str(data),
        "device": describe_device(torch_device),
        "signature": {
            "columns": True,
            "frequency": found,
            "same_strategies": fingerprint([str(i) for i in panel.ids]) == sig.fingerprint,
            "strategies": panel.n_series,
        },
        "new": new,
        "skipped": [{"strategy": k, "reason": v} for k, v in skipped.items()],
        "seconds": seconds,
    }
    m = saved.manifest
    metrics: dict[str, Any] = {
        "scored": scored,
        "intervals": {"calibrated": ji is not None, "future_calibration": m.calibration}
        if ji is not None
        else {"calibrated": False, "notes": ["no intervals: the saved model has no calibration"]},
        **combination_info(forecast_fn),
        **quantiles_info(spec, distribution),
        "training": {"model": m.model, "mode": m.mode, "members": m.members, "steps": m.training.steps},
        "trained_metrics": m.metrics,
        "best_strategy": best,
        "verdict": [f"scored with saved model {saved.version.ref} (trained by {m.source_run}); no holdout"],
        "warnings": [],
    }
    write_json_atomic(Outputs(out).metrics, metrics)
    log(f"scored in {seconds:.2f}s: {out}")
    return Scored(out, metrics, new, skipped, seconds)


@dataclass
class Fit:
    """How new data fits a saved model (:func:`check_fit`)."""

    spec: RunSpec
    """The run's spec on the new data."""
    panel: Panel
    """The strategies that can be forecast."""
    model_rows: Tensor | None
    """Each strategy's row in the model (-1: new); None: the model's own strategies, in order."""
    new: list[str]
    skipped: dict[str, str]
    frequency: str
    """The new data's frequency."""
    loaded: int
    """Strategies in the data, skipped ones included."""


def check_fit(saved: SavedModel, data: Path | str, out_dir: Path | str = "-", device: str = "cpu") -> Fit:
    """Read the new panel with the model's columns and check that it fits (see :func:`score`).

    Raises:
        SavedModelError: when a column is missing, the frequency differs or no strategy can be forecast.
    """
    sig = saved.manifest.data
    spec = _scoring_spec(saved, data, out_dir, device)
    try:
        panel = load_spec_panel(spec)
    except DataError as exc:
        raise SavedModelError(
            f"{data} does not fit saved model {saved.version.ref}: {exc} (it was trained on columns "
            f"{sig.id_col}, {sig.time_col}, {sig.target_col})"
        ) from None
    found = frequency(panel)
    if found != sig.frequency and "unknown" not in (found, sig.frequency):
        raise SavedModelError(
            f"{data} does not fit saved model {saved.version.ref}: its periods are {found} apart, the model was "
            f"trained on periods {sig.frequency} apart; resample the data to that frequency"
        )
    kept, model_rows, new, skipped = _fitting(saved, spec, panel)
    return Fit(spec, kept, model_rows, new, skipped, found, panel.n_series)


def _scoring_spec(saved: SavedModel, data: Path | str, out_dir: Path | str, device: str) -> RunSpec:
    """The run's spec on the new data: its columns named, no holdout, nothing left to choose."""
    sig = saved.manifest.data
    return dataclasses.replace(
        saved.spec, data=str(data), out=str(out_dir), device=device, holdout=0, from_data=(),
        id_col=sig.id_col, time_col=sig.time_col, target_col=sig.target_col,
    )  # fmt: skip


def _fitting(saved: SavedModel, spec: RunSpec, panel: Panel) -> tuple[Panel, Tensor | None, list[str], dict[str, str]]:
    """The strategies that can be forecast, their model rows (-1: new), the new ones and the skipped ones.

    Raises:
        SavedModelError: when no strategy can be forecast.
    """
    known = {s: i for i, s in enumerate(saved.manifest.strategies)}
    own_only = spec.mode == "per-strategy" or any(
        get_entry(s.model).capabilities.per_series or get_entry(s.model).capabilities.multivariate
        for s in member_specs(spec)
    )
    need = spec.train.min_input
    ids = [str(i) for i in panel.ids]
    skipped: dict[str, str] = {}
    lengths = panel.lengths
    for i, s in enumerate(ids):
        if int(lengths[i]) < need:
            skipped[s] = f"too little history: {int(lengths[i])} periods, the model needs {need}"
        elif s not in known and own_only:
            why = "per-strategy models" if spec.mode == "per-strategy" else "per-series parameters"
            skipped[s] = f"new strategy: the saved model has {why} and cannot forecast a strategy it never saw"
    keep = np.array([s not in skipped for s in ids], dtype=bool)
    if not keep.any():
        short = sum("history" in r for r in skipped.values())
        raise SavedModelError(
            f"{spec.data}: no strategy can be scored with {saved.version.ref}: {short} of {len(ids)} have fewer "
            f"than {need} periods (input_size {spec.train.input_size}); give at least {need} periods of history"
            if short
            else f"{spec.data}: no strategy the saved model {saved.version.ref} knows (it has per-strategy "
            "parameters); score data of the strategies it trained on"
        )
    kept = panel.select(keep) if not keep.all() else panel
    rows = [known.get(str(s), -1) for s in kept.ids]
    new = [str(s) for s, r in zip(kept.ids, rows, strict=True) if r < 0]
    model_rows = None if rows == list(range(len(known))) else torch.tensor(rows, dtype=torch.long)
    return kept, model_rows, new, skipped


def _prepared(
    saved: SavedModel, spec: RunSpec, panel: Panel, model_rows: Tensor | None, device: torch.device
) -> Prepared:
    """The new panel scaled (the run's statistics for known strategies, fitted for new ones), its windows."""
    cfg = spec.train
    raw = torch.from_numpy(panel.values).to(device)
    start = torch.from_numpy(panel.start).to(device)
    split = Split.make(torch.from_numpy(panel.end).to(device), 0, 0)
    rows = model_rows if model_rows is not None else torch.arange(panel.n_series)
    t = torch.arange(panel.n_times, device=device)
    own = (t[None, :] >= start[:, None]) & (t[None, :] < split.end[:, None])
    fitted = fit_scaler(saved.manifest.scaler, raw, own)
    known = (rows >= 0).to(device)
    safe = rows.clamp(min=0)
    loc = torch.where(known, saved.tensors[SCALER_LOC].to(device, raw.dtype)[safe.to(device)], fitted.loc)
    scale = torch.where(known, saved.tensors[SCALER_SCALE].to(device, raw.dtype)[safe.to(device)], fitted.scale)
    scaler = SeriesScaler(saved.manifest.scaler, loc, scale)
    windows = PanelWindows(
        scaler.transform(raw), start, end=split.end, input_size=cfg.input_size, horizon=cfg.horizon,
        pad_start=cfg.pad_start,
    )  # fmt: skip
    mapped = None if model_rows is None else model_rows.clamp(min=0).to(device)
    return Prepared(spec, None, panel, raw, start, split, scaler, windows, mapped)


def _combined(saved: SavedModel, spec: RunSpec, base: Forecaster, prep: Prepared) -> Forecaster:
    """``base`` combined with the baselines by the saved weights, or ``base`` when the run kept the raw model."""
    if saved.manifest.combination is None:
        return base
    t = saved.tensors
    check = saved.manifest.combination.get("check")
    combination = Combination(t["combination.model"], t["combination.trailing"], t["combination.cells"], check)
    return CombinedForecaster(base, combination, trailing_fn(spec, prep))


def _intervals(saved: SavedModel, prep: Prepared, model_rows: Tensor | None) -> JobIntervals | None:
    """The saved calibration for the new panel's strategies (new ones: the pooled quantiles, their own scale)."""
    iv = saved.manifest.intervals
    if iv is None:
        return None
    t = saved.tensors
    pooled, own_saved = t["intervals.pooled"], t["intervals.own"]  # [K, H], [K, N, H]
    n = prep.panel.n_series
    rows = model_rows.cpu() if model_rows is not None else torch.arange(n)
    known = rows >= 0
    own = pooled[:, None, :].expand(-1, n, -1).clone()
    own[:, known] = own_saved[:, rows[known]]
    device = prep.raw.device
    fitted = series_scale(prep.raw, prep.start, prep.split.end)
    fixed = torch.where(known.to(device), t["intervals.fixed"].to(device, fitted.dtype)[rows.clamp(min=0).to(device)],
                        fitted)  # fmt: skip
    conformal = Conformal(
        tuple(iv.levels), pooled, own, t["intervals.counts"], t["intervals.alphas"], iv.source, list(iv.notes),
        t.get("intervals.own_share"),
    )  # fmt: skip
    scale = ScoreScale(prep.raw, prep.start, iv.scale_kind, iv.scale_window, fixed, iv.floor)
    return JobIntervals(conformal, scale)
