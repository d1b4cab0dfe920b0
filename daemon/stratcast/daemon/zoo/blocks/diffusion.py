"""A DDPM noise schedule: the forward (noising) process in closed form and one step of the reverse process.

Denoising diffusion (Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020) noises a
target ``x_0`` over ``K`` steps with variances ``beta_k``; with ``alpha_k = 1 - beta_k`` and ``abar_k`` their
running product, step ``k`` is reached in one draw (the paper's eq. 4)::

    q(x_k | x_0) = N(sqrt(abar_k) x_0, (1 - abar_k) I)

and the reverse step from ``x_k`` to ``x_{k-1}``, given an estimate ``x0_hat`` of ``x_0``, draws from the forward
process's posterior (eqs. 6-7)::

    q(x_{k-1} | x_k, x_0) = N(c0_k x0_hat + ck_k x_k, beta~_k I)
    c0_k = sqrt(abar_{k-1}) beta_k / (1 - abar_k),  ck_k = sqrt(alpha_k) (1 - abar_{k-1}) / (1 - abar_k)
    beta~_k = (1 - abar_{k-1}) / (1 - abar_k) beta_k

Steps are indexed ``0 .. K-1`` here (the paper's ``1 .. K``), with ``abar_{-1} = 1``: the last reverse step (index
0) has ``beta~ = 0`` and returns its ``x0_hat`` without noise.

Schedules: ``linear`` is the paper's, ``beta`` from 1e-4 to 0.02 over 1,000 steps, rescaled by ``1000 / K`` for
fewer steps (as Nichol and Dhariwal, ICML 2021, do) so that ``abar_K`` still ends near 0 (``beta`` capped at 0.999);
with few steps it spends its last ones on almost pure noise. ``cosine`` (the default of the diffusion forecaster)
is Nichol and Dhariwal's ``abar_k = f(k) / f(0)``, ``f(t) = cos^2((t / K + s) / (1 + s) * pi / 2)``, ``s = 0.008``,
with ``beta`` capped at 0.999: its ``abar`` falls evenly over the steps, whatever ``K``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

SCHEDULES = ("linear", "cosine")
COSINE_OFFSET = 0.008
"""Nichol and Dhariwal's ``s``: keeps the first ``beta`` from vanishing."""
MAX_BETA = 0.999
"""Cap on a cosine schedule's ``beta`` (its last one would be 1: all signal gone in one step)."""


def beta_schedule(kind: str, steps: int) -> Tensor:
    """The ``steps`` noise variances ``beta_k`` [K] (float64) of schedule ``kind`` (one of :data:`SCHEDULES`).

    Raises:
        ValueError: for an unknown kind or fewer than one step.
    """
    if steps < 1:
        raise ValueError(f"a diffusion schedule needs at least one step, got {steps}")
    if kind == "linear":
        scale = 1000.0 / steps
        return torch.linspace(scale * 1e-4, min(scale * 0.02, MAX_BETA), steps, dtype=torch.float64)
    if kind == "cosine":
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((t + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2).square()
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=MAX_BETA)
    raise ValueError(f"unknown diffusion schedule {kind!r}; one of {', '.join(SCHEDULES)}")


class DiffusionSchedule(nn.Module):
    """The schedule's constants as (non-persistent) buffers, so they follow the model's device and dtype.

    They are rebuilt from ``kind`` and ``steps`` at construction and not saved in a state dict. Each is [K], indexed
    by step ``0 .. K-1``.
    """

    betas: Tensor
    alphas: Tensor
    alpha_bars: Tensor
    alpha_bars_prev: Tensor
    """``abar_{k-1}``, 1 at the first step."""
    signal: Tensor
    """``sqrt(abar_k)``: the mean's factor in ``q(x_k | x_0)``."""
    noise_scale: Tensor
    """``sqrt(1 - abar_k)``: its standard deviation."""
    coef_x0: Tensor
    coef_xk: Tensor
    posterior_std: Tensor
    """``sqrt(beta~_k)``: the reverse step's standard deviation, 0 at the last one."""

    def __init__(self, kind: str, steps: int) -> None:
        super().__init__()
        self.steps = steps
        betas = beta_schedule(kind, steps)
        alphas = 1 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        constants = {
            "betas": betas,
            "alphas": alphas,
            "alpha_bars": abar,
            "alpha_bars_prev": abar_prev,
            "signal": abar.sqrt(),
            "noise_scale": (1 - abar).sqrt(),
            "coef_x0": abar_prev.sqrt() * betas / (1 - abar),
            "coef_xk": alphas.sqrt() * (1 - abar_prev) / (1 - abar),
            "posterior_std": ((1 - abar_prev) / (1 - abar) * betas).sqrt(),
        }
        for name, value in constants.items():
            self.register_buffer(name, value.float(), persistent=False)
        self._reverse_constants = [
            (c0, ck, std)
            for c0, ck, std in zip(
                constants["coef_x0"].tolist(),
                constants["coef_xk"].tolist(),
                constants["posterior_std"].tolist(),
                strict=True,
            )
        ]
        """``(coef_x0, coef_xk, posterior_std)`` of every step as Python floats, for :meth:`reverse_step_`."""

    def _at(self, name: str, k: Tensor, like: Tensor) -> Tensor:
        """The constant ``name`` at steps ``k`` (a scalar or [B]), shaped to broadcast against ``like`` [B, ...]."""
        value: Tensor = getattr(self, name)[k]
        return value.view(*value.shape, *(1,) * (like.dim() - value.dim()))  # [B] -> [B, 1, ...]

    def q_sample(self, x0: Tensor, k: Tensor, noise: Tensor) -> Tensor:
        """``x_k = sqrt(abar_k) x_0 + sqrt(1 - abar_k) noise`` for targets ``x0`` [B, ...] at steps ``k`` [B]."""
        return self._at("signal", k, x0) * x0 + self._at("noise_scale", k, x0) * noise

    def posterior_mean(self, xk: Tensor, x0_hat: Tensor, k: Tensor) -> Tensor:
        """The mean of ``q(x_{k-1} | x_k, x_0 = x0_hat)`` (see the module docstring)."""
        return self._at("coef_x0", k, xk) * x0_hat + self._at("coef_xk", k, xk) * xk

    def reverse_step(self, xk: Tensor, x0_hat: Tensor, k: Tensor, noise: Tensor) -> Tensor:
        """One draw ``x_{k-1}`` from ``q(x_{k-1} | x_k, x0_hat)``: the posterior mean plus ``beta~_k``-scaled noise.

        At ``k = 0`` the standard deviation is 0: the draw is ``x0_hat`` itself, whatever ``noise`` is.
        """
        return self.posterior_mean(xk, x0_hat, k) + self._at("posterior_std", k, xk) * noise

    def reverse_step_(self, xk: Tensor, x0_hat: Tensor, k: int, noise: Tensor | None) -> Tensor:
        """:meth:`reverse_step` at one step ``k`` for every row, in place on ``xk`` (no gradient; ``noise`` None at 0).

        Sampling runs this ``K`` times over every draw of every window: three in-place passes over ``xk`` instead
        of the six new tensors of :meth:`reverse_step`.
        """
        c0, ck, std = self._reverse_constants[k]
        xk.mul_(ck).add_(x0_hat, alpha=c0)
        if noise is not None and std > 0:
            xk.add_(noise, alpha=std)
        return xk


def step_embedding(k: Tensor, dim: int) -> Tensor:
    """The sinusoidal embedding [..., 2 * (dim // 2)] of integer steps ``k`` [...] (the Transformer's, as DDPM uses).

    Half the features are ``sin(k w_i)``, half ``cos(k w_i)``, with frequencies ``w_i = 10000^(-i / (dim // 2))``.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=k.device, dtype=torch.float32) / half)
    angles = k.to(torch.float32)[..., None] * freqs  # [...] -> [..., half]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
