"""Across-task statistics (Friedman, Nemenyi, detectability) and the CD diagram, against scipy,
Demšar's (2006) table and hand computations."""
import math
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench import across, plots

Q05_K5 = 2.728   # Demšar (2006), Table 5(a): Nemenyi q_0.05 for 5 classifiers
Q05_K3 = 2.343   # (Demšar truncates 2.3437; tolerance 5e-4 covers the table rounding)


def test_friedman_against_scipy():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(7, 5))
    values[:, 1] -= 1.0
    df = pd.DataFrame(values, index=[f"t{i}" for i in range(7)], columns=list("abcde"))
    res = across.friedman(df, minimize=True)
    ref = sps.friedmanchisquare(*values.T)
    assert res.statistic == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue)
    hand = np.mean([sps.rankdata(row) for row in values], axis=0)
    assert [res.avg_ranks[c] for c in "abcde"] == pytest.approx(list(hand))
    # maximising reverses every rank: r -> k + 1 - r
    res_max = across.friedman(df, minimize=False)
    assert [res_max.avg_ranks[c] for c in "abcde"] == pytest.approx(list(6 - hand))
    assert res_max.p == pytest.approx(ref.pvalue)


def test_ranks_by_hand_with_ties_nan_and_per_task_direction():
    df = pd.DataFrame({"a": [0.1, 0.9, 0.5], "b": [0.2, 0.8, math.nan], "c": [0.1, 0.7, 0.4]},
                      index=["mse", "acc", "loss"])
    res = across.friedman(df, minimize={"mse": True, "acc": False, "loss": True})
    # mse (min): a,c tie at 1.5, b 3 | acc (max): a 1, b 2, c 3 | loss (min): c 1, a 2, NaN b 3
    assert res.avg_ranks == pytest.approx({"a": (1.5 + 1 + 2) / 3, "b": (3 + 2 + 3) / 3,
                                           "c": (1.5 + 3 + 1) / 3})
    with pytest.raises(ValueError, match="loss"):
        across.friedman(df, minimize={"mse": True, "acc": False})


def test_cd_against_demsar_table():
    for n in (2, 5, 14):
        cd = across.critical_difference(5, n)
        assert cd == pytest.approx(Q05_K5 * math.sqrt(5 * 6 / (6 * n)), rel=5e-4)
    df = pd.DataFrame(np.arange(20.0).reshape(4, 5), columns=list("abcde"))
    assert across.friedman(df, True).cd == pytest.approx(Q05_K5 * math.sqrt(30 / 24), rel=5e-4)


def test_detectability_two_tasks_five_cells():
    df = pd.DataFrame([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5.0]], columns=list("abcde"))
    res = across.friedman(df, True)
    # Nemenyi: (k - 1) >= q sqrt(k(k+1)/(6N)) <=> N >= q^2 k(k+1) / (6 (k-1)^2) = 2.33 -> 3
    n_nem = math.ceil(Q05_K5 ** 2 * 30 / (6 * 16))
    # Friedman with identical rankings: chi2 = N (k - 1) on k - 1 df; N = 2 -> p 0.092, N = 3 -> 0.017
    n_fr = next(n for n in range(1, 50) if sps.chi2.sf(4 * n, 4) < 0.05)
    assert (n_nem, n_fr) == (3, 3)
    assert (res.min_tasks_nemenyi, res.min_tasks_friedman, res.min_tasks) == (3, 3, 3)
    assert res.p == pytest.approx(sps.friedmanchisquare(*df.to_numpy().T).pvalue)
    assert res.p > 0.05 and res.significant_pairs == []
    assert "with 2 tasks no difference between 5 cells" in res.detectability
    assert "needs >= 3 tasks" in res.detectability


def test_pairs_after_friedman_rejects():
    # 10 tasks, identical rankings a < b < c: average ranks 1, 2, 3; CD = 2.343 sqrt(12/60) = 1.048
    df = pd.DataFrame([[1.0, 2.0, 3.0]] * 10, columns=list("abc"))
    res = across.friedman(df, True)
    assert res.cd == pytest.approx(Q05_K3 * math.sqrt(12 / 60), rel=5e-4)
    assert res.p == pytest.approx(sps.chi2.sf(10 * 2, 2)) and res.p < 0.05
    assert res.significant_pairs == [("a", "c")]
    assert "can be detected" in res.detectability


def test_too_few_cells_or_tasks():
    two = across.friedman(pd.DataFrame([[1.0, 2.0]] * 4, columns=["a", "b"]), True)
    assert math.isnan(two.p) and "3 cells" in two.reason
    one = across.friedman(pd.DataFrame([[1.0, 2.0, 3.0]], columns=list("abc")), True)
    assert math.isnan(one.p) and "2 tasks" in one.reason
    assert one.avg_ranks == {"a": 1.0, "b": 2.0, "c": 3.0}


def test_cd_diagram_writes_both_files(tmp_path):
    ranks = {"lstm": 1.4, "gru": 2.1, "momentum_lstm": 2.9, "janet": 4.0, "nru": 4.6}
    paths = plots.cd_diagram(ranks, 1.2, tmp_path / "figs" / "cd_adding", title="adding")
    assert paths == [tmp_path / "figs" / "cd_adding.png", tmp_path / "figs" / "cd_adding.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    root = ET.parse(paths[1]).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "momentum_lstm" in paths[1].read_text()
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["cd_adding.png",
                                                                      "cd_adding.svg"]


def test_cd_groups():
    ordered = [("a", 1.0), ("b", 1.5), ("c", 2.4), ("d", 4.0)]
    # CD 1.5: a-b-c within 1.4 of a; b-c; d alone -> only the maximal run (a..c)
    assert plots._groups(ordered, 1.5) == [(0, 2)]
    assert plots._groups(ordered, 1.0) == [(0, 1), (1, 2)]
