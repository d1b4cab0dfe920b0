"""Real FFTs for the zoo's Fourier blocks (FITS, FEDformer, Autoformer, TimesNet, StemGNN, TimeMixer).

Training runs under bf16 autocast on CUDA (precision ``auto``), so a block's activations arrive in bf16, and
``torch.fft.rfft`` refuses bf16 and fp16 inputs ("Unsupported dtype BFloat16", torch 2.13; cuFFT's half-precision
path takes only power-of-two lengths anyway). CUDA autocast does not cast FFTs to float32 (CPU autocast does), so a
block that calls ``torch.fft`` directly works on the CPU and fails on the GPU. These wrappers transform in float32
(float64 stays float64) with autocast off inside, so the same block runs at any precision on any device. There is
no bf16 complex dtype: a spectrum is complex64, and :func:`irfft` casts back to the dtype the caller names.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rfft(x: Tensor, n: int | None = None, dim: int = -1) -> Tensor:
    """``torch.fft.rfft`` of real ``x`` in float32 (or float64): complex64 (complex128) whatever ``x``'s precision.

    Args:
        x: Real input of any floating dtype.
        n: Signal length (``x`` is cut or zero-padded to it); ``x.shape[dim]`` when None.
        dim: The dimension to transform.

    Returns:
        The ``n // 2 + 1`` nonnegative-frequency coefficients along ``dim``.
    """
    with torch.autocast(x.device.type, enabled=False):
        spectrum: Tensor = torch.fft.rfft(x.to(_working(x.dtype)), n=n, dim=dim)
    return spectrum


def irfft(z: Tensor, n: int, dim: int = -1, dtype: torch.dtype | None = None) -> Tensor:
    """``torch.fft.irfft`` of the spectrum ``z`` in complex64 (or complex128), cast to ``dtype``.

    Args:
        z: Nonnegative-frequency coefficients along ``dim``, as :func:`rfft` gives them.
        n: Output signal length (always give it: it cannot be told from ``z`` alone when it is odd).
        dim: The dimension to transform.
        dtype: The real dtype to return (the caller's activations' dtype under autocast); float32 (or float64 for
            a complex128 ``z``) when None.

    Returns:
        The real signal of length ``n`` along ``dim``.
    """
    working = torch.complex128 if z.dtype == torch.complex128 else torch.complex64
    with torch.autocast(z.device.type, enabled=False):
        out: Tensor = torch.fft.irfft(z.to(working), n=n, dim=dim)
    return out if dtype is None else out.to(dtype)


def _working(dtype: torch.dtype) -> torch.dtype:
    """The real dtype an FFT runs in: float64 stays, everything narrower is widened to float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
