"""TimesNet (Wu, Hu, Liu, Zhou, Wang and Long, ICLR 2023).

"TimesNet: Temporal 2D-Variation Modeling for General Time Series Analysis".

The window is standardised (reversible instance normalisation), each step embedded as ``D`` features (its value and
its nonzero indicator, ``zoo/blocks/layers.py``), and extended from ``L`` to ``L + H`` steps by a linear map across
time. Each TimesBlock finds the ``k`` strongest periods of its input from the FFT amplitudes (``zoo/blocks/
fourier.py``: in float32 under bf16), folds the 1-D sequence into a 2-D ``[cycles, period]`` grid per period (zero
padded to whole cycles), runs an inception block (2-D convolutions of several kernel sizes, averaged) over the
grid, unfolds it, and sums the ``k`` branches weighted by the softmax of their amplitudes, as a residual followed by a
layer norm. A linear read-out maps the last ``H`` steps' features to the ``O`` outputs.

The paper averages the amplitudes over the batch, so one period serves every window; that would make a window's
forecast depend on the other windows of its batch, which the contract forbids. Here each window picks its own
periods, and windows that picked the same period are folded and convolved together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.fourier import rfft
from stratcast.daemon.zoo.blocks.layers import value_and_indicator
from stratcast.daemon.zoo.blocks.norm import normalised
from stratcast.daemon.zoo.contract import ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints


@dataclass(frozen=True, kw_only=True)
class TimesNetConfig(ModelConfig):
    """TimesNet architecture."""

    d_model: int = param(16, lo=1, hi=512, search=among(8, 16, 32), help="features per step")
    d_ff: int = param(32, lo=1, hi=2048, search=among(16, 32, 64), help="channels inside the inception block")
    n_layers: int = param(2, lo=1, hi=8, search=ints(1, 3), help="TimesBlocks")
    top_k: int = param(3, lo=1, hi=16, search=ints(1, 5), help="strongest periods each window is folded by")
    n_kernels: int = param(3, lo=1, hi=8, search=ints(2, 6), help="inception kernel sizes: 1, 3, 5, ...")
    dropout: float = param(0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.3), help="dropout after each TimesBlock")
    instance_norm: bool = param(
        True,
        choices=(False, True),
        search=among(False, True),
        help="standardise each window by its own mean and std, and return them to the forecast",
    )

    @classmethod
    def tiny(cls) -> Self:
        """One block, one period per window, four features, two kernel sizes."""
        return cls(d_model=4, d_ff=4, n_layers=1, top_k=1, n_kernels=2)


class Inception(nn.Module):
    """2-D convolutions with kernels 1, 3, 5, ... (same padding) over one grid, their outputs averaged."""

    def __init__(self, n_in: int, n_out: int, n_kernels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(n_in, n_out, 2 * i + 1, padding=i) for i in range(n_kernels))

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, C_in, R, P]`` to ``[B, C_out, R, P]``."""
        return torch.stack([conv(x) for conv in self.convs], dim=-1).mean(-1)  # k x [B, C, R, P] -> [B, C, R, P]


def top_periods(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Each window's ``k`` strongest periods and their amplitudes, from ``x`` [B, T, D].

    Returns:
        ``(periods [B, k] long, amplitudes [B, k] in x's dtype)``; the zero frequency (the level) is never chosen.
    """
    amplitude = rfft(x, dim=1).abs().mean(-1).to(x.dtype)  # [B, T//2 + 1, D] -> [B, F]
    k = min(k, amplitude.shape[1] - 1)
    top = amplitude[:, 1:].detach().topk(k, dim=1).indices + 1  # [B, k] frequencies >= 1
    return x.shape[1] // top, amplitude.gather(1, top)


class TimesBlock(nn.Module):
    """Fold by each window's top-k periods, inception over the 2-D grids, unfold, amplitude-weighted sum."""

    def __init__(self, config: TimesNetConfig) -> None:
        super().__init__()
        self.k = config.top_k
        self.conv: nn.Module = nn.Sequential(
            Inception(config.d_model, config.d_ff, config.n_kernels),
            nn.GELU(),
            Inception(config.d_ff, config.d_model, config.n_kernels),
        )
        self.norm = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, T, D]`` to ``[B, T, D]``."""
        periods, amplitudes = top_periods(x, self.k)
        branches = torch.stack([self.branch(x, periods[:, i]) for i in range(periods.shape[1])], -1)  # [B, T, D, k]
        weights = amplitudes.softmax(-1)[:, None, None, :]  # [B, k] -> [B, 1, 1, k]
        out: Tensor = self.norm(x + self.dropout((branches * weights).sum(-1)))
        return out

    def branch(self, x: Tensor, periods: Tensor) -> Tensor:
        """One branch ``[B, T, D]``: every window folded by its own period; windows sharing one go together."""
        out = torch.zeros_like(x)
        for period in sorted(set(periods.tolist())):  # data-dependent: the reason TimesNet cannot run under vmap
            rows = (periods == period).nonzero().squeeze(1)
            out = out.index_copy(0, rows, self.fold_conv(x[rows], period))
        return out

    def fold_conv(self, x: Tensor, period: int) -> Tensor:
        """Fold ``x`` [n, T, D] into ``[n, D, cycles, period]``, convolve, and unfold back to ``[n, T, D]``."""
        n, length, d = x.shape
        cycles = -(-length // period)
        padded = F.pad(x, (0, 0, 0, cycles * period - length))  # [n, T, D] -> [n, cycles * period, D]
        grid = padded.reshape(n, cycles, period, d).permute(0, 3, 1, 2)  # -> [n, D, cycles, period]
        conv: Tensor = self.conv(grid).permute(0, 2, 3, 1)  # [n, D, cycles, period] -> [n, cycles, period, D]
        return conv.reshape(n, cycles * period, d)[:, :length]  # -> [n, cycles * period, D] -> [n, T, D]


class TimesNet(nn.Module):
    """Embedded window extended to ``L + H`` steps, TimesBlocks, linear read-out of the last ``H`` steps."""

    def __init__(self, config: TimesNetConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon = horizon
        self.instance_norm = config.instance_norm
        self.embed = nn.Linear(2, config.d_model)
        self.extend = nn.Linear(input_size, input_size + horizon)
        self.blocks = nn.ModuleList(TimesBlock(config) for _ in range(config.n_layers))
        self.readout = nn.Linear(config.d_model, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        return normalised(self.fold, x, enabled=self.instance_norm)

    def fold(self, z: Tensor, x: Tensor) -> Tensor:
        """The forecast ``[B, H, O]`` from standardised windows ``z`` and raw windows ``x`` (for the zeros)."""
        hidden = self.embed(value_and_indicator(x, value=z))  # [B, L, 2] -> [B, L, D]
        hidden = self.extend(hidden.transpose(1, 2)).transpose(1, 2)  # [B, D, L] -> [B, D, L + H] -> [B, L + H, D]
        for block in self.blocks:
            hidden = block(hidden)
        out: Tensor = self.readout(hidden[:, -self.horizon :])  # [B, H, D] -> [B, H, O]
        return out
