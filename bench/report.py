"""The comparison table, rebuilt from the storage alone: Markdown, LaTeX (booktabs), CSV, JSON."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from tabulate import tabulate

from bench import across, plots, stats, studies
from bench.studies import counted
from bench.errors import UserError
from bench.experiment import Experiment

FORMATS = ("md", "latex", "csv", "json")
TrialState = optuna.trial.TrialState


@dataclass
class Report:
    """Per-cell rows (raw numbers) plus what the footer must say."""

    task: str
    metric: str
    direction: str
    trivial: float               # on the run's own test split
    trivial_note: str            # the nominal formula
    threshold: float             # a seed solves when its test value beats this
    margin: float = 0.1          # the share of the trivial score a solve must beat it by
    reference: str = "lstm"
    rows: list[dict] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: per cell, one dict per seed run (test, curve, params, wall_s, seed): what the plots draw
    seeds: dict[str, list[dict]] = field(default_factory=dict)
    #: budget, seeds, versions, commit and the command that reproduces the table
    provenance: dict[str, str] = field(default_factory=dict)
    #: what each run's reported epoch is chosen on (the task says: pmnist with val_fraction=0
    #: selects on training images)
    selection: str = "the best validation epoch"


RUN_COLUMNS = ["cell", "seed", "state", "test", "val", "best_epoch", "curve", "test_curve",
               "hidden", "params", "flops_per_step", "wall_s", "fail_reason"]


def experiment_studies(summaries: dict, exp: Experiment, kind: str) -> dict[str, str]:
    """The name of each cell's ``kind`` study of the experiment, by cell: a study is the
    experiment's when its user attributes say so (task, budget, size, kind), or, where they are
    missing, when its name is one of the experiment's (short or legacy form). Where a cell has
    both forms, the one ``Experiment.stored_name`` picks (the legacy one, which runs extend)."""
    found: dict[str, list[str]] = {}
    for name, s in summaries.items():
        ours = exp.identifies(s.user_attrs, kind)
        cell = exp.cell_of(name, kind)
        if ours is None:
            ours = cell is not None
        if ours:
            found.setdefault(s.user_attrs.get("cell", cell), []).append(name)
    pick = {c: exp.stored_name(names, c, kind) for c, names in found.items() if c is not None}
    return {c: name if name in found[c] else found[c][0] for c, name in pick.items()}


def seed_runs(storage, exp: Experiment, cells: list[str] | None = None, kind: str = "seeds",
              summaries: dict | None = None) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Every counted run of the experiment's ``kind`` studies (one row each; a diverged run has a
    NaN test value) and each cell's study attributes; only ``cells`` when given; ``summaries``:
    ``studies.summaries(storage)`` when already read."""
    rows, attrs = [], {}
    summaries = studies.summaries(storage) if summaries is None else summaries
    for cell, name in experiment_studies(summaries, exp, kind).items():
        if cells is not None and cell not in cells:
            continue
        attrs[cell] = dict(summaries[name].user_attrs)
        # in unit order (the seed), not storage order: workers store units in any order
        for t in sorted(studies.trials(storage, name),
                        key=lambda t: (t.user_attrs.get("seed", t.number), t.number)):
            if not counted(t):
                continue
            u = t.user_attrs
            rows.append({"cell": cell, "seed": u.get("seed"), "state": t.state.name,
                         "test": u.get("test", math.nan), "val": u.get("val", math.nan),
                         "best_epoch": u.get("best_epoch"), "curve": u.get("curve", []),
                         "test_curve": u.get("test_curve", []), "hidden": u.get("hidden"),
                         "params": u.get("params"), "flops_per_step": u.get("flops_per_step"),
                         "wall_s": u.get("wall_s", math.nan),
                         "fail_reason": u.get("fail_reason", "")})
    return pd.DataFrame(rows, columns=RUN_COLUMNS), attrs


def anytime_test(run: pd.Series, epochs: int, minimize: bool) -> float:
    """The test value at the best-validation epoch among the first ``epochs`` epochs (NaN for a
    diverged run or one stored without per-epoch test values)."""
    curve, test = list(run.curve or [])[:epochs], list(run.test_curve or [])[:epochs]
    finite = [i for i, v in enumerate(curve) if math.isfinite(v)]
    if not finite or len(test) < len(curve):
        return math.nan
    best = min(finite, key=lambda i: curve[i] if minimize else -curve[i])   # first of the best
    return float(test[best])


def first_solve(curve: list[float], threshold: float, minimize: bool) -> float:
    """The first epoch (1-based) whose validation value beats the threshold (inf: never)."""
    hit = [i + 1 for i, v in enumerate(curve or []) if math.isfinite(v)
           and (v < threshold if minimize else v > threshold)]
    return float(hit[0]) if hit else math.inf


def epochs_to_solve(curves: list[list[float]], threshold: float, minimize: bool) -> float:
    """Median over seeds of ``first_solve`` (a seed that never solves counts as never: inf)."""
    firsts = [first_solve(c, threshold, minimize) for c in curves]
    return float(np.median(firsts)) if firsts else math.nan


def seconds_to_solve(r: pd.DataFrame, threshold: float, minimize: bool) -> float:
    """Median over seeds of the wall time to the first solving epoch (the run's seconds per
    epoch times that epoch; inf for a seed that never solves)."""
    times = [row.wall_s * first_solve(row.curve, threshold, minimize) / max(1, len(row.curve or []))
             if row.state == "COMPLETE" else math.inf for row in r.itertuples()]
    return float(np.median(times)) if times else math.nan


def _groups(runs: pd.DataFrame, cells: list[str], value) -> dict[str, list[float]]:
    """Per cell, one value per counted seed run (diverged: NaN), in seed order."""
    out = {}
    for c in cells:
        r = runs[runs.cell == c].sort_values("seed")
        out[c] = [float(value(row)) if row.state == "COMPLETE" else math.nan
                  for row in r.itertuples()]
    return out


def build(storage, exp: Experiment, cells: list[str] | None = None, test: str | None = None,
          reference: str | None = None, alpha: float | None = None) -> Report:
    """Summaries and tests for exactly ``cells`` (every cell of the experiment when None); the
    family of the multiple-comparison correction is the rows shown, and nothing else."""
    declared = exp.budget.declared()
    test, reference = test or declared["test"], reference or declared["reference"]
    alpha = declared["alpha"] if alpha is None else alpha
    summaries = studies.summaries(storage)
    runs, attrs = seed_runs(storage, exp, cells, summaries=summaries)
    missing = [c for c in (cells or []) if c not in attrs or runs[runs.cell == c].empty]
    if runs.empty or missing:
        what = ", ".join(missing) if missing else "any cell"
        raise UserError(f"no finished seed runs of {what} for {exp.task.id}, budget "
                        f"{exp.budget.name}, {exp.size} in this storage; run `python -m bench run` first")
    order = [c for c in (cells or []) if c in attrs] + sorted(c for c in attrs if c not in (cells or []))
    any_attrs = attrs[order[0]]
    minimize = any_attrs["direction"] == "minimize"
    trivial = float(any_attrs["trivial"])
    threshold = float(any_attrs.get("solve_threshold", trivial))
    rep = Report(exp.task.id, any_attrs["metric"], any_attrs["direction"], trivial,
                 any_attrs.get("trivial_note", ""), threshold, any_attrs.get("solve_margin", 0.1),
                 reference, selection=any_attrs.get("selection", "the best validation epoch"))
    groups = _groups(runs, order, lambda r: r.test)
    comps = stats.compare(groups, reference, minimize, test, alpha, threshold) \
        if reference in groups else {}
    half = max(1, exp.budget.epochs // 2)
    half_groups = _groups(runs, order, lambda r: anytime_test(r, half, minimize))
    half_comps = stats.compare(half_groups, reference, minimize, test, alpha, threshold) \
        if reference in groups and all(not all(map(math.isnan, v)) for v in half_groups.values()) \
        else {}
    tune_runs, _ = seed_runs(storage, exp, order, kind="tune", summaries=summaries)
    for c in order:
        rep.rows.append(_row(c, runs[runs.cell == c], groups[c], comps.get(c), half_comps.get(c),
                             threshold, minimize, attrs[c], tune_runs[tune_runs.cell == c]))
        rep.seeds[c] = [{"seed": r.seed, "test": v, "curve": list(r.curve or []),
                         "params": r.params, "wall_s": r.wall_s}
                        for r, v in zip(runs[runs.cell == c].sort_values("seed").itertuples(), groups[c])]
    _notes(rep, exp, comps, half, test, reference, alpha, declared, minimize)
    rep.provenance = {
        "budget": f"{exp.budget.name} (fingerprint {exp.budget.fingerprint}): {exp.budget.trials} "
                  f"trials, {exp.budget.seeds} seeds, {exp.budget.epochs} epochs",
        **{k: str(any_attrs.get(k, "unknown")) for k in ("git_commit", "python", "torch",
                                                           "pytorch_lightning", "optuna")},
        "command": f"python -m bench run --task '{exp.task.id}' --cells '{','.join(order)}' "
                   f"--budget {exp.budget.name} --{exp.size.replace('=', ' ').replace('params', 'match-params')}"
                   f" --reference '{reference}' --test {test} --alpha {alpha}"}
    return rep


def _row(cell: str, r: pd.DataFrame, values: list[float], comp, half, threshold: float,
         minimize: bool, attrs: dict, tune: pd.DataFrame) -> dict:
    s = stats.summarize(values, minimize)
    k = sum(stats.solved(values, threshold, minimize))
    lo, hi = stats.wilson(k, s.n)
    verdict = comp.verdict if comp else ""
    sensitive = bool(comp and half and comp.verdict != "reference" and half.verdict != comp.verdict)
    return {
        "cell": cell, "hidden": _first(r.hidden), "params": _first(r.params),
        "mean": s.mean, "std": s.std, "median": s.median, "ci_low": s.ci_low, "ci_high": s.ci_high,
        "n": s.n, "diverged": s.n_diverged, "solved": k, "solved_low": lo, "solved_high": hi,
        "epochs_to_solve": epochs_to_solve(r.sort_values("seed").curve.tolist(), threshold, minimize),
        "seconds_to_solve": seconds_to_solve(r, threshold, minimize),
        "best_test_any_epoch": _best_test_any_epoch(r, minimize),
        "flops_per_step": _first(r.flops_per_step), "run_s": float(r.wall_s.median()),
        "p_raw": comp.p_raw if comp else math.nan, "p_welch": comp.p_welch if comp else math.nan,
        "p_mwu": comp.p_mwu if comp else math.nan, "p_holm": comp.p_adj if comp else math.nan,
        "a12": comp.a12 if comp else math.nan, "shift": comp.hl if comp else math.nan,
        "shift_low": comp.hl_low if comp else math.nan,
        "shift_high": comp.hl_high if comp else math.nan,
        "cohens_d": comp.d if comp else math.nan, "verdict": verdict,
        "reason": comp.reason if comp else "", "verdict_half": half.verdict if half else "",
        "budget_sensitive": sensitive, "config_source": attrs.get("config_source", ""),
        "expected_max": stats.expected_max(tune.sort_values("seed").val.tolist(), minimize)
        if not tune.empty else [],
    }


def _best_test_any_epoch(r: pd.DataFrame, minimize: bool) -> float:
    """Mean over the finite seeds of each seed's best test value over its epochs: what selecting
    on the test split (as published pMNIST numbers did) would report."""
    best = [(min if minimize else max)(v for v in row.test_curve if math.isfinite(v))
            for row in r.itertuples() if row.state == "COMPLETE"
            and any(math.isfinite(v) for v in (row.test_curve or []))]
    return float(np.mean(best)) if best else math.nan


def _notes(rep: Report, exp: Experiment, comps: dict, half: int, test: str, reference: str,
           alpha: float, declared: dict, minimize: bool) -> None:
    b = exp.budget
    if not b.conclusive:
        rep.warnings.append(f"budget {b.name} is NOT FOR CONCLUSIONS ({b.description or 'too small'})")
    if b.protocol == "published":
        rep.warnings.append(
            "Published selection (the best test epoch, as the papers reported) vs ours (test at "
            f"{rep.selection}), mean over seeds: " + "; ".join(
                f"{r['cell']} {fmt_number(r['best_test_any_epoch'])} vs {fmt_number(r['mean'])}"
                for r in rep.rows) + ". The difference is that selection's optimism.")
    for row in rep.rows:
        if 0 < row["n"] < stats.MIN_N:
            rep.warnings.append(f"{row['cell']}: n = {row['n']} < {stats.MIN_N} seeds; tests have "
                                "little power")
        if row["config_source"].startswith("registered defaults"):
            rep.warnings.append(f"{row['cell']}: seeds ran the {row['config_source']}")
        if row["budget_sensitive"]:
            rep.warnings.append(f"{row['cell']}: BUDGET-SENSITIVE: the verdict at {half} of "
                                f"{b.epochs} epochs is '{row['verdict_half'] or 'none'}', at "
                                f"{b.epochs} '{row['verdict'] or 'none'}'; a finding about the budget")
    ns = sorted({row["n"] for row in rep.rows})
    if comps:
        rep.footer.append(
            f"Test: {stats.TESTS[test]}, two-sided, each cell vs {reference} (exact permutation "
            f"p at small n or with ties); Holm over the {len(comps) - 1} comparison(s) in this "
            f"table; alpha = {alpha}; n = {'/'.join(map(str, ns))} seeds per cell. better/worse: "
            f"significant after correction, direction from A12 = P(cell seed beats {reference} "
            f"seed); no verdict where neither cell solves on a majority of seeds. shift: "
            f"Hodges-Lehmann (cell - {reference}) with its 95% CI; d: Cohen's d, – where an SD is "
            f"near zero or |d| > 10 (no overlap: A12 says it).")
    else:
        rep.footer.append(f"No tests: reference {reference!r} has no finished seed runs here.")
    chosen = {"test": test, "reference": reference, "alpha": alpha}
    diff = {k: v for k, v in chosen.items() if declared[k] != v}
    rep.footer.append(f"Preset {b.name} declares test {declared['test']}, reference "
                      f"{declared['reference']}, alpha {declared['alpha']}; "
                      + ("this table uses them." if not diff else "THIS TABLE DIFFERS: "
                         + ", ".join(f"{k} {v}" for k, v in diff.items()) + "."))
    rep.footer.append(
        f"Test {rep.metric} at {rep.selection}; mean ± std and 95% bootstrap (BCa) CI "
        f"over finite seeds (diverged seeds are counted in n, rank worst in the tests, and are "
        f"left out of the mean); {'lower' if minimize else 'higher'} is better. Trivial solution "
        f"on this test split: {rep.trivial:.4g} (nominal: {rep.trivial_note}). A seed solves "
        f"when its test {rep.metric} {'<' if minimize else '>'} {rep.threshold:.4g} (beats the "
        f"trivial score by {rep.margin:.0%} of {'it' if minimize else 'the gap to 1'}); solved k/n with a 95% Wilson interval; "
        f"epochs to solve: median first epoch whose validation value beats that (the wall time to it, "
        f"seconds_to_solve, is in --format json/csv). kFLOP/step: one step() of the cell at batch 1 (matrix products, "
        f"torch.utils.flop_counter; work the fast path does once per sequence left out).")
    rep.footer.append(f"Task {exp.task.id}; budget {b.name} (fingerprint {b.fingerprint}); "
                      f"{exp.size}.")


def _first(col: pd.Series):
    col = col.dropna()
    return int(col.iloc[0]) if len(col) else None


def fmt_number(x: float, inf: str = "never") -> str:
    """A number for a table cell: 4 significant digits, – for NaN, ``inf`` for +inf (an epoch
    count that never came: "never"; an unbounded interval: "inf")."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return inf if isinstance(x, float) and math.isinf(x) and x > 0 else f"{x:.4g}"


def _verdict(r: dict) -> str:
    text = r["verdict"] or r["reason"]
    return text + (" (budget-sensitive)" if r["budget_sensitive"] else "")


def _display_rows(rep: Report) -> tuple[list[str], list[list[str]]]:
    # every column is a function of the stored results alone (no wall times): a resumed or
    # repeated run prints the same table byte for byte; times are in the JSON and CSV
    head = ["cell", "params", "kFLOP/step", f"test {rep.metric}", "95% CI", "n", "solved",
            "epochs to solve", "p (Holm)", "A12", "shift [95% CI]", "d", f"vs {rep.reference}"]
    body = []
    for r in rep.rows:
        mean = f"{fmt_number(r['mean'])} ± {fmt_number(r['std'])}"
        ci = f"[{fmt_number(r['ci_low'])}, {fmt_number(r['ci_high'])}]"
        n = f"{r['n']}" + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
        solved = f"{r['solved']}/{r['n']} [{r['solved_low']:.2f}, {r['solved_high']:.2f}]"
        shift = "–" if r["verdict"] == "reference" else \
            f"{fmt_number(r['shift'])} [{fmt_number(r['shift_low'])}, {fmt_number(r['shift_high'], 'inf')}]"
        flops = fmt_number(r["flops_per_step"] / 1000) if r["flops_per_step"] else "–"
        body.append([r["cell"], str(r["params"]), flops, mean, ci, n, solved,
                     fmt_number(r["epochs_to_solve"]), fmt_number(r["p_holm"]), fmt_number(r["a12"]), shift, fmt_number(r["cohens_d"]),
                     _verdict(r)])
    body.append(["trivial solution", "", "", fmt_number(rep.trivial)] + [""] * (len(head) - 4))
    return head, body


def render(rep: Report, fmt: str) -> str:
    """The report as text in one of FORMATS."""
    if fmt == "json":
        return json.dumps(asdict(rep), indent=2, default=str)
    if fmt == "csv":
        return pd.DataFrame([{k: v for k, v in r.items() if k != "expected_max"}
                             for r in rep.rows]).to_csv(index=False)
    head, body = _display_rows(rep)
    notes = rep.warnings + rep.footer
    if fmt == "md":
        return tabulate(body, head, tablefmt="github") + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    if fmt == "latex":
        return _latex(rep, head, body, notes)
    raise UserError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")


def _esc(s: str) -> str:
    return (s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")
            .replace("&", r"\&").replace("#", r"\#").replace("±", r"$\pm$").replace("–", "--")
            .replace("<", r"$<$").replace(">", r"$>$"))


def _latex(rep: Report, head: list[str], body: list[list[str]], notes: list[str]) -> str:
    """A booktabs table; the best mean is bold."""
    means = [r["mean"] for r in rep.rows if not math.isnan(r["mean"])]
    best = (min(means) if rep.direction == "minimize" else max(means)) if means else None
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}",
             r"\toprule", " & ".join(_esc(h) for h in head) + r" \\", r"\midrule"]
    for i, row in enumerate(body):
        cells = [_esc(c) for c in row]
        if i < len(rep.rows) and best is not None and rep.rows[i]["mean"] == best:
            col = head.index(f"test {rep.metric}")
            cells[col] = r"\textbf{" + cells[col] + "}"
        if i == len(rep.rows):
            lines.append(r"\midrule")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\caption{" + _esc(" ".join(notes)) + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ---- across tasks ---------------------------------------------------------------------------

@dataclass
class AcrossReport:
    """Per-task medians of every cell, their average ranks, Friedman/Nemenyi, and the CD files."""

    tasks: list[str]
    scores: dict[str, dict[str, float]]      # task -> cell -> median test value over seeds
    result: across.AcrossResult
    plots: list[str] = field(default_factory=list)


def build_across(storage, exps: list[Experiment], cells: list[str] | None, alpha: float,
                 plots_dir: Path | None) -> AcrossReport:
    """Rank the cells within each task by their median test value (diverged seeds worst), then
    Friedman and Nemenyi across tasks; cells are those given, or those stored for every task."""
    per_task, minimize = {}, {}
    for exp in exps:
        runs, attrs = seed_runs(storage, exp, cells)
        if runs.empty:
            raise UserError(f"no finished seed runs for {exp.task.id}, budget {exp.budget.name}, "
                            f"{exp.size} in this storage; run `python -m bench run` first")
        mini = next(iter(attrs.values()))["direction"] == "minimize"
        groups = _groups(runs, sorted(attrs), lambda r: r.test)
        per_task[exp.task.id] = {c: stats.summarize(v, mini).median for c, v in groups.items()}
        minimize[exp.task.id] = mini
    common = cells or sorted(set.intersection(*(set(v) for v in per_task.values())))
    missing = {t: [c for c in common if c not in v] for t, v in per_task.items()}
    if any(missing.values()) or len(common) < 2:
        raise UserError(f"cells must be stored for every task (missing: {missing}); valid: at least "
                        "2 cells run on every task of --across")
    scores = pd.DataFrame([[per_task[t][c] for c in common] for t in per_task],
                          index=list(per_task), columns=common)
    res = across.friedman(scores, minimize, alpha)
    out = AcrossReport(list(per_task), {t: dict(v) for t, v in per_task.items()}, res)
    if plots_dir is not None and math.isfinite(res.cd):
        stem = plots_dir / ("cd-" + "-".join(t.split(":")[0] for t in per_task))
        out.plots = [str(p) for p in plots.cd_diagram(res.avg_ranks, res.cd, stem,
                                                      f"{len(per_task)} tasks, alpha {alpha}")]
    return out


def render_across(rep: AcrossReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(asdict(rep), indent=2, default=str)
    head, body, notes = across_parts(rep)
    if fmt == "csv":
        return pd.DataFrame(body, columns=head).to_csv(index=False)
    if fmt == "latex":
        return _latex_plain(head, body, notes)
    return tabulate(body, head, tablefmt="github") + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def across_parts(rep: AcrossReport) -> tuple[list[str], list[list[str]], list[str]]:
    """The across-tasks table (header, rows by average rank) and its notes, for every format."""
    r = rep.result
    head = ["cell", *rep.tasks, "average rank"]
    body = [[c, *(fmt_number(rep.scores[t][c]) for t in rep.tasks), f"{r.avg_ranks[c]:.2f}"]
            for c in sorted(r.cells, key=r.avg_ranks.get)]
    notes = [f"Friedman chi2 = {fmt_number(r.statistic)}, p = {fmt_number(r.p)} over {r.n_tasks} tasks and "
             f"{len(r.cells)} cells" + (f" ({r.reason})" if r.reason else ""),
             f"Nemenyi post-hoc (all pairs after Friedman, Demšar 2006): critical difference "
             f"{fmt_number(r.cd)} in average rank at alpha {r.alpha}; different: "
             + (", ".join(f"{a} vs {b}" for a, b in r.significant_pairs) or "none"),
             r.detectability,
             "Scores: each cell's median test value over its seeds on that task (diverged seeds "
             "rank worst); ranks within a task, 1 = best."]
    notes += [f"critical-difference diagram: {p}" for p in rep.plots]
    return head, body, notes


def _latex_plain(head: list[str], body: list[list[str]], notes: list[str]) -> str:
    rows = [" & ".join(_esc(c) for c in row) + r" \\" for row in body]
    return "\n".join([r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(head) - 1)
                      + "}", r"\toprule", " & ".join(_esc(h) for h in head) + r" \\", r"\midrule",
                      *rows, r"\bottomrule", r"\end{tabular}",
                      r"\caption{" + _esc(" ".join(notes)) + "}", r"\end{table}"]) + "\n"


# ---- a grid of fixed hyperparameters --------------------------------------------------------

def grid_table(rep: Report, grid: list[tuple[str, list[str]]], cell_of: dict[tuple, str]
               ) -> tuple[list[list[float]], list[list[str]], list[str], list[list[str]]]:
    """One or two gridded hyperparameters as (mean values, square labels, table head, table body):
    rows are the first hyperparameter's values, columns the second's."""
    by = {r["cell"]: r for r in rep.rows}
    (rname, rvals), *rest = grid
    cname, cvals = rest[0] if rest else ("", [""])
    values, labels = [], []
    for rv in rvals:
        row = [by[cell_of[(rv, cv) if rest else (rv,)]] for cv in cvals]
        values.append([r["mean"] for r in row])
        labels.append([f"{fmt_number(r['mean'])}\n{r['solved']}/{r['n']} solved\nepochs "
                       f"{fmt_number(r['epochs_to_solve'])}" for r in row])
    head = [rname + (f" \\ {cname}" if rest else "")] + \
        [f"{cname}={c}" if rest else f"test {rep.metric}" for c in cvals]
    body = [[f"{rname}={rv}"] + [t.replace("\n", "; ") for t in row] for rv, row in zip(rvals, labels)]
    return values, labels, head, body


SEEDS_NOTE = ("**This study holds the final runs: one trial per seed, its value the test metric "
              "at the best-validation epoch. Its \"Best Trial\" is the luckiest seed, not the "
              "result; the result is the table below (written by `bench run`/`report`).**\n\n")
