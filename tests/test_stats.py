"""Statistics against scipy/statsmodels on fixed numbers, and a case where Holm changes the verdict."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from bench import stats

REF = [0.50, 0.52, 0.49, 0.51, 0.53, 0.50]
GOOD = [0.40, 0.41, 0.39, 0.42, 0.40, 0.38]


def test_summary_against_scipy():
    s = stats.summarize(REF)
    assert s.n == 6 and math.isclose(s.mean, np.mean(REF)) and math.isclose(s.std, np.std(REF, ddof=1))
    lo, hi = sps.t.interval(0.95, 5, loc=np.mean(REF), scale=sps.sem(REF))
    assert math.isclose(s.ci_low, lo) and math.isclose(s.ci_high, hi)


def test_tests_and_effect_sizes_against_scipy():
    assert math.isclose(stats.pvalue(GOOD, REF, "welch"), sps.ttest_ind(GOOD, REF, equal_var=False).pvalue)
    assert math.isclose(stats.pvalue(GOOD, REF, "mwu"), sps.mannwhitneyu(GOOD, REF).pvalue)
    # every GOOD value is lower (better for a minimised metric) than every REF value
    assert stats.a12(GOOD, REF, minimize=True) == 1.0
    assert stats.a12(GOOD, REF, minimize=False) == 0.0
    assert stats.a12([1, 2], [2, 3], minimize=False) == pytest.approx((0 + 0.5 + 0 + 0) / 4)
    pooled = math.sqrt((np.var(GOOD, ddof=1) + np.var(REF, ddof=1)) / 2)
    assert math.isclose(stats.cohens_d(GOOD, REF), (np.mean(GOOD) - np.mean(REF)) / pooled)


def test_holm_changes_the_verdict():
    """Raw p-values 0.01, 0.04, 0.03 all pass alpha 0.05; Holm keeps only the smallest."""
    from statsmodels.stats.multitest import multipletests
    raw = [0.01, 0.04, 0.03]
    reject, adj, _, _ = multipletests(raw, alpha=0.05, method="holm")
    assert all(p < 0.05 for p in raw) and list(reject) == [True, False, False]

    # The same through compare(): three cells, each significant alone, not all after correction.
    ref = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    groups = {"ref": ref}
    for name, shift in (("a", 4.5), ("b", 2.6), ("c", 2.8)):   # Welch p = 0.0019, 0.037, 0.027
        groups[name] = [r - shift for r in ref]
    raw_p = {c: stats.pvalue(groups[c], ref, "welch") for c in "abc"}
    out = stats.compare(groups, "ref", minimize=True, test="welch")
    raw_sig = {c for c in "abc" if raw_p[c] < 0.05}
    holm_sig = {c for c in "abc" if out[c].verdict}
    assert raw_sig == {"a", "b", "c"} and holm_sig == {"a"}
    assert out["a"].verdict == "better"


def test_verdict_direction_follows_metric():
    out = stats.compare({"ref": REF, "x": GOOD}, "ref", minimize=False, test="welch")
    assert out["x"].verdict == "worse"
    out = stats.compare({"ref": REF, "x": GOOD}, "ref", minimize=True, test="welch")
    assert out["x"].verdict == "better"
