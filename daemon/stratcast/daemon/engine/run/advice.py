"""Warnings a run gives where the README gives one.

Each is structured (a kind and a message) for the log, the run's events and the verdict in ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stratcast.daemon.engine.spec.config import TrainConfig
from stratcast.daemon.engine.training.trainparts import FitResult

ZERO_HEAVY = 0.3
"""Share of zero periods from which a median loss collapses the forecast toward 0 (README, "Scaling and losses")."""
FEW_WINDOWS = 8
"""Training windows per strategy below which a model can learn each one by heart."""


@dataclass(frozen=True)
class RunWarning:
    """Something about a run the user should act on; it does not stop the run."""

    kind: str
    """What it is about, for programs: ``loss``, ``few-windows`` or ``early-best``."""
    message: str
    """One plain sentence that says what to do."""


OnWarning = Callable[[RunWarning], None]
"""Receives each warning as the job gives it."""


def loss_warning(cfg: TrainConfig, zero_share: float) -> RunWarning | None:
    """A warning when ``mae`` trains on a panel with at least :data:`ZERO_HEAVY` zeros.

    The quantile loss is not warned about: its forecast is the mean of its quantile function, not its median.
    """
    if cfg.loss != "mae" or zero_share < ZERO_HEAVY:
        return None
    return RunWarning(
        "loss",
        f"loss={cfg.loss} on a panel that is {zero_share:.0%} zeros: its median forecast collapses toward 0 and "
        "cannot rank strategies by expected profit; use loss=mse (the default) or loss=huber",
    )


def windows_warning(cfg: TrainConfig, train_periods: int) -> RunWarning | None:
    """A warning when the training part leaves each strategy fewer than :data:`FEW_WINDOWS` window origins.

    ``train_periods``: the longest series' periods before validation. A window needs ``min_input`` periods of
    history before its first forecast period, so the origins are ``train_periods - min_input``.
    """
    origins = train_periods - cfg.min_input
    if origins >= FEW_WINDOWS:
        return None
    return RunWarning(
        "few-windows",
        f"training sees only {origins} window{'s' if origins != 1 else ''} per strategy ({train_periods} periods "
        f"before validation, input_size {cfg.input_size}): the model can learn them by heart; lower --input-size "
        "(each period less gives every strategy one more window) or --set pad_start=true",
    )


def early_best_warning(fit: FitResult, cfg: TrainConfig) -> RunWarning | None:
    """A warning when the validation loss was best at its first check and never improved after it."""
    if fit.best_step is None or fit.best_step != cfg.val_check_steps or fit.steps <= fit.best_step:
        return None
    return RunWarning(
        "early-best",
        f"the validation loss never improved after its first check (best at step {fit.best_step} of {fit.steps}: "
        "consider fewer steps or a lower learning rate)",
    )


class Warnings:
    """A run's warnings so far: each is logged and handed to ``on_warning`` as it comes."""

    def __init__(self, log: Callable[[str], None], on_warning: OnWarning | None) -> None:
        self.log, self.on_warning = log, on_warning
        self.given: list[RunWarning] = []

    def add(self, warning: RunWarning | None) -> None:
        """Give ``warning`` once (None: nothing to warn about; an ensemble's members may repeat one)."""
        if warning is None or warning in self.given:
            return
        self.given.append(warning)
        self.log(f"warning: {warning.message}")
        if self.on_warning is not None:
            self.on_warning(warning)
