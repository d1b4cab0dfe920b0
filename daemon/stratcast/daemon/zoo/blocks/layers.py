"""Small building blocks shared by several zoo models (private: not part of the model contract)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.contract import activation


def mlp(in_features: int, widths: tuple[int, ...], *, act: str, dropout: float) -> nn.Sequential:
    """A stack of ``Linear -> activation -> Dropout`` layers, one per entry of ``widths``."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(in_features, width), activation(act), nn.Dropout(dropout)]
        in_features = width
    return nn.Sequential(*layers)


def value_and_indicator(x: Tensor, *, value: Tensor | None = None) -> Tensor:
    """Per-step features for sequence models: the value and whether it is nonzero.

    A zero in a scaled series usually means the strategy was flat that step, which the value alone cannot tell
    apart from a small return; the indicator channel makes that explicit.

    Args:
        x: ``[B, L]`` windows.
        value: ``[B, L]``, the value channel when it is not ``x`` itself (a window standardised by its own mean
            and scale, whose flat steps are no longer zero); the indicator is always read from ``x``.

    Returns:
        ``[B, L, 2]``: channel 0 the value, channel 1 the nonzero indicator.
    """
    indicator = (x != 0).to(x.dtype)
    return torch.stack([x if value is None else value, indicator], dim=-1)  # 2 x [B, L] -> [B, L, 2]


def to_horizon(flat: Tensor, horizon: int, n_outputs: int) -> Tensor:
    """Reshape a flat head output ``[B, H*O]`` to ``[B, H, O]``."""
    return flat.reshape(flat.shape[0], horizon, n_outputs)  # [B, H*O] -> [B, H, O]
