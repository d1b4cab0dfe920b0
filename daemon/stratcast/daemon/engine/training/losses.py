"""The masked mean the trainer averages elementwise losses with.

The losses themselves belong to the output heads (:mod:`stratcast.daemon.zoo.heads`).
"""

from __future__ import annotations

from torch import Tensor


def masked_mean(values: Tensor, mask: Tensor, dims: tuple[int, ...] | None = None) -> Tensor:
    """Mean of ``values`` where ``mask`` is true, over ``dims`` (all when None); 0 where nothing is masked in."""
    weights = mask.to(values.dtype)
    total = (values * weights).sum(dim=dims) if dims else (values * weights).sum()
    count = weights.sum(dim=dims) if dims else weights.sum()
    return total / count.clamp(min=1)
