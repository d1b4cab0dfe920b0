"""N-HiTS (Challu et al., "N-HiTS: Neural Hierarchical Interpolation for Time Series Forecasting", AAAI 2023).

N-BEATS's doubly residual stacks of MLP blocks, with two changes that make each stack specialise in one band of
frequencies:

* multi-rate input sampling: a block first max-pools its residual window with kernel (and stride)
  ``n_pool_kernel_size[s]``, so the stacks with large kernels see only the slow movements;
* hierarchical interpolation: a block emits only ``max(H // n_freq_downsample[s], 1)`` forecast coefficients per
  output, which are interpolated (linearly by default) onto the ``H`` horizon steps, so the stacks with large
  downsampling factors can only express smooth curves.

Each block's backcast is emitted at full resolution and subtracted from the window before the next block; the
last block's backcast would feed nothing, so it is not built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import mlp
from stratcast.daemon.zoo.contract import ACTIVATIONS, Checkpointable, ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class NHITSConfig(ModelConfig):
    """N-HiTS architecture; one stack per entry of ``n_pool_kernel_size``."""

    n_pool_kernel_size: tuple[int, ...] = param(
        (4, 2, 1),
        lo=1,
        hi=512,
        search=among((2, 2, 1), (4, 2, 1), (8, 4, 1), (16, 8, 1)),
        help="max-pool kernel (and stride) applied to the window, one per stack",
    )
    n_freq_downsample: tuple[int, ...] = param(
        (12, 4, 1),
        lo=1,
        hi=1024,
        search=among((4, 2, 1), (12, 4, 1), (26, 13, 1), (52, 13, 1)),
        help="horizon steps per forecast coefficient, one per stack",
    )
    n_blocks: int = param(1, lo=1, hi=32, search=ints(1, 3), help="blocks in each stack")
    mlp_units: tuple[int, ...] = param(
        (512, 512),
        lo=1,
        hi=8192,
        search=among((128, 128), (256, 256), (512, 512), (1024, 1024)),
        help="widths of each block's hidden layers",
    )
    dropout: float = param(0.0, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout after each hidden layer")
    activation: str = param(
        "relu", choices=ACTIVATIONS, search=among(*ACTIVATIONS), help="nonlinearity of the hidden layers"
    )
    interpolation: str = param(
        "linear",
        choices=("linear", "nearest"),
        search=among("linear", "nearest"),
        help="how forecast coefficients are spread over the horizon",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if not self.n_pool_kernel_size or not self.mlp_units:
            raise ValueError(f"{name} needs at least one stack and one hidden layer")
        if len(self.n_pool_kernel_size) != len(self.n_freq_downsample):
            raise ValueError(
                f"{name}.n_pool_kernel_size {self.n_pool_kernel_size} and n_freq_downsample "
                f"{self.n_freq_downsample} must have one entry per stack"
            )

    @classmethod
    def tiny(cls) -> Self:
        """Three stacks of one narrow block each."""
        return cls(n_pool_kernel_size=(4, 2, 1), n_freq_downsample=(4, 2, 1), mlp_units=(32, 32))


class NHITSBlock(nn.Module):
    """Max-pool the window, run an MLP, emit a backcast and interpolated forecast coefficients."""

    def __init__(
        self,
        config: NHITSConfig,
        *,
        pool: int,
        downsample: int,
        input_size: int,
        horizon: int,
        n_outputs: int,
        backcast: bool,
    ) -> None:
        super().__init__()
        self.pool, self.horizon, self.n_outputs = pool, horizon, n_outputs
        self.interpolation = config.interpolation
        self.n_coefficients = max(horizon // downsample, 1)
        pooled_size = -(-input_size // pool)  # ceil: the pooling keeps a partial last window
        self.mlp = mlp(pooled_size, config.mlp_units, act=config.activation, dropout=config.dropout)
        width = config.mlp_units[-1]
        self.forecast = nn.Linear(width, self.n_coefficients * n_outputs)
        self.backcast = nn.Linear(width, input_size) if backcast else None

    def forward(self, x: Tensor) -> tuple[Tensor | None, Tensor]:
        """Map the residual window ``[B, L]`` to (backcast ``[B, L]`` or None, forecast ``[B, H, O]``)."""
        # [B, L] -> [B, 1, L] -> [B, 1, ceil(L / k)] -> [B, ceil(L / k)]
        pooled = F.max_pool1d(x.unsqueeze(1), self.pool, self.pool, ceil_mode=True).squeeze(1)
        hidden = self.mlp(pooled)
        knots = self.forecast(hidden).reshape(x.shape[0], self.n_outputs, self.n_coefficients)  # -> [B, O, C]
        curve = F.interpolate(knots, size=self.horizon, mode=self.interpolation)  # [B, O, C] -> [B, O, H]
        backcast = None if self.backcast is None else self.backcast(hidden)
        return backcast, curve.transpose(1, 2)  # [B, O, H] -> [B, H, O]


class NHITS(Checkpointable):
    """Stacks of N-HiTS blocks from the coarsest sampling rate to the finest, residual between blocks.

    Activation checkpointing (:class:`Checkpointable`) applies block by block.
    """

    def __init__(self, config: NHITSConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        rates = [
            (pool, downsample)
            for pool, downsample in zip(config.n_pool_kernel_size, config.n_freq_downsample, strict=True)
            for _ in range(config.n_blocks)
        ]
        self.blocks = nn.ModuleList(
            NHITSBlock(
                config,
                pool=pool,
                downsample=downsample,
                input_size=input_size,
                horizon=horizon,
                n_outputs=n_outputs,
                backcast=i < len(rates) - 1,
            )
            for i, (pool, downsample) in enumerate(rates)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        residual, forecasts = x, []
        for block in self.blocks:
            backcast, forecast = self.run_block(block, residual)
            forecasts.append(forecast)
            if backcast is not None:
                residual = residual - backcast
        return torch.stack(forecasts).sum(dim=0)  # n x [B, H, O] -> [B, H, O]
