"""End to end through the CLI, in temporary directories, on the smoke budget."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

CMD = [sys.executable, "-m", "bench", "run", "--task", "adding", "--cells", "lstm,momentum_lstm",
       "--budget", "smoke", "--no-progress"]
DB = Path("runs/bench.db")


def bench(cwd, *args, check=True, cmd=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    p = subprocess.run(cmd or [sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True,
                       text=True, env=env, timeout=600)
    if check:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def table(stdout: str) -> str:
    return stdout[stdout.index("| cell"):]


def n_trials(cwd) -> int:
    with sqlite3.connect(cwd / DB) as con:
        return con.execute("select count(*) from trials").fetchone()[0]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("run1")
    return cwd, bench(cwd, cmd=CMD)


def test_run_prints_table_with_both_cells_and_n_seeds(first_run):
    cwd, p = first_run
    t = table(p.stdout)
    rows = {line.split("|")[1].strip(): line for line in t.splitlines()[2:] if line.startswith("|")}
    assert {"lstm", "momentum_lstm", "trivial solution"} <= set(rows)
    for cell in ("lstm", "momentum_lstm"):
        assert rows[cell].split("|")[6].strip() == "6"           # n = the preset's seeds
    assert "0.1667" in rows["trivial solution"]
    assert "Holm" in t and "alpha = 0.05" in t
    assert "2 cells x (2 trials + 6 seeds) = 16 runs" in p.stdout


def test_report_latex_is_booktabs_from_storage_alone(first_run):
    cwd, _ = first_run
    p = bench(cwd, "report", "--task", "adding", "--budget", "smoke", "--format", "latex")
    out = p.stdout
    assert r"\toprule" in out and r"\midrule" in out and r"\bottomrule" in out
    assert r"\textbf{" in out and "momentum\\_lstm" in out
    md = bench(cwd, "report", "--task", "adding", "--budget", "smoke").stdout
    assert table(md) in table(first_run[1].stdout) or table(md).split("\n- ")[0] in first_run[1].stdout
    bench(cwd, "report", "--task", "adding", "--budget", "smoke", "--format", "csv", "--out", "t.csv")
    assert (cwd / "t.csv").read_text().startswith("cell,hidden,params,mean")


def test_rerun_adds_no_trial(first_run):
    cwd, p = first_run
    before = n_trials(cwd)
    again = bench(cwd, cmd=CMD)
    assert n_trials(cwd) == before
    assert table(again.stdout) == table(p.stdout)


def test_fresh_directory_gives_identical_numbers(first_run, tmp_path):
    assert table(bench(tmp_path, cmd=CMD).stdout) == table(first_run[1].stdout)


def test_killed_run_resumes_to_the_same_table(first_run, tmp_path):
    proc = subprocess.Popen(CMD, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            if n_trials(tmp_path) >= 5:
                break
        except sqlite3.Error:
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = bench(tmp_path, cmd=CMD)
    assert "already stored" in resumed.stdout
    assert table(resumed.stdout) == table(first_run[1].stdout)
