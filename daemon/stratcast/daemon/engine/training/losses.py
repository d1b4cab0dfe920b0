"""Masked training losses over ``[B, H, O]`` outputs and ``[B, H]`` targets.

On strategy panels that are 30-60% zeros the MAE-optimal forecast is the median, 0, so an MAE-trained model
collapses toward 0 and cannot rank strategies by expected profit. MSE (the default) and Huber target the mean.
"""

from __future__ import annotations

import torch
from torch import Tensor


def point_forecast(out: Tensor, quantiles: tuple[float, ...] | None) -> Tensor:
    """The point forecast [B, H] from model outputs [B, H, O]: the median for quantile outputs."""
    if out.shape[-1] == 1:
        return out[..., 0]
    assert quantiles is not None
    return out[..., quantiles.index(0.5)]


def elementwise_loss(
    kind: str, out: Tensor, target: Tensor, *, delta: float = 1.0, quantiles: tuple[float, ...] = ()
) -> Tensor:
    """Per-element loss [B, H] of outputs [B, H, O] against targets [B, H]."""
    if kind == "quantile":
        q = torch.tensor(quantiles, device=out.device, dtype=out.dtype)
        err = target[..., None] - out  # [B, H, 1] - [B, H, Q]
        return torch.maximum(q * err, (q - 1) * err).mean(-1)
    diff = out[..., 0] - target
    if kind == "mse":
        return diff.square()
    if kind == "mae":
        return diff.abs()
    if kind == "huber":
        return torch.nn.functional.huber_loss(out[..., 0], target, reduction="none", delta=delta)
    raise ValueError(f"unknown loss {kind!r}")


def masked_mean(values: Tensor, mask: Tensor, dims: tuple[int, ...] | None = None) -> Tensor:
    """Mean of ``values`` where ``mask`` is true, over ``dims`` (all when None); 0 where nothing is masked in."""
    weights = mask.to(values.dtype)
    total = (values * weights).sum(dim=dims) if dims else (values * weights).sum()
    count = weights.sum(dim=dims) if dims else weights.sum()
    return total / count.clamp(min=1)
