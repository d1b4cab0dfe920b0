"""TSMixer with instance normalisation: a window scaled and shifted gets its location scaled and shifted alike."""

from __future__ import annotations

import torch

from stratcast.daemon.zoo.models.tsmixer import TSMixer, TSMixerConfig


def test_scaling_and_shifting_a_window_scales_and_shifts_the_location_only() -> None:
    torch.manual_seed(0)
    mixer = TSMixer(TSMixerConfig.tiny(), input_size=16, horizon=4, n_outputs=2).double().eval()
    x = 1.0 + torch.rand(5, 16, dtype=torch.float64)  # no zeros: the nonzero indicator stays the same
    base, moved = mixer(x), mixer(3.0 * x + 2.0)
    torch.testing.assert_close(moved[..., 0], 3.0 * base[..., 0] + 2.0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(moved[..., 1], base[..., 1], rtol=1e-4, atol=1e-4)


def test_flat_weeks_are_told_apart_from_small_values() -> None:
    torch.manual_seed(0)
    mixer = TSMixer(TSMixerConfig.tiny(), input_size=16, horizon=4).double().eval()
    x = torch.randn(2, 16, dtype=torch.float64)
    nudged = x.clone()
    nudged[:, :4] = 0.0
    almost = x.clone()
    almost[:, :4] = 1e-9  # the same values to within rounding, but traded
    assert not torch.allclose(mixer(nudged), mixer(almost))
