"""FITS: the low-pass cut keeps only the low band, bf16 autocast reaches the spectrum in float32, and its complex
weights are real pairs that the fused AdamW accepts."""

from __future__ import annotations

import math

import pytest
import torch

from stratcast.daemon.zoo.models.fits import FITS, FITSConfig

L, H = 24, 6


def model(cutoff: int = 5, *, instance_norm: bool = False, n_outputs: int = 2) -> FITS:
    torch.manual_seed(0)
    return FITS(FITSConfig(cutoff=cutoff, instance_norm=instance_norm), input_size=L, horizon=H, n_outputs=n_outputs)


def wave(k: int) -> torch.Tensor:
    """A cosine of ``k`` cycles per window: FFT coefficient ``k`` of a window ``L`` long."""
    return torch.cos(2 * math.pi * k * torch.arange(L) / L)


def test_frequencies_at_or_above_the_cutoff_do_not_change_the_forecast() -> None:
    fits = model(cutoff=5)
    x = torch.randn(4, L, generator=torch.Generator().manual_seed(1))
    for k in (5, 8, L // 2):
        torch.testing.assert_close(fits(x + wave(k)), fits(x))


@pytest.mark.parametrize("k", [0, 1, 4])
def test_frequencies_below_the_cutoff_change_the_forecast(k: int) -> None:
    fits = model(cutoff=5)
    x = torch.randn(4, L, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(fits(x + wave(k)), fits(x))


def test_a_cutoff_past_the_spectrum_keeps_every_coefficient() -> None:
    assert model(cutoff=1000).cut == L // 2 + 1


def test_under_bf16_autocast_the_forecast_matches_float32() -> None:
    fits = model(instance_norm=True)
    x = torch.randn(8, L, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = fits(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = fits(x)
    assert low.shape == reference.shape
    torch.testing.assert_close(low.float(), reference, atol=1e-2, rtol=1e-2)


def test_complex_weights_are_real_pairs_that_the_fused_adamw_steps() -> None:
    fits = model()
    assert not any(p.is_complex() for p in fits.parameters())
    optimizer = torch.optim.AdamW(fits.parameters(), lr=1e-2, fused=True)
    before = fits.weight.detach().clone()
    fits(torch.randn(3, L)).square().mean().backward()
    optimizer.step()
    assert not torch.equal(fits.weight, before)
