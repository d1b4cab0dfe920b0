"""Causal dilated 1-D convolution shared by :mod:`tcn` and :mod:`bitcn` (private).

Weight normalisation (``w = g v / |v|``, Salimans and Kingma, NeurIPS 2016) is computed in ``forward`` from plain
parameters rather than through ``torch.nn.utils.parametrizations``, so a model stays a plain function of its
parameters under ``torch.func.vmap``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class CausalConv1d(nn.Module):
    """A dilated 1-D convolution padded on the left only, so step ``t`` sees steps ``<= t``."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, *, weight_norm: bool) -> None:
        super().__init__()
        # The weight is the direction v of weight normalisation; gain g starts at |v| so the initial weights are
        # nn.Conv1d's.
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation)
        norm = self.conv.weight.detach().flatten(1).norm(dim=1)  # [C_out, C_in, k] -> [C_out]
        self.gain = nn.Parameter(norm) if weight_norm else None
        self.left = (kernel_size - 1) * dilation

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, C_in, L]`` to ``[B, C_out, L]``."""
        weight = self.conv.weight  # [C_out, C_in, k]
        if self.gain is not None:
            norm = weight.flatten(1).norm(dim=1).clamp_min(1e-12)  # [C_out, C_in * k] -> [C_out]
            weight = weight * (self.gain / norm)[:, None, None]
        return F.conv1d(F.pad(x, (self.left, 0)), weight, self.conv.bias, dilation=self.conv.dilation)


def receptive_field(kernel_size: int, dilations: list[int], convs_per_level: int = 1) -> int:
    """How many steps the last output of a stack of causal convolutions sees (itself included)."""
    return 1 + convs_per_level * (kernel_size - 1) * sum(dilations)
