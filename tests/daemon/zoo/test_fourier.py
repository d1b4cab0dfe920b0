"""The zoo's Fourier helpers: FFTs in float32 whatever the caller's precision or autocast."""

import pytest
import torch
from torch import nn

from stratcast.daemon.zoo.blocks.fourier import irfft, rfft


def windows() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 24, generator=g)


def test_plain_rfft_refuses_a_bf16_input_that_the_helper_transforms_in_float32() -> None:
    x = windows().bfloat16()
    with pytest.raises(RuntimeError, match="Unsupported dtype BFloat16"):
        torch.fft.rfft(x)  # what a bf16 activation meets on CUDA, whose autocast leaves FFTs alone
    spectrum = rfft(x)
    assert spectrum.dtype == torch.complex64
    assert torch.allclose(spectrum, torch.fft.rfft(x.float()))


def test_under_bf16_autocast_the_helpers_match_float32_and_give_back_the_callers_dtype() -> None:
    x, mix = windows(), nn.Linear(24, 24)
    with torch.no_grad():
        reference = torch.fft.irfft(torch.fft.rfft(mix(x)) * 0.5, n=24)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = mix(x)  # a bf16 activation, as a block inside the model sees it
            assert h.dtype == torch.bfloat16
            out = irfft(rfft(h) * 0.5, n=24, dtype=h.dtype)
    assert out.dtype == torch.bfloat16 and out.shape == (8, 24)
    assert torch.allclose(out.float(), reference, atol=0.05, rtol=0.02)  # bf16's 8-bit mantissa


def test_irfft_keeps_float32_by_default_and_the_round_trip_is_the_identity() -> None:
    x = windows()
    out = irfft(rfft(x), n=24)
    assert out.dtype == torch.float32
    assert torch.allclose(out, x, atol=1e-5)


def test_the_helpers_keep_float64_in_float64() -> None:
    x = windows().double()
    assert rfft(x).dtype == torch.complex128
    assert irfft(rfft(x), n=24).dtype == torch.float64
