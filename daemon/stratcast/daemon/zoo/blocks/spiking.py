"""Leaky integrate-and-fire (LIF) neurons trained with a surrogate gradient.

A spike is a Heaviside step of the membrane potential above its threshold, whose derivative is zero almost
everywhere, so gradient descent cannot pass through it. Surrogate gradient learning (Neftci, Mostafa and Zenke,
"Surrogate Gradient Learning in Spiking Neural Networks", IEEE Signal Processing Magazine, 2019) keeps the exact
step in the forward pass and uses the derivative of a smooth stand-in in the backward pass: here the fast sigmoid
``1 / (1 + slope |v|)^2`` (SuperSpike, Zenke and Ganguli 2018).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class SurrogateSpike(torch.autograd.Function):
    """Heaviside forward, fast-sigmoid derivative backward. Written without ``ctx`` in forward, so vmap can batch it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(v: Tensor, slope: float) -> Tensor:
        """Spike (1) where ``v`` (the potential minus the threshold) is at or above zero, else 0."""
        return (v >= 0).to(v.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, float], output: Tensor) -> None:
        """Keep ``v`` and the slope for the backward pass."""
        v, slope = inputs
        ctx.save_for_backward(v)
        ctx.slope = slope

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        """The fast sigmoid's derivative in place of the Heaviside's."""
        (v,) = ctx.saved_tensors
        return grad / (1.0 + ctx.slope * v.abs()) ** 2, None


def spike(v: Tensor, slope: float) -> Tensor:
    """Heaviside of ``v`` with the fast-sigmoid surrogate gradient of the given ``slope``."""
    out: Tensor = SurrogateSpike.apply(v, slope)  # type: ignore[no-untyped-call]  # torch leaves apply untyped
    return out


class LIFLayer(nn.Module):
    """A layer of LIF neurons driven by a linear map of its input, stepped through time.

    ``v_t = beta v_{t-1} + W x_t - threshold s_{t-1}`` (reset by subtraction), ``s_t = H(v_t - threshold)``.
    """

    def __init__(self, in_features: int, size: int, *, beta: float, threshold: float, slope: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, size)
        self.beta, self.threshold, self.slope = beta, threshold, slope

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Run ``x`` [B, T, F] through time.

        Returns:
            ``(spikes [B, T, N], the membrane potential after the last step [B, N])``.
        """
        current = self.linear(x)  # [B, T, N]
        v = torch.zeros_like(current[:, 0])
        s = torch.zeros_like(v)
        spikes: list[Tensor] = []
        for t in range(current.shape[1]):
            v = self.beta * v + current[:, t] - self.threshold * s
            s = spike(v - self.threshold, self.slope)
            spikes.append(s)
        return torch.stack(spikes, dim=1), v  # T x [B, N] -> [B, T, N]
