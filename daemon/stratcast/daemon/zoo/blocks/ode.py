"""A fixed-step fourth-order Runge-Kutta solver, differentiated by plain backpropagation through its steps.

Neural ODEs (Chen et al., NeurIPS 2018) integrate a learned vector field ``dz/dt = f(z)``. The paper offers the
adjoint method to save memory on long, adaptive solves; a horizon of at most 52 fixed steps is short enough that
backpropagating through the solver's own operations costs little and gives the exact gradient of what was solved.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

VectorField = Callable[[Tensor], Tensor]
"""``f(z)``: the time derivative of a state ``z`` [..., D], of the same shape (autonomous: no ``t`` argument)."""


def rk4_step(f: VectorField, z: Tensor, dt: float) -> Tensor:
    """One classical Runge-Kutta step of size ``dt`` from ``z``."""
    k1 = f(z)
    k2 = f(z + 0.5 * dt * k1)
    k3 = f(z + 0.5 * dt * k2)
    k4 = f(z + dt * k3)
    return z + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def odeint_rk4(f: VectorField, z0: Tensor, *, n_points: int, dt: float, substeps: int = 1) -> Tensor:
    """Integrate ``dz/dt = f(z)`` from ``z0`` [B, D] and return the states at ``t = dt, 2 dt, ..., n_points dt``.

    Args:
        f: The vector field.
        z0: The state at ``t = 0``.
        n_points: How many output times.
        dt: The spacing of the output times.
        substeps: RK4 steps between two output times (a finer solve of the same trajectory).

    Returns:
        ``[B, n_points, D]``: the state at each output time (``z0`` itself is not included).
    """
    h = dt / substeps
    states: list[Tensor] = []
    z = z0
    for _ in range(n_points):
        for _ in range(substeps):
            z = rk4_step(f, z, h)
        states.append(z)
    return torch.stack(states, dim=1)  # n_points x [B, D] -> [B, n_points, D]
