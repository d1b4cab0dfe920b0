"""Toy models, one per capability no catalog model has yet: they prove the harness's and the engine's branches.

Each comes with a :class:`ModelEntry` (not in the catalog) declaring its capabilities, as a real model's would.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.catalog import ModelEntry
from stratcast.daemon.zoo.contract import Capabilities, ModelConfig, check_ids, check_model_args, param


@dataclass(frozen=True, kw_only=True)
class ToyConfig(ModelConfig):
    """The one architecture option every toy shares."""

    window: bool = param(True, choices=(True, False), help="read the input window (false: per-series terms only)")


class SeriesBias(nn.Module):
    """A linear map of the window plus a learned bias per series: ``(x [B, L], ids [B]) -> [B, H, O]``."""

    def __init__(self, config: ToyConfig, *, input_size: int, horizon: int, n_outputs: int, n_series: int) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.window, self.horizon, self.n_outputs, self.n_series = config.window, horizon, n_outputs, n_series
        self.linear = nn.Linear(input_size, horizon * n_outputs)
        self.bias = nn.Parameter(0.1 * torch.randn(n_series, horizon, n_outputs))

    def forward(self, x: Tensor, *, ids: Tensor) -> Tensor:
        """[B, L] and [B] -> [B, H, O]."""
        check_ids(ids, self.n_series)
        out: Tensor = self.bias[ids]  # [N, H, O] -> [B, H, O]
        if self.window:
            out = out + self.linear(x).view(-1, self.horizon, self.n_outputs)
        return out


class CrossMean(nn.Module):
    """Multivariate over any number of series: each series' own linear forecast plus one of the rows' mean."""

    def __init__(self, config: ToyConfig, *, input_size: int, horizon: int, n_outputs: int) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        self.own = nn.Linear(input_size, horizon * n_outputs)
        self.shared = nn.Linear(input_size, horizon * n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """[B, S, L] -> [B, S, H, O]."""
        flat: Tensor = self.own(x) + self.shared(x.mean(1, keepdim=True))  # [B, S, H*O] + [B, 1, H*O]
        return flat.view(*flat.shape[:-1], self.horizon, self.n_outputs)


class SeriesMixer(nn.Module):
    """Multivariate with a learned [N, N] mixing of all ``N`` series: it reads exactly ``n_series`` at a time.

    ``ids`` [B, S] say which series each slot holds; the mixing weights are picked by them (the MTGNN way: node
    embeddings per series, a random subset of series per step), so any ``S <= n_series`` runs, but the ids must name
    real series.
    """

    def __init__(self, config: ToyConfig, *, input_size: int, horizon: int, n_outputs: int, n_series: int) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs, self.n_series = horizon, n_outputs, n_series
        self.embed = nn.Parameter(torch.randn(n_series, 4) / 2)
        self.linear = nn.Linear(input_size, horizon * n_outputs)
        self.cross = nn.Linear(input_size, horizon * n_outputs)

    def forward(self, x: Tensor, *, ids: Tensor) -> Tensor:
        """[B, S, L] and ids [B, S] -> [B, S, H, O]."""
        if x.shape[:2] != ids.shape:
            raise ValueError(f"ids {tuple(ids.shape)} do not match the windows' series {tuple(x.shape[:2])}")
        check_ids(ids, self.n_series)
        e = self.embed[ids]  # [B, S, 4]
        mix = torch.softmax(e @ e.transpose(1, 2), dim=-1)  # [B, S, S]
        flat: Tensor = self.linear(x) + self.cross(mix @ x)  # [B, S, L] -> [B, S, H*O]
        return flat.view(*flat.shape[:-1], self.horizon, self.n_outputs)


class FixedMixer(nn.Module):
    """Multivariate whose parameters are an [N, N] matrix: it refuses any other number of series than ``N``."""

    def __init__(self, config: ToyConfig, *, input_size: int, horizon: int, n_outputs: int, n_series: int) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs, self.n_series = horizon, n_outputs, n_series
        self.mix = nn.Parameter(torch.eye(n_series) + 0.1 * torch.randn(n_series, n_series))
        self.linear = nn.Linear(input_size, horizon * n_outputs)

    def forward(self, x: Tensor, *, ids: Tensor) -> Tensor:
        """[B, N, L] (every series, in the order of ``ids`` [B, N]) -> [B, N, H, O]."""
        if x.shape[1] != self.n_series:
            raise ValueError(f"this model mixes all {self.n_series} series at once, got {x.shape[1]}")
        check_ids(ids, self.n_series)
        mix = self.mix[ids[:, :, None], ids[:, None, :]]  # [N, N] -> [B, N, N], rows and columns in the ids' order
        flat: Tensor = self.linear(mix @ x)
        return flat.view(*flat.shape[:-1], self.horizon, self.n_outputs)


class NoisyLinear(nn.Module):
    """A sampling model: a linear forecast plus learned-scale Gaussian noise, drawn in training and eval alike."""

    def __init__(self, config: ToyConfig, *, input_size: int, horizon: int, n_outputs: int) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs = horizon, n_outputs
        self.linear = nn.Linear(input_size, horizon * n_outputs)
        self.log_scale = nn.Parameter(torch.full((1,), -3.0))

    def forward(self, x: Tensor) -> Tensor:
        """[B, L] -> [B, H, O], one sample."""
        flat = self.linear(x)
        sample: Tensor = flat + self.log_scale.exp() * torch.randn_like(flat)
        return sample.view(-1, self.horizon, self.n_outputs)


class OriginWave(nn.Module):
    """Reads ``origin=``: a linear forecast plus a learned amplitude on the parity of each target period."""

    def __init__(self, config: ToyConfig, *, input_size: int, horizon: int, n_outputs: int) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.window, self.horizon, self.n_outputs = config.window, horizon, n_outputs
        self.linear = nn.Linear(input_size, horizon * n_outputs)
        self.amplitude = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, *, origin: Tensor) -> Tensor:
        """[B, L] and origins [B] -> [B, H, O]."""
        t = origin[..., None] + torch.arange(self.horizon, device=x.device)  # [B] -> [B, H]
        wave = self.amplitude * (1 - 2 * (t % 2)).to(x.dtype)  # +1 on even periods, -1 on odd ones
        out = wave[..., None].expand(*wave.shape, self.n_outputs)  # [B, H] -> [B, H, O]
        if self.window:
            out = out + self.linear(x).view(-1, self.horizon, self.n_outputs)
        return out


class OwnLossLinear(nn.Module):
    """A model with its own loss: squared error of a linear map, forecasts drawn around it (its forward refuses)."""

    def __init__(self, config: ToyConfig, *, input_size: int, horizon: int, n_outputs: int) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.linear = nn.Linear(input_size, horizon)
        self.scale = 0.1

    def forward(self, x: Tensor) -> Tensor:
        """Never called: the engine must train through :meth:`training_loss` and forecast through :meth:`sample`."""
        raise AssertionError("a model with its own loss was called as a plain model")

    def training_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """[B, H] squared errors of the linear map."""
        loss: Tensor = (self.linear(x) - y).square()
        return loss

    def sample(self, x: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
        """[n, B, H] draws: the linear map plus Gaussian noise of scale ``scale``."""
        mean = self.linear(x)
        noise = torch.randn((n, *mean.shape), generator=generator, device=x.device, dtype=mean.dtype)
        out: Tensor = mean + self.scale * noise
        return out


def toy(name: str, model_cls: type[nn.Module], summary: str, capabilities: Capabilities) -> ModelEntry:
    """A toy's entry, as the catalog would hold it."""
    return ModelEntry(name, model_cls, ToyConfig, summary, "test toy", capabilities=capabilities)


PER_SERIES = Capabilities(per_series=True, stackable=False)
SERIES_BIAS = toy("toy-series-bias", SeriesBias, "window map plus a bias per series", PER_SERIES)
CROSS_MEAN = toy(
    "toy-cross-mean", CrossMean, "own map plus the rows' mean", Capabilities(multivariate=True, stackable=False)
)
MULTI_PER_SERIES = Capabilities(multivariate=True, per_series=True, stackable=False)
SERIES_MIXER = toy("toy-series-mixer", SeriesMixer, "series mixed by embeddings", MULTI_PER_SERIES)
FIXED_MIXER = toy("toy-fixed-mixer", FixedMixer, "all series mixed by an N x N matrix", MULTI_PER_SERIES)
NOISY = toy("toy-noisy", NoisyLinear, "linear map plus noise", Capabilities(stochastic=True, stackable=False))
ORIGIN_WAVE = toy("toy-origin-wave", OriginWave, "linear map plus a parity wave", Capabilities(origin=True))
OWN_LOSS = toy(
    "toy-own-loss", OwnLossLinear, "linear map trained by its own loss", Capabilities(own_loss=True, stackable=False)
)
TOYS = (SERIES_BIAS, CROSS_MEAN, SERIES_MIXER, FIXED_MIXER, NOISY, ORIGIN_WAVE)
"""Every toy; :data:`FIXED_MIXER` is the one whose parameters fix the number of series."""
