"""The mean of several point forecasters: an ensemble of seeds or models (``--ensemble``).

Averaging forecasts whose errors are not perfectly correlated lowers the error variance (Bates and Granger, 1969);
seeds of one network differ by initialisation and sampling, models by their inductive bias. The plain mean is the
estimator whose weights need nothing fitted, so it cannot overfit the validation part that the combination with
the baselines (:mod:`stratcast.daemon.engine.prediction.combine`) then fits on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from stratcast.daemon.engine.prediction.combine import Base


class EnsembleForecaster:
    """Raw point forecasts [M, H]: the mean of every member's forecast for the same inputs.

    The members stay reachable (:attr:`members`, :meth:`member_forecasts`) so the holdout scores each one on its
    own beside the ensemble.
    """

    def __init__(self, members: Sequence[Base], labels: Sequence[str]) -> None:
        if len(members) != len(labels) or not members:
            raise ValueError(
                f"an ensemble needs one label per member, got {len(members)} members, {len(labels)} labels"
            )
        self.members, self.labels = list(members), list(labels)

    def member_forecasts(self, x: Tensor, rows: Tensor, origin: Tensor | None = None) -> Tensor:
        """[K, M, H] each of the ``K`` members' forecasts for inputs ``x`` [M, L] of series ``rows`` [M]."""
        return torch.stack([member(x, rows, origin) for member in self.members])  # type: ignore[arg-type]

    def __call__(self, x: Tensor, rows: Tensor, origin: Tensor | None = None) -> Tensor:
        """[M, H] the members' mean forecast."""
        return self.member_forecasts(x, rows, origin).mean(0)  # [K, M, H] -> [M, H]
