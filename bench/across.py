"""Comparisons across tasks: Friedman's test on per-task ranks and the Nemenyi post-hoc test.

Input is one summary score per (task, cell), e.g. each cell's median over seeds on that task.
Following Demšar (2006, JMLR 7:1-30), cells are ranked within each task (rank 1 = best), the
Friedman test asks whether the average ranks differ at all, and the Nemenyi test compares all
pairs afterwards through one critical difference (CD) of average ranks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

MAX_TASKS = 100_000   # search bound for min_tasks


@dataclass
class AcrossResult:
    cells: list[str]
    n_tasks: int
    avg_ranks: dict[str, float]             # rank 1 = best, ties averaged, NaN ranked worst
    statistic: float                        # Friedman chi-square (nan if not computable)
    p: float                                # its p-value (chi-square approximation, as scipy)
    cd: float                               # Nemenyi critical difference of average ranks
    alpha: float
    significant_pairs: list[tuple[str, str]] = field(default_factory=list)
    min_tasks: int = 0                      # fewest tasks for which any difference is detectable
    min_tasks_nemenyi: int = 0
    min_tasks_friedman: int = 0
    detectability: str = ""
    reason: str = ""                        # why p is nan / why there are no pairs


def _directions(tasks: list, minimize: dict[str, bool] | bool) -> list[bool]:
    """Per task, whether smaller is better."""
    if isinstance(minimize, dict):
        missing = [t for t in tasks if t not in minimize]
        if missing:
            raise ValueError(f"no direction for task(s) {missing}; given: {sorted(minimize)}")
        return [bool(minimize[t]) for t in tasks]
    return [bool(minimize)] * len(tasks)


def rank_matrix(scores: pd.DataFrame, minimize: dict[str, bool] | bool) -> pd.DataFrame:
    """Per-task ranks of the cells: 1 = best, ties averaged, NaN/inf-diverged ranked worst."""
    rows = []
    for mini, (_, row) in zip(_directions(list(scores.index), minimize), scores.iterrows()):
        v = row.to_numpy(dtype=float).copy()
        v[~np.isfinite(v)] = math.inf if mini else -math.inf
        rows.append(sps.rankdata(v if mini else -v))
    return pd.DataFrame(rows, index=scores.index, columns=scores.columns, dtype=float)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Nemenyi q_alpha: the studentized range quantile (infinite df) over sqrt(2)."""
    return float(sps.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n_tasks: int, alpha: float = 0.05) -> float:
    """Nemenyi CD = q_alpha * sqrt(k (k+1) / (6 N)) for k cells on N tasks."""
    if k < 2 or n_tasks < 1:
        return math.nan
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n_tasks))


def min_tasks_nemenyi(k: int, alpha: float = 0.05) -> int:
    """Fewest tasks for which the largest possible rank difference (k - 1) reaches the CD."""
    n = math.ceil(nemenyi_q(k, alpha) ** 2 * k * (k + 1) / (6 * (k - 1) ** 2) - 1e-12)
    while critical_difference(k, n, alpha) > k - 1:   # guard against rounding at the boundary
        n += 1
    return max(1, n)


def min_tasks_friedman(k: int, alpha: float = 0.05) -> int:
    """Fewest tasks for which perfectly consistent rankings give Friedman p < alpha."""
    for n in range(1, MAX_TASKS + 1):
        # identical rankings on every task: chi-square = 12N/(k(k+1)) sum R_j^2 - 3N(k+1) = N(k-1)
        if sps.chi2.sf(n * (k - 1), k - 1) < alpha:
            return n
    return MAX_TASKS


def friedman(scores: pd.DataFrame, minimize: dict[str, bool] | bool,
             alpha: float = 0.05) -> AcrossResult:
    """Friedman test over tasks (rows) and cells (columns), then Nemenyi all-pairs post hoc.

    Nemenyi, not pairwise Wilcoxon or a comparison with a control, because the question is which
    of all cells differ from which after Friedman rejects "all cells rank alike"; it is the
    all-pairs post-hoc test Demšar (2006) recommends for several methods on several data sets.
    Two cells differ when their average ranks differ by at least CD (Demšar's wording), and pairs
    are reported only when the Friedman test itself rejects at ``alpha``.
    """
    cells = [str(c) for c in scores.columns]
    n, k = scores.shape
    ranks = rank_matrix(scores, minimize)
    avg = {c: float(ranks[col].mean()) if n else math.nan for c, col in zip(cells, scores.columns)}
    stat = p = math.nan
    reason = ""
    if k < 3:
        reason = f"Friedman needs >= 3 cells (got {k})"
    elif n < 2:
        reason = f"Friedman needs >= 2 tasks (got {n})"
    elif np.all(ranks.to_numpy() == ranks.to_numpy()[:, :1]):
        reason = "every task ties every cell"
    else:
        res = sps.friedmanchisquare(*[ranks[col].to_numpy() for col in scores.columns])
        stat, p = float(res.statistic), float(res.pvalue)
    cd = critical_difference(k, n, alpha)
    pairs: list[tuple[str, str]] = []
    if not reason:
        if p < alpha:
            pairs = [(a, b) for i, a in enumerate(cells) for b in cells[i + 1:]
                     if abs(avg[a] - avg[b]) >= cd]
        else:
            reason = f"Friedman p = {p:.3g} >= {alpha}: no post-hoc pairs"
    if k >= 2:
        n_nem, n_fr = min_tasks_nemenyi(k, alpha), (min_tasks_friedman(k, alpha) if k >= 3 else 0)
    else:
        n_nem = n_fr = 0
    need = max(n_nem, n_fr)
    if k < 2:
        text = f"with {k} cell there is nothing to compare"
    elif n < need:
        text = (f"with {n} tasks no difference between {k} cells can be detected by "
                f"Friedman/Nemenyi (needs >= {need} tasks)")
    else:
        text = (f"with {n} tasks a difference between {k} cells can be detected "
                f"(needs >= {need} tasks; CD = {cd:.3g} average ranks)")
    return AcrossResult(cells, n, avg, stat, p, cd, alpha, pairs, need, n_nem, n_fr, text, reason)
