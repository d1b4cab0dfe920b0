"""NLinear (Zeng, Chen, Zhang and Xu, "Are Transformers Effective for Time Series Forecasting?", AAAI 2023).

The window's last value is subtracted from every step, one linear layer maps the window to the horizon, and the
last value is added back. The subtraction guards against a shift between the training windows and the test
windows (a strategy whose level drifted): the linear map sees only changes relative to the latest value.

Taken together the model is ``W x + b + (1 - W 1) x_L``: an affine map of the window whose weights, per forecast
step, sum to one, so a window shifted by ``c`` gets a forecast shifted by ``c``. With several outputs per step
the last value returns to the location output only (see ``zoo/blocks/norm.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import to_horizon
from stratcast.daemon.zoo.blocks.norm import restore_level
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args


@dataclass(frozen=True, kw_only=True)
class NLinearConfig(ModelConfig):
    """NLinear architecture: nothing to choose beyond the window and horizon the run fixes."""


class NLinear(nn.Module):
    """Subtract the last value, one linear map from the window to the horizon, add the last value back."""

    def __init__(self, config: NLinearConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        self.linear = nn.Linear(input_size, horizon * n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        last = x[:, -1:]  # [B, 1]
        out = to_horizon(self.linear(x - last), self.horizon, self.n_outputs)
        return restore_level(out, last)
