"""A window's level and scale: taken out before a model reads the window, put back into its forecast.

NLinear subtracts the window's last value; FITS and TSMixer standardise each window by its own mean and standard
deviation (reversible instance normalisation, Kim et al., ICLR 2022). Either way the model works on a window
without its level, and the level returns in its forecast.

The model does not know its output head, only its ``O`` outputs per step. Output 0 is the location of every head
but the hurdle's: the point forecast, the lowest quantile (the others are increments above it), the Gaussian's
and the Student-t's location. So the level returns to output 0 only, and the other outputs (raw scales, degrees
of freedom, quantile increments) stay as the model made them. Under the hurdle head output 0 is the zero-week
logit: the level still enters there, a fixed offset the rest of the model learns around.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

EPS = 1e-5
"""Added to a window's variance: an all-zero window (a strategy that did not trade) has none."""


def standardize(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Standardise each window of ``x`` [..., L] by its own mean and standard deviation.

    Returns:
        ``(normalised [..., L], mean [..., 1], std [..., 1])``; :func:`restore_level` undoes it on a forecast.
    """
    mean = x.mean(-1, keepdim=True)
    std = (x.var(-1, keepdim=True, unbiased=False) + EPS).sqrt()
    return (x - mean) / std, mean, std


def restore_level(out: Tensor, level: Tensor, scale: Tensor | None = None) -> Tensor:
    """Put a window's level (and scale) back into the location output of a forecast.

    Args:
        out: The forecast ``[..., H, O]`` in the window's normalised units.
        level: Each window's level ``[..., 1]`` (its mean, or its last value).
        scale: Each window's scale ``[..., 1]``, or None when only the level was taken out.

    Returns:
        ``out`` with output 0 mapped back to the window's units (``* scale + level``), the other outputs unchanged.
    """
    location = out[..., 0] if scale is None else out[..., 0] * scale  # [..., H]
    # [..., H] -> [..., H, 1], beside the untouched outputs: [..., H, O] (no in-place write: vmap and autograd)
    return torch.cat([(location + level).unsqueeze(-1), out[..., 1:]], dim=-1)


def normalised(forecast: Callable[[Tensor, Tensor], Tensor], x: Tensor, *, enabled: bool = True) -> Tensor:
    """``forecast(z, x)`` on windows ``x`` [..., L] standardised to ``z``, its level and scale put back.

    ``forecast`` gets the standardised windows and the raw ones (whose exact zeros mark the weeks without a trade)
    and returns ``[..., H, O]`` in the standardised units. ``enabled=False`` (a model's ``instance_norm`` off)
    calls ``forecast(x, x)`` and returns it as it is.
    """
    if not enabled:
        return forecast(x, x)
    z, mean, std = standardize(x)
    return restore_level(forecast(z, x), mean, std)
