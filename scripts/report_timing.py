"""How long `python -m bench report` takes on a storage of 15 cells x 10 seeds (README, Measured).

    python scripts/report_timing.py [--workdir DIR] [--repeats 3]

Writes the storage through Optuna directly (tests/test_report_names.py's ``store_experiment``:
the study and trial attributes `run` writes, default budget, adding T=50, 20K parameters, 6
tuning trials and 10 seed runs of 12 epochs per cell), then times the CLI as a user runs it:
Markdown and HTML, each on a fresh copy of the storage (the first report also draws and uploads
the dashboard's plot artifacts) and again on the same copy (plots unchanged: not redrawn).
Prints the median of the repeats and the load average before and after.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    import tests.conftest  # noqa: F401,I001  (fills the registry as the CLI does)
    from bench import list_cells
    from bench.budget import load_budget
    from bench.experiment import Experiment
    from bench.task import parse_task
    from tests.test_report_names import store_experiment

    work = args.workdir or Path(tempfile.mkdtemp(prefix="report-timing-"))
    work.mkdir(parents=True, exist_ok=True)
    budget = load_budget("default")
    exp = Experiment(parse_task("adding", budget.tasks["adding"]), budget, params=20000)
    cells = list_cells()
    master = work / "master.db"
    if not master.exists():
        store_experiment(f"sqlite:///{master}", exp, cells, seeds=10)
    print(f"{len(cells)} cells x 10 seeds ({len(cells) * 16} trials) in {master}")
    print("load average before:", os.getloadavg())
    base = [sys.executable, "-m", "bench", "report", "--task", "adding", "--budget", "default"]
    for label, extra in (("md", []), ("html", ["--format", "html", "--out", "report.html"])):
        first, again = [], []
        for i in range(args.repeats):
            run = work / f"{label}{i}"
            shutil.rmtree(run, ignore_errors=True)
            run.mkdir()
            shutil.copy(master, run / "bench.db")
            cmd = base + ["--storage", f"sqlite:///{run / 'bench.db'}"] + extra
            first.append(timed(cmd, run))
            again.append(timed(cmd, run))
        print(f"report {label}: first on a fresh storage median {statistics.median(first):.1f} s "
              f"{[round(t, 1) for t in first]}; repeated median {statistics.median(again):.1f} s "
              f"{[round(t, 1) for t in again]}")
    print("load average after:", os.getloadavg())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
