"""NLinear forecasts relative to the window's last value: a shifted window gets a shifted location."""

from __future__ import annotations

import torch

from stratcast.daemon.zoo.models.nlinear import NLinear, NLinearConfig


def test_a_window_shifted_by_c_moves_the_location_by_c_and_leaves_the_other_outputs() -> None:
    torch.manual_seed(0)
    model = NLinear(NLinearConfig(), input_size=12, horizon=5, n_outputs=3)
    x = torch.randn(7, 12, dtype=torch.float64)
    model.double()
    base, shifted = model(x), model(x + 2.5)
    torch.testing.assert_close(shifted[..., 0], base[..., 0] + 2.5)
    torch.testing.assert_close(shifted[..., 1:], base[..., 1:])


def test_a_flat_window_is_forecast_at_its_level_plus_the_bias() -> None:
    model = NLinear(NLinearConfig(), input_size=8, horizon=4)
    flat = torch.full((2, 8), 3.0)
    expected = 3.0 + model.linear.bias.detach().view(1, 4)  # [H*O] -> [1, H] with O = 1
    torch.testing.assert_close(model(flat)[..., 0], expected.expand(2, 4))
