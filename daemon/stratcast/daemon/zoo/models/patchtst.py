"""PatchTST (Nie et al., "A Time Series is Worth 64 Words: Long-term Forecasting with Transformers", ICLR 2023).

The window is cut into patches of ``patch_len`` steps every ``stride`` steps (after padding the end with
``stride`` copies of the last value, as in the paper, so the newest steps get a patch of their own), each patch is
linearly embedded and given a learned position embedding, a Transformer encoder attends across the patches, and a
flatten head maps all patch embeddings to the ``H * O`` outputs. Channel independence is trivial here: every row
is one univariate series, and the weights are shared across all of them.

Two deviations from the paper: layer norm instead of batch norm in the encoder (batch statistics would couple the
series of a batch and do not run under ``vmap``), and no RevIN instance normalisation (the series arrive scaled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.attention import Encoder, check_heads
from stratcast.daemon.zoo.blocks.layers import to_horizon
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class PatchTSTConfig(ModelConfig):
    """PatchTST architecture."""

    patch_len: int = param(16, lo=1, hi=512, search=among(8, 13, 16, 26), help="steps per patch")
    stride: int = param(8, lo=1, hi=512, search=among(4, 8), help="steps between the starts of consecutive patches")
    d_model: int = param(
        128, lo=1, hi=4096, search=among(64, 128, 256), help="width of the patch embeddings (divisible by n_heads)"
    )
    n_heads: int = param(16, lo=1, hi=64, search=among(4, 8, 16), help="attention heads")
    d_ff: int = param(
        256, lo=1, hi=16384, search=among(128, 256, 512), help="hidden width of the feed-forward networks"
    )
    n_layers: int = param(3, lo=1, hi=24, search=ints(1, 4), help="encoder layers")
    dropout: float = param(
        0.2, lo=0.0, hi=0.9, search=floats(0.0, 0.4), help="dropout in the encoder and on the embeddings"
    )
    head_dropout: float = param(0.0, lo=0.0, hi=0.9, search=floats(0.0, 0.4), help="dropout before the flatten head")
    activation: str = param(
        "gelu", choices=("gelu", "relu"), search=among("gelu", "relu"), help="nonlinearity of the feed-forward networks"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_heads(type(self).__name__, self.d_model, self.n_heads)

    @classmethod
    def tiny(cls) -> Self:
        """One narrow layer over short patches."""
        return cls(patch_len=8, stride=4, d_model=16, n_heads=2, d_ff=32, n_layers=1)


class PatchTST(nn.Module):
    """Patch embedding, Transformer encoder across patches, flatten head."""

    def __init__(self, config: PatchTSTConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        if config.patch_len > input_size:
            raise ValueError(f"PatchTSTConfig.patch_len={config.patch_len} exceeds input_size={input_size}")
        self.horizon, self.n_outputs = horizon, n_outputs
        self.patch_len, self.stride = config.patch_len, config.stride
        n_patches = (input_size + config.stride - config.patch_len) // config.stride + 1
        d = config.d_model
        self.embed = nn.Linear(config.patch_len, d)
        self.position = nn.Parameter(torch.empty(n_patches, d).uniform_(-0.02, 0.02))
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = Encoder(
            config.n_layers, d, config.n_heads, config.d_ff, dropout=config.dropout, act=config.activation
        )
        self.head = nn.Sequential(nn.Dropout(config.head_dropout), nn.Linear(n_patches * d, horizon * n_outputs))

    def patches(self, x: Tensor) -> Tensor:
        """Cut ``[B, L]`` into ``[B, N, patch_len]``, the end padded with ``stride`` copies of the last value."""
        padded = torch.cat([x, x[:, -1:].expand(-1, self.stride)], dim=1)  # [B, L] -> [B, L + S]
        return padded.unfold(1, self.patch_len, self.stride)  # [B, L + S] -> [B, N, P]

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        tokens = self.dropout(self.embed(self.patches(x)) + self.position)  # [B, N, P] -> [B, N, D]
        encoded = self.encoder(tokens)  # [B, N, D]
        flat: Tensor = self.head(encoded.flatten(1))  # [B, N, D] -> [B, N*D] -> [B, H*O]
        return to_horizon(flat, self.horizon, self.n_outputs)
