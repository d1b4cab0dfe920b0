"""Basis-function layers: B-splines on a fixed grid (KAN's edges) and Gaussian radial basis units (RBF networks).

Both are plain tensor arithmetic (comparisons, products, sums): no data-dependent control flow, so models built
from them run under ``torch.func.vmap``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def uniform_knots(grid_size: int, order: int, grid_range: float) -> Tensor:
    """Knots of ``grid_size`` equal intervals over ``[-grid_range, grid_range]``, plus ``order`` past each end.

    The extension lets ``grid_size + order`` B-splines of degree ``order`` cover the whole grid.

    Returns:
        ``[grid_size + 2 * order + 1]`` increasing knots.
    """
    step = 2 * grid_range / grid_size
    return (torch.arange(-order, grid_size + order + 1, dtype=torch.float32) * step) - grid_range


def bspline_basis(x: Tensor, knots: Tensor, order: int) -> Tensor:
    """Every B-spline of degree ``order`` on ``knots`` at ``x``, by the Cox-de Boor recursion.

    Args:
        x: ``[...]`` points.
        knots: ``[K]`` increasing knots (:func:`uniform_knots`).
        order: spline degree (0: indicator of each knot interval; 3: cubic).

    Returns:
        ``[..., K - 1 - order]`` basis values; zero outside ``[knots[0], knots[-1])``, summing to one on the grid
        proper (between ``knots[order]`` and ``knots[-1 - order]``).
    """
    t = knots.to(x.dtype)
    u = x.unsqueeze(-1)  # [...] -> [..., 1]: against every knot interval
    basis = ((u >= t[:-1]) & (u < t[1:])).to(x.dtype)  # [..., K - 1]
    for p in range(1, order + 1):
        left = (u - t[: -(p + 1)]) / (t[p:-1] - t[: -(p + 1)])
        right = (t[p + 1 :] - u) / (t[p + 1 :] - t[1:-p])
        basis = left * basis[..., :-1] + right * basis[..., 1:]  # [..., K - p] -> [..., K - 1 - p]
    return basis


class KANLayer(nn.Module):
    """One Kolmogorov-Arnold layer: every edge ``i -> o`` carries its own univariate function, summed at ``o``.

    ``phi_oi(x) = w_oi * silu(x) + sum_c c_oic * B_c(x)`` (Liu et al., 2024, eq. 2.10): a SiLU base term plus a
    B-spline of degree ``order`` on a fixed uniform grid. Outside the grid the spline vanishes and the base term
    carries the edge.
    """

    def __init__(self, d_in: int, d_out: int, *, grid_size: int, order: int, grid_range: float) -> None:
        super().__init__()
        self.order = order
        self.knots = uniform_knots(grid_size, order, grid_range)  # not a buffer: fixed, and stacking would copy it
        self.base = nn.Linear(d_in, d_out)
        # small spline coefficients: each edge starts close to its base term, as the paper initialises
        self.spline = nn.Parameter(torch.randn(d_out, d_in, grid_size + order) * (0.1 / math.sqrt(d_in)))

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[..., d_in]`` to ``[..., d_out]``."""
        if self.knots.device != x.device:  # kept where the inputs are: no copy per call once moved
            self.knots = self.knots.to(x.device)
        basis = bspline_basis(x, self.knots, self.order)  # [..., d_in] -> [..., d_in, C]
        spline = torch.einsum("...ic,oic->...o", basis, self.spline)
        out: Tensor = self.base(F.silu(x)) + spline
        return out


class GaussianRBF(nn.Module):
    """Gaussian radial basis units with learnable centres and widths (Broomhead and Lowe, 1988).

    Unit ``k`` answers ``exp(-d_k(x)^2 / (2 sigma_k^2))`` with ``d_k`` the root mean square distance between ``x``
    and its centre: averaged over the ``d_in`` coordinates, so a width means the same for any window length.

    ``normalised`` divides every activation by their mean over the units (the normalised units of Moody and Darken,
    "Fast Learning in Networks of Locally-Tuned Processing Units", Neural Computation, 1989): a soft assignment of
    the input to its nearest centres, free of the factor ``exp(-|x|^2 / ...)`` that all units share. In many
    dimensions all distances are alike, so plain units answer nearly the same everywhere and a read-out needs huge
    weights to tell them apart; normalised ones stay distinct and train far faster by gradient descent.
    """

    def __init__(self, d_in: int, n_units: int, *, width: float, normalised: bool = False) -> None:
        super().__init__()
        self.normalised = normalised
        self.centres = nn.Parameter(torch.randn(n_units, d_in))
        self.log_width = nn.Parameter(torch.full((n_units,), math.log(width)))

    def squared_distance(self, x: Tensor) -> Tensor:
        """Mean squared distance of ``[..., d_in]`` to every centre: ``[..., n_units]``."""
        c = self.centres
        # |x|^2 - 2 x.c + |c|^2: one matmul instead of a [..., n_units, d_in] difference tensor
        cross = x @ c.T  # [..., d_in] @ [d_in, K] -> [..., K]
        total = x.square().sum(-1, keepdim=True) - 2 * cross + c.square().sum(-1)
        return total.clamp_min(0.0) / x.shape[-1]

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[..., d_in]`` to unit activations ``[..., n_units]``: in ``(0, 1]``, or averaging one if normalised."""
        logits = -self.squared_distance(x) / (2 * torch.exp(2 * self.log_width))
        if self.normalised:
            # a softmax is the normalisation computed stably: the shared factor cancels before any exp
            return torch.softmax(logits, dim=-1) * logits.shape[-1]
        return torch.exp(logits)
