"""SOFTS: every series of a window meets the others only through one pooled core, so a window costs O(S).

Han, Chen, Ye and Zhan, "SOFTS: Efficient Multivariate Time Series Forecasting with Series-Core Fusion", NeurIPS
2024. Each series of a window is one token, embedded from its whole window by one shared linear map (inverted, as in
iTransformer). Where iTransformer lets every token attend to every other (``S x S``), SOFTS lets the series meet in
one place, the STAR module (STar Aggregate-Redistribute):

1. aggregate: an MLP maps each series' token ``[D]`` to ``[C]``, and the ``S`` results are pooled over the series
   into one *core* ``[C]`` per window: by stochastic pooling in training (per channel, one series is drawn with
   probability the softmax of that channel over the series, and its value kept) and by the softmax-weighted average
   in evaluation (the expected value of that draw);
2. redistribute: the core is concatenated to every series' token, ``[D + C]``, and a second MLP fuses them back to
   ``[D]``.

STAR takes the place of attention in a post-norm encoder layer (residual and layer norm, then a feed-forward
network, residual and layer norm); ``n_layers`` such layers run in sequence and a linear projection of each series'
final token gives its ``H * O`` outputs. Every step is per series or a pool over the series, so a window of ``S``
series costs ``O(S)`` time and memory: no ``S x S`` map is ever formed, and the whole 6,000-strategy panel fits in
one window. The pool is invariant to the order of the series (a softmax-weighted sum; in training, a draw by
weight), so in evaluation the model is equivariant to permuting them.

As the paper does, each series' window is standardised by its own mean and standard deviation first and its level
put back into the forecast (``instance_norm``, :func:`~stratcast.daemon.zoo.blocks.norm.normalised`). Our addition:
the embedding also reads each window's nonzero indicator (``zero_indicator``), since a standardised window no
longer shows which weeks had no trade.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.attention import EncoderLayer
from stratcast.daemon.zoo.blocks.norm import normalised
from stratcast.daemon.zoo.contract import Checkpointable, ModelConfig, activation, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class SOFTSConfig(ModelConfig):
    """SOFTS architecture."""

    d_model: int = param(128, lo=1, hi=4096, search=among(64, 128, 256, 512), help="width of the series tokens")
    d_core: int = param(
        64, lo=1, hi=4096, search=among(32, 64, 128, 256), help="width of the core the series are pooled into"
    )
    d_ff: int = param(
        256, lo=1, hi=16384, search=among(128, 256, 512), help="hidden width of the feed-forward networks"
    )
    n_layers: int = param(2, lo=1, hi=24, search=ints(1, 4), help="encoder layers, each a STAR module and an FFN")
    dropout: float = param(
        0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.4), help="dropout in the encoder and on the embeddings"
    )
    activation: str = param(
        "gelu", choices=("gelu", "relu"), search=among("gelu", "relu"), help="nonlinearity of the MLPs and FFNs"
    )
    instance_norm: bool = param(
        True, choices=(True, False), help="standardise each series' window by its own mean and scale, put back after"
    )
    zero_indicator: bool = param(
        True, choices=(True, False), search=among(True, False), help="embed each window's nonzero indicator too"
    )

    @classmethod
    def tiny(cls) -> Self:
        """One narrow layer."""
        return cls(d_model=16, d_core=8, d_ff=32, n_layers=1)


def stochastic_pool(v: Tensor, *, sample: bool) -> Tensor:
    """Pool ``v`` [B, S, C] over its series into a core [B, 1, C], channel by channel.

    Each channel's weights are the softmax of its values over the ``S`` series. ``sample``: one series is drawn per
    row and channel with those probabilities (from torch's global generator) and its value kept, the paper's
    stochastic pooling in training; otherwise the weighted average, the expected value of that draw.
    """
    weights = torch.softmax(v.float(), dim=1).to(v.dtype)  # [B, S, C], summing to 1 over S
    if not sample:
        return (weights * v).sum(dim=1, keepdim=True)  # [B, S, C] -> [B, 1, C]
    b, s, c = v.shape
    probs = weights.transpose(1, 2).reshape(b * c, s).float()  # [B, S, C] -> [B*C, S]
    picked = torch.multinomial(probs, 1)  # [B*C, 1]: one series per row and channel
    values = v.transpose(1, 2).reshape(b * c, s).gather(1, picked)  # [B*C, 1]
    return values.view(b, 1, c)  # [B*C, 1] -> [B, 1, C]


class STAR(nn.Module):
    """STar Aggregate-Redistribute: series tokens [B, S, D] pooled into a core, fused back into each token."""

    def __init__(self, d_model: int, d_core: int, *, act: str) -> None:
        super().__init__()
        self.aggregate = nn.Sequential(nn.Linear(d_model, d_model), activation(act), nn.Linear(d_model, d_core))
        self.fuse = nn.Sequential(nn.Linear(d_model + d_core, d_model), activation(act), nn.Linear(d_model, d_model))

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, S, D]`` to ``[B, S, D]``: the core of all ``S`` series reaches every one of them."""
        core = stochastic_pool(self.aggregate(x), sample=self.training)  # [B, S, D] -> [B, S, C] -> [B, 1, C]
        shared = core.expand(-1, x.shape[1], -1)  # [B, 1, C] -> [B, S, C], a view: no copy per series
        out: Tensor = self.fuse(torch.cat([x, shared], dim=-1))  # [B, S, D + C] -> [B, S, D]
        return out


class STAREncoder(Checkpointable):
    """``n_layers`` post-norm encoder layers with STAR in place of attention; checkpointing applies layer by layer."""

    def __init__(self, config: SOFTSConfig) -> None:
        super().__init__()
        d = config.d_model
        self.layers = nn.ModuleList(
            EncoderLayer(
                d,
                1,  # no heads: STAR takes attention's place
                config.d_ff,
                dropout=config.dropout,
                act=config.activation,
                attention=STAR(d, config.d_core, act=config.activation),
            )
            for _ in range(config.n_layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, S, D]`` to ``[B, S, D]``."""
        for layer in self.layers:
            x = self.run_block(layer, x)
        return x


class SOFTS(nn.Module):
    """Series embedded as tokens, STAR encoder layers across them, each token projected to its horizon."""

    def __init__(self, config: SOFTSConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        self.instance_norm, self.zero_indicator = config.instance_norm, config.zero_indicator
        features = 2 * input_size if config.zero_indicator else input_size
        self.embed = nn.Linear(features, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = STAREncoder(config)
        self.project = nn.Linear(config.d_model, horizon * n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, S, L]`` to ``[B, S, H, O]``."""
        return normalised(self.forecast, x, enabled=self.instance_norm)

    def forecast(self, z: Tensor, x: Tensor) -> Tensor:
        """``[B, S, H, O]`` from standardised windows ``z`` [B, S, L] (``x``, the raw ones, marks the zeros)."""
        if self.zero_indicator:
            z = torch.cat([z, (x != 0).to(z.dtype)], dim=-1)  # [B, S, L] -> [B, S, 2L]
        tokens = self.dropout(self.embed(z))  # [B, S, L or 2L] -> [B, S, D]
        flat: Tensor = self.project(self.encoder(tokens))  # [B, S, D] -> [B, S, H*O]
        return flat.view(*flat.shape[:-1], self.horizon, self.n_outputs)  # [B, S, H*O] -> [B, S, H, O]
