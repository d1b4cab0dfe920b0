"""Series decomposition: a centred moving average (the trend) and what it leaves (the remainder, or season).

Autoformer introduced the block; DLinear decomposes its window with it once, TimeMixer every scale of every layer,
Autoformer inside every encoder and decoder layer (:class:`SeriesDecomposition`). FEDformer replaces the single
average by a mixture of several (:class:`MixtureDecomposition`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def moving_average(x: Tensor, kernel: int) -> Tensor:
    """The centred ``kernel``-step moving average of ``x`` [..., L] along its last axis, edges replicated."""
    left = (kernel - 1) // 2
    right = kernel - 1 - left
    lead = x.shape[:-1]
    # [..., 1 + left + L + right]: a zero, then the edge-replicated window; its running sum differenced k apart
    # is every window sum at once (a few passes over the batch instead of k)
    padded = torch.cat([x.new_zeros(*lead, 1), x[..., :1].expand(*lead, left), x, x[..., -1:].expand(*lead, right)], -1)
    running = padded.to(_summing(x.dtype)).cumsum(-1)
    return ((running[..., kernel:] - running[..., :-kernel]) / kernel).to(x.dtype)  # [..., L]


def moving_averages(x: Tensor, kernels: tuple[int, ...]) -> Tensor:
    """The centred moving averages of ``x`` [..., L] for several ``kernels`` at once: ``[..., L, K]``.

    Each is :func:`moving_average`'s; one padding and one running sum serve them all.
    """
    lefts = [(k - 1) // 2 for k in kernels]
    left, right = max(lefts), max(k - 1 - a for k, a in zip(kernels, lefts, strict=True))
    lead, n = x.shape[:-1], x.shape[-1]
    padded = torch.cat([x.new_zeros(*lead, 1), x[..., :1].expand(*lead, left), x, x[..., -1:].expand(*lead, right)], -1)
    running = padded.to(_summing(x.dtype)).cumsum(-1)  # [..., 1 + left + L + right]
    # kernel k's window for step t starts at t + left - its own left: its sum is a difference of two running sums
    starts = [left - a for a in lefts]
    averages = [
        (running[..., s + k : s + k + n] - running[..., s : s + n]) / k for s, k in zip(starts, kernels, strict=True)
    ]
    return torch.stack(averages, dim=-1).to(x.dtype)


def _summing(dtype: torch.dtype) -> torch.dtype:
    """The dtype of a running sum: float64 stays, narrower floats widen to float32.

    A bf16 running sum over a window loses the small steps against the large sum (8 bits of mantissa: a sum of 50
    is off by about 0.2), and the average is a difference of two such sums; bf16 autocast on a CPU leaves cumsum
    in bf16.
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


def decompose(x: Tensor, kernel: int) -> tuple[Tensor, Tensor]:
    """Split ``x`` [..., L] into ``(trend, remainder)`` along its last axis; the two sum back to ``x``."""
    trend = moving_average(x, kernel)
    return trend, x - trend


class SeriesDecomposition(nn.Module):
    """Autoformer's series decomposition block over the time axis of features ``[B, T, D]``: one moving average."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Split ``x`` [B, T, D] into ``(trend, season)``, each ``[B, T, D]``, summing back to ``x``."""
        trend = moving_average(x.transpose(1, 2), self.kernel).transpose(1, 2)  # [B, D, T] along time -> [B, T, D]
        return trend, x - trend


class MixtureDecomposition(nn.Module):
    """FEDformer's mixture-of-experts decomposition over the time axis of features ``[B, T, D]``.

    The trend is a weighted sum of moving averages of several lengths, the weights at each step a softmax of a
    learned linear map of that step's features: ``trend = sum_k softmax(W x_t)_k * avg_k(x)_t``. The season is what
    the trend leaves.
    """

    def __init__(self, channels: int, kernels: tuple[int, ...]) -> None:
        super().__init__()
        self.kernels = kernels
        self.gate = nn.Linear(channels, len(kernels))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Split ``x`` [B, T, D] into ``(trend, season)``, each ``[B, T, D]``, summing back to ``x``."""
        along_time = x.transpose(1, 2)  # [B, T, D] -> [B, D, T]
        averages = moving_averages(along_time, self.kernels)  # [B, D, T, K]
        weights = self.gate(x).softmax(dim=-1)  # [B, T, D] -> [B, T, K]
        trend = (averages * weights[:, None]).sum(-1).transpose(1, 2)  # [B, D, T, K] * [B, 1, T, K] -> [B, T, D]
        return trend, x - trend
