"""TSMixer (Chen, Li, Yoder, Arik and Pfister, TMLR 2023).

"TSMixer: An All-MLP Architecture for Time Series Forecasting".

The window is a ``[L, C]`` matrix of ``L`` steps by ``C`` features, standardised per window (reversible instance
normalisation). Each mixer block mixes along one axis at a time, each with a residual connection and a layer norm
over the whole ``[L, C]`` matrix before it: the time-mixing MLP (one linear layer across the ``L`` steps, shared by
the features, then the activation and dropout) and the feature-mixing MLP (two linear layers across the ``C``
features, shared by the steps). A temporal projection (one linear layer from ``L`` steps to ``H``, per feature)
follows the blocks, and a linear read-out maps each step's ``C`` features to its ``O`` outputs.

Our windows are univariate and the model declares no side inputs, so the ``C`` features are a small embedding of
each step: a linear map of its standardised value and its nonzero indicator (``zoo/blocks/layers.py``). Covariates,
once declared as side inputs, would join the embedding as further channels per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.blocks.norm import normalised
from stratcast.daemon.zoo.contract import ACTIVATIONS, Checkpointable, ModelConfig, activation, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class TSMixerConfig(ModelConfig):
    """TSMixer architecture."""

    n_blocks: int = param(2, lo=1, hi=16, search=ints(1, 4), help="mixer blocks (time mixing, then feature mixing)")
    n_features: int = param(
        16, lo=1, hi=512, search=among(4, 8, 16, 32), help="features per step: the width of each step's embedding"
    )
    ff_dim: int = param(
        64, lo=1, hi=4096, search=among(32, 64, 128, 256), help="hidden width of the feature-mixing MLP"
    )
    dropout: float = param(0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout after each mixing layer")
    activation: str = param(
        "relu", choices=ACTIVATIONS, search=among("relu", "gelu"), help="activation of the mixing MLPs"
    )
    instance_norm: bool = param(
        True,
        choices=(False, True),
        search=among(False, True),
        help="standardise each window by its own mean and std, and return them to the forecast",
    )

    @classmethod
    def tiny(cls) -> Self:
        """One block over four features."""
        return cls(n_blocks=1, n_features=4, ff_dim=8)


class MixerBlock(nn.Module):
    """Time mixing then feature mixing, each ``x + MLP(norm(x))`` with the norm over the whole ``[L, C]``."""

    def __init__(self, config: TSMixerConfig, input_size: int) -> None:
        super().__init__()
        c = config.n_features
        self.time_norm = nn.LayerNorm([input_size, c])
        self.time_mix = nn.Sequential(
            nn.Linear(input_size, input_size), activation(config.activation), nn.Dropout(config.dropout)
        )
        self.feature_norm = nn.LayerNorm([input_size, c])
        self.feature_mix = nn.Sequential(
            nn.Linear(c, config.ff_dim),
            activation(config.activation),
            nn.Dropout(config.dropout),
            nn.Linear(config.ff_dim, c),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L, C]`` to ``[B, L, C]``."""
        # [B, L, C] -> [B, C, L]: the linear layer runs across the steps; back to [B, L, C]
        x = x + self.time_mix(self.time_norm(x).transpose(1, 2)).transpose(1, 2)
        out: Tensor = x + self.feature_mix(self.feature_norm(x))
        return out


class TSMixer(Checkpointable):
    """Embedded steps, mixer blocks, temporal projection to the horizon, linear read-out per step.

    Activation checkpointing (:class:`Checkpointable`) applies mixer block by mixer block.
    """

    def __init__(self, config: TSMixerConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.instance_norm = config.instance_norm
        self.embed = nn.Linear(2, config.n_features)
        self.blocks = nn.ModuleList(MixerBlock(config, input_size) for _ in range(config.n_blocks))
        self.projection = nn.Linear(input_size, horizon)
        self.readout = nn.Linear(config.n_features, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        return normalised(self.mix, x, enabled=self.instance_norm)

    def mix(self, z: Tensor, x: Tensor) -> Tensor:
        """The forecast ``[B, H, O]`` from standardised windows ``z`` and raw windows ``x`` (for the zeros)."""
        hidden = self.embed(value_and_indicator(x, value=z))  # [B, L, 2] -> [B, L, C]
        for block in self.blocks:
            hidden = self.run_block(block, hidden)
        projected = self.projection(hidden.transpose(1, 2)).transpose(1, 2)  # [B, C, L] -> [B, C, H] -> [B, H, C]
        out: Tensor = self.readout(projected)  # [B, H, C] -> [B, H, O]
        return out
