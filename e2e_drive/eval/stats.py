"""Statistics for comparing driving agents: intervals, paired tests, verdicts.

Everything is seeded and vectorised (numpy); exact distributions come from scipy.stats.

- :func:`wilson_interval` for rates (success, collision).
- :func:`poisson_interval` exact (Garwood) interval for counts, per unit of exposure (km).
- :func:`bootstrap_interval` percentile bootstrap of the mean or the interquartile mean.
- :func:`stratified_bootstrap_interval` rliable's stratified bootstrap (resample within
  each stratum, e.g. resample training seeds within each evaluation seed).
- :func:`paired_bootstrap_interval` interval of the mean per-pair difference.
- :func:`mcnemar_exact` and :func:`wilcoxon_signed_rank` paired tests.
- :func:`probability_of_improvement` P(X > Y) + 0.5 P(X = Y).
- :func:`verdict` "no detectable difference" whenever an interval contains zero.
- :func:`episodes_needed` how many pairs a difference of the observed size would need.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np

__all__ = [
    "NO_DIFFERENCE",
    "wilson_interval",
    "poisson_interval",
    "iqm",
    "bootstrap_interval",
    "stratified_bootstrap_interval",
    "paired_bootstrap_interval",
    "mcnemar_exact",
    "wilcoxon_signed_rank",
    "probability_of_improvement",
    "verdict",
    "episodes_needed",
]

NO_DIFFERENCE = "no detectable difference"

Statistic = Literal["mean", "iqm", "median"]


def _scipy_stats():
    """scipy.stats, imported on first use (~1.5 CPU-s: only summaries and comparisons need it)."""
    from scipy import stats

    return stats


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(_scipy_stats().norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    if successes == 0:
        low = 0.0
    if successes == n:
        high = 1.0
    return (low, high)


def newcombe_interval(successes_a: int, n_a: int, successes_b: int, n_b: int,
                      confidence: float = 0.95) -> tuple[float, float]:
    """Interval for the difference of two independent proportions, p_b - p_a (Newcombe's hybrid
    score method, from the two Wilson intervals; sound at 0 % and 100 %, unlike the Wald one)."""
    pa, pb = successes_a / max(n_a, 1), successes_b / max(n_b, 1)
    la, ua = wilson_interval(successes_a, n_a, confidence)
    lb, ub = wilson_interval(successes_b, n_b, confidence)
    d = pb - pa
    return (d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2), d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2))


def poisson_interval(count: int, exposure: float = 1.0, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval for a Poisson rate ``count / exposure``.

    Lower = chi2(alpha/2, 2k) / 2, upper = chi2(1 - alpha/2, 2k + 2) / 2, both divided by
    the exposure; the lower bound is 0 when count == 0.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not exposure > 0:
        raise ValueError(f"exposure must be > 0, got {exposure}")
    alpha = 1.0 - confidence
    low = 0.0 if count == 0 else float(_scipy_stats().chi2.ppf(alpha / 2, 2 * count) / 2)
    high = float(_scipy_stats().chi2.ppf(1 - alpha / 2, 2 * count + 2) / 2)
    return (low / exposure, high / exposure)


def _trim_count(n: int, proportion: float = 0.25) -> int:
    return int(math.floor(n * proportion))


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: mean of the values left after cutting 25 % from each end.

    Same convention as ``scipy.stats.trim_mean(x, 0.25)`` (rliable's IQM).
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0:
        return math.nan
    cut = _trim_count(x.size)
    return float(x[cut: x.size - cut].mean())


def _statistic_rows(samples: np.ndarray, statistic: Statistic) -> np.ndarray:
    """Statistic of each row of a (B, n) array."""
    if statistic == "mean":
        return samples.mean(axis=1)
    if statistic == "median":
        return np.median(samples, axis=1)
    if statistic == "iqm":
        n = samples.shape[1]
        cut = _trim_count(n)
        part = np.sort(samples, axis=1)[:, cut: n - cut]
        return part.mean(axis=1)
    raise ValueError(f"statistic must be 'mean', 'iqm' or 'median', got {statistic!r}")


def _point(values: np.ndarray, statistic: Statistic) -> float:
    return float(_statistic_rows(values[None, :], statistic)[0])


def _percentile_interval(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return (float(low), float(high))


def _as_finite_1d(values: Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite (replace None/inf before calling), got {x[~np.isfinite(x)][:3]}")
    return x


def bootstrap_interval(values: Sequence[float] | np.ndarray, statistic: Statistic = "mean",
                       confidence: float = 0.95, n_resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float, float]:
    """Percentile bootstrap: ``(point, low, high)``; NaNs when empty, the value itself for n == 1."""
    x = _as_finite_1d(values)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    point = _point(x, statistic)
    if x.size == 1:
        return (point, point, point)
    rng = np.random.default_rng(seed)
    boot = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // x.size)  # bounded memory: at most ~16 MB of indices at a time
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        boot[start:stop] = _statistic_rows(x[idx], statistic)
    return (point, *_percentile_interval(boot, confidence))


def stratified_bootstrap_interval(values: Sequence[float] | np.ndarray, strata: Sequence,
                                  statistic: Statistic = "mean", confidence: float = 0.95,
                                  n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """rliable's stratified bootstrap: resample with replacement *within* each stratum.

    Each resample keeps every stratum's size; the statistic is taken over the pooled
    resample. For learned agents pass ``strata`` = evaluation seed (episode) so that the
    training seeds (runs) are resampled within each episode, as rliable resamples runs
    within each task. Returns ``(point, low, high)``.
    """
    x = _as_finite_1d(values)
    labels = np.asarray(list(strata), dtype=object)
    if labels.shape[0] != x.size:
        raise ValueError(f"strata has {labels.shape[0]} labels for {x.size} values")
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    point = _point(x, statistic)
    _, inverse = np.unique(labels.astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    sorted_groups = inverse[order]
    starts = np.searchsorted(sorted_groups, np.arange(sorted_groups.max() + 1), side="left")
    sizes = np.bincount(sorted_groups)
    # For every position j of the pooled sample: its stratum start and size.
    pos_start = starts[sorted_groups]
    pos_size = sizes[sorted_groups]
    rng = np.random.default_rng(seed)
    boot = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // x.size)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        u = rng.random((stop - start, x.size))
        idx = order[pos_start[None, :] + np.floor(u * pos_size[None, :]).astype(np.int64)]
        boot[start:stop] = _statistic_rows(x[idx], statistic)
    return (point, *_percentile_interval(boot, confidence))


def paired_bootstrap_interval(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                              statistic: Statistic = "mean", confidence: float = 0.95,
                              n_resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Bootstrap interval of the statistic of per-pair differences ``x - y``: ``(point, low, high)``."""
    xa, ya = _as_finite_1d(x, "x"), _as_finite_1d(y, "y")
    if xa.shape != ya.shape:
        raise ValueError(f"paired samples need equal lengths, got {xa.size} and {ya.size}")
    return bootstrap_interval(xa - ya, statistic, confidence, n_resamples, seed)


def mcnemar_exact(x: Sequence[bool] | np.ndarray, y: Sequence[bool] | np.ndarray) -> dict[str, float | int]:
    """McNemar's exact test on paired binary outcomes.

    ``b`` = pairs where x is true and y false, ``c`` = the reverse; two-sided
    p = min(1, 2 * P(Binomial(b + c, 1/2) <= min(b, c))); p = 1 when b + c == 0.
    """
    xa = np.asarray(x, dtype=bool)
    ya = np.asarray(y, dtype=bool)
    if xa.shape != ya.shape:
        raise ValueError(f"paired samples need equal lengths, got {xa.size} and {ya.size}")
    b = int(np.sum(xa & ~ya))
    c = int(np.sum(~xa & ya))
    n = b + c
    p = 1.0 if n == 0 else min(1.0, 2.0 * float(_scipy_stats().binom.cdf(min(b, c), n, 0.5)))
    return {"b": b, "c": c, "p_value": p}


def wilcoxon_signed_rank(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray | None = None
                         ) -> dict[str, float | int | None]:
    """Wilcoxon signed-rank test (two-sided) on paired differences ``x - y``.

    Zero differences are dropped (Wilcoxon's method); ties get average ranks. Exact null
    distribution when there are at most 50 non-zero differences and no ties, normal
    approximation with tie correction otherwise (scipy's ``method='auto'``). Returns the
    statistic (sum of ranks of positive differences), n used and the p-value
    (None when fewer than one non-zero difference).
    """
    d = _as_finite_1d(x, "x") if y is None else _as_finite_1d(x, "x") - _as_finite_1d(y, "y")
    d = d[d != 0]
    if d.size == 0:
        return {"statistic": None, "n": 0, "p_value": 1.0}
    ranks = _scipy_stats().rankdata(np.abs(d))
    r_plus = float(ranks[d > 0].sum())
    res = _scipy_stats().wilcoxon(d, zero_method="wilcox", alternative="two-sided", method="auto")
    return {"statistic": r_plus, "n": int(d.size), "p_value": float(res.pvalue)}


def probability_of_improvement(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """P(X > Y) + 0.5 P(X = Y) over all pairs (Mann-Whitney U / (n m)); NaN if either is empty."""
    xa, ya = _as_finite_1d(x, "x"), np.sort(_as_finite_1d(y, "y"))
    if xa.size == 0 or ya.size == 0:
        return math.nan
    below = np.searchsorted(ya, xa, side="left")
    below_or_equal = np.searchsorted(ya, xa, side="right")
    wins = below.sum() + 0.5 * (below_or_equal - below).sum()
    return float(wins / (xa.size * ya.size))


def verdict(interval: tuple[float, float] | None, higher_is_better: bool = True,
            p_value: float | None = None, alpha: float = 0.05) -> str:
    """Read a difference interval (agent minus baseline), and the paired test's p-value if there is one.

    "no detectable difference" when the interval contains zero (or is missing), or when the
    paired test does not agree (``p_value >= alpha``: the bootstrap interval of the mean and a
    rank test can disagree near the edge); otherwise "better" or "worse" according to
    ``higher_is_better``. Never calls a win on an interval that contains zero.
    """
    if interval is None or (p_value is not None and not p_value < alpha):
        return NO_DIFFERENCE
    low, high = interval
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return NO_DIFFERENCE
    if low <= 0.0 <= high:
        return NO_DIFFERENCE
    above = low > 0.0
    return "better" if above == higher_is_better else "worse"


def episodes_needed(differences: Sequence[float], confidence: float = 0.95,
                    power: float = 0.8) -> dict[str, float | int | None]:
    """How many pairs a difference of the observed size would need.

    With per-pair differences of mean m and standard deviation s over n pairs: the current
    95 % half-width is about z s / sqrt(n); an interval of that kind excludes zero on
    average once n >= (z s / m)^2, and does so with probability ``power`` once
    n >= ((z + z_power) s / m)^2. None when m == 0 (no difference to detect) or n < 2.
    """
    d = _as_finite_1d(differences, "differences")
    n = int(d.size)
    out: dict[str, float | int | None] = {"n_pairs": n, "mean_difference": None, "sd_difference": None,
                                          "half_width": None, "n_pairs_to_exclude_zero": None,
                                          "n_pairs_for_power": None}
    if n < 2:
        return out
    m, s = float(d.mean()), float(d.std(ddof=1))
    z = _z(confidence)
    zp = float(_scipy_stats().norm.ppf(power))
    out.update(mean_difference=m, sd_difference=s, half_width=z * s / math.sqrt(n))
    if m != 0.0:
        if s == 0.0:
            out.update(n_pairs_to_exclude_zero=2, n_pairs_for_power=2)
        else:
            out.update(n_pairs_to_exclude_zero=max(2, math.ceil((z * s / m) ** 2)),
                       n_pairs_for_power=max(2, math.ceil(((z + zp) * s / m) ** 2)))
    return out

