"""Seed statistics against independent references: brute-force enumerations, scipy/statsmodels,
hand formulas. No expected value here is produced by the function under test."""
import itertools
import math
import time

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from bench import stats

NAN = math.nan
REF = [0.50, 0.52, 0.49, 0.51, 0.53, 0.50]
GOOD = [0.40, 0.41, 0.39, 0.42, 0.40, 0.38]
TIE_A = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]   # asymptotic MWU p 0.038, exact permutation p 0.076
TIE_B = [1.0, 1.0, 1.0, 1.0, 2.0, 3.0]


def brute_mwu(a, b, minimize=True):
    """Two-sided exact MWU p by listing every assignment of the pooled midranks (reference)."""
    worst = math.inf if minimize else -math.inf
    pooled = [v if math.isfinite(v) else worst for v in list(a) + list(b)]
    ranks = sps.rankdata(pooled)
    n, big_n = len(a), len(pooled)
    center = n * (big_n + 1) / 2
    observed = abs(sum(ranks[:n]) - center)
    hits = total = 0
    for idx in itertools.combinations(range(big_n), n):
        total += 1
        hits += abs(sum(ranks[i] for i in idx) - center) >= observed - 1e-9
    return hits / total


# ----------------------------------------------------------------------------- Mann-Whitney

def test_mwu_ties_exact_not_asymptotic():
    asymptotic = sps.mannwhitneyu(TIE_A, TIE_B, alternative="two-sided").pvalue
    exact = brute_mwu(TIE_A, TIE_B)
    assert asymptotic < 0.05 < exact
    assert exact == pytest.approx(70 / 924)
    assert stats.mwu(TIE_A, TIE_B, minimize=True) == pytest.approx(exact, rel=1e-12)


def test_tie_heavy_verdict_does_not_flip():
    out = stats.compare({"ref": TIE_B, "x": TIE_A}, "ref", minimize=True)
    assert out["x"].p_adj == pytest.approx(70 / 924)
    assert out["x"].verdict == "" and out["x"].reason == "n.s."


def test_two_constant_groups():
    p = stats.mwu([1.0] * 6, [2.0] * 6, minimize=True)
    assert p == pytest.approx(2 / 924, rel=1e-12)
    assert p == pytest.approx(0.0021645, abs=1e-7)
    assert stats.mwu([1.0] * 6, [1.0] * 6, minimize=True) == 1.0   # no evidence of a difference


def test_n_equals_2():
    # 2 vs 2: the two extreme assignments of C(4, 2) = 6
    assert stats.mwu([1.0, 2.0], [3.0, 4.0], minimize=True) == pytest.approx(2 / 6)
    assert stats.mwu([1.0, 3.0], [2.0, 4.0], minimize=True) == pytest.approx(brute_mwu([1, 3], [2, 4]))


@pytest.mark.parametrize("seed", range(6))
def test_mwu_matches_brute_force_with_ties_and_unequal_n(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4, 5).astype(float).tolist()
    b = rng.integers(1, 5, 7).astype(float).tolist()
    assert stats.mwu(a, b, True) == pytest.approx(brute_mwu(a, b), rel=1e-12)
    assert stats.mwu(b, a, True) == pytest.approx(brute_mwu(a, b), rel=1e-12)


def test_mwu_without_ties_matches_scipy_exact():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=8), rng.normal(size=9) + 1
    assert stats.mwu(a, b, True) == pytest.approx(
        sps.mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue, rel=1e-9)


def test_mwu_large_without_ties_is_scipys():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=20), rng.normal(size=20) + 0.5
    assert stats.mwu(a, b, True) == pytest.approx(
        sps.mannwhitneyu(a, b, alternative="two-sided").pvalue, rel=1e-12)


def test_mwu_nan_ranks_worst_and_never_gives_p_one():
    a = [1.0, 2.0, 3.0, NAN, math.inf, NAN]
    b = [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert stats.mwu(a, b, True) == pytest.approx(brute_mwu(a, b, True))
    # maximising, NaN is -inf: all of a is worse than all of b -> the extreme p
    assert stats.mwu([NAN] * 6, b, minimize=False) == pytest.approx(2 / 924)
    assert stats.mwu([NAN] * 6, b, minimize=True) == pytest.approx(2 / 924)


def test_mwu_is_fast():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=10), rng.normal(size=10)
    a[0] = b[0]   # a tie: exact enumeration of C(20, 10) = 184756 assignments
    start = time.perf_counter()
    stats.mwu(a, b, True)
    assert time.perf_counter() - start < 0.5


# ----------------------------------------------------------------------------- Welch

def test_welch_against_scipy_and_refusals():
    assert stats.welch(GOOD, REF) == pytest.approx(sps.ttest_ind(GOOD, REF, equal_var=False).pvalue)
    assert math.isnan(stats.welch(GOOD[:5] + [NAN], REF))
    assert math.isnan(stats.welch(GOOD, REF[:5] + [math.inf]))
    assert math.isnan(stats.welch([1.0], REF))


# ----------------------------------------------------------------------------- diverged seeds

def test_half_diverged_cell_with_excellent_survivors_is_not_better():
    ref = [0.50, 0.51, 0.52, 0.53, 0.54, 0.55]
    cell = [0.01, 0.02, 0.03, NAN, NAN, NAN]
    out = stats.compare({"ref": ref, "cell": cell}, "ref", minimize=True)
    assert out["cell"].a12 == pytest.approx(0.5)          # (3 * 6 wins + 0) / 36
    assert out["cell"].p_mwu == pytest.approx(1.0)        # U sits at the centre exactly
    assert out["cell"].verdict == "" and out["cell"].reason == "n.s."
    out = stats.compare({"ref": ref, "cell": cell}, "ref", minimize=True, test="welch")
    assert math.isnan(out["cell"].p_raw) and math.isnan(out["cell"].p_adj)
    assert out["cell"].verdict == "" and out["cell"].reason == "welch: diverged seeds"


def test_nan_p_stays_out_of_holm_family():
    ref = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    a = [r - 4.5 for r in ref]
    b = [r - 2.6 for r in ref[:5]] + [NAN]
    out = stats.compare({"ref": ref, "a": a, "b": b}, "ref", minimize=True, test="welch")
    p_a = sps.ttest_ind(a, ref, equal_var=False).pvalue
    assert out["a"].p_adj == pytest.approx(p_a)            # family of one: b has no p
    assert math.isnan(out["b"].p_adj) and out["b"].p_adj != 1.0


def test_summary_counts_and_finite_moments():
    s = stats.summarize([1.0, 2.0, 3.0, NAN, math.inf, 4.0], minimize=True)
    assert (s.n, s.n_finite, s.n_diverged) == (6, 4, 2)
    assert s.mean == pytest.approx(2.5) and s.std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert s.median == pytest.approx(3.5)           # sorted 1 2 3 4 inf inf -> (3 + 4) / 2
    s = stats.summarize([1.0, NAN, NAN], minimize=False)
    assert s.median == -math.inf and s.n_diverged == 2 and math.isnan(s.ci_low)


# ----------------------------------------------------------------------------- CIs

def test_bimodal_ci_positive_and_inside_data():
    x = [0.0002, 0.0003, 0.0001, 0.165, 0.166, 0.164]
    s = stats.summarize(x, minimize=True)
    # the old t-interval had a negative lower bound for this positive loss
    t_lo, _ = sps.t.interval(0.95, 5, loc=np.mean(x), scale=sps.sem(x))
    assert t_lo < 0
    assert 0 < min(x) <= s.ci_low < np.mean(x) < s.ci_high <= max(x)
    ref = sps.bootstrap((np.array(x),), np.mean, n_resamples=9999, method="BCa",
                        rng=0).confidence_interval
    assert (s.ci_low, s.ci_high) == pytest.approx((ref.low, ref.high))


def test_ci_constant_and_small():
    s = stats.summarize([0.3] * 6, minimize=True)
    assert (s.ci_low, s.ci_high) == (0.3, 0.3) and s.std == 0
    s = stats.summarize([0.3, NAN], minimize=True)
    assert math.isnan(s.ci_low) and math.isnan(s.ci_high) and s.mean == 0.3


def test_wilson_against_hand_formula_and_statsmodels():
    for k, n in ((0, 6), (3, 6), (6, 6), (1, 10), (17, 40)):
        z = sps.norm.ppf(0.975)
        p = k / n
        c = (p + z * z / (2 * n)) / (1 + z * z / n)
        h = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        lo, hi = stats.wilson(k, n)
        assert (lo, hi) == pytest.approx((c - h, c + h), abs=1e-12)
        assert (lo, hi) == pytest.approx(proportion_confint(k, n, 0.05, method="wilson"), abs=1e-12)
    assert all(math.isnan(v) for v in stats.wilson(0, 0))


def test_solved():
    assert stats.solved([0.1, 0.2, 0.3, NAN, math.inf, -math.inf], 0.2, minimize=True) == \
        [True, False, False, False, False, False]
    assert stats.solved([0.1, 0.2, 0.3, NAN, math.inf], 0.2, minimize=False) == \
        [False, False, True, False, False]


# ----------------------------------------------------------------------------- effect sizes

def test_a12_by_hand():
    assert stats.a12(GOOD, REF, minimize=True) == 1.0
    assert stats.a12(GOOD, REF, minimize=False) == 0.0
    assert stats.a12([1, 2], [2, 3], minimize=False) == pytest.approx((0 + 0.5 + 0 + 0) / 4)
    # NaN is worst: vs [1, 2] minimising, NaN loses twice, 0.5 wins twice -> 2 / 4
    assert stats.a12([0.5, NAN], [1.0, 2.0], minimize=True) == pytest.approx(0.5)
    assert stats.a12([NAN], [NAN], minimize=True) == pytest.approx(0.5)


def test_a12_direction_beats_mean():
    """One terrible seed: the mean is worse, but 9 of 10 seeds beat every reference seed."""
    ref = [float(v) for v in range(10, 20)]
    cell = [float(v) for v in range(0, 9)] + [1000.0]
    assert np.mean(cell) > np.mean(ref)                   # the mean says "worse" (minimising)
    out = stats.compare({"ref": ref, "cell": cell}, "ref", minimize=True)
    assert out["cell"].a12 == pytest.approx(90 / 100)
    # U = 90 of 100, no ties -> scipy's exact no-tie distribution is the reference here
    p = sps.mannwhitneyu(cell, ref, alternative="two-sided", method="exact").pvalue
    assert out["cell"].p_adj == pytest.approx(p) and p < 0.05
    assert out["cell"].verdict == "better"


def test_hodges_lehmann_by_hand():
    a = [1.0, 2.0, 4.0]
    b = [0.0, 3.0]
    # pairwise a_i - b_j: 1, -2, 2, -1, 4, 1 -> sorted -2 -1 1 1 2 4 -> median 1
    shift, lo, hi = stats.hodges_lehmann(a, b)
    assert shift == 1.0
    assert (lo, hi) == (-math.inf, math.inf)             # 3 vs 2 seeds: no finite 95% interval
    # 6 vs 6: the two-sided 5% MWU critical value is U <= 5 (P = 0.0206 <= 0.025 < P(U <= 6)),
    # so the interval is [D_(6), D_(31)] of the 36 sorted differences.
    x = [0.1, 0.4, 0.5, 0.9, 1.3, 2.0]
    y = [0.0, 0.2, 0.35, 0.6, 0.8, 1.1]
    d = sorted(xi - yj for xi in x for yj in y)
    null = [sum(i < j for i in idx for j in set(range(12)) - set(idx))   # U over all splits
            for idx in itertools.combinations(range(12), 6)]
    assert sum(u <= 5 for u in null) / len(null) <= 0.025 < sum(u <= 6 for u in null) / len(null)
    shift, lo, hi = stats.hodges_lehmann(x, y)
    assert shift == pytest.approx((d[17] + d[18]) / 2)
    assert (lo, hi) == pytest.approx((d[5], d[30]))


def test_cohens_d_by_hand_and_near_zero_sd():
    pooled = math.sqrt((np.var(GOOD, ddof=1) + np.var(REF, ddof=1)) / 2)
    assert stats.cohens_d(GOOD, REF) == pytest.approx((np.mean(GOOD) - np.mean(REF)) / pooled)
    tight = [0.500, 0.501, 0.500, 0.501, 0.500, 0.501]   # SD 0.00055 < 1% of 0.5
    assert math.isnan(stats.cohens_d(tight, REF))
    assert math.isnan(stats.cohens_d([0.3] * 6, REF))
    assert math.isnan(stats.cohens_d([0.3], REF))
    out = stats.compare({"ref": REF, "x": tight}, "ref", minimize=True)
    assert math.isnan(out["x"].d)


# ----------------------------------------------------------------------------- compare()

def test_family_is_exactly_the_groups_given():
    a = [0.40, 0.41, 0.39, 0.42, 0.40, 0.38]
    b = [0.49, 0.505, 0.48, 0.515, 0.47, 0.46]
    out = stats.compare({"ref": REF, "a": a}, "ref", minimize=True)
    assert out["a"].p_adj == pytest.approx(brute_mwu(a, REF))   # family of one: no correction
    out = stats.compare({"ref": REF, "a": a, "b": b}, "ref", minimize=True)
    pa, pb = brute_mwu(a, REF), brute_mwu(b, REF)
    lo, hi = sorted((pa, pb))
    holm = {lo: min(1, 2 * lo), hi: max(min(1, 2 * lo), min(1, hi))}   # Holm by hand
    assert out["a"].p_adj == pytest.approx(holm[pa]) and out["b"].p_adj == pytest.approx(holm[pb])
    assert out["a"].p_raw == pytest.approx(pa) and out["a"].p_mwu == pytest.approx(pa)
    assert set(out) == {"ref", "a", "b"} and out["ref"].verdict == "reference"


def test_holm_changes_the_verdict():
    """Raw Welch p 0.0019, 0.037, 0.027 all pass alpha 0.05; Holm keeps only the smallest."""
    ref = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    groups = {"ref": ref}
    for name, shift in (("a", 4.5), ("b", 2.6), ("c", 2.8)):
        groups[name] = [r - shift for r in ref]
    raw = {c: sps.ttest_ind(groups[c], ref, equal_var=False).pvalue for c in "abc"}
    _, adj, _, _ = multipletests([raw[c] for c in "abc"], alpha=0.05, method="holm")
    out = stats.compare(groups, "ref", minimize=True, test="welch")
    assert [out[c].p_adj for c in "abc"] == pytest.approx(list(adj))
    assert all(raw[c] < 0.05 for c in "abc")
    assert {c for c in "abc" if out[c].verdict} == {"a"} and out["a"].verdict == "better"
    assert out["b"].reason == "n.s."


def test_verdict_direction_follows_metric():
    assert stats.compare({"ref": REF, "x": GOOD}, "ref", minimize=False)["x"].verdict == "worse"
    assert stats.compare({"ref": REF, "x": GOOD}, "ref", minimize=True)["x"].verdict == "better"


def test_neither_beats_trivial():
    # trivial MSE 0.167 (adding task): neither group gets below it on a majority of seeds
    ref = [0.170, 0.171, 0.172, 0.173, 0.174, 0.175]
    cell = [0.168, 0.1681, 0.1682, 0.1683, 0.1684, 0.1685]
    out = stats.compare({"ref": ref, "cell": cell}, "ref", minimize=True, threshold=0.167)
    assert out["cell"].p_adj == pytest.approx(2 / 924)     # significant, yet no verdict
    assert out["cell"].verdict == "" and out["cell"].reason == "neither beats trivial"
    # half the seeds solving is not a strict majority
    half = [0.01, 0.01, 0.02, 0.1681, 0.1682, 0.1683]
    assert stats.compare({"ref": ref, "c": half}, "ref", True, threshold=0.167)["c"].reason \
        == "neither beats trivial"
    # the cell solving on a majority is enough for a verdict
    good = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]
    assert stats.compare({"ref": ref, "c": good}, "ref", True, threshold=0.167)["c"].verdict \
        == "better"


def test_no_direction():
    """Welch can be significant where A12 is exactly 0.5: no verdict, and the reason says so."""
    ref = [0.000, 0.001, 0.002, 0.003, 0.004, 1.000, 1.001, 1.002, 1.003, 1.004]
    cell = [0.985, 0.986, 0.987, 0.988, 0.989, 0.985, 0.986, 0.987, 0.988, 0.989]
    a12 = sum((c < r) + 0.5 * (c == r) for c in cell for r in ref) / 100
    p = sps.ttest_ind(cell, ref, equal_var=False).pvalue
    assert a12 == 0.5 and p < 0.05
    out = stats.compare({"ref": ref, "x": cell}, "ref", minimize=True, test="welch")
    assert out["x"].p_adj == pytest.approx(p)
    assert out["x"].verdict == "" and out["x"].reason == "no direction"


def test_unknown_test():
    with pytest.raises(ValueError, match="mwu"):
        stats.compare({"ref": REF, "x": GOOD}, "ref", True, test="t")
    assert set(stats.TESTS) == {"mwu", "welch"} and stats.MIN_N == 6


# ----------------------------------------------------------------------------- expected max

def brute_expected_best(values, k, minimize):
    """Average best over all N^k ordered draws with replacement (reference)."""
    pick = min if minimize else max
    draws = list(itertools.product(values, repeat=k))
    return sum(pick(d) for d in draws) / len(draws)


@pytest.mark.parametrize("minimize", [True, False])
def test_expected_max_against_brute_force(minimize):
    values = [0.3, 0.1, 0.4, 0.1, 0.25]
    got = stats.expected_max(values, minimize)
    assert len(got) == 5
    for k in range(1, 6):
        assert got[k - 1] == pytest.approx(brute_expected_best(values, k, minimize))
    assert got[0] == pytest.approx(np.mean(values))


def test_expected_max_diverged_is_worst():
    # P(every one of k draws diverged) = (1/3)^k > 0, so the expectation is the worst value
    assert stats.expected_max([0.1, 0.2, NAN], minimize=True) == [math.inf] * 3
    assert stats.expected_max([0.1, 0.2, NAN], minimize=False) == [-math.inf] * 3


def test_cohens_d_pools_by_degrees_of_freedom():
    """Unequal n: the pooled variance weights each group by n - 1 (an unweighted mean differs)."""
    a = [0.10, 0.12, 0.11, 0.13, 0.09, 0.12, 0.10, 0.11, 0.14, 0.12]
    b = [0.30, 0.36, 0.27]
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    pooled = math.sqrt((9 * va + 2 * vb) / 11)
    assert stats.cohens_d(a, b) == pytest.approx((np.mean(a) - np.mean(b)) / pooled, rel=1e-12)
    assert stats.cohens_d(a, b) != pytest.approx((np.mean(a) - np.mean(b)) / math.sqrt((va + vb) / 2),
                                                 rel=1e-3)


def test_cohens_d_omitted_when_sds_are_tiny_against_the_difference():
    """The README's old d = 153: a plateau at 0.164 +- 0.0013 vs 0.002 +- 0.0008."""
    plateau = [0.1630, 0.1645, 0.1628, 0.1651, 0.1639, 0.1640]
    solved = [0.0012, 0.0031, 0.0018, 0.0025, 0.0009, 0.0024]
    pooled = math.sqrt((np.var(plateau, ddof=1) + np.var(solved, ddof=1)) / 2)
    assert abs((np.mean(plateau) - np.mean(solved)) / pooled) > 100       # what d would say
    assert math.isnan(stats.cohens_d(plateau, solved))
    near = [0.010, 0.014, 0.009, 0.012, 0.011, 0.013]                   # |d| about 5: shown
    d = (np.mean(near) - np.mean(solved)) / math.sqrt((np.var(near, ddof=1) + np.var(solved, ddof=1)) / 2)
    assert 1 < abs(d) < 10 and stats.cohens_d(near, solved) == pytest.approx(d)
