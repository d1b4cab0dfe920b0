"""TimeMixer (Wang, Wu, Shi, Hu, Luo, Ma, Zhang and Zhou, ICLR 2024).

"TimeMixer: Decomposable Multiscale Mixing for Time Series Forecasting".

The window is standardised (reversible instance normalisation), each step embedded as ``D`` features (its value and
its nonzero indicator, ``zoo/blocks/layers.py``), and average-pooled into ``M + 1`` scales of ``L``, ``L/2``, ...,
``L/2^M`` steps. Each past-decomposable-mixing (PDM) layer splits every scale into a season and a trend by a moving
average (``zoo/blocks/decompose.py``, DLinear's block), mixes the seasons bottom-up (fine to coarse: the coarse
season plus an MLP across time of the finer one) and the trends top-down (coarse to fine), then adds a feature MLP
of their sum to each scale (residual). Future multipredictor mixing (FMM) gives each scale its own linear predictor
from its steps to the ``H`` horizon steps; the predictions are summed and read out to the ``O`` outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Self

import torch.nn.functional as F
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.decompose import decompose
from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.blocks.norm import normalised
from stratcast.daemon.zoo.contract import Checkpointable, ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class TimeMixerConfig(ModelConfig):
    """TimeMixer architecture."""

    d_model: int = param(16, lo=1, hi=512, search=among(8, 16, 32), help="features per step at every scale")
    d_ff: int = param(32, lo=1, hi=4096, search=among(16, 32, 64), help="hidden width of the feature MLP")
    n_layers: int = param(2, lo=1, hi=8, search=ints(1, 3), help="past-decomposable-mixing layers")
    n_scales: int = param(
        3, lo=0, hi=8, search=ints(1, 3), help="down-sampled scales below the window (each halves it; capped by L)"
    )
    moving_avg: int = param(
        13, lo=1, hi=1001, search=ints(5, 25, step=4), help="moving-average window that extracts each trend"
    )
    dropout: float = param(0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.3), help="dropout in the mixing MLPs")
    instance_norm: bool = param(
        True,
        choices=(False, True),
        search=among(False, True),
        help="standardise each window by its own mean and std, and return them to the forecast",
    )

    @classmethod
    def tiny(cls) -> Self:
        """One layer over two scales of four features."""
        return cls(d_model=4, d_ff=8, n_layers=1, n_scales=1, moving_avg=5)


def scale_lengths(input_size: int, n_scales: int) -> list[int]:
    """The steps of each scale, finest first: ``L``, ``L // 2``, ... while at least one step remains."""
    lengths = [input_size]
    while len(lengths) <= n_scales and lengths[-1] >= 2:
        lengths.append(lengths[-1] // 2)
    return lengths


def time_mlp(n_in: int, n_out: int, dropout: float) -> nn.Sequential:
    """Two linear layers across time (``n_in -> n_out -> n_out``) with a GELU between: one mixing step."""
    return nn.Sequential(nn.Linear(n_in, n_out), nn.GELU(), nn.Dropout(dropout), nn.Linear(n_out, n_out))


class PastDecomposableMixing(nn.Module):
    """Decompose each scale; seasons mixed fine to coarse, trends coarse to fine; a feature MLP of their sum added."""

    def __init__(self, config: TimeMixerConfig, lengths: list[int]) -> None:
        super().__init__()
        self.kernel = config.moving_avg
        pairs = list(pairwise(lengths))
        self.bottom_up = nn.ModuleList(time_mlp(fine, coarse, config.dropout) for fine, coarse in pairs)
        self.top_down = nn.ModuleList(time_mlp(coarse, fine, config.dropout) for fine, coarse in pairs)
        self.feature_mlp = nn.Sequential(
            nn.Linear(config.d_model, config.d_ff),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.d_ff, config.d_model),
        )

    def forward(self, *scales: Tensor) -> tuple[Tensor, ...]:
        """Map each scale ``[B, D, L_m]`` (channels first: mixing runs across time) to the same shape."""
        parts = [decompose(x, self.kernel) for x in scales]
        trends, seasons = [t for t, _ in parts], [s for _, s in parts]
        for m, mix in enumerate(self.bottom_up):
            seasons[m + 1] = seasons[m + 1] + mix(seasons[m])
        for m in reversed(range(len(self.top_down))):
            trends[m] = trends[m] + self.top_down[m](trends[m + 1])
        # [B, D, L_m] -> [B, L_m, D] for the feature MLP, and back
        return tuple(
            x + self.feature_mlp((s + t).transpose(1, 2)).transpose(1, 2)
            for x, s, t in zip(scales, seasons, trends, strict=True)
        )


class TimeMixer(Checkpointable):
    """Multiscale embedded windows, PDM layers, one predictor per scale summed, linear read-out per step.

    Activation checkpointing (:class:`Checkpointable`) applies PDM layer by PDM layer.
    """

    def __init__(self, config: TimeMixerConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.instance_norm = config.instance_norm
        self.lengths = scale_lengths(input_size, config.n_scales)
        self.embed = nn.Linear(2, config.d_model)
        self.layers = nn.ModuleList(PastDecomposableMixing(config, self.lengths) for _ in range(config.n_layers))
        self.predictors = nn.ModuleList(nn.Linear(length, horizon) for length in self.lengths)
        self.readout = nn.Linear(config.d_model, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        return normalised(self.mix, x, enabled=self.instance_norm)

    def mix(self, z: Tensor, x: Tensor) -> Tensor:
        """The forecast ``[B, H, O]`` from standardised windows ``z`` and raw windows ``x`` (for the zeros)."""
        hidden = self.embed(value_and_indicator(x, value=z)).transpose(1, 2)  # [B, L, 2] -> [B, L, D] -> [B, D, L]
        scales = [hidden]
        for _ in self.lengths[1:]:
            scales.append(F.avg_pool1d(scales[-1], 2))  # [B, D, L_m] -> [B, D, L_m // 2]
        for layer in self.layers:
            scales = list(self.run_block(layer, *scales))
        summed = sum(p(s) for p, s in zip(self.predictors, scales, strict=True))  # [B, D, L_m] -> [B, D, H]
        assert isinstance(summed, Tensor)
        out: Tensor = self.readout(summed.transpose(1, 2))  # [B, D, H] -> [B, H, D] -> [B, H, O]
        return out
