"""Autoformer (Wu, Xu, Wang and Long, NeurIPS 2021).

"Autoformer: Decomposition Transformers with Auto-Correlation for Long-Term Series Forecasting", Haixu Wu, Jiehui
Xu, Jianmin Wang and Mingsheng Long, NeurIPS 2021.

Two pieces from the paper replace the Transformer's attention and its single pass over the raw series:

* Series decomposition inside the network (``zoo/blocks/decompose.py``): a moving average splits every sub-layer's
  output into a trend and a seasonal part; the layers carry the seasonal part on and the decoder accumulates the
  trends (``zoo/blocks/seasonal_trend.py``: the encoder-decoder, and the decoder's seasonal/trend initialisation from
  the window's last ``label_len`` steps and its mean).
* Auto-Correlation instead of self- and cross-attention (``zoo/blocks/frequency.py``): the lags with the largest
  query-key correlation, found by the FFT, are the likeliest periods; the values rolled by those lags are summed,
  weighted by the softmax of their correlations.

Each step's value and nonzero indicator, with its two neighbours', are embedded by a width-3 convolution (the
token embedding of Informer, which Autoformer's setup keeps; ``zoo/blocks/seasonal_trend.py``); the paper adds
calendar features, which windows here do not carry. As in the paper, no positional encoding: the lags carry order.

Deviations: by default each window is standardised by its own mean and standard deviation, which return to the
forecast (reversible instance normalisation, ``zoo/blocks/norm.py``: strategies' scales differ by orders of
magnitude; ``instance_norm=False`` reads raw windows, as the paper does); each window (and head) picks its own lags
in training as well (the paper's code shares the batch's lags while training, which would make a window's forecast
depend on the other windows of its batch); cross-attention truncates a longer encoder output to its last (most
recent) steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from stratcast.daemon.zoo.blocks.decompose import SeriesDecomposition
from stratcast.daemon.zoo.blocks.frequency import AutoCorrelation
from stratcast.daemon.zoo.blocks.seasonal_trend import (
    Decoder,
    DecoderLayer,
    DecompositionTransformer,
    DecompositionTransformerConfig,
    Encoder,
    EncoderLayer,
)
from stratcast.daemon.zoo.contract import check_model_args, param
from stratcast.daemon.zoo.search import among, ints


@dataclass(frozen=True, kw_only=True)
class AutoformerConfig(DecompositionTransformerConfig):
    """Autoformer architecture: the shared decomposition Transformer's fields, one moving average, the lags' factor."""

    moving_avg: int = param(
        13, lo=1, hi=1001, search=ints(5, 25, step=4), help="moving-average window of every decomposition block"
    )
    factor: int = param(
        1, lo=1, hi=16, search=among(1, 2, 3), help="Auto-Correlation factor c: floor(c ln N) lags aggregated"
    )

    @classmethod
    def tiny(cls) -> Self:
        """One narrow encoder layer and one decoder layer over a short start."""
        return cls(d_model=16, n_heads=2, d_ff=32, encoder_layers=1, decoder_layers=1, label_len=8)


class Autoformer(DecompositionTransformer):
    """Auto-Correlation encoder over the window; decoder over its decomposed last steps and the horizon."""

    def __init__(self, config: AutoformerConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        check_model_args(input_size, horizon, n_outputs)
        c, d = config, config.d_model

        def decomposition() -> SeriesDecomposition:
            return SeriesDecomposition(c.moving_avg)

        def correlation() -> AutoCorrelation:
            return AutoCorrelation(d, c.n_heads, factor=c.factor)

        encoder = Encoder(
            [
                EncoderLayer(correlation(), decomposition, d, c.d_ff, dropout=c.dropout, act=c.activation)
                for _ in range(c.encoder_layers)
            ],
            d,
        )
        decoder = Decoder(
            [
                DecoderLayer(
                    correlation(), correlation(), decomposition, d, c.d_ff, dropout=c.dropout, act=c.activation
                )
                for _ in range(c.decoder_layers)
            ],
            d,
        )
        super().__init__(
            horizon=horizon,
            n_outputs=n_outputs,
            label_len=min(c.label_len, input_size),
            d_model=d,
            dropout=c.dropout,
            instance_norm=c.instance_norm,
            decomposition=decomposition(),
            encoder=encoder,
            decoder=decoder,
        )
