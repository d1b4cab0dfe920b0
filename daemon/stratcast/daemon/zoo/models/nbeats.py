"""N-BEATS (Oreshkin et al., "Neural basis expansion analysis for interpretable time series forecasting", ICLR 2020).

A deep stack of fully connected blocks with doubly residual stacking: each block reads the residual of the window
left by the blocks before it, emits a *backcast* (its explanation of that residual, subtracted before the next
block) and a *forecast* (added to the model's output). A block's fully connected layers produce expansion
coefficients ``theta``, and a basis turns them into a curve:

* ``generic``: a learned linear basis. The paper's linear ``theta`` projection followed by a linear basis is one
  linear map, so it is written as one ``nn.Linear`` (an identity basis here).
* ``trend``: the polynomial basis ``[1, t, ..., t^p]`` with ``p = trend_degree`` and ``t`` running over
  ``[0, 1)`` across the window (backcast) and across the horizon (forecast), as in the paper.
* ``seasonality``: the Fourier basis ``[1, cos(2 pi k t), sin(2 pi k t)]`` for ``k = 1 .. n_harmonics``.
  Backcast and forecast share one time axis measured in horizons (``t`` from ``-L/H`` up to ``0`` over the
  window, then over ``[0, 1)``), so harmonic ``k`` has the same period, ``H / k`` steps, in both.

The interpretable model (``nbeats-i``) is a trend stack followed by a seasonality stack whose blocks share weights
within each stack, as in the paper. The last block's backcast would feed nothing, so it is not built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.layers import mlp
from stratcast.daemon.zoo.contract import Checkpointable, ModelConfig, check_model_args, param
from stratcast.daemon.zoo.search import among, ints

STACK_TYPES = ("generic", "trend", "seasonality")


@dataclass(frozen=True, kw_only=True)
class NBEATSConfig(ModelConfig):
    """N-BEATS architecture; the defaults are the generic model."""

    stack_types: tuple[str, ...] = param(
        ("generic",), help="kind of each stack, in order; each one of generic, trend, seasonality"
    )
    n_blocks: int = param(3, lo=1, hi=64, search=ints(1, 5), help="blocks in each stack")
    num_layers: int = param(4, lo=1, hi=16, search=ints(2, 4), help="fully connected layers in each block")
    layer_width: int = param(
        512, lo=1, hi=8192, search=among(128, 256, 512, 1024), help="width of each block's fully connected layers"
    )
    share_weights: bool = param(
        False, choices=(False, True), search=among(False, True), help="the blocks of a stack share one set of weights"
    )
    trend_degree: int = param(3, lo=0, hi=8, help="degree of the trend stacks' polynomial basis")
    n_harmonics: int = param(
        12, lo=1, hi=512, help="Fourier harmonics of the seasonality stacks' basis (periods H/1 .. H/k)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if not self.stack_types:
            raise ValueError(f"{name}.stack_types must name at least one stack")
        bad = [kind for kind in self.stack_types if kind not in STACK_TYPES]
        if bad:
            raise ValueError(f"{name}.stack_types has {bad}; each must be one of {list(STACK_TYPES)}")

    @classmethod
    def tiny(cls) -> Self:
        """One generic stack of two narrow blocks."""
        return cls(stack_types=("generic",), n_blocks=2, num_layers=2, layer_width=32)


@dataclass(frozen=True, kw_only=True)
class NBEATSIConfig(NBEATSConfig):
    """N-BEATS architecture with the interpretable model's defaults (trend then seasonality, shared weights)."""

    stack_types: tuple[str, ...] = param(
        ("trend", "seasonality"), help="kind of each stack, in order; each one of generic, trend, seasonality"
    )
    share_weights: bool = param(
        True, choices=(False, True), search=among(False, True), help="the blocks of a stack share one set of weights"
    )
    # searched here only: the generic model has no trend or seasonality stack for them to shape
    trend_degree: int = param(3, lo=0, hi=8, search=ints(1, 4), help="degree of the trend stacks' polynomial basis")
    n_harmonics: int = param(
        12,
        lo=1,
        hi=512,
        search=ints(2, 26, step=4),
        help="Fourier harmonics of the seasonality stacks' basis (periods H/1 .. H/k)",
    )

    @classmethod
    def tiny(cls) -> Self:
        """A trend and a seasonality stack of narrow shared blocks."""
        return cls(n_blocks=2, num_layers=2, layer_width=32, trend_degree=2, n_harmonics=2)


def basis(kind: str, t: Tensor, *, degree: int, harmonics: int) -> Tensor:
    """The basis of a stack kind sampled at times ``t`` [T], as ``[P, T]`` (one row per basis function)."""
    if kind == "trend":
        return torch.stack([t**power for power in range(degree + 1)])  # (p + 1) x [T] -> [P, T]
    if kind == "seasonality":
        k = torch.arange(1, harmonics + 1, dtype=t.dtype)
        angle = 2 * math.pi * k[:, None] * t[None, :]  # [K, 1] * [1, T] -> [K, T]
        return torch.cat([torch.ones(1, t.numel()), angle.cos(), angle.sin()])  # -> [2K + 1, T]
    return torch.eye(t.numel())


def time_axes(kind: str, input_size: int, horizon: int) -> tuple[Tensor, Tensor]:
    """The (backcast, forecast) time axes of a stack kind; see the module docstring."""
    forecast = torch.arange(horizon, dtype=torch.float32) / horizon
    if kind == "seasonality":
        return torch.arange(-input_size, 0, dtype=torch.float32) / horizon, forecast
    return torch.arange(input_size, dtype=torch.float32) / input_size, forecast


class NBEATSBlock(nn.Module):
    """Fully connected layers, then linear maps to expansion coefficients, then fixed bases."""

    basis_f: Tensor
    basis_b: Tensor

    def __init__(
        self,
        kind: str,
        config: NBEATSConfig,
        *,
        input_size: int,
        horizon: int,
        n_outputs: int,
        backcast: bool,
    ) -> None:
        super().__init__()
        self.n_outputs = n_outputs
        t_b, t_f = time_axes(kind, input_size, horizon)
        degree, harmonics = config.trend_degree, config.n_harmonics
        self.register_buffer("basis_f", basis(kind, t_f, degree=degree, harmonics=harmonics), persistent=False)
        self.register_buffer("basis_b", basis(kind, t_b, degree=degree, harmonics=harmonics), persistent=False)
        width = config.layer_width
        self.fc = mlp(input_size, (width,) * config.num_layers, act="relu", dropout=0.0)
        self.theta_f = nn.Linear(width, self.basis_f.shape[0] * n_outputs)
        self.theta_b = nn.Linear(width, self.basis_b.shape[0]) if backcast else None

    def forward(self, x: Tensor) -> tuple[Tensor | None, Tensor]:
        """Map the residual window ``[B, L]`` to (backcast ``[B, L]`` or None, forecast ``[B, H, O]``)."""
        hidden = self.fc(x)
        theta_f = self.theta_f(hidden).reshape(x.shape[0], -1, self.n_outputs)  # [B, P*O] -> [B, P, O]
        forecast = torch.einsum("bpo,ph->bho", theta_f, self.basis_f)  # -> [B, H, O]
        backcast = None if self.theta_b is None else self.theta_b(hidden) @ self.basis_b  # [B, P] -> [B, L]
        return backcast, forecast


class NBEATS(Checkpointable):
    """Stacks of blocks, each removing its backcast from the window and adding its forecast to the output.

    Activation checkpointing (:class:`Checkpointable`) applies block by block (a shared block at each use).
    """

    def __init__(self, config: NBEATSConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        n_stacks, n_blocks = len(config.stack_types), config.n_blocks
        # schedule[i] is the block that runs at step i; a shared block runs n_blocks times in a row.
        if config.share_weights:
            kinds = list(config.stack_types)
            self.schedule = [stack for stack in range(n_stacks) for _ in range(n_blocks)]
        else:
            kinds = [kind for kind in config.stack_types for _ in range(n_blocks)]
            self.schedule = list(range(n_stacks * n_blocks))
        self.blocks = nn.ModuleList(
            NBEATSBlock(
                kind,
                config,
                input_size=input_size,
                horizon=horizon,
                n_outputs=n_outputs,
                backcast=i in self.schedule[:-1],
            )
            for i, kind in enumerate(kinds)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``[B, L]`` to ``[B, H, O]``."""
        residual, forecasts = x, []
        for index in self.schedule:
            backcast, forecast = self.run_block(self.blocks[index], residual)
            forecasts.append(forecast)
            if backcast is not None:
                residual = residual - backcast
        return torch.stack(forecasts).sum(dim=0)  # n x [B, H, O] -> [B, H, O]
