"""Published vs measured for one paper preset, from ``python -m bench report --format json``.

Usage: python scripts/reproduce/compare.py REPORT.json PRESET [--wall-s S] [--hardware TEXT]

Per cell of the preset's published table: the published value and its source; ours, as the
honest protocol selects it (test at the best validation epoch, or, with ``val_fraction=0``, at the
epoch of best accuracy on training images); and the published selection (the best test value
over epochs) measured on the same runs, labelled as such.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from published import PRESETS, Reproduction  # noqa: E402


def scale(value: float, unit: str) -> float:
    """Accuracy as a percentage where the paper writes one; losses as they are."""
    return 100 * value if unit == "%" else value


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}%" if unit == "%" else f"{value:.4g}"


def selection_label(task_id: str) -> str:
    """What our main value is read at, from the task id the report stores."""
    if "val_fraction=0.0" in task_id.split(","):
        return "ours: test at the epoch of best accuracy on training images (no validation split)"
    return "ours: test at the best validation epoch"


def table(report: dict, preset: str, wall_s: float | None = None, hardware: str = "") -> str:
    """The Markdown comparison, one row per published cell (missing runs say so)."""
    rep: Reproduction = PRESETS[preset]
    rows = {r["cell"]: r for r in report.get("rows", [])}
    ours = selection_label(report.get("task", ""))
    lines = [f"{preset} on {report.get('task', rep.task)} ({report.get('metric', '')}); "
             f"published selection: {rep.selection}",
             f"| cell | published | source | {ours} | published selection on our runs "
             f"(best test epoch) | n |", "|---|---|---|---|---|---|"]
    for cell in rep.cells:
        pub = rep.published.get(cell)
        pub_text = ("not transcribed" if pub is None or pub.value is None
                    else fmt(pub.value, rep.unit))
        r = rows.get(cell)
        if r is None:
            lines.append(f"| {cell} | {pub_text} | {pub.source if pub else ''} | not run | – | 0 |")
            continue
        mean = scale(r["mean"], rep.unit) if r.get("mean") is not None else None
        std = scale(r["std"], rep.unit) if r.get("std") is not None else None
        best = r.get("best_test_any_epoch")
        best = scale(best, rep.unit) if best is not None else None
        ours_text = f"{fmt(mean, rep.unit)} ± {fmt(std, rep.unit)}"
        lines.append(f"| {cell} | {pub_text} | {pub.source if pub else ''} | {ours_text} | "
                     f"{fmt(best, rep.unit)} | {r.get('n', 0)} |")
    if wall_s is not None or hardware:
        lines.append(f"Measured on {hardware or 'unknown hardware'}"
                     + (f" in {wall_s / 3600:.2f} h wall time" if wall_s is not None else "") + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report")
    p.add_argument("preset", choices=sorted(PRESETS))
    p.add_argument("--wall-s", type=float)
    p.add_argument("--hardware", default="")
    args = p.parse_args(argv)
    report = json.loads(Path(args.report).read_text())
    print(table(report, args.preset, args.wall_s, args.hardware))
    return 0


if __name__ == "__main__":
    sys.exit(main())
