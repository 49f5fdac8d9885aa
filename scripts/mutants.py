"""Plausible bugs in the honest protocol and the statistics, and whether the test suite catches each.

Each mutant is one textual replacement in one file. The script copies the project to a temporary
folder, applies the mutant there, runs the tests named by TESTS (fast files first, stopping at the
first failure) and reports caught (a test failed) or MISSED (every test passed). The working tree
is never touched.

    python scripts/mutants.py            # all mutants
    python scripts/mutants.py 3 7        # only these (numbers as listed)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPY = ("bench", "baselines", "tasks", "studies", "tests", "pyproject.toml")
TESTS = ["tests/test_stats.py", "tests/test_protocol.py",
         "tests/test_workers.py::test_stale_leases",
         "tests/test_workers.py::test_a_unit_queued_twice_is_trained_once",
         "tests/test_e2e.py::test_run_prints_table_with_both_cells_and_n_seeds",
         "tests/test_e2e.py::test_no_verdict_between_cells_that_never_beat_trivial",
         "tests/test_e2e.py::test_report_cells_is_the_family"]

# (what the bug is, file, text, replacement); text and replacement may be tuples of several
MUTANTS = [
    ("tuning objective is the test metric (and tuning reads test)", "bench/tune.py",
     ("read_test=final)", "study.tell(trial, res.test if final else res.val)"),
     ("read_test=True)", "study.tell(trial, res.test)")),
    ("tuning evaluates the test split (stored, unused)", "bench/tune.py",
     "read_test=final)", "read_test=True)"),
    ("best-validation weights not reloaded before testing", "bench/train.py",
     "        model.load_state_dict(best.state)\n", ""),
    ("the worst epoch is kept instead of the best", "bench/train.py",
     "self.spec.better(value, self.best)", "self.spec.better(self.best, value)"),
    ("final seed runs reuse the tuning seeds", "bench/budget.py",
     "return [10_000 + i for i in range(self.seeds)]", "return list(range(self.seeds))"),
    ("compare() passes A12 its arguments flipped", "bench/stats.py",
     "eff = a12(g, ref, minimize)", "eff = a12(ref, g, minimize)"),
    ("momentum_lstm's forget bias written to the input-gate block", "bench/momentum/rnn.py",
     "self.core.bias_ih_l0[n:2 * n] = forget_bias", "self.core.bias_ih_l0[0:n] = forget_bias"),
    ("pooled SD unweighted", "bench/stats.py",
     "((na - 1) * sa ** 2 + (nb - 1) * sb ** 2) / (na + nb - 2)", "(sa ** 2 + sb ** 2) / 2"),
    ("Holm family is every cell in the storage", "bench/report.py",
     "runs, attrs = seed_runs(storage, exp, cells, summaries=summaries)",
     "runs, attrs = seed_runs(storage, exp, None, summaries=summaries)"),
    ("direction of the verdict from the means", "bench/stats.py",
     'verdict, reason = ("better", "") if eff > 0.5 else ("worse", "") if eff < 0.5 \\',
     'verdict, reason = ("better", "") if (np.nanmean(g) < np.nanmean(ref)) == minimize '
     'else ("worse", "") if True \\'),
    ("asymptotic Mann-Whitney p-values at small n and with ties", "bench/stats.py",
     "EXACT_MAX_N = 24 ", "EXACT_MAX_N = 0 "),
    ("diverged seeds dropped before the tests", "bench/report.py",
     "        out[c] = [float(value(row)) if row.state == \"COMPLETE\" else math.nan\n"
     "                  for row in r.itertuples()]",
     "        out[c] = [float(value(row)) for row in r.itertuples() if row.state == \"COMPLETE\"]"),
    ("better/worse printed between cells that never beat trivial", "bench/stats.py",
     "if threshold is not None and not ref_solves and not _majority_solves(g, threshold, minimize):",
     "if False:"),
    ("trivial score is the nominal formula, not this test split's", "bench/tune.py",
     'trivial = data.trivial() if kind == "seeds" else data.spec.trivial',
     "trivial = data.spec.trivial"),
    ("solve threshold on the wrong side of trivial", "bench/task.py",
     "return trivial * (1 - self.solve_margin)", "return trivial * (1 + self.solve_margin)"),
    ("budget-sensitive verdicts never marked", "bench/report.py",
     'sensitive = bool(comp and half and comp.verdict != "reference" and half.verdict != comp.verdict)',
     "sensitive = False"),
    ("final seeds ignore the tuned configuration", "bench/work.py",
     "params, source = best_config(tune, spec, b)",
     "params, source = __import__('bench.tune').tune.default_config(spec, b), 'registered'"),
    ("no completed trial: seeds sample random configurations", "bench/tune.py",
     "        return default_config(spec, budget), \"registered defaults (no tuning trial completed)\"",
     "        return {}, \"registered defaults (no tuning trial completed)\""),
    ("NaN p-value turned into p = 1", "bench/stats.py",
     "    testable = [c for c in others if not math.isnan(raw[c])]",
     "    raw = {c: (1.0 if math.isnan(p) else p) for c, p in raw.items()}\n"
     "    testable = [c for c in others if not math.isnan(raw[c])]"),
    ("bootstrap CI replaced by a t interval (negative bounds for a loss)", "bench/stats.py",
     "def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:\n",
     "def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:\n"
     "    x = _finite(values)\n"
     "    if len(x) > 1 and x.std(ddof=1) > 0:\n"
     "        return tuple(map(float, sps.t.interval(confidence, len(x) - 1, loc=x.mean(),"
     " scale=x.std(ddof=1) / math.sqrt(len(x)))))\n"),
    ("Cohen's d reported for near-zero SDs", "bench/stats.py",
     "        if s == 0 or s < NEAR_ZERO_CV * abs(g.mean()):", "        if s == 0:"),
    ("a unit queued twice keeps the later copy", "bench/work.py",
     "for t in sorted(trials, key=lambda t: t.number):", "for t in sorted(trials, key=lambda t: -t.number):"),
    ("a lease never expires (a stalled worker's unit is never rerun)", "bench/work.py",
     '    return now - float(lease["time"]) > LEASE_S', "    return False"),
]


def run(i: int, what: str, path: str, old: str | tuple, new: str | tuple) -> bool | None:
    """True if caught, False if missed, None if the mutant does not apply (a stale pattern)."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        for name in COPY:
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, Path(tmp) / name)
        target = Path(tmp) / path
        text = target.read_text()
        for a, b in zip(*((old, new) if isinstance(old, tuple) else ((old,), (new,)))):
            if text.count(a) != 1:
                return None
            text = text.replace(a, b)
        target.write_text(text)
        env = {**os.environ, "PYTHONPATH": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
        p = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                            *TESTS], cwd=tmp, env=env, capture_output=True, text=True)
        return p.returncode != 0


def main(argv: list[str]) -> int:
    chosen = [int(a) for a in argv] or list(range(1, len(MUTANTS) + 1))
    caught = missed = stale = 0
    for i in chosen:
        what, path, old, new = MUTANTS[i - 1]
        start = time.perf_counter()
        result = run(i, what, path, old, new)
        tag = {True: "caught", False: "MISSED", None: "STALE (pattern not found once)"}[result]
        caught += result is True
        missed += result is False
        stale += result is None
        print(f"{i:2d}. {tag:<8} {what} ({path}, {time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\n{caught} of {caught + missed} mutants caught" + (f"; {stale} stale" if stale else ""))
    return 0 if missed == 0 and stale == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
