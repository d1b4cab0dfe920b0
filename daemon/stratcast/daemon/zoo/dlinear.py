"""DLinear (Zeng et al., "Are Transformers Effective for Time Series Forecasting?", AAAI 2023).

The input window is split by a centred moving average into a trend and a remainder; one linear map per part
projects the window onto the horizon, and the two projections are summed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.base import ModelConfig, check_model_args, param


@dataclass(frozen=True, kw_only=True)
class DLinearConfig(ModelConfig):
    """DLinear architecture."""

    moving_avg: int = param(25, lo=1, hi=1001, help="moving-average window that extracts the trend (odd)")


class DLinear(nn.Module):
    """Trend/remainder decomposition followed by two linear projections."""

    def __init__(self, config: DLinearConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.kernel = config.moving_avg
        self.horizon, self.n_outputs = horizon, n_outputs
        self.trend = nn.Linear(input_size, horizon * n_outputs)
        self.season = nn.Linear(input_size, horizon * n_outputs)

    def decompose(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Split ``x`` [B, L] into (trend, remainder), the trend a moving average with edge replication."""
        left = (self.kernel - 1) // 2
        right = self.kernel - 1 - left
        padded = torch.cat([x[:, :1].expand(-1, left), x, x[:, -1:].expand(-1, right)], dim=1)
        # [B, L + k - 1] -> [B, L, k] -> [B, L]
        trend = padded.unfold(1, self.kernel, 1).mean(dim=-1)
        return trend, x - trend

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        trend, season = self.decompose(x)
        out: Tensor = self.trend(trend) + self.season(season)
        return out.view(x.shape[0], self.horizon, self.n_outputs)  # [B, H*O] -> [B, H, O]
