"""A spiking neural network of leaky integrate-and-fire neurons, trained with surrogate gradients.

Following Neftci, Mostafa and Zenke ("Surrogate Gradient Learning in Spiking Neural Networks", IEEE Signal
Processing Magazine, 2019): the window is fed step by step as input current into layers of LIF neurons
(``zoo/blocks/spiking.py``); each layer's spikes drive the next; the forward pass uses exact spikes and the
backward pass the fast-sigmoid surrogate. A linear read-out maps the last layer's membrane potentials after the
final step (a continuous summary of the spike history) to the horizon.

Each step's input is the value, standardised by the window's own mean and scale (``zoo/blocks/norm.py``), and
whether the strategy traded (``value_and_indicator``): a flat week is a distinct input, not a small current.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Self

from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import to_horizon, value_and_indicator
from stratcast.daemon.zoo.blocks.norm import restore_level, standardize
from stratcast.daemon.zoo.blocks.spiking import LIFLayer
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class SNNConfig(ModelConfig):
    """Spiking network architecture."""

    hidden_size: int = param(
        128, lo=1, hi=4096, search=among(32, 64, 128, 256), help="LIF neurons in every spiking layer"
    )
    num_layers: int = param(2, lo=1, hi=8, search=ints(1, 3), help="spiking layers")
    beta: float = param(0.9, lo=0.0, hi=1.0, search=floats(0.5, 0.99), help="membrane decay per step")
    threshold: float = param(1.0, lo=0.01, hi=10.0, search=floats(0.25, 2.0, log=True), help="firing threshold")
    slope: float = param(
        10.0, lo=0.1, hi=100.0, search=floats(1.0, 50.0, log=True), help="steepness of the fast-sigmoid surrogate"
    )

    @classmethod
    def tiny(cls) -> Self:
        """One spiking layer of 32 neurons (fewer cannot fit the harness's batch: spikes carry little each)."""
        return cls(hidden_size=32, num_layers=1)


class SNN(nn.Module):
    """Window as input current through LIF layers, membrane potentials read out to the horizon."""

    def __init__(self, config: SNNConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        sizes = [2] + [config.hidden_size] * config.num_layers
        self.layers = nn.ModuleList(
            LIFLayer(a, b, beta=config.beta, threshold=config.threshold, slope=config.slope)
            for a, b in itertools.pairwise(sizes)
        )
        self.readout = nn.Linear(config.hidden_size, horizon * n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        normed, mean, std = standardize(x)
        h = value_and_indicator(x, value=normed)  # [B, L, 2]
        potential = h[:, 0]  # replaced by the first layer
        for layer in self.layers:
            h, potential = layer(h)  # [B, L, N], [B, N]
        out = to_horizon(self.readout(potential), self.horizon, self.n_outputs)
        return restore_level(out, mean, std)
