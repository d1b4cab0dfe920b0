"""Series decomposition: a centred moving average (the trend) and what it leaves (the remainder, or season).

Autoformer introduced the block; DLinear decomposes its window with it once, TimeMixer every scale of every layer.
"""

from __future__ import annotations

import torch
from torch import Tensor


def moving_average(x: Tensor, kernel: int) -> Tensor:
    """The centred ``kernel``-step moving average of ``x`` [..., L] along its last axis, edges replicated."""
    left = (kernel - 1) // 2
    right = kernel - 1 - left
    lead = x.shape[:-1]
    # [..., 1 + left + L + right]: a zero, then the edge-replicated window; its running sum differenced k apart
    # is every window sum at once (a few passes over the batch instead of k)
    padded = torch.cat([x.new_zeros(*lead, 1), x[..., :1].expand(*lead, left), x, x[..., -1:].expand(*lead, right)], -1)
    running = padded.cumsum(-1)
    return (running[..., kernel:] - running[..., :-kernel]) / kernel  # [..., L]


def decompose(x: Tensor, kernel: int) -> tuple[Tensor, Tensor]:
    """Split ``x`` [..., L] into ``(trend, remainder)`` along its last axis; the two sum back to ``x``."""
    trend = moving_average(x, kernel)
    return trend, x - trend
