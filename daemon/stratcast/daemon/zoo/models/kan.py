"""KAN (Liu et al., "KAN: Kolmogorov-Arnold Networks", 2024).

Where an MLP puts fixed activations on nodes and learnable weights on edges, a Kolmogorov-Arnold network puts a
learnable univariate function on every edge and only sums at the nodes. Each function is a SiLU base term plus a
B-spline on a fixed uniform grid (``blocks/basis.py``). Here the layers run from the input window (``L`` inputs)
through ``hidden_sizes`` to the ``H * O`` outputs of the horizon. The paper's grid extension and pruning are left
out: the grid is fixed, and series the engine has scaled fall mostly inside ``[-grid_range, grid_range]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Self

from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.basis import KANLayer
from stratcast.daemon.zoo.blocks.layers import to_horizon
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class KANConfig(ModelConfig):
    """KAN architecture."""

    hidden_sizes: tuple[int, ...] = param(
        (64,),
        lo=1,
        hi=4096,
        search=among((32,), (64,), (128,), (64, 64)),
        help="widths of the hidden KAN layers, input side first (empty: one layer from window to horizon)",
    )
    grid_size: int = param(5, lo=1, hi=100, search=ints(3, 10), help="intervals of each edge's spline grid")
    spline_order: int = param(3, lo=0, hi=5, search=ints(1, 3), help="degree of the B-splines (3: cubic)")
    grid_range: float = param(
        3.0, lo=0.1, hi=100.0, search=floats(1.0, 5.0), help="the spline grid spans [-grid_range, grid_range]"
    )

    @classmethod
    def tiny(cls) -> Self:
        """One narrow hidden layer on a coarse grid."""
        return cls(hidden_sizes=(8,), grid_size=3)


class KAN(nn.Module):
    """Window in, horizon out, through stacked :class:`KANLayer` s."""

    def __init__(self, config: KANConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        widths = (input_size, *config.hidden_sizes, horizon * n_outputs)
        self.layers = nn.Sequential(
            *(
                KANLayer(
                    d_in, d_out, grid_size=config.grid_size, order=config.spline_order, grid_range=config.grid_range
                )
                for d_in, d_out in pairwise(widths)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        flat: Tensor = self.layers(x)
        return to_horizon(flat, self.horizon, self.n_outputs)
