"""RBF network: Gaussian radial basis units over the window and a linear read-out to the horizon.

Broomhead and Lowe, "Multivariable Functional Interpolation and Adaptive Networks", Complex Systems, 1988.

One hidden layer of Gaussian radial basis units over the input window, each answering how close the window is to
its centre, and a linear read-out from those activations to the ``H * O`` outputs of the horizon. As in the
paper's adaptive variant the centres (initialised at random) and the widths are learnt with the read-out. Distances
are root mean squares over the window (``blocks/basis.py``), so a width is in the units of the series the engine
has scaled, whatever the window length. By default the units are normalised (Moody and Darken, 1989: each
activation divided by their mean), which gradient descent trains far faster than the plain units of an
interpolating network fitted by least squares, as the paper's was (see ``GaussianRBF``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.basis import GaussianRBF
from stratcast.daemon.zoo.blocks.layers import to_horizon
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats


@dataclass(frozen=True, kw_only=True)
class RBFConfig(ModelConfig):
    """RBF network architecture."""

    n_centres: int = param(
        256, lo=1, hi=16384, search=among(64, 128, 256, 512, 1024), help="number of Gaussian radial basis units"
    )
    init_width: float = param(
        0.5,
        lo=1e-3,
        hi=100.0,
        search=floats(0.3, 3.0, log=True),
        help="initial width of every unit, in root-mean-square distance over the window",
    )
    normalised: bool = param(
        True,
        choices=(False, True),
        search=among(False, True),
        help="divide the activations by their mean over the units (Moody and Darken's normalised units)",
    )

    @classmethod
    def tiny(cls) -> Self:
        """Thirty-two units."""
        return cls(n_centres=32)


class RBF(nn.Module):
    """Gaussian radial basis units over the window, then a linear read-out to the horizon."""

    def __init__(self, config: RBFConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        self.units = GaussianRBF(input_size, config.n_centres, width=config.init_width, normalised=config.normalised)
        self.readout = nn.Linear(config.n_centres, horizon * n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        flat: Tensor = self.readout(self.units(x))
        return to_horizon(flat, self.horizon, self.n_outputs)
