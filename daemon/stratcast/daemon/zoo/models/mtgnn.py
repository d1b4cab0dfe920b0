"""MTGNN (Wu, Pan, Long, Jiang, Chang and Zhang, KDD 2020).

"Connecting the Dots: Multivariate Time Series Forecasting with Graph Neural Networks".

A graph over the series is learned from two embeddings per series (the graph learning layer):
``M1 = tanh(alpha E1 Theta1)``, ``M2 = tanh(alpha E2 Theta2)``, ``A = ReLU(tanh(alpha (M1 M2^T - M2 M1^T)))``, of
which each series keeps its ``k`` largest entries (the antisymmetric score makes the graph uni-directional). Layers
of temporal convolution and graph convolution follow, with residual and skip connections:

* the temporal convolution module is a gated pair of dilated inception layers, ``tanh(inception(x)) *
  sigmoid(inception(x))``; an inception layer runs kernels of 2, 3, 6 and 7 steps side by side (a quarter of the
  channels each) and keeps the steps all four cover; the dilation grows by ``dilation_exponential`` per layer;
* the graph convolution module is two mix-hop propagations, over ``A`` (what flows into a series) and ``A^T``
  (what flows out), summed (:class:`~stratcast.daemon.zoo.blocks.graph.MixHop`);
* a skip convolution reads each layer's whole remaining time axis; the skips are summed and two 1x1 convolutions
  give every series its ``H * O`` outputs.

Our windows hold a random subset of ``S`` series of the panel (``series_per_window``, as the paper trains on
random subsets of nodes), named by ``ids``: the embeddings of those series build the window's graph, which is
sparse throughout (``[B, S, k]`` neighbours; no dense ``S x S`` is kept). Choosing the neighbours scores all
``S x S`` pairs in row chunks without gradients, so the stated limit is ``MAX_SERIES`` series per window. The
input has two channels, the value and its nonzero indicator (the paper's second channel is the time of day).
The paper's layer norm has an affine map per node; ours normalises each series over channels and time with one
affine map shared by all series.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.graph import MixHop, TopKGraph, top_k_graph
from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.contract import Checkpointable, ModelConfig, check_ids, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints

INCEPTION_KERNELS = (2, 3, 6, 7)
"""The dilated inception layer's kernel sizes (the paper's: they cover the periods 7, 12, 24, 28, 60 together)."""
MAX_SERIES = 2000
"""Series per window at most: choosing each window's neighbours scores ``S x S`` pairs (``B x S^2`` work)."""


@dataclass(frozen=True, kw_only=True)
class MTGNNConfig(ModelConfig):
    """MTGNN architecture (defaults: the paper's multi-step settings)."""

    node_dim: int = param(40, lo=1, hi=512, search=among(16, 32, 40, 64), help="width of each series' embeddings")
    k: int = param(
        20, lo=1, hi=512, search=among(5, 10, 20, 30), help="neighbours each series keeps in the learned graph (top-k)"
    )
    alpha: float = param(3.0, lo=0.1, hi=20.0, search=floats(1.0, 5.0), help="saturation rate of the graph's tanh")
    gcn_depth: int = param(2, lo=1, hi=6, search=ints(1, 3), help="propagation steps of each mix-hop layer")
    beta: float = param(
        0.05, lo=0.0, hi=1.0, search=floats(0.01, 0.3, log=True), help="share of the input kept at every hop"
    )
    n_layers: int = param(3, lo=1, hi=8, search=ints(2, 4), help="temporal + graph convolution layers")
    channels: int = param(
        32, lo=4, hi=512, search=among(16, 32, 64), help="residual and convolution channels (divisible by 4)"
    )
    skip_channels: int = param(64, lo=1, hi=1024, search=among(32, 64, 128), help="channels of the skip connections")
    end_channels: int = param(128, lo=1, hi=2048, search=among(64, 128, 256), help="channels of the output layer")
    dilation_exponential: int = param(
        1, lo=1, hi=3, search=among(1, 2), help="growth of the temporal dilation per layer (1: none)"
    )
    dropout: float = param(0.3, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout after each temporal module")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.channels % len(INCEPTION_KERNELS):
            raise ValueError(f"channels={self.channels} must be divisible by {len(INCEPTION_KERNELS)}")

    @classmethod
    def tiny(cls) -> Self:
        """One narrow layer, two neighbours, two hops."""
        return cls(node_dim=4, k=2, n_layers=1, channels=8, skip_channels=8, end_channels=16)

    def panel_problem(self, *, n_series: int, series_per_window: int) -> str | None:
        """Past ``MAX_SERIES`` series per window the neighbour scores grow as the square of the series."""
        del n_series
        if series_per_window <= MAX_SERIES:
            return None
        return (
            f"MTGNN scores every pair of series in a window to choose their neighbours, and {series_per_window} series "
            f"per window is past its limit of {MAX_SERIES}; set the training option series_per_window to "
            f"{MAX_SERIES} or fewer (the paper trains on random subsets of about 500)"
        )


def receptive_field(n_layers: int, dilation_exponential: int) -> int:
    """Steps the layers see: ``1 + (7 - 1) * sum_i q^i`` for the widest inception kernel (7)."""
    widest = max(INCEPTION_KERNELS)
    return 1 + (widest - 1) * sum(int(dilation_exponential**i) for i in range(n_layers))


class DilatedInception(nn.Module):
    """Kernels of 2, 3, 6 and 7 steps side by side, dilated, cut to the steps all four cover and concatenated.

    Run as one convolution of the widest kernel: each narrower kernel's taps sit at the end of a 7-tap kernel whose
    first taps are zeros, which aligns the branches' outputs on their last steps exactly as the cut does.
    """

    def __init__(self, c_in: int, c_out: int, dilation: int) -> None:
        super().__init__()
        share = c_out // len(INCEPTION_KERNELS)
        self.dilation = dilation
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(share, c_in, k)) for k in INCEPTION_KERNELS)
        self.bias = nn.Parameter(torch.empty(c_out))
        for w in self.weights:
            nn.init.kaiming_uniform_(w, a=5**0.5)  # nn.Conv1d's initialisation, kernel by kernel
        bound = 1 / (c_in * max(INCEPTION_KERNELS)) ** 0.5
        nn.init.uniform_(self.bias, -bound, bound)

    def kernel(self) -> Tensor:
        """The four kernels as one ``[C_out, C_in, 7]``, each narrower one front-padded with zeros."""
        widest = max(INCEPTION_KERNELS)
        return torch.cat([F.pad(w, (widest - w.shape[-1], 0)) for w in self.weights])

    def forward(self, x: Tensor) -> Tensor:
        """``[N, C_in, T]`` -> ``[N, C_out, T - 6 * dilation]``."""
        return F.conv1d(x, self.kernel(), self.bias, dilation=self.dilation)


def gated(filter_: DilatedInception, gate: DilatedInception, x: Tensor) -> Tensor:
    """The temporal convolution module ``tanh(filter(x)) * sigmoid(gate(x))``, both run as one convolution."""
    weight = torch.cat([filter_.kernel(), gate.kernel()])  # [2*C_out, C_in, 7]
    both = F.conv1d(x, weight, torch.cat([filter_.bias, gate.bias]), dilation=filter_.dilation)
    f, g = both.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class MTGNNLayer(nn.Module):
    """One layer: gated temporal convolution, skip output, graph convolution both ways, residual, layer norm."""

    def __init__(self, config: MTGNNConfig, *, dilation: int, steps_in: int) -> None:
        super().__init__()
        c = config.channels
        self.filter = DilatedInception(c, c, dilation)
        self.gate = DilatedInception(c, c, dilation)
        self.steps = steps_in - (max(INCEPTION_KERNELS) - 1) * dilation
        self.skip = nn.Linear(c * self.steps, config.skip_channels)  # a convolution over the whole time axis
        self.inflow = MixHop(c, c, depth=config.gcn_depth, beta=config.beta)
        self.outflow = MixHop(c, c, depth=config.gcn_depth, beta=config.beta)
        self.norm = nn.LayerNorm([c, self.steps])
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, graph: TopKGraph) -> tuple[Tensor, Tensor]:
        """``x`` ``[B, S, C, T]`` -> (the next layer's input ``[B, S, C, T']``, this layer's skip ``[B, S, C_s]``)."""
        b, s, c, t = x.shape
        flat = x.reshape(b * s, c, t)  # [B, S, C, T] -> [B*S, C, T]
        h = self.dropout(gated(self.filter, self.gate, flat))  # [B*S, C, T']
        h = h.reshape(b, s, c, self.steps)  # [B*S, C, T'] -> [B, S, C, T']
        skip: Tensor = self.skip(h.flatten(2))  # [B, S, C*T'] -> [B, S, C_s]
        h = self.inflow(h, graph) + self.outflow(h, graph, transpose=True)
        out: Tensor = self.norm(h + x[..., -self.steps :])  # normalised over (C, T') per series
        return out, skip


class MTGNN(Checkpointable):
    """A graph learned from series embeddings, then temporal and graph convolutions over each window's series.

    Its layers are checkpointable blocks: at 500 series of 104 steps a layer keeps about 1 GiB of activations.
    """

    def __init__(
        self, config: MTGNNConfig, *, input_size: int, horizon: int, n_outputs: int = 1, n_series: int
    ) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs, self.n_series = horizon, n_outputs, n_series
        self.k, self.alpha = config.k, config.alpha
        self.source = nn.Embedding(n_series, config.node_dim)
        self.target = nn.Embedding(n_series, config.node_dim)
        self.theta_source = nn.Linear(config.node_dim, config.node_dim)
        self.theta_target = nn.Linear(config.node_dim, config.node_dim)
        self.steps = max(input_size, receptive_field(config.n_layers, config.dilation_exponential))
        c, c_skip = config.channels, config.skip_channels
        self.start = nn.Linear(2, c)
        self.skip_in = nn.Linear(2 * self.steps, c_skip)
        layers, steps = [], self.steps
        for i in range(config.n_layers):
            layers.append(MTGNNLayer(config, dilation=config.dilation_exponential**i, steps_in=steps))
            steps = layers[-1].steps
        self.layers = nn.ModuleList(layers)
        self.skip_out = nn.Linear(c * steps, c_skip)
        self.end = nn.Sequential(
            nn.ReLU(),
            nn.Linear(c_skip, config.end_channels),
            nn.ReLU(),
            nn.Linear(config.end_channels, horizon * n_outputs),
        )

    def forward(self, x: Tensor, *, ids: Tensor) -> Tensor:
        """Map ``x`` ``[B, S, L]`` of the series ``ids`` ``[B, S]`` to ``[B, S, H, O]``."""
        check_ids(ids, self.n_series, x)
        graph = top_k_graph(
            torch.tanh(self.alpha * self.theta_source(self.source(ids))),  # [B, S, d]
            torch.tanh(self.alpha * self.theta_target(self.target(ids))),
            self.k,
            self.alpha,
        )
        b, s, length = x.shape
        h = value_and_indicator(x.reshape(b * s, length))  # [B*S, L, 2]
        h = F.pad(h, (0, 0, self.steps - length, 0))  # front-pad to the receptive field: [B*S, T, 2]
        skip = self.skip_in(h.transpose(1, 2).reshape(b, s, -1))  # [B*S, 2, T] -> [B, S, 2*T] -> [B, S, C_s]
        h = self.start(h).transpose(1, 2).reshape(b, s, -1, self.steps)  # [B*S, T, C] -> [B, S, C, T]
        for layer in self.layers:
            h, layer_skip = self.run_block(layer, h, graph)
            skip = skip + layer_skip
        skip = skip + self.skip_out(h.flatten(2))  # [B, S, C*T'] -> [B, S, C_s]
        out: Tensor = self.end(skip)  # [B, S, H*O]
        return out.reshape(b, s, self.horizon, self.n_outputs)
