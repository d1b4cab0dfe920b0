"""Informer (Zhou et al., AAAI 2021).

"Informer: Beyond Efficient Transformer for Long Sequence Time-Series Forecasting", Haoyi Zhou, Shanghang Zhang,
Jieqi Peng, Shuai Zhang, Jianxin Li, Hui Xiong and Wancai Zhang, AAAI 2021.

Three pieces from the paper on top of the Transformer encoder-decoder:

* ProbSparse self-attention in the encoder: each query's sparsity is measured by the max-mean measurement
  ``M(q) = max_j(q k_j / sqrt(d)) - mean_j(q k_j / sqrt(d))`` over a sample of ``factor * ceil(ln L)`` keys; only
  the top ``u = factor * ceil(ln L)`` queries attend, and every other query outputs the mean of the values (what a
  near-uniform attention would give).
* Self-attention distilling between encoder layers: a width-3 convolution over time, ELU and a max-pool of
  stride 2 halve the sequence, so deeper layers attend over fewer, more dominant tokens.
* A generative-style decoder: its tokens are the last ``label_len`` steps of the window (the start token) followed
  by ``H`` placeholders (zeros); causal self-attention and cross-attention to the encoder, then a linear read-out
  of the placeholders gives the whole horizon in one forward pass.

Deviations: the key sample is evenly spaced over the window rather than drawn at random (the forward pass stays
deterministic, and at 52 weekly inputs a random draw buys nothing); layer norm replaces batch norm in the
distilling step (batch statistics would couple the series of a batch and do not run under ``vmap``); the decoder's
self-attention is full causal attention (over at most ``label_len + H`` tokens), as the shared decoder block has it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.attention import (
    Decoder,
    EncoderLayer,
    attend,
    check_heads,
    merge_heads,
    sinusoidal_positions,
)
from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.contract import Checkpointable, ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class InformerConfig(ModelConfig):
    """Informer architecture."""

    d_model: int = param(
        64, lo=1, hi=4096, search=among(32, 64, 128), help="width of the token embeddings (divisible by n_heads)"
    )
    n_heads: int = param(4, lo=1, hi=64, search=among(2, 4, 8), help="attention heads")
    d_ff: int = param(128, lo=1, hi=16384, search=among(64, 128, 256), help="hidden width of the feed-forward networks")
    encoder_layers: int = param(2, lo=1, hi=8, search=ints(1, 3), help="encoder layers (distilled between layers)")
    decoder_layers: int = param(1, lo=1, hi=24, search=ints(1, 2), help="decoder layers")
    factor: int = param(
        5, lo=1, hi=64, search=among(3, 5), help="ProbSparse factor c: c * ceil(ln L) active queries and sampled keys"
    )
    label_len: int = param(
        26, lo=1, hi=4096, search=among(13, 26), help="window steps fed to the decoder as its start token"
    )
    dropout: float = param(
        0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.3), help="dropout in the layers and on the embeddings"
    )
    activation: str = param(
        "gelu", choices=("gelu", "relu"), search=among("gelu", "relu"), help="nonlinearity of the feed-forward networks"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_heads(type(self).__name__, self.d_model, self.n_heads)

    @classmethod
    def tiny(cls) -> Self:
        """Two narrow encoder layers (one distilling step), one decoder layer, few active queries."""
        return cls(d_model=16, n_heads=2, d_ff=32, encoder_layers=2, decoder_layers=1, factor=2, label_len=8)


def sparse_count(factor: int, n: int) -> int:
    """``factor * ceil(ln n)``, at most ``n``: the active queries (or sampled keys) among ``n``."""
    return min(n, factor * math.ceil(math.log(max(n, 2))))


class ProbSparseAttention(nn.Module):
    """Multi-head self-attention where only the top-``u`` queries by the max-mean measurement attend."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, *, factor: int) -> None:
        super().__init__()
        self.n_heads, self.factor = n_heads, factor
        self.dropout = nn.Dropout(dropout)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, N, D]`` to ``[B, N, D]``."""
        b, n, d = x.shape
        # [B, N, 3D] -> [B, N, 3, h, D/h] -> [3, B, h, N, D/h]
        q, k, v = self.qkv(x).reshape(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4).unbind(0)
        top = self.active_queries(q, k)  # [B, h, u]
        gather_at = top[..., None].expand(-1, -1, -1, q.shape[-1])  # [B, h, u] -> [B, h, u, D/h]
        attended = attend(q.gather(2, gather_at), k, v, self.dropout)  # [B, h, u, D/h]
        lazy = v.mean(dim=2, keepdim=True).expand_as(q)  # [B, h, 1, D/h] -> [B, h, N, D/h]
        heads = lazy.scatter(2, gather_at, attended)  # the active queries' rows replaced: [B, h, N, D/h]
        out: Tensor = self.out(merge_heads(heads))
        return out

    def active_queries(self, q: Tensor, k: Tensor) -> Tensor:
        """Indices ``[B, h, u]`` of the queries with the largest max-mean measurement over the sampled keys."""
        n = q.shape[2]
        picks = torch.linspace(0, n - 1, sparse_count(self.factor, n), device=q.device).round().long()  # [U]
        scores = q @ k[:, :, picks].transpose(-2, -1) / math.sqrt(q.shape[-1])  # [B, h, N, U]
        measure = scores.amax(dim=-1) - scores.mean(dim=-1)  # [B, h, N]
        return measure.topk(sparse_count(self.factor, n), dim=-1).indices


class Distil(nn.Module):
    """Self-attention distilling: width-3 convolution over time, layer norm, ELU, max-pool halving the length."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size=3, padding=1, padding_mode="circular")
        self.norm = nn.LayerNorm(d_model)
        self.pool = nn.MaxPool1d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, N, D]`` to ``[B, ceil(N / 2), D]``."""
        y = self.norm(self.conv(x.transpose(1, 2)).transpose(1, 2))  # [B, D, N] -> conv -> [B, N, D]
        pooled: Tensor = self.pool(nn.functional.elu(y).transpose(1, 2))  # [B, D, N] -> [B, D, ceil(N/2)]
        return pooled.transpose(1, 2)  # [B, D, N'] -> [B, N', D]


class InformerEncoder(Checkpointable):
    """ProbSparse encoder layers with a distilling step between consecutive layers."""

    def __init__(self, config: InformerConfig) -> None:
        super().__init__()
        d, c = config.d_model, config
        self.layers = nn.ModuleList(
            EncoderLayer(
                d,
                c.n_heads,
                c.d_ff,
                dropout=c.dropout,
                act=c.activation,
                attention=ProbSparseAttention(d, c.n_heads, c.dropout, factor=c.factor),
            )
            for _ in range(c.encoder_layers)
        )
        self.distils = nn.ModuleList(Distil(d) for _ in range(c.encoder_layers - 1))
        self.norm = nn.LayerNorm(d)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L, D]`` to ``[B, L', D]``, ``L'`` about ``L / 2^(layers - 1)``."""
        for i, layer in enumerate(self.layers):
            x = self.run_block(layer, x)
            if i < len(self.distils):
                x = self.run_block(self.distils[i], x)
        out: Tensor = self.norm(x)
        return out


class Informer(nn.Module):
    """ProbSparse distilling encoder over the window; generative decoder over start token and placeholders."""

    def __init__(self, config: InformerConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        if config.label_len > input_size:
            raise ValueError(f"InformerConfig.label_len={config.label_len} exceeds input_size={input_size}")
        d, self.input_size, self.horizon, self.label_len = config.d_model, input_size, horizon, config.label_len
        self.embed = nn.Linear(2, d)
        self.register_buffer("positions", sinusoidal_positions(input_size + horizon, d), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = InformerEncoder(config)
        self.decoder = Decoder(
            config.decoder_layers, d, config.n_heads, config.d_ff, dropout=config.dropout, act=config.activation
        )
        self.readout = nn.Linear(d, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        positions = self.get_buffer("positions")  # [L + H, D]
        tokens = self.embed(value_and_indicator(x)) + positions[: self.input_size]  # [B, L, 2] -> [B, L, D]
        memory = self.encoder(self.dropout(tokens))  # [B, L', D]
        start = x[:, -self.label_len :]  # [B, label_len]
        placeholders = x.new_zeros(x.shape[0], self.horizon)  # [B, H]
        steps = torch.cat([start, placeholders], dim=1)  # [B, label_len + H]
        queries = self.embed(value_and_indicator(steps)) + positions[self.input_size - self.label_len :]
        decoded = self.decoder(self.dropout(queries), memory)  # [B, label_len + H, D]
        out: Tensor = self.readout(decoded[:, -self.horizon :])  # [B, H, D] -> [B, H, O]
        return out
