"""The RBF units: a window at a centre answers one, and the answer falls with distance as the width says."""

from __future__ import annotations

import math

import torch

from stratcast.daemon.zoo.blocks.basis import GaussianRBF


def test_a_window_at_a_centre_answers_one_and_farther_windows_less():
    torch.manual_seed(0)
    units = GaussianRBF(6, 3, width=1.0)
    centre = units.centres[1].detach().clone()
    near, far = centre + 0.5, centre + 2.0
    with torch.no_grad():
        out = units(torch.stack([centre, near, far]))[:, 1]
    torch.testing.assert_close(out[0], torch.tensor(1.0))
    assert 1.0 > float(out[1]) > float(out[2]) > 0.0


def test_the_activation_is_gaussian_in_the_root_mean_square_distance():
    units = GaussianRBF(4, 1, width=0.5)
    with torch.no_grad():
        units.centres.zero_()
    x = torch.full((1, 4), 0.3)  # root mean square distance 0.3 from the centre
    expected = math.exp(-(0.3**2) / (2 * 0.5**2))
    torch.testing.assert_close(units(x), torch.tensor([[expected]]))


def test_normalised_units_are_the_plain_ones_divided_by_their_mean():
    torch.manual_seed(0)
    plain = GaussianRBF(5, 7, width=0.8)
    normalised = GaussianRBF(5, 7, width=0.8, normalised=True)
    normalised.load_state_dict(plain.state_dict())
    x = torch.randn(3, 5, dtype=torch.float64)
    plain.double(), normalised.double()
    activations = plain(x)
    torch.testing.assert_close(normalised(x), activations / activations.mean(-1, keepdim=True))
