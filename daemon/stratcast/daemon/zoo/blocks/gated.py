"""Gated blocks of the Temporal Fusion Transformer (private): GLU, gated skip, GRN and variable selection.

From Lim, Arik, Loeff and Pfister, "Temporal Fusion Transformers for Interpretable Multi-horizon Time Series
Forecasting", International Journal of Forecasting 2021 (section 4.1-4.2), written from its equations:

* gated linear unit: ``GLU(g) = sigmoid(W4 g + b4) * (W5 g + b5)``; a gate near 0 switches a layer off;
* gated skip ("gate, add and norm"): ``LayerNorm(skip + GLU(dropout(g)))``; with the gate shut only the skip
  remains, so the network can leave out any part it does not need;
* gated residual network (eq. 2-4): ``eta2 = ELU(W2 a + W3 c + b2)``, ``eta1 = W1 eta2 + b1``, then the gated skip
  of ``eta1`` over ``a`` (over a linear map of ``a`` when the widths differ); ``c`` is an optional context;
* variable selection network (eq. 6-8): each of ``V`` variables' embeddings goes through a GRN of its own, and
  a softmax over a GRN of all of them flattened weighs them into one vector per step; the weights say which
  input the model used.

Used by :mod:`tft`; any model that wants gated skips or learned input weights can use them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class GroupedLinear(nn.Module):
    """``G`` independent linear maps, one per group: ``[..., G, D_in]`` -> ``[..., G, D_out]`` in one einsum.

    Initialised as ``nn.Linear`` is (uniform within ``1/sqrt(D_in)``).
    """

    def __init__(self, groups: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = in_features**-0.5
        self.weight = nn.Parameter(torch.empty(groups, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[..., G, D_in]`` to ``[..., G, D_out]``."""
        return torch.einsum("...gi,gio->...go", x, self.weight) + self.bias


class GroupedLayerNorm(nn.Module):
    """Layer normalisation over the last dimension with a gain and bias of its own per group: ``[..., G, D]``."""

    def __init__(self, groups: int, features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(groups, features))
        self.bias = nn.Parameter(torch.zeros(groups, features))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``[..., G, D]`` over ``D``."""
        out: Tensor = F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias
        return out


def linear(in_features: int, out_features: int, groups: int = 1) -> nn.Module:
    """``nn.Linear``, or a :class:`GroupedLinear` over ``groups`` groups (the second-last dimension)."""
    return nn.Linear(in_features, out_features) if groups == 1 else GroupedLinear(groups, in_features, out_features)


class GLU(nn.Module):
    """Gated linear unit: ``sigmoid(W4 g + b4) * (W5 g + b5)``, mapping ``[..., D_in]`` to ``[..., D_out]``."""

    def __init__(self, in_features: int, out_features: int, groups: int = 1) -> None:
        super().__init__()
        self.gate_and_value = linear(in_features, 2 * out_features, groups)  # W4 and W5 side by side

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[..., D_in]`` to ``[..., D_out]``."""
        both: Tensor = self.gate_and_value(x)  # [..., 2 D_out]
        gate, value = both.chunk(2, dim=-1)  # -> 2 x [..., D_out]
        return torch.sigmoid(gate) * value


class GateAddNorm(nn.Module):
    """The gated skip connection: ``LayerNorm(skip + GLU(dropout(x)))``."""

    def __init__(self, in_features: int, out_features: int, dropout: float, groups: int = 1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.glu = GLU(in_features, out_features, groups)
        self.norm = nn.LayerNorm(out_features) if groups == 1 else GroupedLayerNorm(groups, out_features)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """Gate ``x [..., D_in]`` and add it to ``skip [..., D_out]``, normalised: ``[..., D_out]``."""
        out: Tensor = self.norm(skip + self.glu(self.dropout(x)))
        return out


class GRN(nn.Module):
    """Gated residual network: an ELU layer and a linear layer, gated and added to its (projected) input.

    ``context_size``: the width of an optional context ``c`` (0: none), added inside the ELU layer through ``W3``.
    ``groups``: that many GRNs with weights of their own, side by side over the second-last dimension
    (``[..., G, D_in]`` -> ``[..., G, D_out]``): one einsum per layer instead of a module per group.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        out_features: int,
        *,
        dropout: float,
        context_size: int = 0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.skip = linear(in_features, out_features, groups) if in_features != out_features else nn.Identity()
        self.hidden = linear(in_features, hidden, groups)
        self.context = nn.Linear(context_size, hidden, bias=False) if context_size else None
        self.out = linear(hidden, hidden, groups)
        self.gate = GateAddNorm(hidden, out_features, dropout, groups)

    def forward(self, a: Tensor, context: Tensor | None = None) -> Tensor:
        """Map ``a [..., D_in]`` (and ``context [..., C]`` when built with one) to ``[..., D_out]``."""
        pre = self.hidden(a)
        if self.context is not None:
            if context is None:
                raise ValueError("this GRN was built with a context: pass context=")
            pre = pre + self.context(context)
        eta1 = self.out(F.elu(pre))  # eta2 = ELU(W2 a + W3 c + b2); eta1 = W1 eta2 + b1
        out: Tensor = self.gate(eta1, self.skip(a))
        return out


class VariableSelection(nn.Module):
    """Variable selection network over ``V`` embedded variables: ``[..., V, D]`` -> ``[..., D]`` and weights.

    Each variable has a GRN of its own (one grouped GRN). One variable needs no selection: its GRN's output is
    returned with weight 1.
    """

    def __init__(self, n_vars: int, d_model: int, *, dropout: float) -> None:
        super().__init__()
        self.each = GRN(d_model, d_model, d_model, dropout=dropout, groups=n_vars)
        self.weights = GRN(n_vars * d_model, d_model, n_vars, dropout=dropout) if n_vars > 1 else None

    def forward(self, embedded: Tensor) -> tuple[Tensor, Tensor]:
        """Weigh ``embedded [..., V, D]`` into ``[..., D]``; also returns the weights ``[..., V]`` (summing to 1)."""
        processed = self.each(embedded)  # [..., V, D], each variable through its own GRN
        if self.weights is None:
            return processed[..., 0, :], torch.ones_like(processed[..., 0])  # [..., D], [..., 1]
        weights = self.weights(embedded.flatten(-2)).softmax(dim=-1)  # [..., V, D] -> [..., V*D] -> [..., V]
        selected = (weights.unsqueeze(-1) * processed).sum(dim=-2)  # [..., V, 1] * [..., V, D] -> [..., D]
        return selected, weights
