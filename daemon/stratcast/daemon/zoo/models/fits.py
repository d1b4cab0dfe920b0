"""FITS (Xu, Zeng and Xu, "FITS: Modeling Time Series with 10k Parameters", ICLR 2024).

FITS forecasts by interpolating in the frequency domain. The window is standardised (reversible instance
normalisation), transformed with a real FFT, and cut by a low-pass filter to its first ``cutoff`` coefficients (the
mean term included): the high band of a short, noisy weekly series is mostly noise. One complex-valued linear
layer maps those ``cutoff`` coefficients to ``cutoff * (L + H) / L`` coefficients of a signal ``L + H`` long, the
spectrum of the window and its continuation at a finer frequency resolution; the inverse FFT (the rest of the
spectrum zero) gives that signal, scaled by ``(L + H) / L`` to keep its amplitude, and its last ``H`` steps are the
forecast.

The complex weights are kept as pairs of real tensors (real and imaginary parts): torch's fused AdamW refuses
complex parameters, and real pairs stack under ``torch.func.vmap`` like any other weight. The spectral work runs in
float32 with autocast off (see ``zoo/blocks/fourier.py``), so bf16 training reaches it in full precision. With
``O`` outputs per step the layer produces ``O`` spectra; the window's mean and scale return to the location output
(``zoo/blocks/norm.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.fourier import irfft, rfft
from stratcast.daemon.zoo.blocks.norm import normalised
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among


@dataclass(frozen=True, kw_only=True)
class FITSConfig(ModelConfig):
    """FITS architecture."""

    cutoff: int = param(
        14,
        lo=1,
        hi=1024,
        search=among(4, 7, 10, 14, 20, 27),
        help="low-pass cut: FFT coefficients of the window kept, the mean term included (at most L // 2 + 1)",
    )
    instance_norm: bool = param(
        True,
        choices=(False, True),
        search=among(False, True),
        help="standardise each window by its own mean and std, and return them to the forecast",
    )

    @classmethod
    def tiny(cls) -> Self:
        """Eight coefficients: enough for the harness's period-8 sine in a 32-step window."""
        return cls(cutoff=8)


class FITS(nn.Module):
    """Low-pass spectrum of the window, upsampled by a complex linear layer, back to time; the last H steps."""

    def __init__(self, config: FITSConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        self.instance_norm = config.instance_norm
        self.length = input_size + horizon
        self.cut = min(config.cutoff, input_size // 2 + 1)
        self.cut_out = min(self.cut * self.length // input_size, self.length // 2 + 1)
        self.gain = self.length / input_size  # the inverse FFT divides by L + H where the forward one saw L
        bound = 1 / math.sqrt(self.cut)  # nn.Linear's initialisation, for the real and the imaginary part
        # [2, c, O*c']: real and imaginary parts of the complex weight; [2, O*c'] of the complex bias
        self.weight = nn.Parameter(torch.empty(2, self.cut, n_outputs * self.cut_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(2, n_outputs * self.cut_out).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        return normalised(lambda z, _: self.interpolate(z), x, enabled=self.instance_norm)

    def interpolate(self, z: Tensor) -> Tensor:
        """The forecast ``[B, H, O]`` of windows ``z`` [B, L], through the low band of their spectra."""
        with torch.autocast(z.device.type, enabled=False):
            spectrum = rfft(z)[:, : self.cut]  # [B, L // 2 + 1] -> [B, c], complex64
            re, im = spectrum.real, spectrum.imag
            w, b = self.weight.float(), self.bias.float()
            # (re + i im) @ (w0 + i w1) + (b0 + i b1): [B, c] @ [c, O*c'] -> [B, O*c'], each part
            up = torch.complex(re @ w[0] - im @ w[1] + b[0], re @ w[1] + im @ w[0] + b[1])
            up = up.reshape(z.shape[0], self.n_outputs, self.cut_out)  # [B, O*c'] -> [B, O, c']
            signal = irfft(up, n=self.length, dtype=z.dtype) * self.gain  # zero-padded spectrum -> [B, O, L + H]
        return signal[..., -self.horizon :].transpose(1, 2)  # [B, O, H] -> [B, H, O]
