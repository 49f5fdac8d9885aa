"""The real tasks end to end through the CLI, on files the tests write in the true formats."""
import os
import subprocess
import sys

from tests.fakedata import write_mnist, write_timit


def bench(cwd, *args):
    p = subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True,
                       text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_timit_run_reports_mse(tmp_path):
    corpus = tmp_path / "TIMIT"
    write_timit(corpus)
    checked = bench(tmp_path, "data", "check", "--task", "timit", "--data-dir", str(corpus))
    assert "train" in checked and "dev" in checked
    out = bench(tmp_path, "run", "--task", f"timit:cache_dir={tmp_path / 'cache'}", "--data-dir",
                str(corpus), "--cells", "lstm,momentum_lstm", "--budget", "smoke", "--no-progress")
    t = out[out.index("| cell"):]
    assert "test mse" in t and "momentum_lstm" in t and "trivial solution" in t


def test_pmnist_run_reports_accuracy(tmp_path):
    write_mnist(tmp_path / "mnist", n_train=120, n_test=40)
    out = bench(tmp_path, "run", "--task", "pmnist", "--data-dir", str(tmp_path / "mnist"),
                "--cells", "lstm", "--budget", "smoke", "--no-progress")
    assert "test accuracy" in out[out.index("| cell"):]


def test_copy_all_cells_smoke(tmp_path):
    """Every registered cell completes the smoke budget on copy (issue: `--cells all` runs them all)."""
    out = bench(tmp_path, "run", "--task", "copy:L=50", "--cells", "all", "--budget", "smoke",
                "--no-progress")
    from bench import list_cells
    t = out[out.index("| cell"):]
    for name in list_cells():
        assert f"| {name} " in t, name
