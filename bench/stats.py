"""Seed-averaged statistics: summaries with confidence intervals and tests against a reference.

Tests come from scipy (Welch's t, Mann-Whitney U) and statsmodels (Holm's correction); effect sizes
are Cohen's d (pooled standard deviation) and Vargha-Delaney A12, here oriented so that A12 is the
probability that a seed of the cell is *better* than a seed of the reference (ties count half).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

TESTS = {"mwu": "Mann-Whitney U", "welch": "Welch's t-test"}
MIN_N = 6   # with 5 paired seeds a Wilcoxon test can never reach p < 0.05


@dataclass
class Summary:
    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, sample standard deviation, n and a t-based confidence interval of the mean."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    if n > 1 and std > 0:
        lo, hi = sps.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n))
    else:
        lo = hi = mean if n > 1 else math.nan
    return Summary(mean, std, n, float(lo), float(hi))


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """(mean a - mean b) / pooled standard deviation."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return math.nan
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else math.nan


def a12(a: Sequence[float], b: Sequence[float], minimize: bool) -> float:
    """Vargha-Delaney A12: P(a seed of ``a`` beats one of ``b``) + P(tie) / 2."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0:
        return math.nan
    diff = (b[None, :] - a[:, None]) if minimize else (a[:, None] - b[None, :])
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def pvalue(a: Sequence[float], b: Sequence[float], test: str) -> float:
    """Two-sided p-value of the chosen test."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # constant samples: scipy warns and returns nan
        if test == "welch":
            p = sps.ttest_ind(a, b, equal_var=False).pvalue
        elif test == "mwu":
            p = sps.mannwhitneyu(a, b, alternative="two-sided").pvalue
        else:
            raise ValueError(f"unknown test {test!r}; valid: {', '.join(TESTS)}")
    return float(p) if p == p else 1.0   # identical constant samples: no evidence of a difference


@dataclass
class Comparison:
    cell: str
    p_welch: float
    p_mwu: float
    p_adj: float          # the chosen test's p-value after Holm's correction
    d: float
    a12: float
    verdict: str          # "better", "worse" or "" (not significant / the reference itself)


def compare(groups: dict[str, Sequence[float]], reference: str, minimize: bool,
            test: str = "mwu", alpha: float = 0.05) -> dict[str, Comparison]:
    """Test every cell against ``reference``; Holm-correct the chosen test across the cells."""
    ref = groups[reference]
    others = [c for c in groups if c != reference]
    raw = {c: (pvalue(groups[c], ref, "welch"), pvalue(groups[c], ref, "mwu")) for c in others}
    chosen = [raw[c][0 if test == "welch" else 1] for c in others]
    testable = [i for i, p in enumerate(chosen) if not math.isnan(p)]
    adj = [math.nan] * len(others)
    if testable:
        _, corrected, _, _ = multipletests([chosen[i] for i in testable], alpha=alpha, method="holm")
        for i, p in zip(testable, corrected):
            adj[i] = float(p)
    out = {reference: Comparison(reference, math.nan, math.nan, math.nan, 0.0, 0.5, "reference")}
    for c, p in zip(others, adj):
        mean_c, mean_r = float(np.mean(groups[c])), float(np.mean(ref))
        better = mean_c < mean_r if minimize else mean_c > mean_r
        verdict = "" if not (p < alpha) else ("better" if better else "worse")
        out[c] = Comparison(c, raw[c][0], raw[c][1], p, cohens_d(groups[c], ref),
                            a12(groups[c], ref, minimize), verdict)
    return out
