"""The sweep statistics (runconfig/stats.py), written with the standard library only, agree
with scipy.stats on known data: Student's t, the mean's interval, the paired interval, the
two one-sided tests; the bootstrap is the percentile method over fixed resamples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from runconfig import stats

# clean accuracy of two methods over six seeds (shares), paired by seed
SIP = {0: 0.912, 1: 0.905, 2: 0.921, 3: 0.899, 4: 0.917, 5: 0.908}
PGD = {0: 0.871, 1: 0.880, 2: 0.869, 3: 0.874, 4: 0.885, 5: 0.862}


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 19, 29, 120, 1000])
def test_t_distribution_matches_scipy(df):
    for p in (0.5, 0.9, 0.95, 0.975, 0.995, 0.025, 0.001):
        assert stats.t_quantile(p, df) == pytest.approx(sp.t.ppf(p, df), rel=1e-10, abs=1e-12)
    for t in (-30.0, -4.0, -1.0, 0.0, 0.3, 2.0, 12.0):
        assert stats.t_cdf(t, df) == pytest.approx(sp.t.cdf(t, df), rel=1e-10, abs=1e-14)


def test_mean_interval_matches_scipy():
    values = list(SIP.values())
    got = stats.mean_interval(values)
    low, high = sp.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sp.sem(values))
    assert got.mean == pytest.approx(np.mean(values))
    assert (got.low, got.high) == (pytest.approx(low, rel=1e-10), pytest.approx(high, rel=1e-10))
    assert got.n == 6 and got.sd == pytest.approx(np.std(values, ddof=1))


def test_one_value_has_no_interval():
    got = stats.mean_interval([0.5])
    assert (got.mean, got.low, got.high, got.n) == (0.5, None, None, 1)


def test_paired_difference_is_the_t_interval_over_the_pairs():
    got = stats.paired_difference(SIP, PGD)
    assert got is not None
    differences = [SIP[s] - PGD[s] for s in sorted(SIP)]
    result = sp.ttest_rel(list(SIP.values()), list(PGD.values()))
    ci = result.confidence_interval(0.95)
    assert got.mean == pytest.approx(np.mean(differences))
    assert got.low == pytest.approx(ci.low, rel=1e-10)
    assert got.high == pytest.approx(ci.high, rel=1e-10)
    assert got.n == 6 and got.seeds == (0, 1, 2, 3, 4, 5)


def test_paired_difference_uses_the_seeds_both_have():
    got = stats.paired_difference({0: 0.5, 1: 0.6, 7: 0.9}, {0: 0.4, 1: 0.4, 3: 0.1})
    assert got is not None and got.seeds == (0, 1) and got.mean == pytest.approx(0.15)
    assert stats.paired_difference({0: 0.5}, {1: 0.5}) is None


def test_bootstrap_is_the_percentile_of_fixed_resamples():
    differences = [SIP[s] - PGD[s] for s in sorted(SIP)]
    first = stats.bootstrap_interval(differences)
    assert first == stats.bootstrap_interval(differences)  # the same resamples every time
    # the same resamples drawn here again, and numpy's percentile over their means
    import random

    rng = random.Random(stats.BOOTSTRAP_SEED)
    n = len(differences)
    means = [
        np.mean([differences[i] for i in rng.choices(range(n), k=n)])
        for _ in range(stats.RESAMPLES)
    ]
    assert first == (
        pytest.approx(np.percentile(means, 2.5)),
        pytest.approx(np.percentile(means, 97.5)),
    )
    # and close to scipy's own percentile bootstrap (other resamples) on more data
    rng_np = np.random.default_rng(3)
    data = rng_np.normal(0.02, 0.01, 40)
    ours = stats.bootstrap_interval(list(data))
    theirs = sp.bootstrap(
        (data,), np.mean, method="percentile", n_resamples=20000, random_state=1
    ).confidence_interval
    assert ours is not None
    assert ours[0] == pytest.approx(theirs.low, abs=0.001)
    assert ours[1] == pytest.approx(theirs.high, abs=0.001)


def test_tost_matches_two_one_sided_scipy_tests():
    differences = np.array([SIP[s] - PGD[s] for s in sorted(SIP)])
    for margin in (0.02, 0.04, 0.06):
        lower = sp.ttest_1samp(differences, -margin, alternative="greater").pvalue
        upper = sp.ttest_1samp(differences, margin, alternative="less").pvalue
        got = stats.tost_p(list(differences), margin)
        assert got == pytest.approx(max(lower, upper), rel=1e-9)


def test_the_verdict_says_equivalent_only_against_a_margin():
    small = [0.003, -0.002, 0.001, 0.0, -0.001, 0.002]  # shares: within a tenth of a point
    assert stats.verdict(small, None)["verdict"] == stats.NOT_SHOWN
    assert stats.verdict(small, None)["text"] == "not shown to differ"
    got = stats.verdict(small, 1.0)
    assert got["verdict"] == stats.EQUIVALENT and got["text"] == "equivalent within ±1 points"
    assert got["tost_p"] < 0.05
    # an interval of [-4.2, +1.6] points holds 0 but allows a 4-point loss
    wide = [-0.06, 0.03, -0.04, 0.02, 0.0, -0.03]
    got = stats.verdict(wide, 2.0)
    assert got["verdict"] == stats.NOT_SHOWN
    assert got["text"] == "not shown to differ; not shown equivalent within ±2 points"
    apart = [SIP[s] - PGD[s] for s in sorted(SIP)]
    assert stats.verdict(apart, None)["verdict"] == stats.DIFFERS
    assert stats.verdict(apart, 1.0)["text"] == "differs; not shown equivalent within ±1 points"


def test_no_value_is_nan():
    got = stats.paired_difference({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5})
    assert got is not None
    assert all(math.isfinite(v) for v in (got.mean, got.low, got.high, got.boot_low))
