"""The comparison table, rebuilt from the storage alone: Markdown, LaTeX (booktabs), CSV, JSON."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import optuna
import pandas as pd
from tabulate import tabulate

from bench import stats, studies
from bench.errors import UserError
from bench.tune import Experiment, counted

FORMATS = ("md", "latex", "csv", "json")
TrialState = optuna.trial.TrialState


@dataclass
class Report:
    """Per-cell rows (raw numbers) plus what the footer must say."""

    task: str
    metric: str
    direction: str
    trivial: float
    trivial_note: str
    rows: list[dict] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def seed_runs(storage, exp: Experiment) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Every stored seed run of the experiment (one row each) and each cell's study attributes."""
    head, tail = exp.prefix()
    rows, attrs = [], {}
    for name, s in studies.summaries(storage).items():
        if not (name.startswith(head) and name.endswith(tail)):
            continue
        cell = s.user_attrs.get("cell", name[len(head):-len(tail)])
        attrs[cell] = dict(s.user_attrs)
        for t in studies.trials(storage, name):
            if not counted(t):
                continue
            u = t.user_attrs
            rows.append({"cell": cell, "seed": u.get("seed"), "state": t.state.name,
                         "test": u.get("test", math.nan), "val": u.get("val", math.nan),
                         "hidden": u.get("hidden"), "params": u.get("params"),
                         "wall_s": u.get("wall_s", math.nan), "fail_reason": u.get("fail_reason", "")})
    return pd.DataFrame(rows, columns=["cell", "seed", "state", "test", "val", "hidden", "params",
                                       "wall_s", "fail_reason"]), attrs


def build(storage, exp: Experiment, reference: str = "lstm", test: str = "mwu",
          alpha: float = 0.05, order: list[str] | None = None) -> Report:
    """Summaries and tests for every cell of the experiment found in the storage."""
    runs, attrs = seed_runs(storage, exp)
    if runs.empty:
        raise UserError(f"no finished seed runs for {exp.task.id}, budget {exp.budget.name}, "
                        f"{exp.size} in this storage; run `python -m bench run` first")
    any_attrs = next(iter(attrs.values()))
    rep = Report(exp.task.id, any_attrs["metric"], any_attrs["direction"], any_attrs["trivial"],
                 any_attrs.get("trivial_note", ""))
    minimize = rep.direction == "minimize"
    cells = [c for c in (order or []) if c in attrs] + sorted(c for c in attrs if c not in (order or []))
    ok = runs[runs.state == "COMPLETE"]
    groups = {c: ok[ok.cell == c].sort_values("seed").test.tolist() for c in cells}
    groups = {c: v for c, v in groups.items() if v}
    comps = (stats.compare(groups, reference, minimize, test, alpha) if reference in groups else {})
    for c in cells:
        r = runs[runs.cell == c]
        s = stats.summarize(groups.get(c, []))
        comp = comps.get(c)
        rep.rows.append({
            "cell": c, "hidden": _first(r.hidden), "params": _first(r.params),
            "mean": s.mean, "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high, "n": s.n,
            "diverged": int((r.state == "FAIL").sum()), "run_s": float(r.wall_s.median()),
            "p_welch": comp.p_welch if comp else math.nan, "p_mwu": comp.p_mwu if comp else math.nan,
            "p_holm": comp.p_adj if comp else math.nan, "cohens_d": comp.d if comp else math.nan,
            "a12": comp.a12 if comp else math.nan, "verdict": comp.verdict if comp else ""})
        if 0 < s.n < stats.MIN_N:
            rep.warnings.append(f"{c}: n = {s.n} < {stats.MIN_N} seeds; tests have little power")
    n = sorted({row["n"] for row in rep.rows})
    if comps:
        rep.footer.append(
            f"Test: {stats.TESTS[test]}, two-sided, each cell vs {reference}; Holm correction over "
            f"{len(comps) - 1} comparison(s); alpha = {alpha}; n = {'/'.join(map(str, n))} seeds per "
            f"cell. better/worse: significant after correction. A12 = P(cell seed beats {reference} "
            f"seed); d = Cohen's d on the {rep.metric} (sign: cell minus {reference}).")
    else:
        rep.footer.append(f"No tests: reference {reference!r} has no finished seed runs here.")
    rep.footer.append(f"Test {rep.metric} at the best-validation epoch, mean ± std over seeds; "
                      f"{'lower' if minimize else 'higher'} is better. Trivial solution: "
                      f"{rep.trivial:.4g} ({rep.trivial_note}).")
    rep.footer.append(f"Task {exp.task.id}; budget {exp.budget.name}; {exp.size}.")
    return rep


def _first(col: pd.Series):
    col = col.dropna()
    return int(col.iloc[0]) if len(col) else None


def _fmt(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _display_rows(rep: Report, reference: str) -> tuple[list[str], list[list[str]]]:
    head = ["cell", "hidden", "params", f"test {rep.metric}", "95% CI", "n", "p (Holm)", "A12", "d",
            f"vs {reference}"]
    body = []
    for r in rep.rows:
        mean = f"{_fmt(r['mean'])} ± {_fmt(r['std'])}"
        ci = f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
        n = f"{r['n']}" + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
        body.append([r["cell"], str(r["hidden"]), str(r["params"]), mean, ci, n, _fmt(r["p_holm"]),
                     _fmt(r["a12"]), _fmt(r["cohens_d"]), r["verdict"]])
    body.append(["trivial solution", "", "", _fmt(rep.trivial), "", "", "", "", "", ""])
    return head, body


def render(rep: Report, fmt: str, reference: str = "lstm") -> str:
    """The report as text in one of FORMATS."""
    if fmt == "json":
        return json.dumps(asdict(rep), indent=2, default=str)
    if fmt == "csv":
        return pd.DataFrame(rep.rows).to_csv(index=False)
    head, body = _display_rows(rep, reference)
    notes = rep.warnings + rep.footer
    if fmt == "md":
        return tabulate(body, head, tablefmt="github") + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    if fmt == "latex":
        return _latex(rep, head, body, notes)
    raise UserError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")


def _latex(rep: Report, head: list[str], body: list[list[str]], notes: list[str]) -> str:
    """A booktabs table; the best mean is bold."""
    def esc(s: str) -> str:
        return (s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")
                .replace("&", r"\&").replace("#", r"\#").replace("±", r"$\pm$").replace("–", "--"))

    means = [r["mean"] for r in rep.rows if not math.isnan(r["mean"])]
    best = (min(means) if rep.direction == "minimize" else max(means)) if means else None
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}",
             r"\toprule", " & ".join(esc(h) for h in head) + r" \\", r"\midrule"]
    for i, row in enumerate(body):
        cells = [esc(c) for c in row]
        if i < len(rep.rows) and best is not None and rep.rows[i]["mean"] == best:
            cells[3] = r"\textbf{" + cells[3] + "}"
        if i == len(rep.rows):
            lines.append(r"\midrule")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\caption{" + esc(" ".join(notes)) + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"
