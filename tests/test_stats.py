"""Statistics against known values and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from e2e_drive.eval.stats import (
    NO_DIFFERENCE,
    bootstrap_interval,
    episodes_needed,
    iqm,
    mcnemar_exact,
    newcombe_interval,
    paired_bootstrap_interval,
    poisson_interval,
    probability_of_improvement,
    stratified_bootstrap_interval,
    verdict,
    wilcoxon_signed_rank,
    wilson_interval,
)


@pytest.mark.parametrize("k, n, low, high", [
    (0, 10, 0.0, 0.277533),
    (5, 10, 0.236593, 0.763407),
    (10, 10, 0.722467, 1.0),
    (1, 100, 0.001767, 0.054486),
])
def test_wilson_known_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-6)
    assert hi == pytest.approx(high, abs=1e-6)


def test_newcombe_difference_interval_matches_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, method 10: 56/70 - 48/80 -> (0.0524, 0.3339)
    low, high = newcombe_interval(48, 80, 56, 70)
    assert (low, high) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))
    low, high = newcombe_interval(20, 20, 20, 20)
    assert low < 0.0 < high  # no difference at 100 %: the interval still has width


def test_wilson_edge_cases():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@pytest.mark.parametrize("k, low, high", [
    (0, 0.0, 3.688879),
    (1, 0.025318, 5.571643),
    (2, 0.242209, 7.224688),
    (10, 4.795389, 18.390356),
])
def test_poisson_exact_known_values(k, low, high):
    lo, hi = poisson_interval(k)
    assert lo == pytest.approx(low, abs=1e-5)
    assert hi == pytest.approx(high, abs=1e-5)
    lo2, hi2 = poisson_interval(k, exposure=2.0)  # per km over 2 km
    assert (lo2, hi2) == pytest.approx((low / 2, high / 2), abs=1e-5)


def test_iqm_matches_definition():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    assert iqm([1, 2, 3, 100]) == pytest.approx(2.5)
    assert iqm([5.0]) == 5.0


def test_bootstrap_contains_true_mean_on_large_sample():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 1.0, size=2000)
    point, low, high = bootstrap_interval(x, "mean", seed=0)
    assert low < 3.0 < high
    assert high - low == pytest.approx(2 * 1.96 / math.sqrt(2000), rel=0.15)
    point, low, high = bootstrap_interval(x, "iqm", seed=0)
    assert low < 3.0 < high
    # Seeded: same answer twice.
    assert bootstrap_interval(x, seed=5) == bootstrap_interval(x, seed=5)


def test_bootstrap_degenerate_inputs():
    assert bootstrap_interval([2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(v) for v in bootstrap_interval([]))
    with pytest.raises(ValueError):
        bootstrap_interval([1.0, math.inf])


def test_stratified_bootstrap():
    rng = np.random.default_rng(2)
    # 5 training seeds x 200 evaluation seeds; resample training seeds within each evaluation seed.
    runs = rng.normal(1.0, 0.5, size=(5, 200))
    values = runs.ravel()
    strata = np.tile(np.arange(200), 5)
    point, low, high = stratified_bootstrap_interval(values, strata, "mean", seed=0)
    assert low < 1.0 < high
    assert point == pytest.approx(values.mean())
    # Constant within every stratum: nothing to resample.
    const = np.repeat(np.arange(4.0), 3)
    point, low, high = stratified_bootstrap_interval(const, np.repeat(np.arange(4), 3))
    assert point == low == high == pytest.approx(1.5)


def test_paired_zero_difference_gives_no_detectable_difference():
    rng = np.random.default_rng(3)
    x = rng.normal(size=50)
    point, low, high = paired_bootstrap_interval(x, x.copy())
    assert (point, low, high) == (0.0, 0.0, 0.0)
    assert verdict((low, high)) == NO_DIFFERENCE
    y = x + rng.normal(0.0, 1.0, size=50)
    _, low, high = paired_bootstrap_interval(y, x)
    assert verdict((low, high)) == NO_DIFFERENCE


def test_verdict_directions():
    assert verdict((0.1, 0.5)) == "better"
    assert verdict((0.1, 0.5), higher_is_better=False) == "worse"
    assert verdict((-0.5, -0.1)) == "worse"
    assert verdict((-0.5, 0.0)) == NO_DIFFERENCE
    assert verdict(None) == NO_DIFFERENCE
    assert verdict((math.nan, 1.0)) == NO_DIFFERENCE
    # The paired test must agree: an interval clear of 0 with p = 0.063 is not a win.
    assert verdict((0.04, 0.24), p_value=0.063) == NO_DIFFERENCE
    assert verdict((0.04, 0.24), p_value=0.01) == "better"
    assert verdict((-0.24, -0.04), p_value=0.01) == "worse"


def test_mcnemar_exact_by_hand():
    # b = 1 (x only), c = 8 (y only), 11 concordant pairs.
    x = [1] * 1 + [0] * 8 + [1] * 5 + [0] * 6
    y = [0] * 1 + [1] * 8 + [1] * 5 + [0] * 6
    res = mcnemar_exact(x, y)
    assert (res["b"], res["c"]) == (1, 8)
    # Two-sided: 2 * P(Bin(9, 1/2) <= 1) = 2 * (1 + 9) / 512.
    assert res["p_value"] == pytest.approx(20 / 512)
    assert mcnemar_exact([1, 0], [1, 0])["p_value"] == 1.0
    assert mcnemar_exact([1, 0, 1], [0, 1, 1])["p_value"] == 1.0


def test_wilcoxon_by_hand_and_against_scipy():
    # All five differences positive: P(W+ = 15) = 1/32, two-sided p = 2/32.
    res = wilcoxon_signed_rank([1.0, 2.0, 3.0, 4.0, 5.0])
    assert res["statistic"] == 15.0 and res["n"] == 5
    assert res["p_value"] == pytest.approx(2 / 32)
    # Zeros dropped.
    assert wilcoxon_signed_rank([1, 2, 3], [1, 2, 3])["p_value"] == 1.0
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=80), rng.normal(size=80)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert wilcoxon_signed_rank(x, y)["p_value"] == pytest.approx(scipy_stats.wilcoxon(x, y).pvalue)
    shifted = wilcoxon_signed_rank(x + 1.0, x + rng.normal(0, 0.1, size=80))
    assert shifted["p_value"] < 1e-6


def test_probability_of_improvement_with_ties():
    assert probability_of_improvement([1, 2], [1, 2]) == pytest.approx(0.5)
    assert probability_of_improvement([3], [1, 2]) == 1.0
    assert probability_of_improvement([0], [1, 2]) == 0.0
    assert probability_of_improvement([1, 1], [1]) == 0.5
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=30), rng.normal(size=40)
    brute = np.mean((x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :]))
    assert probability_of_improvement(x, y) == pytest.approx(brute)


def test_episodes_needed():
    d = np.array([-1.0, 3.0] * 10)  # mean 1, sd ~2.05
    out = episodes_needed(d)
    s = d.std(ddof=1)
    assert out["mean_difference"] == pytest.approx(1.0)
    assert out["half_width"] == pytest.approx(1.959964 * s / math.sqrt(20))
    assert out["n_pairs_to_exclude_zero"] == math.ceil((1.959964 * s) ** 2)
    assert out["n_pairs_for_power"] == math.ceil(((1.959964 + 0.841621) * s) ** 2)
    assert episodes_needed(np.zeros(10))["n_pairs_to_exclude_zero"] is None
