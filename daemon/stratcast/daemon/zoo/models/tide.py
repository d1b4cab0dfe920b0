"""TiDE (Das et al., "Long-term Forecasting with TiDE: Time-series Dense Encoder", TMLR 2023).

An all-MLP encoder/decoder built from one residual block: ``Linear -> ReLU -> Linear -> Dropout``, plus a linear
skip, followed by layer norm. The dense encoder maps the window to a latent vector; the dense decoder maps that to
a ``decoder_output_dim``-vector for every horizon step; the temporal decoder (one residual block applied to each
step separately, without the final layer norm, which over ``O = 1`` outputs would erase them) maps each step's
vector to its ``O`` outputs; and a global linear map from the window to the horizon is added as a residual.
Without covariates, the encoder reads the window alone and the temporal decoder only the decoded vector of its
step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Self

from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import to_horizon
from stratcast.daemon.zoo.contract import Checkpointable, ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class TiDEConfig(ModelConfig):
    """TiDE architecture."""

    hidden_size: int = param(
        256, lo=1, hi=8192, search=among(128, 256, 512, 1024), help="width of the dense encoder's and decoder's blocks"
    )
    num_encoder_layers: int = param(2, lo=1, hi=16, search=ints(1, 3), help="residual blocks in the dense encoder")
    num_decoder_layers: int = param(2, lo=1, hi=16, search=ints(1, 3), help="residual blocks in the dense decoder")
    decoder_output_dim: int = param(
        16, lo=1, hi=512, search=among(4, 8, 16, 32), help="size of the decoded vector for each horizon step"
    )
    temporal_decoder_hidden: int = param(
        64, lo=1, hi=4096, search=among(32, 64, 128), help="width of the per-step temporal decoder"
    )
    dropout: float = param(
        0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout at the end of each residual block"
    )
    layer_norm: bool = param(
        True, choices=(False, True), search=among(False, True), help="layer norm after each residual block"
    )

    @classmethod
    def tiny(cls) -> Self:
        """One narrow encoder block and one narrow decoder block."""
        return cls(
            hidden_size=32,
            num_encoder_layers=1,
            num_decoder_layers=1,
            decoder_output_dim=4,
            temporal_decoder_hidden=8,
        )


class ResidualBlock(nn.Module):
    """TiDE's residual block: ``norm(dropout(W2 relu(W1 x)) + W_skip x)``."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, *, dropout: float, layer_norm: bool) -> None:
        super().__init__()
        self.dense = nn.Sequential(
            nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out), nn.Dropout(dropout)
        )
        self.skip = nn.Linear(d_in, d_out)
        self.norm = nn.LayerNorm(d_out) if layer_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[..., d_in]`` to ``[..., d_out]``."""
        out: Tensor = self.norm(self.dense(x) + self.skip(x))
        return out


class TiDE(Checkpointable):
    """Dense encoder, dense decoder, per-step temporal decoder, plus a global linear residual.

    Activation checkpointing (:class:`Checkpointable`) applies residual block by residual block.
    """

    def __init__(self, config: TiDEConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        d, p = config.hidden_size, config.decoder_output_dim
        block = partial(ResidualBlock, dropout=config.dropout, layer_norm=config.layer_norm)
        n_enc, n_dec = config.num_encoder_layers, config.num_decoder_layers
        self.encoder = nn.Sequential(*(block(input_size if i == 0 else d, d, d) for i in range(n_enc)))
        self.decoder = nn.Sequential(*(block(d, d, horizon * p if i == n_dec - 1 else d) for i in range(n_dec)))
        # No layer norm on the temporal decoder's output: over O = 1 feature it would erase the forecast.
        self.temporal = ResidualBlock(
            p, config.temporal_decoder_hidden, n_outputs, dropout=config.dropout, layer_norm=False
        )
        self.residual = nn.Linear(input_size, horizon * n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        hidden = x
        for block in (*self.encoder, *self.decoder):
            hidden = self.run_block(block, hidden)
        decoded = hidden.reshape(x.shape[0], self.horizon, -1)  # [B, H*p] -> [B, H, p]
        out: Tensor = self.run_block(self.temporal, decoded)  # [B, H, p] -> [B, H, O]
        return out + to_horizon(self.residual(x), self.horizon, self.n_outputs)
