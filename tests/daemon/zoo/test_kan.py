"""KAN's B-spline basis (a partition of unity on the grid, local support) and its edges' base term off the grid."""

from __future__ import annotations

import torch

from stratcast.daemon.zoo.blocks.basis import KANLayer, bspline_basis, uniform_knots


def test_bspline_basis_sums_to_one_on_the_grid_and_is_nonnegative():
    knots = uniform_knots(grid_size=5, order=3, grid_range=2.0)
    x = torch.linspace(-2.0, 1.999, 101, dtype=torch.float64)
    basis = bspline_basis(x, knots, 3)
    assert basis.shape == (101, 5 + 3)
    assert bool((basis >= 0).all())
    torch.testing.assert_close(basis.sum(-1), torch.ones(101, dtype=torch.float64))


def test_each_point_touches_at_most_order_plus_one_splines():
    knots = uniform_knots(grid_size=6, order=2, grid_range=1.0)
    basis = bspline_basis(torch.linspace(-1.0, 0.999, 50), knots, 2)
    assert int((basis > 0).sum(-1).max()) <= 3


def test_off_the_grid_a_kan_edge_is_its_base_term_alone():
    torch.manual_seed(0)
    layer = KANLayer(3, 2, grid_size=4, order=3, grid_range=1.0)
    x = torch.tensor([[5.0, -7.0, 9.0]])  # beyond the extended knots on both sides
    assert bool((bspline_basis(x, layer.knots, 3) == 0).all())
    torch.testing.assert_close(layer(x), layer.base(torch.nn.functional.silu(x)))


def test_spline_coefficients_shape_the_edge_function_on_the_grid():
    torch.manual_seed(0)
    layer = KANLayer(1, 1, grid_size=4, order=3, grid_range=1.0)
    x = torch.linspace(-0.9, 0.9, 7)[:, None]
    before = layer(x)
    with torch.no_grad():
        layer.spline.add_(1.0)  # every basis function up by one: on the grid the edge rises by exactly one
    torch.testing.assert_close(layer(x), before + 1.0)
