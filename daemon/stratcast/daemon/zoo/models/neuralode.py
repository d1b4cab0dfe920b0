"""Neural ODE (Chen, Rubanova, Bettencourt and Duvenaud, "Neural Ordinary Differential Equations", NeurIPS 2018).

The forecast is a trajectory in a latent space: an MLP encodes the window into the latent state at the forecast
origin, a learned vector field ``dz/dt = f(z)`` (an MLP) carries it forward, and a fixed-step RK4 solver
(``zoo/blocks/ode.py``) evaluates it at one unit of time per horizon step; a linear decoder reads each step's
latent state as that step's outputs. Because the field is one smooth function of the state, consecutive steps of
the forecast follow one continuous path rather than being predicted independently.

Each window is standardised by its own mean and scale first (as FITS and TSMixer do, ``zoo/blocks/norm.py``), so
the field models the shape of the path and the level returns afterwards. The solver is differentiated by plain
backpropagation through its steps (the paper's adjoint method saves memory on long solves; a horizon of at most
52 steps does not need it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import mlp
from stratcast.daemon.zoo.blocks.norm import restore_level, standardize
from stratcast.daemon.zoo.blocks.ode import odeint_rk4
from stratcast.daemon.zoo.contract import ACTIVATIONS, ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class NeuralODEConfig(ModelConfig):
    """Neural ODE architecture."""

    latent_size: int = param(32, lo=1, hi=1024, search=among(8, 16, 32, 64), help="size of the latent state")
    encoder_hidden: int = param(
        128, lo=1, hi=4096, search=among(64, 128, 256, 512), help="width of the encoder's hidden layer"
    )
    field_hidden: int = param(
        64, lo=1, hi=4096, search=among(32, 64, 128), help="width of the vector field's hidden layer"
    )
    substeps: int = param(1, lo=1, hi=16, search=ints(1, 4), help="RK4 steps per horizon step")
    dropout: float = param(0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.5), help="dropout in the encoder")
    activation: str = param(
        "tanh", choices=ACTIVATIONS, search=among(*ACTIVATIONS), help="nonlinearity of the encoder and the field"
    )

    @classmethod
    def tiny(cls) -> Self:
        """A small latent state, narrow encoder and field, one RK4 step per horizon step."""
        return cls(latent_size=4, encoder_hidden=8, field_hidden=8, dropout=0.0)


class NeuralODE(nn.Module):
    """Encode the window to a latent state, integrate a learned field over the horizon, decode every step."""

    def __init__(self, config: NeuralODEConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.substeps = horizon, config.substeps
        self.encoder = nn.Sequential(
            mlp(input_size, (config.encoder_hidden,), act=config.activation, dropout=config.dropout),
            nn.Linear(config.encoder_hidden, config.latent_size),
        )
        self.field = nn.Sequential(
            mlp(config.latent_size, (config.field_hidden,), act=config.activation, dropout=0.0),
            nn.Linear(config.field_hidden, config.latent_size),
        )
        self.decoder = nn.Linear(config.latent_size, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        normed, mean, std = standardize(x)
        z0 = self.encoder(normed)  # [B, D]
        path = odeint_rk4(self.field, z0, n_points=self.horizon, dt=1.0, substeps=self.substeps)  # [B, H, D]
        return restore_level(self.decoder(path), mean, std)
