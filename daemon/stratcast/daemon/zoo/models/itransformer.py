"""iTransformer (Liu et al., "Inverted Transformers Are Effective for Time Series Forecasting", ICLR 2024).

The Transformer is inverted: each *variate* is one token, embedded from its whole window by one shared linear
map, so attention learns how variates relate and the feed-forward network learns each variate's dynamics; a
linear projection of a variate's final token gives its forecast.

Our input is one univariate series per row, so the variates are derived from the window (our choice, not the
paper's), four of them, each of length ``L``:

1. the series itself;
2. its nonzero indicator (a zero usually means the strategy was flat that step);
3. its cumulative sum over the window divided by ``L`` (the path of the running total, kept at the scale of the
   series);
4. its trailing moving average over ``moving_avg`` steps (the first steps average what the window has so far).

Only the first variate is forecast: its output token is projected to the ``H * O`` outputs. There is no
per-variate instance normalisation (the paper's optional RevIN-style step): the series arrive scaled.

:class:`ITransformerX` (catalog ``itransformer-x``) is the paper's own form: multivariate, each *strategy* of the
window one token (``S`` series -> ``S`` tokens), attention across the strategies, every token projected to its own
forecast. No positional encoding marks the tokens, so permuting the series permutes the forecasts and nothing else
(attention and the per-token layers are equivariant). Each token embeds its strategy's window with, by default, the
three derived variates above concatenated to it (``derived``): they add nothing to the attention's ``S x S`` cost
(they widen the embedding's input, not the number of tokens), and the nonzero indicator tells a flat week from a
small return, which a scaled value alone blurs. Made tokens of their own they would cost ``(4S)^2`` attention,
sixteen times the memory, for relations within a series that the univariate model already learns.

Training reads a random subset of the panel's series per window (``series_per_window``, the engine's sampler), as
the paper does: its efficient training strategy (Section 4.3) trains on a random part of the variates in each batch,
cutting memory with the accuracy kept, and its variate generalization (Section 4.2) trains on 20% of the variates
and forecasts all of them. A token is embedded by a map shared over the variates, so the trained model forecasts
any number of them: all of them at prediction, in the engine's windows of ``series_per_window``. The attention
keeps ``B x heads x S^2`` scores per layer for the backward pass, hence the stated limit of ``MAX_SERIES`` series per
window (:meth:`ITransformerXConfig.panel_problem`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.attention import Encoder, check_heads
from stratcast.daemon.zoo.blocks.layers import to_horizon
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints

MAX_SERIES = 2000
"""Series per window at most for ``itransformer-x``: its attention keeps ``B x heads x S^2`` scores per layer for
the backward pass. Measured on a CPU (default config, L=104, H=52): a training step of 8 windows of 2,000 series
peaks at 7.2 GiB (1,000: 1.9 GiB), so a 24 GiB machine holds it with the panel and room for 16 windows a step;
3,000 series would need about 16 GiB at 8 windows, and 32 windows of 2,000 about 29 GiB."""


@dataclass(frozen=True, kw_only=True)
class ITransformerConfig(ModelConfig):
    """iTransformer architecture."""

    d_model: int = param(
        128, lo=1, hi=4096, search=among(64, 128, 256, 512), help="width of the variate tokens (divisible by n_heads)"
    )
    n_heads: int = param(8, lo=1, hi=64, search=among(4, 8, 16), help="attention heads")
    d_ff: int = param(
        256, lo=1, hi=16384, search=among(128, 256, 512, 1024), help="hidden width of the feed-forward networks"
    )
    n_layers: int = param(2, lo=1, hi=24, search=ints(1, 4), help="encoder layers")
    dropout: float = param(
        0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.4), help="dropout in the encoder and on the embeddings"
    )
    activation: str = param(
        "gelu", choices=("gelu", "relu"), search=among("gelu", "relu"), help="nonlinearity of the feed-forward networks"
    )
    moving_avg: int = param(
        13, lo=1, hi=1001, search=ints(3, 27, step=2), help="window of the moving-average variate, in steps"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_heads(type(self).__name__, self.d_model, self.n_heads)

    @classmethod
    def tiny(cls) -> Self:
        """One narrow layer."""
        return cls(d_model=16, n_heads=2, d_ff=32, n_layers=1, moving_avg=4)


def derived_variates(x: Tensor, moving_avg: int) -> Tensor:
    """The four variates built from ``x`` [B, L] (see the module docstring), as tokens ``[B, 4, L]``."""
    length = x.shape[1]
    indicator = (x != 0).to(x.dtype)
    running = x.cumsum(dim=1) / length
    # Trailing mean: pad the front with zeros, sum k steps, divide by how many real steps each sum covered.
    padded = F.pad(x, (moving_avg - 1, 0))  # [B, L] -> [B, L + k - 1]
    counts = torch.arange(1, length + 1, dtype=x.dtype, device=x.device).clamp(max=moving_avg)  # [L]
    trailing = padded.unfold(1, moving_avg, 1).sum(dim=-1) / counts  # [B, L, k] -> [B, L]
    return torch.stack([x, indicator, running, trailing], dim=1)  # 4 x [B, L] -> [B, 4, L]


class ITransformer(nn.Module):
    """Variates as tokens, a Transformer encoder across them, the first variate's token projected to the horizon."""

    def __init__(self, config: ITransformerConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs, self.moving_avg = horizon, n_outputs, config.moving_avg
        d = config.d_model
        self.embed = nn.Linear(self.token_inputs(config, input_size), d)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = Encoder(
            config.n_layers, d, config.n_heads, config.d_ff, dropout=config.dropout, act=config.activation
        )
        self.project = nn.Linear(d, horizon * n_outputs)

    def token_inputs(self, config: ITransformerConfig, input_size: int) -> int:
        """Inputs a token is embedded from: one variate's window."""
        del config
        return input_size

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        tokens = self.dropout(self.embed(derived_variates(x, self.moving_avg)))  # [B, 4, L] -> [B, 4, D]
        encoded = self.encoder(tokens)  # [B, 4, D]
        flat: Tensor = self.project(encoded[:, 0])  # [B, D] -> [B, H*O]
        return to_horizon(flat, self.horizon, self.n_outputs)


@dataclass(frozen=True, kw_only=True)
class ITransformerXConfig(ITransformerConfig):
    """iTransformer across the strategies of a window (``itransformer-x``): one token per strategy."""

    derived: bool = param(
        True,
        choices=(True, False),
        search=among(True, False),
        help="embed each strategy's nonzero indicator, running total and trailing mean with its window",
    )

    def panel_problem(self, *, n_series: int, series_per_window: int) -> str | None:
        """Past ``MAX_SERIES`` series per window the attention's scores grow as the square of the series."""
        del n_series
        if series_per_window <= MAX_SERIES:
            return None
        return (
            f"itransformer-x attends from every series of a window to every other (B x heads x S^2 scores per layer), "
            f"and {series_per_window} series per window is past its limit of {MAX_SERIES}; set the training option "
            f"series_per_window to {MAX_SERIES} or fewer (the paper trains on random subsets of the variates and "
            "forecasts all of them)"
        )


class ITransformerX(ITransformer):
    """Each strategy of a window one token, a Transformer encoder across them, each token projected to its horizon."""

    def __init__(self, config: ITransformerXConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__(config, input_size=input_size, horizon=horizon, n_outputs=n_outputs)
        self.derived = config.derived

    def token_inputs(self, config: ITransformerConfig, input_size: int) -> int:
        """Inputs a token is embedded from: its strategy's window, with its three derived variates (``derived``)."""
        derived = isinstance(config, ITransformerXConfig) and config.derived
        return 4 * input_size if derived else input_size

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, S, L]`` to ``[B, S, H, O]``."""
        b, s, length = x.shape
        z = x
        if self.derived:  # [B, S, L] -> [B*S, L] -> [B*S, 4, L] -> [B, S, 4L]
            z = derived_variates(x.reshape(b * s, length), self.moving_avg).reshape(b, s, 4 * length)
        tokens = self.dropout(self.embed(z))  # [B, S, L or 4L] -> [B, S, D]
        flat: Tensor = self.project(self.encoder(tokens))  # [B, S, D] -> [B, S, H*O]
        return flat.view(b, s, self.horizon, self.n_outputs)  # [B, S, H*O] -> [B, S, H, O]
