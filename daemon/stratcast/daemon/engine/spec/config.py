"""``TrainConfig``: every training option, once. Model configs hold architecture only."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from stratcast.daemon.zoo.contract import check_fields, describe_fields, param
from stratcast.daemon.zoo.heads import LOSSES, Head, make_head
from stratcast.daemon.zoo.search import among, floats
from stratcast.shared.intervals import DEFAULT_QUANTILES

SCALERS = ("robust", "robust-centered", "standard", "identity", "revin")
ZERO_KEEPING_SCALERS = ("robust", "identity")
POINT_LOSSES = ("mse", "mae", "huber")
"""Losses whose one output is a value in the series' units: the only ones ``scaler=revin`` can rescale."""
"""Scalers with location 0 and no per-window normalisation: a week without a trade stays exactly 0 when scaled."""
SCHEDULES = ("cosine", "onecycle", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
COMBINE = ("auto", "none")
INTERVAL_SCALES = ("local", "train")
"""``combine``: fit the combination with the baselines on validation (auto), or forecast with the raw model."""
PER_STRATEGY_BATCH = 32
"""Windows per strategy per step in per-strategy mode when ``batch_size`` is not set (1,024 is for one global model)."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Training options shared by every model (names follow the forecasting field's conventions).

    Options that shape learning carry a tuner's search space. The rest carry none: what the user decides (the
    horizon, the history a window sees, the seed), budgets (``max_steps``) and how memory is used.
    """

    input_size: int = param(104, lo=1, hi=100_000, help="periods of history each window sees")
    horizon: int = param(52, lo=1, hi=10_000, help="periods forecast ahead")
    max_steps: int = param(1000, lo=1, hi=10_000_000, help="optimizer steps at most")
    batch_size: int = param(
        1024,
        lo=1,
        hi=10_000_000,
        search=among(256, 512, 1024, 2048),
        help=f"windows per optimizer step; per strategy in per-strategy mode, where unset it is {PER_STRATEGY_BATCH}; "
        "unset for SOFTS and the neural VAR (windows of every series), chosen from the panel: about 24,000 "
        "series-windows a step, 1 to 32 windows (4 for 6,000 strategies)",
    )
    micro_batch_size: int = param(
        0,
        lo=0,
        hi=10_000_000,
        help="windows per forward/backward pass (0: the whole batch); gradients accumulate over a step's "
        "micro-batches, so the optimisation does not change (per strategy in per-strategy mode)",
    )
    oom_grow_after: int = param(
        200, lo=1, hi=10_000_000, help="steps without running out of memory before a halved micro-batch doubles back"
    )
    learning_rate: float = param(
        1e-3, lo=1e-7, hi=10.0, search=floats(1e-4, 1e-2, log=True), help="peak learning rate of AdamW"
    )
    weight_decay: float = param(
        0.0, lo=0.0, hi=1.0, search=among(0.0, 1e-4, 1e-3, 1e-2), help="AdamW decoupled weight decay"
    )
    lr_schedule: str = param(
        "cosine", choices=SCHEDULES, search=among(*SCHEDULES), help="learning-rate schedule over max_steps"
    )
    warmup_steps: int = param(
        0, lo=0, hi=1_000_000, search=among(0, 50, 100, 200), help="linear warm-up steps (cosine, constant)"
    )
    grad_clip: float = param(
        1.0, lo=0.0, hi=1e6, search=among(0.0, 0.5, 1.0, 5.0), help="clip the gradient norm to this (0: off)"
    )
    val_size: int = param(
        -1,
        lo=-1,
        hi=100_000,
        help="last periods held for validation (-1: the horizon, or what a short history allows; 0: none)",
    )
    val_check_steps: int = param(50, lo=1, hi=1_000_000, help="steps between validation checks")
    early_stop_patience: int = param(
        10, lo=-1, hi=100_000, help="validation checks without improvement before stopping (-1: off)"
    )
    scaler: str = param(
        "robust",
        choices=SCALERS,
        search=among("robust", "robust-centered", "standard", "revin"),
        help="per-series scaling: robust (IQR of non-zero values, zeros stay 0), robust-centered, standard, "
        "identity, or revin (per window); unset, chosen from the data: revin for level series, else robust",
    )
    loss: str = param(
        "mse",
        choices=LOSSES,
        search=among("mse", "huber"),
        help="training loss and output head; the forecast is the mean: mse (the mean, directly), mae (the median: "
        "collapses to 0 on zero-heavy panels), huber (mse with outliers damped, huber_delta), quantile (pinball "
        "loss at the quantiles levels), gaussian (normal likelihood), student-t (heavy-tailed likelihood), hurdle "
        "(P(zero week) times a Student-t: zero-heavy profits; scaler robust or identity); unset, chosen from the "
        "data: mae for level series, else mse",
    )
    huber_delta: float = param(
        1.0, lo=1e-6, hi=1e6, search=floats(0.1, 10.0, log=True), help="Huber loss threshold (in scaled units)"
    )
    quantiles: tuple[float, ...] = param(
        (0.1, 0.5, 0.9),
        lo=0.0,
        hi=1.0,
        help="levels of the quantile loss, increasing within (0, 1); the forecast is the mean of the quantile "
        "function through them",
    )
    forecast_quantiles: tuple[float, ...] = param(
        DEFAULT_QUANTILES,
        lo=0.0,
        hi=1.0,
        help="levels of the quantiles a distribution forecast writes next to its mean (q10, q50, q90 in "
        "forecast.parquet), increasing within (0, 1); only models that forecast a distribution (a quantile, "
        "gaussian, student-t or hurdle loss, or a model that samples its forecasts) write them; empty: none",
    )
    series_per_window: int = param(
        0,
        lo=0,
        hi=1_000_000,
        help="multivariate models: series per window, a random subset for every window (0: every series)",
    )
    pad_start: bool = param(
        False, help="allow windows that start before a series' first period, padded with 0 (no trade)"
    )
    precision: str = param("auto", choices=PRECISIONS, help="auto: bf16 autocast on CUDA, fp32 elsewhere")
    activation_checkpointing: bool = param(
        False,
        help="recompute each block's activations in the backward pass instead of keeping them: about a third less "
        "activation memory, a third slower, same results (batch mode; models built from blocks: stratcastd models)",
    )
    compile: bool = param(
        False,
        help="run the model's forward pass through torch.compile (inductor) in training and prediction; off until "
        "measured on a GPU (batch mode, models trained through their forward pass; on a CPU it needs a C++ compiler)",
    )
    seed: int = param(0, lo=0, hi=2**32 - 1, help="seed for weights, sampling and dropout")
    blend_steps: int = param(0, lo=0, hi=10_000, help="blend the first forecast steps toward the recent mean (0: off)")
    trailing_window: int = param(52, lo=1, hi=100_000, help="periods of the trailing-mean baseline and blend")
    season: int = param(0, lo=0, hi=100_000, help="season length for the seasonal-naive baseline (0: none)")
    combine: str = param(
        "auto",
        choices=COMBINE,
        help="auto: forecast with the convex combination of the model, the trailing mean and zero whose weights per "
        "step fit the validation windows (zero where validation shows no signal); none: the raw model",
    )
    interval_gamma: float = param(
        0.005,
        lo=0.0,
        hi=1.0,
        help="step size of the intervals' adaptive (ACI) update over the calibration origins (0: off)",
    )
    interval_monotone: bool = param(
        False, help="raise each step's interval quantile to the largest of the steps before it"
    )
    interval_scale: str = param(
        "local",
        choices=INTERVAL_SCALES,
        help="the scale of the intervals' scores: local, each strategy's mean absolute change over the "
        "interval_window periods before each forecast's origin; train, over its whole training part",
    )
    interval_window: int = param(
        13,
        lo=0,
        hi=100_000,
        help="periods before each origin that the local interval scale reads (0: input_size); 13 weeks followed "
        "the market closest on M4 Weekly and the EURUSD panel (docs/benchmarks.md)",
    )
    interval_decay: float = param(
        1.0,
        lo=0.0,
        hi=1.0,
        help="weight of a calibration origin per period it lies before the latest (1: all alike; 0.97: a year "
        "back weighs 0.2), for the intervals' pooled quantiles",
    )
    interval_own_min: int = param(
        100,
        lo=0,
        hi=10_000_000,
        help="calibration scores a strategy needs at a step for an interval quantile of its own (else the pooled one)",
    )
    checkpoint_every_steps: int = param(
        0, lo=0, hi=10_000_000, help="write a resumable checkpoint every this many steps (0: off)"
    )
    checkpoint_every_s: float = param(
        300.0, lo=0.0, hi=1e7, help="write a resumable checkpoint every this many seconds of training (0: off)"
    )

    def __post_init__(self) -> None:
        check_fields(self)
        self.head  # noqa: B018 (builds the head: validates the quantile levels)
        levels = self.forecast_quantiles
        if any(not 0 < q < 1 for q in levels) or any(b <= a for a, b in itertools.pairwise(levels)):
            raise ValueError(f"forecast_quantiles must increase strictly within (0, 1), got {levels}")
        if self.loss == "hurdle" and self.scaler not in ZERO_KEEPING_SCALERS:
            raise ValueError(
                f"loss=hurdle needs a scaler that keeps a zero week exactly 0, not scaler={self.scaler}: "
                f"--set scaler={' or --set scaler='.join(ZERO_KEEPING_SCALERS)}"
            )

    @property
    def head(self) -> Head:
        """The output head of :attr:`loss`: its loss, its point forecast (the mean) and its quantiles."""
        return make_head(self.loss, delta=self.huber_delta, levels=self.quantiles)

    @property
    def min_input(self) -> int:
        """Input periods a training window needs: ``input_size``, or one with ``pad_start``."""
        return 1 if self.pad_start else self.input_size

    @property
    def min_val_size(self) -> int:
        """The fewest periods the default validation shrinks to: a quarter of the horizon (at least one).

        Early stopping on fewer would judge the model on its first few forecast steps only; a history that short
        is refused with the levers instead (``--set val_size=N`` chooses any size, 0 none).
        """
        return max(1, -(-self.horizon // 4))

    def effective_val_size(self, periods: int, holdout: int) -> int:
        """Validation periods for a history of ``periods`` (the longest series) ahead of a ``holdout``.

        An explicit ``val_size`` is kept. The default (-1) is the horizon when it fits, else as many periods as
        leave ``min_input + 1`` training periods before them, but never fewer than :attr:`min_val_size`.
        """
        if self.val_size >= 0:
            return self.val_size
        fits = periods - self.min_input - 1 - holdout
        return self.horizon if fits >= self.horizon else max(fits, self.min_val_size)

    @property
    def n_outputs(self) -> int:
        """Outputs per forecast step: the head's ``n_params``."""
        return self.head.n_params

    def window_series(self, n_series: int) -> int:
        """The series in each window of a multivariate model over ``n_series``: ``series_per_window`` (0: all)."""
        return n_series if self.series_per_window == 0 else min(self.series_per_window, n_series)


def train_fields() -> set[str]:
    """Names accepted by ``--set`` for training options."""
    return {f.name for f in dataclasses.fields(TrainConfig)}


def describe_train_config() -> list[dict[str, Any]]:
    """Training options with defaults, ranges and help, as plain data."""
    return describe_fields(TrainConfig)


def parse_value(raw: str, default: Any) -> Any:
    """Parse a ``--set`` value to the type of the field's default.

    Raises:
        ValueError: when the text does not parse as that type.
    """
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {raw!r}")
    if isinstance(default, tuple):
        inner = default[0] if default else 0.0
        return tuple(parse_value(p.strip(), inner) for p in raw.strip("()[] ").split(",") if p.strip())
    kind = int if isinstance(default, int) else float if isinstance(default, float) else str
    try:
        return kind(raw)
    except ValueError:  # int()'s own message names Python's literal syntax, not the option
        raise ValueError(f"expected {'a whole number' if kind is int else 'a number'}, got {raw}") from None
