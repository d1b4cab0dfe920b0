"""The standard Student-t distribution's log density, CDF and quantile function in plain torch.

``torch.distributions.StudentT`` has neither a CDF nor a quantile function, and its sampler takes no generator;
the Student-t and hurdle output heads (:mod:`stratcast.daemon.zoo.heads`) need all three. Every function here
works elementwise on broadcastable tensors of real degrees of freedom ``df > 0`` and computes in float64 (the
continued fraction and the tails need it), returning the input's dtype.

* CDF: through the regularised incomplete beta function, ``P(|T| > |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2)``,
  evaluated by its continued fraction (Numerical Recipes, 3rd ed., 6.4) until every element has converged (a
  device sync every :data:`CHECK_EVERY` terms) or :data:`CF_TERMS` terms.
* Quantile function: Hill's algorithm 396 (Comm. ACM 13, 1970) as R's ``qt`` implements it, refined by a few
  steps of Hill's second-order Taylor correction on the CDF above (R's ``qt`` does the same), accurate to about
  1e-10 relative in float64 for ``df >= 1``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

CF_TERMS = 200
"""Most continued-fraction terms; it converges in O(sqrt(max(a, b))) terms, so this covers df up to about 10^4."""
CHECK_EVERY = 8
"""Continued-fraction terms between convergence checks."""
REFINE_STEPS = 3
_TINY = 1e-300


def log_density(z: Tensor, df: Tensor) -> Tensor:
    """Log of the standard Student-t density at ``z`` with ``df`` degrees of freedom (same dtype as ``z``)."""
    half = (df + 1) / 2
    norm = torch.lgamma(half) - torch.lgamma(df / 2) - 0.5 * torch.log(df * math.pi)
    return norm - half * torch.log1p(z.square() / df)


def cdf(t: Tensor, df: Tensor) -> Tensor:
    """``P(T <= t)`` for a standard Student-t with ``df`` degrees of freedom."""
    t64, df64 = _broadcast(t, df)
    tail = 0.5 * _betainc(df64 / 2, torch.full_like(df64, 0.5), df64 / (df64 + t64.square()))  # P(T > |t|)
    return torch.where(t64 > 0, 1 - tail, tail).to(t.dtype)


def icdf(u: Tensor, df: Tensor) -> Tensor:
    """The quantile of level ``u`` in (0, 1) of a standard Student-t with ``df`` degrees of freedom."""
    u64, df64 = _broadcast(u, df)
    p = torch.minimum(u64, 1 - u64)  # the lower tail; the sign comes back at the end
    q = _hill(2 * p, df64)
    for _ in range(REFINE_STEPS):  # Hill (1981): a two-term Taylor step on the upper tail P(T > q) = p
        upper = 1 - cdf(q, df64)
        dens = log_density(q, df64).exp()
        step = torch.where(dens > 0, (upper - p) / dens.clamp(min=_TINY), 0.0)
        q = q + step * (1 + step * q * (df64 + 1) / (2 * (q.square() + df64)))
    return torch.where(u64 < 0.5, -q, q).to(u.dtype)


def _broadcast(x: Tensor, df: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` and ``df`` in float64, broadcast to one shape on ``x``'s device."""
    x64, df64 = x.double(), df.double().to(x.device)
    return x64 + torch.zeros_like(df64), df64 + torch.zeros_like(x64)


def _hill(two_tail: Tensor, df: Tensor) -> Tensor:
    """Hill's approximation of ``q >= 0`` with ``P(|T| > q) = two_tail`` (the start of the refinement)."""
    a = 1 / (df - 0.5)
    b = 48 / a.square()
    c = ((20700 * a / b - 98) * a - 16) * a + 96.36
    d = ((94.5 / (b + c) - 3) / b + 1) * torch.sqrt(a * math.pi / 2) * df
    y = (d * two_tail).pow(2 / df)
    # near the centre: an asymptotic inverse expansion about the normal quantile
    x = torch.special.ndtri(0.5 * two_tail)
    c_near = c + torch.where(df < 5, 0.3 * (df - 4.5) * (x + 0.6), 0.0)
    c_near = (((0.05 * d * x - 5) * x - 7) * x - 2) * x + b + c_near
    xx = x.square()
    y_near = (((((0.4 * xx + 6.3) * xx + 36) * xx + 94.5) / c_near - xx - 3) / b + 1) * x
    near = torch.expm1(a * y_near.square())
    # in the tails
    y_safe = y.clamp(min=_TINY)
    far = ((1 / (((df + 6) / (df * y_safe) - 0.089 * d - 0.822) * (df + 2) * 3) + 0.5 / (df + 4)) * y_safe - 1) * (
        df + 1
    ) / (df + 2) + 1 / y_safe
    use_near = ((df < 2.1) & (two_tail > 0.5)) | (y > 0.05 + a)
    return torch.sqrt(df * torch.where(use_near, near, far))


def _betainc(a: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """The regularised incomplete beta function ``I_x(a, b)`` (float64 inputs)."""
    flip = x > (a + 1) / (a + b + 2)  # the continued fraction converges fast below this point
    a2, b2, x2 = torch.where(flip, b, a), torch.where(flip, a, b), torch.where(flip, 1 - x, x)
    log_front = torch.lgamma(a2 + b2) - torch.lgamma(a2) - torch.lgamma(b2) + a2 * torch.log(x2) + b2 * torch.log1p(-x2)
    value = torch.exp(log_front) * _beta_fraction(a2, b2, x2) / a2
    return torch.where(flip, 1 - value, value)


def _beta_fraction(a: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """The continued fraction of the incomplete beta function by the modified Lentz method."""

    def guard(v: Tensor) -> Tensor:
        return torch.where(v.abs() < _TINY, _TINY, v)

    c = torch.ones_like(x)
    d = 1 / guard(1 - (a + b) * x / (a + 1))
    h = d
    for m in range(1, CF_TERMS + 1):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1 / guard(1 + even * d)
        c = guard(1 + even / c)
        h = h * d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 / guard(1 + odd * d)
        c = guard(1 + odd / c)
        h = h * d * c
        if m % CHECK_EVERY == 0 and not bool(((d * c - 1).abs() > 1e-15).any()):
            break
    return h
