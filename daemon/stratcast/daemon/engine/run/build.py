"""The pieces of one forecasting job, built from its spec: the prepared panel, the model, the trainer, the forecaster.

:mod:`stratcast.daemon.engine.run.job` builds a run from these (a resume rebuilds them exactly as a fresh run); the
benchmarks build them directly to time or forecast without writing a job's outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from stratcast.daemon.engine.data.load import drop_short, load_panel
from stratcast.daemon.engine.data.panel import Panel
from stratcast.daemon.engine.data.scalers import SampledWindowNorm, SeriesScaler, WindowNorm, fit_scaler
from stratcast.daemon.engine.data.windows import (
    LEVERS,
    PanelWindows,
    SeriesSampler,
    Split,
    TrainSampler,
    group_series,
    validation_windows,
)
from stratcast.daemon.engine.prediction.forecast import PREDICT_CHUNK, SAMPLES, predict, predict_series, sample_mean
from stratcast.daemon.engine.prediction.quantiles import Distribution, DistributionForecaster, sample_distribution
from stratcast.daemon.engine.spec.runspec import Needs, RunSpec, choose_from_data, needs, validation_note
from stratcast.daemon.engine.training.distributed import Ranks, RankTrainer
from stratcast.daemon.engine.training.stacked import StackedModel, StackedSampler, StackedTrainer
from stratcast.daemon.engine.training.trainer import StepHook, Trainer
from stratcast.daemon.engine.training.trainparts import compiled, side_inputs
from stratcast.daemon.zoo.catalog import get_entry
from stratcast.daemon.zoo.contract import set_activation_checkpointing
from stratcast.daemon.zoo.heads import OwnLoss, PointHead
from stratcast.shared.events import ProgressReported

Log = Callable[[str], None]


class Forecaster(Protocol):
    """Raw point forecasts [M, H] from scaled inputs [M, L] of series ``rows`` [M] (at ``origin`` [M])."""

    def __call__(self, x: Tensor, rows: Tensor, origin: Tensor | None = None) -> Tensor:
        """Forecast; ``origin`` (each input's first forecast period) is needed by models that declare it."""
        ...


@dataclass
class Prepared:
    """The panel on the device, split and scaled, and the spec with its options chosen from the panel."""

    spec: RunSpec
    """The job's spec with :func:`~stratcast.daemon.engine.spec.runspec.choose_from_data` applied: build from it."""
    chosen: str | None
    """Why the options left to the data were chosen as they were (None when none was)."""
    panel: Panel
    raw: Tensor
    start: Tensor
    split: Split
    scaler: SeriesScaler
    windows: PanelWindows
    model_rows: Tensor | None = None
    """[N] the model's row of each panel series, where they differ (a saved model scoring a new panel: its
    per-series parameters and per-strategy members are indexed by the panel it trained on); None: the same."""

    def rows_for_model(self, rows: Tensor) -> Tensor:
        """The model's rows of panel rows ``rows`` [M] (:attr:`model_rows`)."""
        return rows if self.model_rows is None else self.model_rows[rows]


@dataclass(frozen=True)
class Trainable:
    """A spec's panel as loaded, without the series too short to train on, and what a series needs."""

    loaded: Panel
    panel: Panel
    """The series long enough to train on (``panel.notes`` lists the others)."""
    needs: Needs
    longest: int
    """Periods of the longest series, which chose the validation size."""


def load_trainable(spec: RunSpec) -> Trainable:
    """Load the spec's panel, choose the validation size for its history, and drop the series too short.

    Raises:
        DataError: for a bad file, or when no series is long enough (the message names the levers).
    """
    return trainable_from(spec, load_spec_panel(spec))


def load_spec_panel(spec: RunSpec) -> Panel:
    """The spec's data file as a panel, every series kept.

    Raises:
        DataError: for a bad file (the message names the file, the column and the rows).
    """
    return load_panel(
        spec.data,
        id_col=spec.id_col,
        time_col=spec.time_col,
        target_col=spec.target_col,
        fill_missing=spec.fill_missing,  # type: ignore[arg-type]
        date_format=spec.date_format,
        dayfirst=spec.dayfirst,
    )


def trainable_from(spec: RunSpec, panel: Panel) -> Trainable:
    """``panel`` without the series too short for ``spec``, with the validation size chosen for its history.

    Raises:
        DataError: when no series is long enough (the message names the levers).
        ValueError: for a panel past the model's stated limit.
    """
    longest = int(panel.lengths.max())
    need = needs(spec, longest)
    kept = drop_short(panel, need.total, what=need.parts(), levers=LEVERS)
    check_model_fits(spec, kept.n_series)
    return Trainable(panel, kept, need, longest)


def check_model_fits(spec: RunSpec, n_series: int) -> None:
    """Refuse a panel past the model's stated limit (:meth:`ModelConfig.panel_problem`).

    Raises:
        ValueError: naming the model, the limit and the option to change.
    """
    problem = spec.model_config().panel_problem(n_series=n_series, series_per_window=spec.train.window_series(n_series))
    if problem is not None:
        raise ValueError(f"model {spec.model!r} cannot serve this panel: {problem}")


def prepare(spec: RunSpec, device: torch.device, log: Log) -> Prepared:
    """Load the panel, drop series too short, choose the options left to the data, split, fit the scaler.

    The scaler fits on each series' training part only.
    """
    return prepare_panel(spec, load_trainable(spec), device, log)


def prepare_panel(spec: RunSpec, trainable: Trainable, device: torch.device, log: Log) -> Prepared:
    """:func:`prepare` on a panel already loaded (a backtest's panel as of one cutoff)."""
    panel = trainable.panel
    spec, chosen = choose_from_data(spec, panel)
    cfg = spec.train
    for note in panel.notes:
        log(f"warning: {note}")
    log(f"panel: {panel.n_series} strategies x {panel.n_times} periods from {panel.source}")
    if ragged := ragged_note(panel):
        log(ragged)
    log(validation_note(spec, trainable.needs, trainable.longest))
    if chosen:
        log(chosen)
    raw = torch.from_numpy(panel.values).to(device)
    start = torch.from_numpy(panel.start).to(device)
    split = Split.make(torch.from_numpy(panel.end).to(device), trainable.needs.val, spec.holdout)
    t = torch.arange(panel.n_times, device=device)
    fit_mask = (t[None, :] >= start[:, None]) & (t[None, :] < split.train_end[:, None])  # each series' own training
    scaler = fit_scaler(cfg.scaler, raw, fit_mask)
    windows = PanelWindows(
        scaler.transform(raw),
        start,
        end=split.end,
        input_size=cfg.input_size,
        horizon=cfg.horizon,
        pad_start=cfg.pad_start,
    )
    return Prepared(spec, chosen, panel, raw, start, split, scaler, windows)


def ragged_note(panel: Panel) -> str | None:
    """A log line on how the series' ends were read, when they differ (None when every series ends together)."""
    if panel.own_positions:
        return (
            f"time: {panel.time_col} read as each series' own positions (every series starts at the same one and "
            "they end apart): each series is split and forecast from its own last observation"
        )
    early = int(panel.ended_early.sum())
    if not early:
        return None
    return (
        f"time: {early} of {panel.n_series} strategies stopped before the panel's last period: each is split and "
        "forecast from its own last period"
    )


def make_model(spec: RunSpec, n_series: int) -> nn.Module:
    """The zoo model (wrapped for per-window normalisation, stacked for per-strategy mode).

    ``n_series`` (the panel's series) sizes a stacked ensemble and a model with per-series parameters.
    """
    cfg = spec.train
    config = spec.model_config()
    entry = get_entry(spec.model)

    def one() -> nn.Module:
        m = entry.build(
            config, input_size=cfg.input_size, horizon=cfg.horizon, n_outputs=cfg.n_outputs, n_series=n_series
        )
        if cfg.activation_checkpointing:
            set_activation_checkpointing(m, True)
        if cfg.scaler != "revin":
            return m
        return SampledWindowNorm(m) if isinstance(m, OwnLoss) else WindowNorm(m)

    if spec.mode == "per-strategy":
        return StackedModel(one, n_series, seed=cfg.seed)
    return one()


def make_trainer(
    spec: RunSpec,
    model: nn.Module,
    prep: Prepared,
    on_progress: Callable[[ProgressReported], None] | None,
    should_stop: Callable[[], bool] | None,
    on_step: StepHook | None = None,
    ranks: Ranks | None = None,
) -> Trainer:
    """A batch-mode trainer (on windows of several series for a multivariate model), or a stacked one.

    ``ranks``: this process's rank of a data-parallel run (:func:`check_distributable` passed): a
    :class:`~stratcast.daemon.engine.training.distributed.RankTrainer` on its own sampler stream.
    """
    val = validation_windows(prep.windows, prep.split) if prep.split.val_size else None
    cfg = spec.train
    caps = get_entry(spec.model).capabilities
    trainer: Trainer
    if ranks is not None and ranks.world > 1:
        check_distributable(spec, ranks.world)
        seed = ranks.seed(cfg.seed)
        own = TrainSampler(prep.windows, prep.split.train_end, seed)
        if caps.multivariate:
            series = spec.train.window_series(prep.windows.n_series)
            own = SeriesSampler(prep.windows, prep.split.train_end, seed, series=series)
            val = None if val is None else group_series(val, series)
        trainer = RankTrainer(
            ranks, model, cfg, own, val, on_progress=on_progress, should_stop=should_stop, capabilities=caps
        )
    elif caps.multivariate:
        series = spec.train.window_series(prep.windows.n_series)
        multi = SeriesSampler(prep.windows, prep.split.train_end, cfg.seed, series=series)
        grouped = None if val is None else group_series(val, series)
        trainer = Trainer(
            model, cfg, multi, grouped, on_progress=on_progress, should_stop=should_stop, capabilities=caps
        )
    elif spec.mode == "per-strategy":
        stacked = StackedSampler(prep.windows, prep.split.train_end, cfg.seed)
        assert isinstance(model, StackedModel)
        trainer = StackedTrainer(
            model, cfg, stacked, val, on_progress=on_progress, should_stop=should_stop, capabilities=caps
        )
    else:
        sampler = TrainSampler(prep.windows, prep.split.train_end, cfg.seed)
        trainer = Trainer(model, cfg, sampler, val, on_progress=on_progress, should_stop=should_stop, capabilities=caps)
    trainer.on_step = on_step
    trainer.set_units(prep.scaler.loc, prep.scaler.scale)  # validation scores in the data's units (the pruners')
    return trainer


def check_distributable(spec: RunSpec, world: int) -> None:
    """Refuse a job that cannot train over ``world`` > 1 devices: only one batch-mode model can (not an ensemble).

    Raises:
        ValueError: naming the mode that cannot, and what to do.
    """
    if world <= 1:
        return
    what = None
    if spec.ensemble:
        what = f"an ensemble ({','.join(spec.ensemble)})"
    elif spec.mode == "per-strategy":
        what = "per-strategy mode"
    if what is not None:
        raise ValueError(
            f"{what} cannot train over {world} devices yet (--gpus-per-run {world}): only one batch-mode model "
            "can; run it with --gpus-per-run 1"
        )


def forecaster(spec: RunSpec, model: nn.Module, prep: Prepared, *, draws: int = SAMPLES) -> Forecaster:
    """A function mapping (scaled inputs [M, L], their series rows [M]) to raw point forecasts [M, H].

    The point forecast is the head's mean (never a median: on zero-heavy panels that is 0 and ranks nothing),
    :func:`scaled_forecaster`'s, mapped back with the prepared panel's scaler. ``draws``: how many draws a model
    that samples its forecasts averages (:func:`sampler`; other models ignore it).
    """
    scaled = scaled_forecaster(spec, model, prep, draws=draws)

    def run(x: Tensor, rows: Tensor, origin: Tensor | None = None) -> Tensor:
        return prep.scaler.inverse(scaled(x, rows, origin), rows)

    return run


def scaled_forecaster(spec: RunSpec, model: nn.Module, prep: Prepared, *, draws: int = SAMPLES) -> Forecaster:
    """:func:`forecaster` before the inverse scaling: point forecasts [M, H] in the scaled units.

    A backtest predicts several cutoffs, each scaled by its own scaler, in one pass through this function.
    """
    cfg = spec.train
    head = cfg.head
    caps = get_entry(spec.model).capabilities
    outputs, sampling = model_outputs(spec, model, prep), sampler(spec, model)

    def run(x: Tensor, rows: Tensor, origin: Tensor | None = None) -> Tensor:
        if sampling is not None:
            side = side_inputs(caps, prep.rows_for_model(rows), origin)
            return sample_mean(sampling, x, side, seed=cfg.seed, n=draws)
        return head.mean(outputs(x, rows, origin))

    return run


def model_outputs(spec: RunSpec, model: nn.Module, prep: Prepared) -> Callable[[Tensor, Tensor, Tensor | None], Tensor]:
    """(scaled inputs [M, L], rows [M], origins [M]) -> the model's raw outputs [M, H, P] (its head's parameters)."""
    cfg = spec.train
    caps = get_entry(spec.model).capabilities
    plain = isinstance(model, StackedModel | OwnLoss)
    net = compiled(model, prep.windows.padded.device) if cfg.compile and not plain else model
    graphs = net is model  # a compiled forward pass is not captured again as a CUDA graph

    def run(x: Tensor, rows: Tensor, origin: Tensor | None = None) -> Tensor:
        rows = prep.rows_for_model(rows)
        side = side_inputs(caps, rows, origin)
        if isinstance(model, StackedModel):
            return stacked_forecast(model, x, rows, side)
        if caps.multivariate:
            series = spec.train.window_series(prep.windows.n_series)
            return predict_series(net, x, series=series, side=side, precision=cfg.precision)
        return predict(net, x, side=side, precision=cfg.precision, graphs=graphs)

    return run


def sampler(spec: RunSpec, model: nn.Module) -> OwnLoss | None:
    """The model when it forecasts by sampling (a model with its own loss, run as it is), else None.

    Such a model's point forecast is the mean of seeded draws; stacked and multivariate runs read its head.
    """
    if isinstance(model, StackedModel) or get_entry(spec.model).capabilities.multivariate:
        return None
    return model if isinstance(model, OwnLoss) else None


def gives_distribution(spec: RunSpec, model: nn.Module) -> bool:
    """Whether the model forecasts a distribution: it samples, or its head is not a point head."""
    return sampler(spec, model) is not None or not isinstance(spec.train.head, PointHead)


def distribution_forecaster(spec: RunSpec, model: nn.Module, prep: Prepared) -> DistributionForecaster | None:
    """Raw forecast distributions (mean [M, H], quantiles [M, H, Q] at ``forecast_quantiles``) of the model.

    None for a model that forecasts a point (:func:`gives_distribution`) or when no levels are asked for. The mean
    is :func:`forecaster`'s point forecast; the scaler's inverse is affine with a positive scale, so it maps
    quantiles to quantiles.
    """
    cfg = spec.train
    levels = cfg.forecast_quantiles
    if not levels or not gives_distribution(spec, model):
        return None
    head, caps = cfg.head, get_entry(spec.model).capabilities
    outputs, sampling = model_outputs(spec, model, prep), sampler(spec, model)

    def run(x: Tensor, rows: Tensor, origin: Tensor | None = None) -> Distribution:
        if sampling is not None:
            side = side_inputs(caps, prep.rows_for_model(rows), origin)
            dist = sample_distribution(sampling, x, side, levels, seed=cfg.seed, n=SAMPLES, chunk=PREDICT_CHUNK)
        else:
            out = outputs(x, rows, origin)
            dist = Distribution(head.mean(out), head.quantiles(out, levels))
        return dist.map(lambda t: prep.scaler.inverse(t, rows))

    return run


def stacked_forecast(model: StackedModel, x: Tensor, rows: Tensor, side: dict[str, Tensor]) -> Tensor:
    """Outputs [M, H, O] of each row's own member for inputs ``x`` [M, L]; a series may come several times.

    Every member forecasts its own series: the rows' inputs (and side inputs) are placed at their members, the
    ``k``-th input of a series as its member's ``k``-th window (a backtest's cutoffs of one block, in one pass).
    """
    k = occurrence(rows)
    width = int(k.max()) + 1 if k.numel() else 1
    full = x.new_zeros(model.n_members, width, x.shape[1])  # [N, K, L]: K windows per member
    full[rows, k] = x
    every = {name: v.new_zeros(model.n_members, width) for name, v in side.items()}  # [N, K] each
    for name, v in side.items():
        every[name][rows, k] = v
    model.eval()
    with torch.no_grad():
        out: Tensor = model(full, **every)  # [N, K, H, O]
    return out[rows, k]


def occurrence(rows: Tensor) -> Tensor:
    """[M] how many earlier entries of ``rows`` [M] name the same series (0 for its first)."""
    order = torch.argsort(rows, stable=True)
    ordered = rows[order]
    first = torch.searchsorted(ordered, ordered)  # index of the first entry of each series in ``ordered``
    k = torch.empty_like(rows)
    k[order] = torch.arange(rows.numel(), device=rows.device) - first
    return k
