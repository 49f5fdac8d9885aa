"""Seed statistics whose verdicts can be trusted: summaries, exact rank tests, effect sizes.

Conventions used throughout:
- ``minimize`` says which direction is better for the metric.
- Diverged seeds (NaN or +-inf) are never dropped. In rank statistics (Mann-Whitney U, A12, the
  median, expected maximum) they rank worst: they become +inf when minimising and -inf when
  maximising, so they tie with each other and lose to every finite seed. Moment statistics (mean,
  standard deviation, Welch, Cohen's d, Hodges-Lehmann) use the finite values only and the number
  left out is reported (``Summary.n_diverged``) or the statistic is refused (Welch).
- Mann-Whitney p-values are exact (a full enumeration of the permutation distribution of the
  pooled midranks) at small n or with ties; the direction of a verdict comes from A12, the same
  rank scale as the test, never from the means.
- A12 is oriented so that it is the probability that a seed of the cell is *better* than a seed of
  the reference (ties count half).
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

TESTS = {"mwu": "Mann-Whitney U", "welch": "Welch's t-test"}
MIN_N = 6               # with 3 seeds a side the exact two-sided MWU p is never below 0.1
NEAR_ZERO_CV = 0.01     # Cohen's d is not reported when a group's SD is below 1% of |its mean|
MAX_D = 10.0           # ... or when the pooled SD is below a tenth of the difference of means
EXACT_MAX_N = 24        # without ties, enumerate the permutation distribution up to n + m = 24
EXACT_TIES_MAX_N = 100  # with ties, enumerate up to this n + m (beyond: scipy's tie-corrected normal)
N_RESAMPLES = 9999      # bootstrap resamples for the CI of the mean
BOOTSTRAP_SEED = 0      # fixed so that a table is reproducible


# ----------------------------------------------------------------------------- helpers

def _array(values: Sequence[float]) -> np.ndarray:
    """Values as a 1-d float array."""
    return np.asarray(values, dtype=float).reshape(-1)


@functools.cache
def _sps():
    """scipy.stats, imported on first use (with statsmodels, 2 s of start-up): commands that only
    check input or list things never compute a statistic."""
    from scipy import stats
    return stats


def _worst_filled(values: Sequence[float], minimize: bool) -> np.ndarray:
    """Values with every non-finite entry replaced by the worst value (+inf or -inf)."""
    x = _array(values).copy()
    x[~np.isfinite(x)] = math.inf if minimize else -math.inf
    return x


def _finite(values: Sequence[float]) -> np.ndarray:
    """The finite values only."""
    x = _array(values)
    return x[np.isfinite(x)]


def _subset_sum_counts(scores: np.ndarray, n: int) -> np.ndarray:
    """counts[s] = number of n-subsets of the integer ``scores`` whose sum is s (float64)."""
    total = int(scores.sum())
    dp = np.zeros((n + 1, total + 1))
    dp[0, 0] = 1.0
    for r in scores.astype(int):
        if r == 0:
            dp[1:] = dp[1:] + dp[:-1]
        else:
            dp[1:, r:] = dp[1:, r:] + dp[:-1, :-r]   # right side is evaluated before the update
    return dp[n]


def _exact_mwu(x: np.ndarray, y: np.ndarray) -> float:
    """Exact two-sided MWU p by enumerating all C(n+m, n) assignments of the pooled midranks."""
    if len(x) > len(y):
        x, y = y, x                                # same two-sided p; smaller DP table
    n, big_n = len(x), len(x) + len(y)
    doubled = np.rint(2 * _sps().rankdata(np.concatenate([x, y]))).astype(int)  # midranks are k/2
    counts = _subset_sum_counts(doubled, n)
    center = n * (big_n + 1)                       # 2 * E[rank sum of x]
    observed = abs(int(doubled[:n].sum()) - center)
    sums = np.arange(len(counts))
    # |U - nm/2| = |R_x - n(N+1)/2|; on doubled integer ranks the comparison is exact.
    extreme = np.abs(sums - center) >= observed
    return float(min(1.0, counts[extreme].sum() / counts.sum()))


# ----------------------------------------------------------------------------- proportions

def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (nan, nan) when n = 0."""
    if n == 0:
        return (math.nan, math.nan)
    z = float(_sps().norm.ppf(0.5 + confidence / 2))
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, center - half), min(1.0, center + half))


def solved(values: Sequence[float], threshold: float, minimize: bool) -> list[bool]:
    """Per seed: finite and strictly better than ``threshold`` (NaN/inf never solve)."""
    x = _array(values)
    better = x < threshold if minimize else x > threshold
    return [bool(f and b) for f, b in zip(np.isfinite(x), better)]


# ----------------------------------------------------------------------------- summaries

@dataclass
class Summary:
    mean: float        # over finite seeds
    std: float         # sample SD over finite seeds
    median: float      # over all seeds, diverged ones ranked worst (can be +-inf)
    n: int             # all seeds
    n_finite: int
    n_diverged: int    # n - n_finite: left out of mean/std/CI, never out of the rank tests
    ci_low: float      # bootstrap CI of the mean of the finite seeds
    ci_high: float


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Bootstrap CI of the mean of the finite values: BCa, percentile where BCa is degenerate."""
    x = _finite(values)
    if len(x) < 2:
        return (math.nan, math.nan)
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # DegenerateDataWarning: handled by the fallback
            ci = _sps().bootstrap((x,), np.mean, confidence_level=confidence, method=method,
                               n_resamples=N_RESAMPLES, rng=BOOTSTRAP_SEED,
                               vectorized=True).confidence_interval
        lo, hi = float(ci.low), float(ci.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return (lo, hi)
    return (math.nan, math.nan)


def summarize(values: Sequence[float], minimize: bool, confidence: float = 0.95) -> Summary:
    """Mean, SD and bootstrap CI over finite seeds; median over all seeds with diverged ones worst."""
    raw = _array(values)
    x = _finite(raw)
    n, nf = len(raw), len(x)
    mean = float(x.mean()) if nf else math.nan
    std = float(x.std(ddof=1)) if nf > 1 else math.nan
    median = float(np.median(_worst_filled(raw, minimize))) if n else math.nan
    lo, hi = mean_ci(x, confidence)
    return Summary(mean, std, median, n, nf, n - nf, lo, hi)


# ----------------------------------------------------------------------------- tests

def mwu(a: Sequence[float], b: Sequence[float], minimize: bool) -> float:
    """Two-sided Mann-Whitney U p; exact permutation p when n+m <= 24 or with ties."""
    x, y = _worst_filled(a, minimize), _worst_filled(b, minimize)
    if len(x) == 0 or len(y) == 0:
        return math.nan
    big_n = len(x) + len(y)
    pooled = np.concatenate([x, y])
    ties = len(np.unique(pooled)) < big_n
    if big_n <= EXACT_MAX_N or (ties and big_n <= EXACT_TIES_MAX_N):
        return _exact_mwu(x, y)
    # Large samples only: scipy's choice (exact without ties at small n, else tie-corrected
    # normal). Infinities rank like any other value, so give scipy their ranks as stand-ins.
    ranks = _sps().rankdata(pooled)
    return float(_sps().mannwhitneyu(ranks[:len(x)], ranks[len(x):], alternative="two-sided",
                                  method="auto").pvalue)


def welch_reason(a: Sequence[float], b: Sequence[float]) -> str:
    """Why Welch's test cannot be used on these groups ("" when it can)."""
    xa, xb = _array(a), _array(b)
    if not (np.isfinite(xa).all() and np.isfinite(xb).all()):
        return "welch: diverged seeds"
    if len(xa) < 2 or len(xb) < 2:
        return "welch: fewer than 2 seeds"
    if xa.var() == 0 and xb.var() == 0:
        return "welch: zero variance in both groups"
    return ""


def welch(a: Sequence[float], b: Sequence[float]) -> float:
    """Welch's t-test p; nan if a group has a non-finite value, < 2 values or both zero variance."""
    if welch_reason(a, b):
        return math.nan
    return float(_sps().ttest_ind(_array(a), _array(b), equal_var=False).pvalue)


def pvalue(a: Sequence[float], b: Sequence[float], test: str, minimize: bool) -> float:
    """Two-sided p-value of the named test (a key of TESTS)."""
    if test == "mwu":
        return mwu(a, b, minimize)
    if test == "welch":
        return welch(a, b)
    raise ValueError(f"unknown test {test!r}; valid: {', '.join(TESTS)}")


# ----------------------------------------------------------------------------- effect sizes

def a12(a: Sequence[float], b: Sequence[float], minimize: bool) -> float:
    """Vargha-Delaney A12: P(a seed of ``a`` beats one of ``b``) + P(tie) / 2, diverged worst."""
    x, y = _worst_filled(a, minimize), _worst_filled(b, minimize)
    if len(x) == 0 or len(y) == 0:
        return math.nan
    wins = (x[:, None] < y[None, :]) if minimize else (x[:, None] > y[None, :])
    ties = x[:, None] == y[None, :]
    return float((wins.sum() + 0.5 * ties.sum()) / wins.size)


def hodges_lehmann(a: Sequence[float], b: Sequence[float],
                   confidence: float = 0.95) -> tuple[float, float, float]:
    """HL shift (median of a_i - b_j, finite values) and its exact distribution-free (Moses) CI.

    The interval is [D_(k), D_(nm+1-k)] over the sorted pairwise differences D, with k the
    largest integer such that P(U <= k-1) <= (1-confidence)/2 under the exact no-ties null
    distribution of the Mann-Whitney U (the MWU critical value), so its coverage is at least
    ``confidence`` for continuous data. When even k = 1 is too wide (e.g. 2 vs 2 seeds) no
    finite interval reaches that confidence and (-inf, inf) is returned.
    """
    x, y = _finite(a), _finite(b)
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        return (math.nan, math.nan, math.nan)
    diffs = np.sort((x[:, None] - y[None, :]).ravel())
    shift = float(np.median(diffs))
    small = min(n, m)                              # U's null distribution is symmetric in n, m
    counts = _subset_sum_counts(np.arange(1, n + m + 1), small)[small * (small + 1) // 2:]
    cdf = np.cumsum(counts) / counts.sum()
    tail = (1 - confidence) / 2
    k = int(np.searchsorted(cdf, tail * (1 + 1e-12), side="right"))  # #{u : P(U <= u) <= tail}
    if k < 1:
        return (shift, -math.inf, math.inf)
    return (shift, float(diffs[k - 1]), float(diffs[n * m - k]))


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """(mean a - mean b) / pooled SD over finite values; nan for < 2 values or near-zero SD."""
    x, y = _finite(a), _finite(b)
    na, nb = len(x), len(y)
    if na < 2 or nb < 2:
        return math.nan
    sa, sb = x.std(ddof=1), y.std(ddof=1)
    for s, g in ((sa, x), (sb, y)):
        if s == 0 or s < NEAR_ZERO_CV * abs(g.mean()):
            return math.nan
    pooled = math.sqrt(((na - 1) * sa ** 2 + (nb - 1) * sb ** 2) / (na + nb - 2))
    d = float((x.mean() - y.mean()) / pooled)
    # |d| > 10: the groups are separated by many of their own (tiny) SDs; A12 (0 or 1) and the
    # shift say it, a d of 150 from a near-constant plateau would only mislead
    return d if abs(d) <= MAX_D else math.nan


def expected_max(values: Sequence[float], minimize: bool) -> list[float]:
    """Dodge et al. (2019) expected best value after k = 1..N trials drawn with replacement."""
    x = _worst_filled(values, minimize)
    n = len(x)
    if n == 0:
        return []
    v = np.sort(x)[::-1] if minimize else np.sort(x)          # better is last
    i = np.arange(1, n + 1) / n
    out = []
    for k in range(1, n + 1):
        w = i ** k - (i - 1 / n) ** k                      # P(the best of k draws is v_(i))
        out.append(float(np.sum(v * w)))                   # a diverged value makes E_k infinite
    return out


# ----------------------------------------------------------------------------- comparison

@dataclass
class Comparison:
    cell: str
    p_raw: float      # the chosen test's raw p
    p_welch: float
    p_mwu: float
    p_adj: float      # the chosen test's p after Holm over the cells shown; nan if not testable
    a12: float        # P(cell seed better than reference seed) + ties / 2
    hl: float         # Hodges-Lehmann shift, cell - reference, in metric units
    hl_low: float
    hl_high: float
    d: float          # Cohen's d, nan where it would be meaningless
    verdict: str      # "reference", "better", "worse" or ""
    reason: str       # why the verdict is "" ("n.s.", "neither beats trivial", ...)


def _majority_solves(values: Sequence[float], threshold: float, minimize: bool) -> bool:
    """Whether a strict majority of seeds solve."""
    s = solved(values, threshold, minimize)
    return 2 * sum(s) > len(s)


def _untestable_reason(a: Sequence[float], b: Sequence[float], test: str) -> str:
    """Why the chosen test gave no p-value."""
    if test == "welch":
        return welch_reason(a, b) or "welch: no p-value"
    if len(a) == 0 or len(b) == 0:
        return f"{test}: no seeds"
    return f"{test}: no p-value"


def compare(groups: dict[str, list[float]], reference: str, minimize: bool, test: str = "mwu",
            alpha: float = 0.05, threshold: float | None = None) -> dict[str, Comparison]:
    """Every cell vs ``reference``; Holm over exactly the other keys of ``groups``."""
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; valid: {', '.join(TESTS)}")
    ref = groups[reference]
    others = [c for c in groups if c != reference]
    p_w = {c: welch(groups[c], ref) for c in others}
    p_m = {c: mwu(groups[c], ref, minimize) for c in others}
    raw = p_w if test == "welch" else p_m
    testable = [c for c in others if not math.isnan(raw[c])]
    adj = {c: math.nan for c in others}
    if testable:
        from statsmodels.stats.multitest import multipletests
        _, corrected, _, _ = multipletests([raw[c] for c in testable], alpha=alpha, method="holm")
        adj.update({c: float(p) for c, p in zip(testable, corrected)})
    nan = math.nan
    out = {reference: Comparison(reference, nan, nan, nan, nan, 0.5, 0.0, nan, nan, nan,
                                 "reference", "")}
    ref_solves = threshold is not None and _majority_solves(ref, threshold, minimize)
    for c in others:
        g = groups[c]
        eff = a12(g, ref, minimize)
        hl, lo, hi = hodges_lehmann(g, ref)
        if threshold is not None and not ref_solves and not _majority_solves(g, threshold, minimize):
            verdict, reason = "", "neither beats trivial"
        elif math.isnan(adj[c]):
            verdict, reason = "", _untestable_reason(g, ref, test)
        elif adj[c] < alpha:
            verdict, reason = ("better", "") if eff > 0.5 else ("worse", "") if eff < 0.5 \
                else ("", "no direction")
        else:
            verdict, reason = "", "n.s."
        out[c] = Comparison(c, raw[c], p_w[c], p_m[c], adj[c], eff, hl, lo, hi,
                            cohens_d(g, ref), verdict, reason)
    return out
