"""FEDformer (Zhou, Ma, Wen, Wang, Sun and Jin, ICML 2022), the Fourier version.

"FEDformer: Frequency Enhanced Decomposed Transformer for Long-term Series Forecasting", Tian Zhou, Ziqing Ma,
Qingsong Wen, Xue Wang, Liang Sun and Rong Jin, ICML 2022.

Autoformer's decomposition encoder-decoder (``zoo/blocks/seasonal_trend.py``) with two pieces replaced:

* Frequency enhanced blocks instead of attention (``zoo/blocks/frequency.py``): each sequence is represented by a
  fixed, randomly chosen subset of ``M`` of its Fourier modes (the paper's argument: a random subset keeps more of a
  series' structure than the lowest modes alone, at a cost linear in its length). The encoder's and the decoder's
  self-attention is the Fourier enhanced block (FEB-f: the queries' kept modes mixed by a learned complex matrix per
  mode); the decoder's cross-attention is the Fourier enhanced attention (FEA-f: the queries' kept modes attend over
  the encoder output's kept modes).
* Mixture-of-experts decomposition instead of one moving average (``zoo/blocks/decompose.py``): moving averages of
  several lengths, weighted at every step by a softmax of a learned linear map of that step's features.

The modes are drawn once from a generator seeded with the block's index, so every model of one architecture keeps
the same modes (a seed of the run changes the weights, not the modes). Each step is embedded as in Autoformer here
(a width-3 convolution over values and nonzero indicators); the paper adds calendar features, which windows here do
not carry. As Autoformer here, each window is standardised by default (``instance_norm``; the paper reads raw
windows). The wavelet version (FEB-w, FEA-w) is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count
from typing import Self

from stratcast.daemon.zoo.blocks.decompose import MixtureDecomposition
from stratcast.daemon.zoo.blocks.frequency import FourierBlock, FourierCrossAttention
from stratcast.daemon.zoo.blocks.seasonal_trend import (
    Decoder,
    DecoderLayer,
    DecompositionTransformer,
    DecompositionTransformerConfig,
    Encoder,
    EncoderLayer,
)
from stratcast.daemon.zoo.contract import check_model_args, param
from stratcast.daemon.zoo.search import among


@dataclass(frozen=True, kw_only=True)
class FEDformerConfig(DecompositionTransformerConfig):
    """FEDformer architecture: the shared decomposition Transformer's fields, the Fourier modes, the experts."""

    modes: int = param(
        16,
        lo=1,
        hi=1024,
        search=among(8, 16, 32),
        help="Fourier modes each block keeps (all when a sequence has fewer)",
    )
    mode_select: str = param(
        "random",
        choices=("random", "lowest"),
        search=among("random", "lowest"),
        help="which modes: a fixed random subset (the paper's) or the lowest frequencies",
    )
    moving_avg: tuple[int, ...] = param(
        (7, 13, 25),
        lo=1,
        hi=1001,
        search=among((7, 13, 25), (13,), (5, 13), (13, 26, 52)),
        help="moving-average windows mixed by every decomposition block (the experts)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.moving_avg:
            raise ValueError("FEDformerConfig.moving_avg needs at least one moving-average window")

    @classmethod
    def tiny(cls) -> Self:
        """One narrow encoder layer and one decoder layer over a short start, few modes."""
        return cls(d_model=16, n_heads=2, d_ff=32, encoder_layers=1, decoder_layers=1, modes=8, label_len=8)


class FEDformer(DecompositionTransformer):
    """Fourier enhanced encoder over the window; decoder over its decomposed last steps and the horizon."""

    def __init__(self, config: FEDformerConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        check_model_args(input_size, horizon, n_outputs)
        c, d = config, config.d_model
        label_len = min(c.label_len, input_size)
        seeds = count(step=2)  # each block's own draw of modes (a cross-attention takes two seeds)

        def decomposition() -> MixtureDecomposition:
            return MixtureDecomposition(d, c.moving_avg)

        def block(length: int) -> FourierBlock:
            return FourierBlock(d, c.n_heads, length=length, modes=c.modes, policy=c.mode_select, seed=next(seeds))

        encoder = Encoder(
            [
                EncoderLayer(
                    block(input_size),
                    decomposition,
                    d,
                    c.d_ff,
                    dropout=c.dropout,
                    act=c.activation,
                )
                for _ in range(c.encoder_layers)
            ],
            d,
        )
        n = label_len + horizon
        decoder = Decoder(
            [
                DecoderLayer(
                    block(n),
                    FourierCrossAttention(
                        d,
                        c.n_heads,
                        q_length=n,
                        kv_length=input_size,
                        modes=c.modes,
                        policy=c.mode_select,
                        seed=next(seeds),
                    ),
                    decomposition,
                    d,
                    c.d_ff,
                    dropout=c.dropout,
                    act=c.activation,
                )
                for _ in range(c.decoder_layers)
            ],
            d,
        )
        super().__init__(
            horizon=horizon,
            n_outputs=n_outputs,
            label_len=label_len,
            d_model=d,
            dropout=c.dropout,
            instance_norm=c.instance_norm,
            decomposition=MixtureDecomposition(1, c.moving_avg),
            encoder=encoder,
            decoder=decoder,
        )
