"""A conditional denoising diffusion forecaster after TimeDiff (Shen and Kwok, ICML 2023) on DDPM (Ho et al., 2020).

The papers: Shen and Kwok, "Non-autoregressive Conditional Diffusion Models for Time Series Prediction", ICML 2023;
Ho, Jain and Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.

The whole horizon ``y`` [H] is one diffusion variable (non-autoregressive). Training noises it to a random step
``k`` in closed form (``x_k = sqrt(abar_k) y + sqrt(1 - abar_k) eps``, :mod:`~stratcast.daemon.zoo.blocks.diffusion`)
and a denoiser ``x_theta(x_k, k, c)`` estimates ``y`` back from the noisy horizon, the step and a condition ``c``
built from the input window; as in TimeDiff it predicts ``y`` itself (not the noise) and the loss is
``|y - x_theta(x_k, k, c)|^2``. The condition holds TimeDiff's two parts:

* **future mixup** ``z_mix = m * F(x) + (1 - m) * y``: a linear projection ``F`` of the window to the horizon,
  mixed during training with the true future by a mask ``m`` drawn uniformly from [0, 1) per element; at inference
  (and in validation) ``z_mix = F(x)``. The mixed-in future teaches the denoiser to read the condition.
* **autoregressive initialisation** ``z_ar = W x + b``: a linear autoregressive guess of the horizon from the
  window. The paper fits this linear model on the training set beforehand; here it is fitted at the same time, its
  squared error added to the denoising loss.

Forecasting (:meth:`Diffusion.sample`) starts every draw from ``x_K ~ N(0, I)`` and runs the ``K`` reverse steps
of DDPM's eqs. 6-7, each one denoiser pass; the engine's point forecast is the mean of its seeded draws. The
denoiser is an MLP over the horizon: the noisy horizon, the condition (projected once per window, not per step)
and an MLP of the step's sinusoidal embedding are summed into a hidden vector, refined by ``num_layers`` residual
blocks (none by default) and read out as ``x0_hat`` [H]. Its cost is what bounds the model on a CPU: a forecast
runs ``draws x K`` passes per window (measured at the defaults, 6,000 windows x 100 draws x 20 steps: about 8.5 s
of CPU time on one core, of which the denoiser is about half and the normal draws about a quarter).

With few steps the draws are narrower than the data: each reverse step puts the denoiser's estimate, a conditional
mean, where DDPM's posterior wants ``x_0`` itself (with the exact denoiser of Gaussian data the spread is about 0.86
of the data's at 20 cosine steps, 0.97 at 100). Their mean, the forecast, is not affected; the engine's intervals
are calibrated on residuals, not read from the draws. Future mixup narrows them further.

The model trains with its own loss (:class:`~stratcast.daemon.zoo.heads.OwnLoss`): the run's ``loss`` option and
its head are not used, and ``n_outputs`` only shapes :meth:`Diffusion.forward`, which the engine does not call (see
there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import torch
from torch import Tensor, nn

from stratcast.daemon.zoo.blocks.diffusion import SCHEDULES, DiffusionSchedule, step_embedding
from stratcast.daemon.zoo.contract import ACTIVATIONS, ModelConfig, activation, check_model_args, param
from stratcast.daemon.zoo.search import among, floats, ints

SAMPLE_ROWS = 1 << 17
"""Most rows (windows x draws) one reverse pass carries: the draws of a large batch go in groups of this many."""
VALIDATION_SEED = 0
"""Seed of the steps and noise of the loss in eval mode: every validation check scores the same noisy targets."""


@dataclass(frozen=True, kw_only=True)
class DiffusionConfig(ModelConfig):
    """TimeDiff-style diffusion forecaster architecture."""

    steps: int = param(
        20,
        lo=2,
        hi=1000,
        search=among(10, 20, 50),
        help="diffusion steps K (default 20): every forecast draw runs K denoiser passes and the engine averages "
        "100 draws, so K sets the forecast's cost (at 20, one origin of 6,000 strategies takes about 10 s of one CPU "
        "core; a job forecasts each validation origin two or three times)",
    )
    schedule: str = param(
        "cosine",
        choices=SCHEDULES,
        search=among(*SCHEDULES),
        help="noise schedule: cosine (Nichol and Dhariwal; even over few steps) or linear (DDPM's, rescaled to K)",
    )
    hidden_size: int = param(64, lo=1, hi=4096, search=among(32, 64, 128, 256), help="width of the denoiser MLP")
    num_layers: int = param(
        0,
        lo=0,
        hi=8,
        search=ints(0, 2),
        help="residual blocks of the denoiser after its hidden layer (default 0: one hidden layer, light on a CPU; "
        "each block about doubles the cost of a forecast)",
    )
    embedding_size: int = param(
        32, lo=2, hi=512, search=among(16, 32, 64), help="features of the diffusion step's sinusoidal embedding"
    )
    mixup: bool = param(
        True,
        choices=(False, True),
        search=among(False, True),
        help="future mixup: in training, mix the true future into the window's projection by a random mask",
    )
    ar_init: bool = param(
        True,
        choices=(False, True),
        search=among(False, True),
        help="condition on a linear autoregressive guess of the horizon too (fitted with its own squared error)",
    )
    dropout: float = param(0.1, lo=0.0, hi=0.9, search=floats(0.0, 0.3), help="dropout in the denoiser's blocks")
    activation: str = param("silu", choices=ACTIVATIONS, help="activation of the denoiser (DDPM uses swish: silu)")

    @classmethod
    def tiny(cls) -> Self:
        """Four steps and a narrow denoiser with one residual block (so the harness runs the blocks too)."""
        return cls(steps=4, hidden_size=16, num_layers=1, embedding_size=8)


class ResidualMLP(nn.Module):
    """``h + Dropout(W2 act(W1 h))``."""

    def __init__(self, width: int, *, act: str, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, width), activation(act), nn.Linear(width, width), nn.Dropout(dropout))

    def forward(self, h: Tensor) -> Tensor:
        """[..., W] -> [..., W]."""
        out: Tensor = h + self.net(h)
        return out


class Denoiser(nn.Module):
    """``x_theta(x_k, k, c)``: an MLP from the noisy horizon, the step and the condition to an estimate of ``y``.

    The condition's and the step's contributions to the first hidden layer are computed apart
    (:meth:`condition`, :meth:`step`) so that sampling computes them once, not once per pass.
    """

    def __init__(self, horizon: int, n_condition: int, config: DiffusionConfig) -> None:
        super().__init__()
        width, act = config.hidden_size, config.activation
        self.embedding_size = config.embedding_size
        self.step_mlp = nn.Sequential(
            nn.Linear(2 * (config.embedding_size // 2), width), activation(act), nn.Linear(width, width)
        )
        self.cond = nn.Linear(n_condition, width)
        self.noisy = nn.Linear(horizon, width, bias=False)  # the condition's layer holds the bias
        self.act = activation(act)
        self.blocks = nn.Sequential(
            *(ResidualMLP(width, act=act, dropout=config.dropout) for _ in range(config.num_layers))
        )
        self.out = nn.Linear(width, horizon)

    def condition(self, c: Tensor) -> Tensor:
        """The condition's term [B, W] of the first hidden layer, from the condition [B, n_condition]."""
        out: Tensor = self.cond(c)
        return out

    def step(self, k: Tensor) -> Tensor:
        """The step's term [..., W] of the first hidden layer, for integer steps ``k`` [...]."""
        out: Tensor = self.step_mlp(step_embedding(k, self.embedding_size))
        return out

    def forward(self, xk: Tensor, condition: Tensor, step: Tensor) -> Tensor:
        """``x0_hat`` [B, H] from the noisy horizon [B, H] and the terms of :meth:`condition` and :meth:`step`."""
        # [B, W]: one fused matmul-add; a step term [1, W] broadcasts over the rows
        h = self.act(torch.addmm(condition + step, xk, self.noisy.weight.T))
        out: Tensor = self.out(self.blocks(h))
        return out


class Diffusion(nn.Module):
    """Conditional DDPM over the whole horizon, conditioned on future mixup and a linear autoregressive guess."""

    def __init__(self, config: DiffusionConfig, *, input_size: int, horizon: int, n_outputs: int = 1) -> None:
        super().__init__()
        check_model_args(input_size, horizon, n_outputs)
        self.horizon, self.n_outputs, self.mixup = horizon, n_outputs, config.mixup
        self.schedule = DiffusionSchedule(config.schedule, config.steps)
        self.history = nn.Linear(input_size, horizon)
        """``F``: the window projected onto the horizon (the mixup's inference-time part)."""
        self.ar = nn.Linear(input_size, horizon) if config.ar_init else None
        """The linear autoregressive guess ``z_ar`` of the horizon (None without ``ar_init``)."""
        self.denoiser = Denoiser(horizon, horizon * (2 if config.ar_init else 1), config)

    @property
    def steps(self) -> int:
        """The diffusion steps ``K``."""
        return self.schedule.steps

    def guesses(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """The window's projection ``F(x)`` [B, H] and the autoregressive guess ``z_ar`` [B, H] (or None)."""
        return self.history(x), None if self.ar is None else self.ar(x)

    def condition(self, z_mix: Tensor, z_ar: Tensor | None) -> Tensor:
        """The denoiser's condition term [B, W] from the mixup part and the autoregressive guess."""
        c = z_mix if z_ar is None else torch.cat([z_mix, z_ar], dim=-1)  # [B, H] (+ [B, H]) -> [B, C]
        return self.denoiser.condition(c)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, L]`` -> ``[B, H, O]``: the denoiser's ``x0_hat`` at the last step from ``x_K = 0``, in every output.

        Not the engine's forecast (that is the mean of :meth:`sample`'s draws) but a one-pass stand-in for it: at
        the last step ``abar_K`` is near 0, so the noisy horizon says almost nothing about ``y`` and an ``x_0``
        denoiser trained with squared error estimates the conditional mean ``E[y | window]`` there.
        """
        z_mix, z_ar = self.guesses(x)
        last = torch.full((1,), self.steps - 1, device=x.device, dtype=torch.long)
        x0_hat: Tensor = self.denoiser(
            z_mix.new_zeros(z_mix.shape), self.condition(z_mix, z_ar), self.denoiser.step(last)
        )
        return x0_hat[..., None].expand(*x0_hat.shape, self.n_outputs)  # [B, H] -> [B, H, O]

    def training_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The elementwise loss [B, H]: the denoising error at a random step, plus the AR guess's squared error.

        In training mode the steps, the noise and the mixup mask come from torch's global generator; in eval mode
        (validation) there is no mixup and the steps and noise come from :data:`VALIDATION_SEED`, so that
        successive validation checks score the same noisy targets and early stopping compares like with like.
        """
        generator = None if self.training else torch.Generator(device=x.device).manual_seed(VALIDATION_SEED)
        k = torch.randint(0, self.steps, (y.shape[0],), generator=generator, device=y.device)
        noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        z_mix, z_ar = self.guesses(x)
        if self.training and self.mixup:
            m = torch.rand(y.shape, device=y.device, dtype=y.dtype)
            z_mix = m * z_mix + (1 - m) * y
        xk = self.schedule.q_sample(y, k, noise)
        x0_hat = self.denoiser(xk, self.condition(z_mix, z_ar), self.denoiser.step(k))
        loss: Tensor = (x0_hat - y).square()
        return loss if z_ar is None else loss + (z_ar - y).square()

    def sample(self, x: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
        """``n`` forecast draws [n, B, H] for windows ``x`` [B, L]: reverse diffusion from ``x_K ~ N(0, I)``.

        Every random number comes from ``generator`` (torch's global one when None), so equal generators give
        equal draws. The draws go through the reverse steps in groups of at most :data:`SAMPLE_ROWS` rows.
        """
        condition = self.condition(*self.guesses(x))  # [B, W], once for every draw and step
        steps = self.denoiser.step(torch.arange(self.steps, device=x.device))  # [K, W], once for every draw
        per_group = max(1, SAMPLE_ROWS // max(x.shape[0], 1))
        draws = []
        for lo in range(0, n, per_group):
            group = min(per_group, n - lo)
            rows = self.reverse(condition.repeat(group, 1), steps, generator, x.dtype)  # [group * B, H]
            draws.append(rows.view(group, x.shape[0], self.horizon))
        return torch.cat(draws) if draws else x.new_zeros(0, x.shape[0], self.horizon)

    @torch.no_grad()
    def reverse(
        self, condition: Tensor, steps: Tensor, generator: torch.Generator | None, dtype: torch.dtype
    ) -> Tensor:
        """One draw [R, H] per row of the condition terms [R, W]: the ``K`` reverse steps from pure noise.

        The chain stays in ``dtype`` (the windows'), also where the denoiser runs under bf16 autocast; it is updated
        in place (:meth:`DiffusionSchedule.reverse_step_`), so no gradient flows through sampling.
        """
        xk = torch.randn((condition.shape[0], self.horizon), generator=generator, device=condition.device, dtype=dtype)
        noise = torch.empty_like(xk)
        for k in reversed(range(self.steps)):
            x0_hat = self.denoiser(xk, condition, steps[k : k + 1])
            self.schedule.reverse_step_(xk, x0_hat, k, noise.normal_(generator=generator) if k else None)
        return xk
