"""Synthetic strategy reports: zero-heavy weekly profit panels for tests, the demo and benchmarks.

The generative model, per strategy ``i`` and week ``t`` (all draws from one seeded ``numpy`` Generator):

* Families. Strategies come numbered in families of about 25 consecutive numbers, as an optimiser's report
  lists one system under many parameter sets. A family shares a factor ``f_{k, t}`` and a tail weight.
* Activity. A two-state Markov chain says whether a trade is open. Its stationary share ``a_i`` (the activity
  level) is spread from 5% to 100% (``0.05 + 0.95 * Beta(1.5, 0.8)``, mean 0.67; levels above 0.95, about
  one strategy in eight, become 1: always in the market), so about a third of all weeks are exactly 0.0.
  Its persistence ``rho_i ~ U(0.2, 0.8)`` is the lag-1 autocorrelation of the on/off state:
  ``P(on | on) = a + rho (1 - a)``, ``P(on | off) = a (1 - rho)``, so trades cluster in runs as real
  systems' do.
* Noise, in units of the strategy's scale: ``b_i m_t + c_i f_{k(i), t} + d_i e_{i, t}``. ``m_t`` is a market
  factor every strategy loads on (``b_i ~ N(0, 0.3)``: trend followers and faders have opposite signs),
  ``f_{k, t}`` the family factor (loading ``c_i ~ U(0.2, 0.8)``), ``e_{i, t}`` idiosyncratic. All are
  Student-t scaled to unit variance: the factors with 4 degrees of freedom, ``e`` with the family's
  ``nu_k ~ U(2.5, 8)``; ``d_i`` makes the total variance 1 (at least 0.1 of it idiosyncratic).
* Edge, the mean profit of an open week in units of the scale (a per-trade Sharpe ratio). Most strategies
  (85%) have ``N(-0.03, 0.04)``: nothing, or a little less after costs. 8% have a real persistent edge
  ``U(0.15, 0.4)``, which a good model can find and rank. 7% start with such an edge and lose it around the
  middle of the sample (week ``T/2 ± T/8``): half decay to ``N(-0.03, 0.04)`` with a time constant of
  ``U(T/20, T/5)`` weeks, half flip at once to ``-U(0.3, 1)`` times their old edge.
* Scale ``s_i = 10 ** U(0, 3)`` pips: three orders of magnitude, from scalpers to swing systems.

The profit is ``s_i (edge_{i, t} + noise_{i, t})`` in open weeks, rounded to 0.1 pip (an open week that
rounds to 0 becomes ±0.1, so that exactly 0.0 always means no open trade), and 0.0 otherwise.

Speed: profits are drawn and assembled one family block at a time, in cache, because on large panels fresh
``[N, T]`` temporaries cost more (page faults) than the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

_FAMILY_SIZE = 25
"""Average number of strategies in a family."""
_PERSISTENT_SHARE = 0.08
"""Share of strategies with a real, lasting edge."""
_CHANGING_SHARE = 0.07
"""Share of strategies whose edge decays or flips halfway."""
_FACTOR_DOF = 4.0
"""Degrees of freedom of the market and family factors."""


def make_strategy_panel(
    n_strategies: int = 500, n_weeks: int = 208, *, seed: int = 0, start: str = "2016-01-04"
) -> pd.DataFrame:
    """A synthetic long-format strategy report, the generative model as in the module docstring.

    Args:
        n_strategies: Number of strategies (N).
        n_weeks: Number of weeks (T).
        seed: Seed of the numpy Generator; equal arguments give equal frames.
        start: The first week; a date that is not a Monday moves on to the next Monday.

    Returns:
        N * T rows sorted by strategy then week: ``No.`` (int64, 1..N), ``week`` (Mondays) and ``profit``
        (float64, pips, exactly 0.0 in weeks without an open trade).
    """
    if n_strategies < 1 or n_weeks < 1:
        raise ValueError(f"need at least one strategy and one week, not {n_strategies} x {n_weeks}")
    rng = np.random.default_rng(seed)
    params = _draw_strategies(rng, n_strategies, n_weeks)
    profit = _profits(rng, params, _activity(rng, params, n_weeks))
    weeks = pd.date_range(start, periods=n_weeks, freq="W-MON").to_numpy()
    columns = {
        "No.": np.repeat(np.arange(1, n_strategies + 1, dtype=np.int64), n_weeks),
        "week": np.tile(weeks, n_strategies),
        "profit": profit.ravel(),
    }
    return pd.DataFrame(columns, copy=False)


@dataclass(frozen=True)
class _Strategies:
    """The per-strategy parameters, [N] arrays, and the family blocks."""

    family_starts: NDArray[np.int64]
    """[K + 1] first strategy of each family, then N."""
    family_dof: NDArray[np.float64]
    """[K] degrees of freedom of each family's idiosyncratic noise."""
    activity: NDArray[np.float64]
    persistence: NDArray[np.float64]
    scale: NDArray[np.float64]
    market_loading: NDArray[np.float64]
    family_loading: NDArray[np.float64]
    edge_before: NDArray[np.float64]
    edge_after: NDArray[np.float64]
    change_week: NDArray[np.float64]
    change_time: NDArray[np.float64]
    """Time constant of the change in weeks: a tenth of a week for flips, long for decays."""


def _draw_strategies(rng: np.random.Generator, n: int, n_weeks: int) -> _Strategies:
    n_families = max(1, n // _FAMILY_SIZE)
    cuts = np.sort(rng.choice(np.arange(1, n), n_families - 1, replace=False))
    activity = 0.05 + 0.95 * rng.beta(1.5, 0.8, n)
    activity[activity > 0.95] = 1.0
    kind = rng.random(n)
    persistent = kind < _PERSISTENT_SHARE
    changing = (kind >= _PERSISTENT_SHARE) & (kind < _PERSISTENT_SHARE + _CHANGING_SHARE)
    flips = changing & (rng.random(n) < 0.5)
    common = rng.normal(-0.03, 0.04, n)
    strong = rng.uniform(0.15, 0.4, n)
    return _Strategies(
        family_starts=np.concatenate([[0], cuts, [n]]).astype(np.int64),
        family_dof=rng.uniform(2.5, 8.0, n_families),
        activity=activity,
        persistence=rng.uniform(0.2, 0.8, n),
        scale=10.0 ** rng.uniform(0.0, 3.0, n),
        market_loading=rng.normal(0.0, 0.3, n),
        family_loading=rng.uniform(0.2, 0.8, n),
        edge_before=np.where(persistent | changing, strong, common),
        edge_after=np.where(flips, -strong * rng.uniform(0.3, 1.0, n), np.where(persistent, strong, common)),
        change_week=n_weeks * rng.uniform(0.375, 0.625, n),
        change_time=np.where(flips, 0.1, n_weeks * rng.uniform(0.05, 0.2, n)),
    )


def _activity(rng: np.random.Generator, params: _Strategies, n_weeks: int) -> NDArray[np.bool_]:
    """[N, T] whether a trade is open, from each strategy's on/off Markov chain."""
    a, rho = params.activity, params.persistence
    stay_on = (a + rho * (1.0 - a)).astype(np.float32)
    turn_on = (a * (1.0 - rho)).astype(np.float32)
    is_open = np.empty((n_weeks, a.shape[0]), np.bool_)  # [T, N]: one contiguous row per week
    is_open[0] = rng.random(a.shape[0], dtype=np.float32) < a
    for t in range(1, n_weeks):  # the chain runs forward in time; each step is vectorised over strategies
        is_open[t] = rng.random(a.shape[0], dtype=np.float32) < np.where(is_open[t - 1], stay_on, turn_on)
    return np.ascontiguousarray(is_open.T)  # [T, N] -> [N, T]


def _profits(rng: np.random.Generator, params: _Strategies, active: NDArray[np.bool_]) -> NDArray[np.float64]:
    """[N, T] profits in pips: noise, edge and scale, rounded, 0.0 where no trade is open.

    One family block at a time: each block's temporaries stay in cache and only the result is [N, T].
    """
    n_families, n_weeks = params.family_dof.shape[0], active.shape[1]
    factors = _student_t(rng, (n_families + 1, n_weeks), _FACTOR_DOF)  # [K + 1, T]: families, then market
    b, c = params.market_loading, params.family_loading
    d = np.sqrt(np.maximum(1.0 - b**2 - c**2, 0.1))
    profit = np.empty(active.shape, np.float64)
    for k in range(n_families):
        lo, hi = params.family_starts[k], params.family_starts[k + 1]
        block = _student_t(rng, (hi - lo, n_weeks), float(params.family_dof[k]))
        block *= d[lo:hi, None].astype(np.float32)
        block += (c[lo:hi, None] * factors[k] + b[lo:hi, None] * factors[-1]).astype(np.float32)
        block += _edge(params, slice(lo, hi), n_weeks)
        block *= params.scale[lo:hi, None].astype(np.float32)
        profit[lo:hi] = _round_pips(block, active[lo:hi])
    return profit


def _student_t(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    dof: float,
) -> NDArray[np.float32]:
    """Student-t draws with ``dof`` degrees of freedom, scaled to unit variance.

    ``z * sqrt((nu - 2) / chi2_nu)`` with ``chi2_nu = 2 gamma(nu / 2)``: ``z / sqrt(chi2_nu / nu)`` is t with
    ``nu`` degrees of freedom, variance ``nu / (nu - 2)``. Drawn as a normal and a gamma in float32, several
    times faster than ``Generator.standard_t``.
    """
    z = rng.standard_normal(shape, dtype=np.float32)
    gamma = rng.standard_gamma(dof / 2.0, shape, dtype=np.float32)
    np.divide(np.float32((dof - 2.0) / 2.0), gamma, out=gamma)
    z *= np.sqrt(gamma, out=gamma)
    return z


def _edge(params: _Strategies, rows: slice, n_weeks: int) -> NDArray[np.float32]:
    """[rows, T] the mean profit of an open week in units of scale: the starting edge, moving after the change."""
    before, after = params.edge_before[rows, None], params.edge_after[rows, None]
    lag = np.maximum(np.arange(n_weeks) - params.change_week[rows, None], 0.0)
    moved = np.where(after != before, 1.0 - np.exp(-lag / params.change_time[rows, None]), 0.0)
    return (before + (after - before) * moved).astype(np.float32)


def _round_pips(profit: NDArray[np.float32], active: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Round to 0.1 pip, keeping exact 0.0 for closed weeks only; overwrites ``profit``."""
    # In tenths of a pip after rint: whole numbers, which float32 and float64 hold exactly.
    profit *= 10.0
    np.rint(profit, out=profit)
    tiny = active & (profit == 0.0)
    profit[tiny] = np.copysign(1.0, profit[tiny])  # rint keeps the sign of what rounded to (-)0
    np.copyto(profit, 0.0, where=~active)
    rounded = profit.astype(np.float64)
    rounded /= 10.0
    return rounded
