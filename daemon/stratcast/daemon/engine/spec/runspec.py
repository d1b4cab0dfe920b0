"""``RunSpec``: one forecasting job (data, model, options); building it from options or a daemon ``JobSpec``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stratcast.daemon.engine.data.panel import Panel
from stratcast.daemon.engine.spec.config import (
    PER_STRATEGY_BATCH,
    POINT_LOSSES,
    TrainConfig,
    parse_value,
    train_fields,
)
from stratcast.daemon.engine.spec.ensemble import check_ensemble, refuse_backtest
from stratcast.daemon.zoo.catalog import CATALOG, PANEL_CHOSEN, check_checkpointing, get_entry, make_config
from stratcast.daemon.zoo.contract import ModelConfig
from stratcast.shared.intervals import DEFAULT_LEVELS, RANK_BY_MEAN, bound_name, level_text
from stratcast.shared.protocol import JobSpec

MODES = ("batch", "per-strategy")
LEVEL_CHOICE = {"scaler": "revin", "loss": "mae"}
"""For level series (M4-like): per-window normalisation and MAE scored best on M4 Weekly (benchmarks/m4.py)."""
PROFIT_CHOICE = {"scaler": "robust", "loss": "mse"}
"""For every other panel, profit-like ones first: zeros stay 0 and the forecast is a mean, not a median."""
SERIES_WINDOWS_PER_STEP = 24_000
"""What a multivariate model's step should see when the data chooses its ``batch_size``: 24,000 series-windows, about
what the papers' 32 windows of Traffic's 862 sensors hold (27,584). A univariate step sees 1,024."""
MAX_PANEL_BATCH = 32
"""The most windows a step of a multivariate model takes when the data chooses: the papers' batch."""
LEVEL_MAX_ZEROS = 0.01
LEVEL_MIN_RATIO = 3.0
"""A level series' mean absolute value is at least this many times its mean absolute change (M4 Weekly's
series: 34 at the median, 2.9 at the least; weekly strategy profits: about 0.6)."""


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """Everything that defines a forecasting job."""

    data: str
    """Long-format parquet or CSV file."""
    model: str
    """Model name from the catalog (``stratcastd models``)."""
    out: str
    """Output folder."""
    mode: str = "batch"
    """``batch``: one global model; ``per-strategy``: one model per strategy, trained stacked."""
    device: str = "auto"
    holdout: int = 0
    """Last periods kept for honest scoring, never seen in training (0: no scoring)."""
    id_col: str | None = None
    time_col: str | None = None
    target_col: str | None = None
    fill_missing: str = "error"
    date_format: str | None = None
    """How text dates are written (``%d.%m.%Y``); None: ISO, or day/month order inferred from the values."""
    dayfirst: bool = False
    """Read ambiguous dates such as ``04/01/2016`` day first."""
    train: TrainConfig = field(default_factory=TrainConfig)
    model_params: Mapping[str, Any] = field(default_factory=dict)
    """Architecture overrides, validated against the model's config."""
    from_data: tuple[str, ...] = ()
    """Training options (of :data:`PANEL_CHOSEN`) nobody set: chosen from the panel once it is loaded."""
    levels: tuple[float, ...] = DEFAULT_LEVELS
    """Nominal coverages of the prediction intervals, in percent (``lo80``, ``hi80``, ...)."""
    rank_by: str = "mean"
    """What ranks the strategies: ``mean`` (the forecast mean) or a bound's mean over the horizon (``lo80``)."""
    ensemble: tuple[str, ...] = ()
    """The models of an ensemble's members, the first :attr:`model` (see
    :mod:`~stratcast.daemon.engine.spec.ensemble`); empty: one model."""
    set_train: tuple[str, ...] = ()
    """The training options the job set itself (``--set``, the caller's defaults, the horizon and input size, the
    per-strategy batch): every ensemble member trains with these (:meth:`member_train`)."""
    panel_chose: Mapping[str, Any] = field(default_factory=dict)
    """What :func:`choose_from_data` chose from the panel for any member; the job's model's choices are in
    :attr:`train` too."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.fill_missing not in ("error", "zero"):
            raise ValueError(f"fill_missing {self.fill_missing!r} is not one of error, zero")
        if not 0 <= self.holdout <= self.train.horizon:
            raise ValueError(f"holdout={self.holdout} must be between 0 and horizon={self.train.horizon}")
        for name in ("ensemble", "set_train"):  # a spec read back from JSON holds lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.ensemble:
            check_ensemble(self.model, self.ensemble, self.model_params)
        for name in dict.fromkeys(self.ensemble or (self.model,)):
            check_capabilities(name, self.mode)
            check_revin(name, self.member_train(name))
            if self.train.activation_checkpointing:
                check_checkpointing(name, self.mode)
            if self.train.compile:
                check_compile(name, self.mode)
        object.__setattr__(self, "levels", tuple(self.levels))  # a spec read back from JSON holds a list
        check_levels(self.levels, self.rank_by)
        if unknown := (set(self.set_train) | set(self.panel_chose)) - set(train_fields()):
            raise ValueError(f"set_train, panel_chose: {', '.join(sorted(unknown))} are not training options")
        if unknown := set(self.from_data) - set(PANEL_CHOSEN):
            raise ValueError(f"from_data: {', '.join(sorted(unknown))} cannot be chosen from the data")
        self.model_config()  # validates the overrides now, not mid-run

    def model_config(self) -> ModelConfig:
        """The model's architecture: its config's defaults with :attr:`model_params` applied, validated."""
        return make_config(self.model, self.model_params)

    def member_train(self, name: str) -> TrainConfig:
        """The training options of the ensemble member of model ``name`` (the job's model: :attr:`train`).

        Every member takes what the job set (:attr:`set_train`). For the rest a member takes its own catalog
        ``train_defaults``, else what the panel chose for it (:attr:`panel_chose`; ``batch_size`` only where the
        panel chooses the model's batch), else ``TrainConfig``'s default. So ``--ensemble nhits,mtgnn`` trains MTGNN
        on its catalog's 8 windows of 500 series and ``--ensemble transformer,nhits`` trains N-HiTS at the default
        learning rate, not the Transformer's.
        """
        if name == self.model:
            return self.train
        entry, chose, default = get_entry(name), self.panel_chose, TrainConfig()

        def value(key: str) -> Any:
            if key in entry.train_defaults:
                return entry.train_defaults[key]
            return chose[key] if key in chose and entry.panel_chooses(key) else getattr(default, key)

        keys = {*get_entry(self.model).train_defaults, *entry.train_defaults, *chose} - set(self.set_train)
        return dataclasses.replace(self.train, **{key: value(key) for key in keys})


def check_capabilities(model: str, mode: str) -> None:
    """Refuse a model whose declared capabilities this engine cannot honour in ``mode`` yet.

    A model with its own loss trains through ``training_loss`` and forecasts through ``sample``, which only the
    batch trainer and forecaster call: per-strategy mode would train and forecast something else.

    Raises:
        ValueError: naming the model, what it needs and the option to change.
    """
    caps = get_entry(model).capabilities
    if mode == "per-strategy" and not caps.stackable:
        if caps.own_loss:
            raise ValueError(
                f"model {model!r} cannot be stacked for per-strategy mode: it trains with its own loss, which "
                "stacked training does not run; use batch mode"
            )
        raise ValueError(f"model {model!r} cannot be stacked for per-strategy mode (it does not vmap)")


def check_revin(model: str, train: TrainConfig) -> None:
    """Refuse ``scaler=revin`` where it would rescale a head's distribution parameters as values.

    A model with its own loss takes it (:class:`~stratcast.daemon.engine.data.scalers.SampledWindowNorm`).

    Raises:
        ValueError: naming the scaler, the loss and the scalers to use instead.
    """
    if train.scaler != "revin" or revin_fits(model, train.loss):
        return
    raise ValueError(
        f"scaler=revin rescales each output of the model as a value, which only the point losses "
        f"({', '.join(POINT_LOSSES)}) produce; loss={train.loss} outputs distribution parameters: "
        "--set scaler=robust (or standard, identity)"
    )


def revin_fits(model: str, loss: str) -> bool:
    """Whether ``scaler=revin`` can wrap ``model`` trained with ``loss``: a point loss, or a loss of its own."""
    return loss in POINT_LOSSES or get_entry(model).capabilities.own_loss


def check_compile(model: str, mode: str) -> None:
    """Refuse ``compile`` where it does not apply: per-strategy mode, and a model that computes its own loss.

    Raises:
        ValueError: naming the model (or the mode) and why.
    """
    if mode == "per-strategy":
        raise ValueError(
            "compile does not apply in per-strategy mode (the stacked, vmapped forward pass); use batch mode"
        )
    if get_entry(model).capabilities.own_loss:
        raise ValueError(
            f"compile does not apply to model {model!r}: it trains through its own loss and samples its forecasts, "
            "not through the forward pass that compile would speed up; leave compile off"
        )


def check_levels(levels: Sequence[float], rank_by: str) -> None:
    """Refuse levels outside (0, 100) and a ``rank_by`` that is neither ``mean`` nor a bound of one of them.

    Raises:
        ValueError: naming the value and the levels.
    """
    for level in levels:
        if not 0 < level < 100:
            raise ValueError(f"interval level {level:g} is not between 0 and 100 (exclusive): give e.g. 80,95")
    if len(set(levels)) != len(levels):
        raise ValueError(f"interval levels {level_text(list(levels))} repeat a level")
    bounds = [bound_name(side, level) for level in levels for side in ("lo", "hi")]
    if rank_by != RANK_BY_MEAN and rank_by not in bounds:
        given = level_text(list(levels)) or "none"
        raise ValueError(
            f"--rank-by {rank_by}: not mean or a bound of the interval levels ({given}): choose one of "
            f"mean, {', '.join(bounds)}, or add its level to --levels"
        )


def build_spec(
    *,
    data: str,
    model: str,
    out: str,
    mode: str = "batch",
    device: str = "auto",
    horizon: int | None = None,
    input_size: int | None = None,
    holdout: int | None = None,
    id_col: str | None = None,
    time_col: str | None = None,
    target_col: str | None = None,
    fill_missing: str = "error",
    date_format: str | None = None,
    dayfirst: bool = False,
    sets: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
    levels: Sequence[float] = DEFAULT_LEVELS,
    rank_by: str = "mean",
    ensemble: Sequence[str] = (),
) -> RunSpec:
    """The :class:`RunSpec` for these options, as ``stratcastd run`` and the daemon's workers build it.

    Training options are layered: the model's catalog ``train_defaults``, then ``base`` (defaults of the caller,
    e.g. the demo's), then the per-strategy batch default (:data:`PER_STRATEGY_BATCH`), then ``horizon`` and
    ``input_size``, then the ``sets`` items.
    ``None`` leaves an option at the layer below; ``holdout=None`` means no holdout.

    Raises:
        ValueError: for a malformed or unknown ``--set`` item, or a value out of range.
        KeyError: for an unknown model name.
    """
    job = dict(base or {})
    if mode == "per-strategy":
        job["batch_size"] = PER_STRATEGY_BATCH
    for name, value in (("horizon", horizon), ("input_size", input_size)):
        if value is not None:
            job[name] = value
    train, params = split_sets(model, sets, {**get_entry(model).train_defaults, **job})
    set_train = set(job) | set(split_sets(model, sets)[0])
    entries = [e for m in ensemble or (model,) if (e := CATALOG.get(m))]  # an unknown model is refused below
    return RunSpec(
        data=str(data),
        model=model,
        out=str(out),
        mode=mode,
        device=device,
        holdout=0 if holdout is None else holdout,
        id_col=id_col,
        time_col=time_col,
        target_col=target_col,
        fill_missing=fill_missing,
        date_format=date_format,
        dayfirst=dayfirst,
        train=TrainConfig(**train),
        model_params=params,
        from_data=tuple(k for k in PANEL_CHOSEN if k not in set_train and any(e.panel_chooses(k) for e in entries)),
        levels=tuple(float(v) for v in levels),
        rank_by=rank_by,
        ensemble=tuple(ensemble),
        set_train=tuple(sorted(set_train)),
    )


def spec_from_dict(data: Mapping[str, Any], **changes: Any) -> RunSpec:
    """The :class:`RunSpec` whose plain data (``dataclasses.asdict``, through JSON) is ``data``, with ``changes``.

    A spec written before members took their own training options has no ``set_train``: its members shared every
    option the panel did not choose (``member_batch``, the batch the panel chose for SOFTS and the neural VAR), so
    it is read as having set all the others.

    Raises:
        ValueError, TypeError, KeyError: for a malformed spec (the message names the field).
    """
    fields = dict(data)
    train: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(fields.pop("train")).items()}
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(fields.pop("model_params")).items()}
    fields["from_data"] = tuple(fields.get("from_data", ()))  # absent from older spec files: nothing chosen
    if "set_train" not in fields:
        batch = fields.pop("member_batch", 0)
        fields["panel_chose"] = {"batch_size": batch} if batch else {}
        fields["set_train"] = sorted(train_fields() - set(fields["from_data"]) - set(fields["panel_chose"]))
    return RunSpec(**{**fields, **changes}, train=TrainConfig(**train), model_params=params)


def choose_from_data(spec: RunSpec, panel: Panel) -> tuple[RunSpec, str | None]:
    """``spec`` with its :attr:`~RunSpec.from_data` options chosen from ``panel``, and a log line saying why.

    Level series (few zeros, all positive, a level large against the changes, like M4's) get
    :data:`LEVEL_CHOICE`; every other panel, zero-heavy signed profits first, keeps :data:`PROFIT_CHOICE`. The
    losses with a distribution or quantile head always get the profit scaler (revin would rescale their parameters
    as values; the hurdle head needs a zero kept 0); a model with its own loss takes revin as
    :class:`~stratcast.daemon.engine.data.scalers.SampledWindowNorm`. A multivariate model's ``batch_size`` comes
    from the series in its windows (:func:`panel_batch`).
    The line is None when nothing was left to choose.
    """
    if not spec.from_data:
        return spec, None
    models = list(dict.fromkeys(spec.ensemble or (spec.model,)))
    chosen: dict[str, Any] = {}
    notes = []
    if kinds := [k for k in spec.from_data if k in LEVEL_CHOICE]:
        level, why = panel_kind(panel)
        chosen = {k: (LEVEL_CHOICE if level else PROFIT_CHOICE)[k] for k in kinds}
        losses = with_choices(spec, {k: v for k, v in chosen.items() if k != "scaler"})
        if "scaler" in chosen and not all(revin_fits(m, losses.member_train(m).loss) for m in models):
            # every member must take revin (check_revin); the hurdle head needs zeros kept 0
            chosen["scaler"] = PROFIT_CHOICE["scaler"]
        others = " or ".join(f"--set {k}=..." for k in kinds)
        notes.append(f"{', '.join(f'{k}: {v}' for k, v in chosen.items())} ({why}; {others} chooses otherwise)")
    if "batch_size" in spec.from_data:
        takers = [m for m in models if get_entry(m).panel_chooses("batch_size")]
        series = with_choices(spec, chosen).member_train(takers[0]).window_series(panel.n_series)
        chosen["batch_size"] = batch = panel_batch(series)
        whose = "" if len(takers) == len(models) else f" for {', '.join(takers)}"
        notes.append(
            f"batch_size: {batch}{whose} (a window holds {series:,} series: {batch} windows a step are "
            f"{batch * series:,} series-windows, the count nearest {SERIES_WINDOWS_PER_STEP:,} from 1 to "
            f"{MAX_PANEL_BATCH}; --set batch_size=... chooses otherwise)"
        )
    return dataclasses.replace(with_choices(spec, chosen), from_data=()), "; ".join(notes)


def with_choices(spec: RunSpec, chosen: Mapping[str, Any]) -> RunSpec:
    """``spec`` with the panel's choices ``chosen``: all of them for the members, those its model takes in ``train``.

    The job's model takes a choice its catalog entry does not set (``batch_size`` only where the panel chooses its
    batch): ``--ensemble deepar,nhits`` keeps DeepAR's Student-t likelihood and gives N-HiTS the panel's loss.
    """
    entry = get_entry(spec.model)
    first = {k: v for k, v in chosen.items() if entry.panel_chooses(k)}
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **first), panel_chose=dict(chosen))


def panel_batch(series: int) -> int:
    """Windows a step of a multivariate model takes when each holds ``series`` series.

    The count nearest to :data:`SERIES_WINDOWS_PER_STEP` series-windows, 1 to :data:`MAX_PANEL_BATCH` (6,000
    strategies: 4; M4 Weekly's 359 series: 32).

    A step over 6,000 strategies at 32 windows took the neural VAR about 10 s of one CPU core (docs/models.md's
    scaling table): nearly three hours for 1,000 steps. On a small panel fewer windows cost accuracy (M4 Weekly at 4
    windows: SOFTS OWA 0.863, the neural VAR 0.942; at 32: 0.774 and 0.908).
    """
    return max(1, min(MAX_PANEL_BATCH, round(SERIES_WINDOWS_PER_STEP / max(series, 1))))


def panel_kind(panel: Panel) -> tuple[bool, str]:
    """Whether ``panel`` holds level series, and the figures that say so, in words."""
    own = panel.periods()
    values = np.where(own, panel.values, np.nan).astype(np.float64)
    zeros, positive = panel.zero_share, bool(np.nanmin(values) > 0)
    change = np.nanmean(np.abs(np.diff(values, axis=1)), axis=1)  # NaN for a one-period series
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.nanmedian(np.nanmean(np.abs(values), axis=1) / change))
    level = zeros <= LEVEL_MAX_ZEROS and positive and ratio >= LEVEL_MIN_RATIO
    signs = "all positive" if positive else "values of both signs" if np.nanmax(values) > 0 else "none positive"
    kind = "level series" if level else "profit-like panel" if zeros > LEVEL_MAX_ZEROS else "not level series"
    return level, f"{kind}: {zeros:.1%} zeros, {signs}, level {ratio:.1f}x the typical change"


def train_defaults_note(spec: RunSpec) -> str | None:
    """One log line naming the model's catalog training defaults the run uses (None when it uses none)."""
    entry = get_entry(spec.model)
    used = {k: v for k, v in entry.train_defaults.items() if getattr(spec.train, k) == v}
    if not used:
        return None
    return f"training defaults for {entry.name}: {', '.join(f'{k}={v}' for k, v in used.items())}"


def spec_from_job(job: JobSpec, out: str, device: str) -> RunSpec:
    """The :class:`RunSpec` of a daemon job, writing to ``out`` on ``device`` (the worker's, not ``job.device``).

    Raises:
        ValueError: for a bad option (the message names it), or an ensemble in a backtest.
        KeyError: for an unknown model name.
    """
    if job.backtest is not None:
        refuse_backtest(job.ensemble)
    return build_spec(
        data=job.data,
        model=job.model,
        out=out,
        mode=job.mode,
        device=device,
        horizon=job.horizon,
        input_size=job.input_size,
        holdout=job.holdout,
        id_col=job.id_col,
        time_col=job.time_col,
        target_col=job.target_col,
        fill_missing=job.fill_missing,
        date_format=job.date_format,
        dayfirst=job.dayfirst,
        sets=job.sets,
        levels=job.levels,
        rank_by=job.rank_by,
        ensemble=job.ensemble,
    )


def split_sets(
    model: str, sets: Sequence[str], base: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``key=value`` items into (training options, model parameters), parsed to their field types.

    A key may be prefixed ``model.`` or ``train.`` where a name exists in both.

    Raises:
        ValueError: for a malformed item, an unknown key, or a value of the wrong type.
    """
    defaults = {
        "train": {f.name: f.default for f in dataclasses.fields(TrainConfig)},
        "model": {f.name: f.default for f in dataclasses.fields(get_entry(model).config_cls)},
    }
    out: dict[str, dict[str, Any]] = {"train": dict(base or {}), "model": {}}
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key=value")
        target, name = _route(key, defaults, model)
        try:
            out[target][name] = parse_value(raw.strip(), defaults[target][name])
        except ValueError as exc:
            raise ValueError(f"--set {item}: {exc}") from None
    return out["train"], out["model"]


def _route(key: str, defaults: Mapping[str, Mapping[str, Any]], model: str) -> tuple[str, str]:
    """Which config (``train`` or ``model``) a ``--set`` key belongs to, and the field name."""
    prefix, _, rest = key.partition(".")
    if rest and prefix in defaults and rest in defaults[prefix]:
        return prefix, rest
    owners = [where for where in ("train", "model") if key in defaults[where]]
    if len(owners) == 2:
        raise ValueError(
            f"--set {key}: both a training option and a {model} parameter; write train.{key} or model.{key}"
        )
    if owners:
        return owners[0], key
    raise ValueError(
        f"--set {key}: unknown option; training options: {', '.join(sorted(train_fields()))}; "
        f"{model} parameters: {', '.join(sorted(defaults['model'])) or 'none'}"
    )


@dataclass(frozen=True)
class Needs:
    """The periods each series needs, part by part, with the validation size chosen for the history."""

    input: int
    """Input periods (1 with ``pad_start``)."""
    val: int
    holdout: int

    @property
    def total(self) -> int:
        """Input, one training target, validation and holdout."""
        return self.input + 1 + self.val + self.holdout

    def parts(self) -> str:
        """``input_size 104 + 1 + val_size 52 + holdout 52``, for messages."""
        return f"input_size {self.input} + 1 + val_size {self.val} + holdout {self.holdout}"


def needs(spec: RunSpec, longest: int) -> Needs:
    """What a series needs for ``spec`` when the longest series has ``longest`` periods."""
    cfg = spec.train
    return Needs(cfg.min_input, cfg.effective_val_size(longest, spec.holdout), spec.holdout)


def validation_note(spec: RunSpec, need: Needs, longest: int) -> str:
    """One log line: the validation periods chosen and why."""
    cfg = spec.train
    if need.val == 0:
        return "validation: off (val_size=0): no early stopping, training runs max_steps"
    if cfg.val_size >= 0:
        return f"validation: last {need.val} periods (val_size={cfg.val_size})"
    if need.val == cfg.horizon:
        return f"validation: last {need.val} periods (the horizon)"
    return (
        f"validation: last {need.val} periods (horizon {cfg.horizon} does not fit: {longest} periods = "
        f"{need.input} input + 1 + {need.val} validation + {need.holdout} holdout)"
    )
