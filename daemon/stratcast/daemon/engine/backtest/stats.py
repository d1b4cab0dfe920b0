"""Honest statistics of a walk-forward selection backtest: what each way of picking strategies earned.

Input is the engine's ``picks`` frame (one row per cutoff, method and eligible strategy with its ``rank`` and its
``realized`` mean profit per period over the hold) and its per-cutoff records. For every pick size of
:meth:`BacktestOptions.pick_sizes` (evaluated at each cutoff on that cutoff's eligible strategies) and every method:

* ``mean``: the picks' realized profit per period after cost, averaged over cutoffs. A pick's ``cost`` is paid
  once per holding of ``W = hold_periods`` periods, so it costs ``cost / W`` per period.
* ``std``: the spread of that per-cutoff figure across cutoffs (sample standard deviation).
* ``hit_rate``: the share of cutoffs whose picks beat the all-strategies average (strictly). Every strategy pays
  the same cost, so the cost cancels here. None for ``all`` itself.
* ``cumulative``: the cumulative sum over cutoffs of the picks' mean profit per holding (per period times ``W``).
  Each cutoff opens a new holding and each holding counts in full: with ``W > every`` holdings overlap and the
  curve adds the overlapping positions, as if an equal new stake were placed at every cutoff (it is not the
  equity of one account); with ``W < every`` the periods between holdings earn nothing.

Methods: ``model``, ``trailing_mean``, ``last_value`` (the engine's rankings), ``random`` (``draws`` seeded draws
per cutoff without replacement: the mean of the draws, with the 5-95% band of a single random picker's figures),
``all`` (every eligible strategy, paying the same cost per strategy as a pick: the average strategy one could
hold) and ``best`` (the oracle, by realized profit).

The model's picks against the trailing mean's: the paired difference per cutoff, its mean, and a 95% confidence
interval from a circular block bootstrap across cutoffs (Politis & Romano 1992), which keeps the dependence between
neighbouring cutoffs that overlapping holdings and slowly changing strategies create. Block length ``L``:
``max(ceil(W / every), ceil(n ** (1/3)))`` capped at ``n // 2`` cutoffs: a block spans at least the cutoffs
whose holdings share periods, and grows as ``n^(1/3)``, the rate that is optimal for a variance (Hall, Horowitz &
Jing 1995); at least two blocks make up a resample, or every resample would hold the same cutoffs. The interval
is ``mean +- t * se``: ``se`` the standard deviation of 2,000 seeded resampled means (times ``sqrt(n / (n - 1))``),
``t`` Student's 97.5% quantile with ``floor(n / L) - 1`` degrees of freedom, the number of roughly independent
blocks less one, as the batch-means method of simulation output analysis does. The plain percentile interval
covered a known mean only 71% of the time at 12 cutoffs (AR(1) differences, phi 0.4); this one 91%.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from stratcast.shared.protocol import BacktestOptions

MODEL, TRAILING, LAST, RANDOM, ALL, BEST = "model", "trailing_mean", "last_value", "random", "all", "best"
MODEL_RAW = "model_raw"
"""The raw model's picks where ``model``'s forecast is combined with the baselines."""
RANKED = (MODEL, MODEL_RAW, TRAILING, LAST, BEST)
"""The methods the engine ranks the strategies by, in the ``picks`` frame."""
METHODS = (MODEL, MODEL_RAW, TRAILING, LAST, RANDOM, ALL, BEST)
"""Every method of the table, in the order it is shown."""
COLUMNS = ("cutoff", "date", "method", "strategy", "rank", "forecast", "realized")
SURVIVORSHIP = (
    "Survivorship: each cutoff ranks only the strategies observed through its whole holding, so one that stopped "
    "trading during a holding is left out of every method's picks and of the average there."
)
"""The caveat every backtest table states (``survivorship`` in ``backtest.json``)."""
SEED = 13
"""Seed of the random picks and of the bootstrap: the same backtest gives the same table."""
BOOTSTRAP = 2000
BAND = (0.05, 0.95)
"""The random picker's band: these quantiles over the draws."""
Array = np.ndarray[Any, np.dtype[np.float64]]


def check_picks(picks: pd.DataFrame) -> None:
    """Raise ValueError naming what the ``picks`` frame lacks: a column, or the model's rows."""
    missing = [c for c in COLUMNS if c not in picks.columns]
    if missing:
        raise ValueError(f"backtest picks lack the columns {missing}; they have {list(picks.columns)}")
    if not (picks["method"] == MODEL).any():
        raise ValueError(f"backtest picks hold no '{MODEL}' rows; methods: {sorted(picks['method'].unique())}")


def universe(picks: pd.DataFrame) -> dict[int, Array]:
    """Each cutoff's eligible strategies' realized means, in strategy order (from the model's rows)."""
    rows = picks[picks["method"] == MODEL].sort_values(["cutoff", "strategy"])
    groups = rows.groupby("cutoff", sort=True)["realized"]
    return {int(str(c)): g.to_numpy(np.float64) for c, g in groups}


def pick_counts(options: BacktestOptions, strategies: Mapping[int, int]) -> dict[str, dict[int, int]]:
    """Per pick size label, the number of strategies picked at each cutoff out of its ``strategies``."""
    counts: dict[str, dict[int, int]] = {}
    for cutoff, n in strategies.items():
        for label, k in options.pick_sizes(n).items():
            counts.setdefault(label, {})[cutoff] = k
    return counts


def ranked_profit(picks: pd.DataFrame, k: Mapping[int, int], cost_per_period: float) -> pd.DataFrame:
    """[cutoffs, methods] mean realized profit per period after cost of each ranked method's top ``k[cutoff]``."""
    ranked = picks[picks["method"].isin(RANKED)]
    chosen = ranked[ranked["rank"] <= ranked["cutoff"].map(dict(k))]
    table = chosen.groupby(["cutoff", "method"])["realized"].mean().unstack("method")  # [cutoffs, methods]
    return table.sort_index() - cost_per_period


def random_profit(realized: Mapping[int, Array], k: Mapping[int, int], draws: int) -> Array:
    """[cutoffs, draws] mean realized profit per period of ``draws`` random picks of ``k`` (no replacement)."""
    out = np.empty((len(realized), draws))
    for i, (cutoff, values) in enumerate(sorted(realized.items())):
        rng = np.random.default_rng((SEED, cutoff))
        out[i] = draw_means(values, k[cutoff], draws, rng)
    return out


def draw_means(values: Array, k: int, draws: int, rng: np.random.Generator) -> Array:
    """[draws] means of ``k`` of ``values`` drawn without replacement, in chunks of about a million numbers."""
    n = values.shape[0]
    chunk = max(1, 1_000_000 // n)
    means = []
    for start in range(0, draws, chunk):
        keys = rng.random((min(chunk, draws - start), n))  # [d, n] random keys: the k smallest are the draw
        chosen = np.argpartition(keys, k - 1, axis=1)[:, :k]  # [d, k]
        means.append(values[chosen].mean(axis=1))
    return np.concatenate(means)


def summary(profit: Array, average: Array, hold: int) -> dict[str, Any]:
    """Mean, spread, hit rate against ``average`` and cumulative profit of one method's per-cutoff ``profit``."""
    curve = np.cumsum(profit * hold)
    return {
        "mean": float(profit.mean()),
        "std": float(profit.std(ddof=1)) if profit.size > 1 else 0.0,
        "hit_rate": float((profit > average).mean()),
        "cumulative": float(curve[-1]),
        "curve": [float(v) for v in curve],
    }


def random_summary(draws: Array, average: Array, hold: int) -> dict[str, Any]:
    """:func:`summary` of the draws' mean, with the 5-95% band of one random picker's mean, hit rate and curve."""
    out = summary(draws.mean(axis=1), average, hold)
    lo, hi = BAND
    picker_means = draws.mean(axis=0)  # [draws] each random picker's mean over cutoffs
    out["band"] = [float(np.quantile(picker_means, lo)), float(np.quantile(picker_means, hi))]
    out["hit_rate"] = float((draws > average[:, None]).mean())
    curves = np.cumsum(draws * hold, axis=0)  # [cutoffs, draws]
    out["curve_band"] = [[float(v) for v in np.quantile(curves, q, axis=1)] for q in BAND]
    return out


def block_length(n: int, hold: int, every: int) -> int:
    """The bootstrap's block: the cutoffs whose holdings overlap, at least ``n^(1/3)``, at most ``n // 2``."""
    root = next(r for r in range(1, n + 2) if r**3 >= n)  # ceil(n ** (1/3)) without float rounding
    return max(1, min(n // 2, max(math.ceil(hold / every), root)))


def block_bootstrap_means(diff: Array, block: int, resamples: int = BOOTSTRAP, seed: int = SEED) -> Array:
    """[resamples] means of circular block resamples of ``diff`` (blocks of ``block`` cutoffs, wrapping around)."""
    n = diff.shape[0]
    blocks = math.ceil(n / block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(resamples, blocks))
    idx = (starts[:, :, None] + np.arange(block)) % n  # [resamples, blocks, block]
    idx = idx.reshape(resamples, blocks * block)[:, :n]  # [resamples, blocks * block] -> [resamples, n]
    means: Array = diff[idx].mean(axis=1)
    return means


def difference(model: Array, trailing: Array, hold: int, every: int) -> dict[str, Any]:
    """The paired difference model - trailing mean per cutoff: its mean, 95% interval and verdict word."""
    diff = model - trailing
    n = diff.shape[0]
    out: dict[str, Any] = {"mean": float(diff.mean()), "cutoffs": n, "lo": None, "hi": None, "block": None}
    if n >= 2:
        block = block_length(n, hold, every)
        se = float(block_bootstrap_means(diff, block).std()) * math.sqrt(n / (n - 1))
        half = t_quantile(0.975, max(1, n // block - 1)) * se
        out.update(lo=out["mean"] - half, hi=out["mean"] + half, block=block)
    out["verdict"] = verdict_word(out["lo"], out["hi"])
    return out


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile: exact for 1 and 2 degrees of freedom, else the Cornish-Fisher expansion in 1/df.

    The expansion (Abramowitz & Stegun 26.7.5) is within 0.005 of the table from 3 degrees of freedom on.
    """
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = statistics.NormalDist().inv_cdf(p)
    terms = (
        (z**3 + z) / 4,
        (5 * z**5 + 16 * z**3 + 3 * z) / 96,
        (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
        (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160,
    )
    return z + sum(term / float(df) ** (i + 1) for i, term in enumerate(terms))


def verdict_word(lo: float | None, hi: float | None) -> str:
    """``better`` when the interval lies above 0, ``worse`` below it, else ``not distinguishable``."""
    if lo is not None and lo > 0:
        return "better"
    if hi is not None and hi < 0:
        return "worse"
    return "not distinguishable"


def verdict_sentence(label: str, k: str, diff: Mapping[str, Any]) -> str:
    """The plain sentence of one pick size's :func:`difference`, with its figures."""
    phrase = {"better": "better than", "worse": "worse than"}.get(diff["verdict"], "not distinguishable from")
    head = f"Top {label} ({k} strategies): the model's picks are {phrase} the trailing mean's at 95%"
    if diff["lo"] is None:
        return f"{head}: {diff['mean']:+.4g} per period from a single cutoff, too few for an interval."
    return (
        f"{head}: {diff['mean']:+.4g} per period (95% CI {diff['lo']:+.4g} to {diff['hi']:+.4g}, "
        f"{diff['cutoffs']} cutoffs, blocks of {diff['block']})."
    )


def error_summary(cutoffs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over cutoffs of each method's RMSE and horizon-total error, and the model's ratio to each baseline."""
    out: dict[str, Any] = {}
    for metric in ("rmse", "total_mae"):
        per_method: dict[str, list[float]] = {}
        for record in cutoffs:
            for method, figures in record.get("errors", {}).items():
                if metric in figures:
                    per_method.setdefault(method, []).append(float(figures[metric]))
        means = {method: float(np.mean(values)) for method, values in per_method.items()}
        ratios = {m: means[MODEL] / v for m, v in means.items() if m != MODEL and MODEL in means and v > 0}
        out[metric] = {"mean": means, "model_ratio": ratios}
    return out


def size_table(
    picks: pd.DataFrame, realized: Mapping[int, Array], k: Mapping[int, int], options: BacktestOptions
) -> dict[str, Any]:
    """Every method's :func:`summary` for one pick size, and the model's difference to the trailing mean."""
    hold = options.hold_periods
    cost = options.cost / hold
    cutoffs = sorted(realized)
    average = np.array([realized[c].mean() for c in cutoffs]) - cost
    ranked = ranked_profit(picks, k, cost).reindex(cutoffs)
    methods: dict[str, Any] = {}
    for method in METHODS:
        if method == RANDOM:
            methods[method] = random_summary(random_profit(realized, k, options.draws) - cost, average, hold)
        elif method == ALL:
            methods[method] = {**summary(average, average, hold), "hit_rate": None}  # the average against itself
        elif method in ranked.columns:
            methods[method] = summary(ranked[method].to_numpy(np.float64), average, hold)
    sizes = sorted(set(k.values()))
    out: dict[str, Any] = {"k": str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}", "methods": methods}
    if TRAILING in ranked.columns:
        out["difference"] = difference(
            ranked[MODEL].to_numpy(np.float64), ranked[TRAILING].to_numpy(np.float64), hold, options.every
        )
    return out


def backtest_table(picks: pd.DataFrame, cutoffs: list[dict[str, Any]], options: BacktestOptions) -> dict[str, Any]:
    """The whole table: per pick size every method's figures and curves, the verdicts, and the mean errors."""
    check_picks(picks)
    realized = universe(picks)
    counts = pick_counts(options, {c: v.shape[0] for c, v in realized.items()})
    sizes = {label: size_table(picks, realized, k, options) for label, k in counts.items()}
    verdicts = [
        verdict_sentence(label, size["k"], size["difference"]) for label, size in sizes.items() if "difference" in size
    ]
    dates = picks.drop_duplicates("cutoff").sort_values("cutoff")["date"].astype(str).tolist()
    return {
        "hold": options.hold_periods,
        "every": options.every,
        "cost": options.cost,
        "dates": dates,
        "sizes": sizes,
        "verdicts": verdicts,
        "errors": error_summary(cutoffs),
        "survivorship": SURVIVORSHIP,
    }
