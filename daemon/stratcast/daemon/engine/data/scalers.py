"""Per-series scaling for zero-heavy panels, fit on the training part only.

A strategy's weekly profit is exactly 0 in every week without an open trade, often 30-60% of weeks. Median/MAD
scaling breaks on such series (the median and the MAD are 0), so the default ``robust`` scaler takes its scale
from the **non-zero** values: their inter-quartile range, falling back to their standard deviation, then to 1.
Its location is 0, so a week without a trade stays exactly 0 after scaling; ``robust-centered`` subtracts the
non-zero median instead. ``standard`` uses the mean and standard deviation of the training part, ``identity``
does nothing, and ``revin`` is ``robust`` plus a per-window normalisation around the model (see
:class:`WindowNorm`, and :class:`SampledWindowNorm` for a model with its own loss).

The fitted scaler is part of the fitted model (it is saved in the checkpoint and used by every prediction), so a
forecast can never be scaled with statistics other than the ones the model was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.heads import OwnLoss

EPS = 1e-8
SCALER_STATE_KEYS = ("kind", "loc", "scale")


@dataclass(frozen=True, eq=False)
class SeriesScaler:
    """A fitted per-series affine map ``z = (y - loc) / scale``."""

    kind: str
    loc: Tensor
    """[N] location per series."""
    scale: Tensor
    """[N] scale per series, > 0."""

    def transform(self, values: Tensor) -> Tensor:
        """Scale ``values`` [N, ...] (rows are series in fit order)."""
        shape = (-1,) + (1,) * (values.dim() - 1)
        return (values - self.loc.view(shape)) / self.scale.view(shape)

    def inverse(self, scaled: Tensor, rows: Tensor | None = None) -> Tensor:
        """Undo the scaling of ``scaled`` [M, ...] whose rows are series ``rows`` (all series when None)."""
        loc, scale = (self.loc, self.scale) if rows is None else (self.loc[rows], self.scale[rows])
        shape = (-1,) + (1,) * (scaled.dim() - 1)
        return scaled * scale.view(shape) + loc.view(shape)

    def state_dict(self) -> dict[str, object]:
        """Plain tensors and strings, safe for ``torch.load(weights_only=True)``."""
        return {"kind": self.kind, "loc": self.loc.cpu(), "scale": self.scale.cpu()}

    @classmethod
    def from_state_dict(cls, state: dict[str, object], device: torch.device | str = "cpu") -> SeriesScaler:
        """Rebuild a scaler saved by :meth:`state_dict`."""
        loc, scale = state["loc"], state["scale"]
        assert isinstance(loc, Tensor) and isinstance(scale, Tensor)
        return cls(kind=str(state["kind"]), loc=loc.to(device), scale=scale.to(device))


def fit_scaler(kind: str, values: Tensor, fit_mask: Tensor) -> SeriesScaler:
    """Fit a scaler of ``kind`` on ``values`` [N, T] where ``fit_mask`` [N, T] is true (the training part)."""
    n = values.shape[0]
    zeros, ones = values.new_zeros(n), values.new_ones(n)
    if kind == "identity":
        return SeriesScaler(kind, zeros, ones)
    if kind == "standard":
        return SeriesScaler(kind, *_mean_std(values, fit_mask))
    if kind in ("robust", "robust-centered", "revin"):
        nonzero = fit_mask & (values != 0)
        median, scale = _nonzero_robust(values, nonzero)
        return SeriesScaler(kind, median if kind == "robust-centered" else zeros, scale)
    raise ValueError(f"unknown scaler {kind!r}")


def _mean_std(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Masked mean and standard deviation per row; the std falls back to 1 where it is ~0."""
    count = mask.sum(1).clamp(min=1)
    masked = torch.where(mask, values, 0.0)
    mean = masked.sum(1) / count
    var = (torch.where(mask, values - mean[:, None], 0.0) ** 2).sum(1) / (count - 1).clamp(min=1)
    std = var.sqrt()
    return mean, torch.where(std > EPS, std, torch.ones_like(std))


def row_quantiles(values: Tensor, keep: Tensor, q: Sequence[float]) -> Tensor:
    """[len(q), N] quantiles of each row's kept values, in float64, NaN for a row that keeps none.

    The same figures as ``torch.nanquantile`` of the values in float64 (linear interpolation), bit for bit, without
    its float64 copy of the panel: the order of the values does not depend on their precision, so the rows are
    sorted as they are and only the two neighbours of each quantile are widened before interpolating.
    """
    ordered = torch.where(keep, values, float("nan")).sort(dim=1).values  # NaN sort last
    count = keep.sum(1)  # [N]
    probs = torch.tensor(list(q), dtype=torch.float64, device=values.device)
    rank = probs[:, None] * (count - 1).clamp(min=0).double()[None, :]  # [Q, N]
    below, above = rank.floor().long(), rank.ceil().long()
    low = ordered.gather(1, below.T).double().T
    high = ordered.gather(1, above.T).double().T
    out = torch.lerp(low, high, rank - below.double())
    return torch.where(count[None, :] > 0, out, float("nan"))


def _nonzero_robust(values: Tensor, nonzero: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row median and scale of the non-zero values: IQR, else std, else 1."""
    q = row_quantiles(values, nonzero, (0.25, 0.5, 0.75))
    median = torch.nan_to_num(q[1], nan=0.0).to(values.dtype)
    iqr = torch.nan_to_num(q[2] - q[0], nan=0.0).to(values.dtype)
    _, std = _mean_std(values, nonzero)
    has_spread = nonzero.sum(1) >= 2
    std = torch.where(has_spread, std, torch.ones_like(std))
    return median, torch.where(iqr > EPS, iqr, std)


class WindowNorm(nn.Module):
    """RevIN-style per-window normalisation around a model (Kim et al., ICLR 2022).

    Each input window is normalised by its own mean and standard deviation, the model forecasts in those units,
    and its output is mapped back with the same statistics (and a learnable affine), so the loss stays in the
    series-scaled units and an all-zero window cannot blow the targets up.
    """

    def __init__(self, model: nn.Module, eps: float = 1e-5) -> None:
        super().__init__()
        self.model, self.eps = model, eps
        self.gamma = nn.Parameter(torch.ones(1))
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, **side: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]`` (``[B, S, L]`` to ``[B, S, H, O]``) through the normalised model.

        ``side``: the model's side inputs, passed on unchanged.
        """
        mean, std = window_stats(x, self.eps)
        out = self.model((x - mean) / std * self.gamma + self.beta, **side)
        # [B, 1] -> [B, 1, 1] to broadcast over [B, H, O]
        restored: Tensor = ((out - self.beta) / self.gamma) * std[..., None] + mean[..., None]
        return restored


class SampledWindowNorm(nn.Module):
    """``revin`` for a model with its own loss, which forecasts by sampling (DeepAR, MQRNN, DeepNPTS, diffusion).

    The model reads each window and its targets normalised by the window's mean and standard deviation, trains by
    its own loss on them, and its draws are mapped back with the same statistics, so a level series' windows reach
    it near 0 and of unit spread wherever the level stands. For a likelihood, the loss in those units differs from
    the loss in the series' by ``log std`` per target, a constant of the data: the same gradients. Unlike
    :class:`WindowNorm` there is no learnable affine (a loss of normalised targets could shrink them through it),
    and the standard deviation is at least :data:`MIN_WINDOW_STD` series-scaled units, so a flat window followed by
    a move does not blow its targets up.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, OwnLoss):
            raise TypeError(f"{type(model).__name__} has no loss of its own: wrap it in WindowNorm")
        self.model = model

    @property
    def own(self) -> OwnLoss:
        """The wrapped model, as the model with its own loss it is."""
        model = self.model
        assert isinstance(model, OwnLoss)  # checked when wrapped
        return model

    def forward(self, x: Tensor, **side: Tensor) -> Tensor:
        """The model's plain call ``[B, L] -> [B, H, O]`` on the normalised window, mapped back."""
        mean, std = window_stats(x, MIN_WINDOW_STD**2)
        out: Tensor = self.model((x - mean) / std, **side)
        return out * std[..., None] + mean[..., None]

    def training_loss(self, x: Tensor, y: Tensor, **side: Tensor) -> Tensor:
        """The model's loss ``[B, H]`` of the normalised targets ``y`` [B, H] after the normalised window ``x``."""
        mean, std = window_stats(x, MIN_WINDOW_STD**2)
        loss: Tensor = self.own.training_loss((x - mean) / std, (y - mean) / std, **side)
        return loss

    def sample(self, x: Tensor, n: int, generator: torch.Generator | None, **side: Tensor) -> Tensor:
        """``n`` draws ``[n, B, H]`` for windows ``x`` [B, L]: the model's draws, mapped back."""
        mean, std = window_stats(x, MIN_WINDOW_STD**2)
        draws: Tensor = self.own.sample((x - mean) / std, n, generator, **side)  # [n, B, H]
        return draws * std + mean  # [B, 1] broadcasts over [n, B, H]


MIN_WINDOW_STD = 0.1
"""The least window standard deviation :class:`SampledWindowNorm` divides by (a tenth of a robust-scaled series'
inter-quartile range)."""


def window_stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Each window's mean and standard deviation ``sqrt(var + eps)`` over the last axis of ``x``, as ``[..., 1]``."""
    mean = x.mean(-1, keepdim=True)
    return mean, (x.var(-1, keepdim=True, unbiased=False) + eps).sqrt()
