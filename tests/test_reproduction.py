"""The reproduction scripts and the paper presets they run: each script runs its preset's task and
cells, the presets pin everything their single trial could sample, the MomentumRNN presets select
that paper's data protocol, and the comparison prints published and measured values with the
right labels (checked on values computed here)."""
from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import pytest
import torch

from bench.budget import load_budget
from bench.registry import create_cell, parse_spec
from bench.task import parse_task

ROOT = Path(__file__).resolve().parent.parent
REPRO = ROOT / "scripts" / "reproduce"
sys.path.insert(0, str(REPRO))

from published import PRESETS  # noqa: E402
import compare  # noqa: E402
import copy_task  # noqa: E402

MOMENTUM_PMNIST = ["paper-pmnist-lstm", "paper-pmnist-dtriv-n170", "paper-pmnist-dtriv-n360",
                   "paper-pmnist-dtriv-n512"]


def test_every_paper_preset_has_a_script_running_its_task_and_cells():
    presets = sorted(p.stem for p in (ROOT / "studies").glob("paper-*.toml"))
    assert sorted(PRESETS) == presets
    for name, rep in PRESETS.items():
        script = REPRO / f"{name}.sh"
        assert script.is_file() and os.access(script, os.X_OK), name
        text = script.read_text()
        if name == "paper-copy":
            assert "CELLS=${CELLS:-" + ",".join(rep.cells) + "}" in text and "copy_task.py" in text
            assert text.count('--cells "$CELLS"') == 1 and '--cells "$cell"' in text
        else:
            assert text.rstrip().splitlines()[-1] == \
                f'run_preset {name} "{rep.task}" "{",".join(rep.cells)}"'
        for cell, pub in rep.published.items():
            assert cell in rep.cells and pub.source
            if pub.value is not None:      # a published number is printed with its source
                assert f"{cell}: {pub.value}" in text or name == "paper-copy"
        b = load_budget(name)
        task = parse_task(rep.task, b.tasks.get(rep.task.partition(":")[0], {}))
        for cell in rep.cells:
            parse_spec(cell).resolve(b.cells, context={"seq_len": 784})
        assert task.name in ("pmnist", "timit", "copy")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_paper_presets_tune_nothing(name):
    """One trial at fixed learning rates, and no cell of the published table left with anything
    to sample (TPE's single trial would draw it at random and the seeds would train that)."""
    b = load_budget(name)
    assert b.trials == 1

    def fixed(opt):
        return not isinstance(opt.get("lr"), list) and all(
            fixed(v) for v in opt.values() if isinstance(v, dict))

    assert fixed(b.optimizer)
    for cell in PRESETS[name].cells:
        assert parse_spec(cell).searched(b.cells) == {}, cell


@pytest.mark.parametrize("name", MOMENTUM_PMNIST)
def test_momentumrnn_pmnist_presets_select_its_data_protocol(name):
    """All 60k trained on, the permutation of the training seed, the published selection shown;
    the comment names the two differences that remain."""
    b = load_budget(name)
    task = dict(parse_task("pmnist", b.tasks["pmnist"]).options)
    assert task["val_fraction"] == 0.0 and task["permute_per_seed"] is True
    assert b.protocol == "published"
    comment = "\n".join(line for line in b.source.splitlines() if line.startswith("#"))
    assert "1. validation split" in comment and "2. selection" in comment
    assert "val_fraction=0.1,permute_per_seed=false" in comment      # how to run ours


@pytest.mark.parametrize("name,init,K", [("paper-pmnist-dtriv-n170", "cayley", 1),
                                         ("paper-pmnist-dtriv-n360", "cayley", math.inf),
                                         ("paper-pmnist-dtriv-n512", "cayley", math.inf),
                                         ("paper-timit-dtriv", "henaff", math.inf),
                                         ("paper-copy", "henaff", 100)])
def test_dtriv_presets_use_the_scripts_init_and_rebase_gradient(name, init, K):
    b = load_budget(name)
    for cell in ("dtriv", "momentum_dtriv", "adam_dtriv"):
        hp = parse_spec(cell).resolve(b.cells)
        assert (hp["init"], hp["K"], hp["rebase_grad"]) == (init, K, "official"), cell


def test_paper_copy_is_the_1_copying_setting():
    b = load_budget("paper-copy")
    copy = b.tasks["copy"]
    assert (b.hidden, b.batch_size, b.grad_clip) == (190, 128, None)
    assert b.epochs * copy["n_train"] // b.batch_size == 4000 and copy["L"] == 1000 and copy["fresh"]
    assert b.optimizer == {"name": "rmsprop", "lr": 2e-4, "orthogonal": {"name": "rmsprop", "lr": 2e-5}}
    assert parse_spec("lstm").resolve(b.cells)["forget_bias"] == 0.0


def test_compare_prints_published_and_both_selections_with_their_labels():
    report = {"task": "pmnist:data_seed=92916,n_test=0,n_train=0,n_val=0,permute_per_seed=True,"
                      "val_fraction=0.0", "metric": "accuracy",
              "rows": [{"cell": "lmu", "mean": 0.95, "std": 0.01, "n": 6,
                        "best_test_any_epoch": 0.9612}]}
    text = compare.table(report, "paper-pmnist-lmu", wall_s=7200, hardware="NVIDIA H200")
    row = next(line for line in text.splitlines() if line.startswith("| lmu"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "97.15%" and "psMNIST-standard.ipynb" in cells[2]
    assert cells[3] == "95.00% ± 1.00%" and cells[4] == "96.12%" and cells[5] == "6"
    header = text.splitlines()[1]
    assert "epoch of best accuracy on training images (no validation split)" in header
    assert "published selection on our runs (best test epoch)" in header
    assert text.endswith("Measured on NVIDIA H200 in 2.00 h wall time.")
    honest = compare.table({**report, "task": "pmnist:val_fraction=0.1"}, "paper-pmnist-lmu")
    assert "ours: test at the best validation epoch" in honest.splitlines()[1]
    missing = compare.table({"task": "pmnist", "rows": []}, "paper-pmnist-lstm")
    assert "| momentum_lstm | not transcribed | MomentumRNN" in missing and "| not run |" in missing


def test_copy_script_logs_fresh_batch_losses_and_stops_every_cell_at_the_same_iteration(tmp_path):
    """Three iterations of two cells at L = 10: the logged loss of iteration 0 is the
    cross-entropy of a freshly built model (same seed) on fresh batch 0, recomputed here; a
    deadline stops both cells after the same round."""
    log = tmp_path / "copy.jsonl"
    with open(log, "w") as f:
        rows, done = copy_task.train_all(["dtriv", "lstm"], "paper-copy", 10, 3, 0, f, 64, None)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    losses = {c: [r["loss"] for r in lines if r.get("cell") == c] for c in ("dtriv", "lstm")}
    assert done == 3 and all(len(v) == 3 for v in losses.values())
    b = load_budget("paper-copy")
    task = parse_task("copy:L=10", b.tasks["copy"]).build()
    for cell in ("dtriv", "lstm"):
        torch.manual_seed(0)
        hp = parse_spec(cell).resolve(b.cells, {}, {"seq_len": 30})
        model_cell = create_cell(cell, 10, 190, **hp)
        readout = torch.nn.Linear(190, 9)
        x, y = copy_task.fresh_batch(task, 0, 128, 0)
        with torch.no_grad():
            logits = readout(model_cell(x)[0])
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, 9), y.reshape(-1)).item()
        assert losses[cell][0] == pytest.approx(ce, rel=1e-5)
    assert rows[0]["baseline"] == pytest.approx(10 * math.log(8) / 30)
    with open(tmp_path / "deadline.jsonl", "w") as f:
        rows, done = copy_task.train_all(["momentum_lstm", "lstm"], "paper-copy", 10, 50, 0, f,
                                         64, deadline_s=1e-9)
    assert done == 1 and [r["iterations"] for r in rows] == [1, 1]
    # a fresh batch is new data: iteration 1 differs from iteration 0, and from the test seed
    assert not torch.equal(copy_task.fresh_batch(task, 0, 8, 0)[0], copy_task.fresh_batch(task, 1, 8, 0)[0])
    assert re.search(r"4000", (REPRO / "paper-copy.sh").read_text())


def test_copy_table_joins_per_cell_logs_and_refuses_a_log_without_summaries(tmp_path, capsys):
    """PARALLEL=1 writes one log per cell and joins them; --table prints each summary's own
    iterations and test CE (read back here), and a bad log is one error line with exit 2."""
    for cell, its in (("lstm", 2), ("dtriv", 3)):
        with open(tmp_path / f"{cell}.jsonl", "w") as f:
            copy_task.train_all([cell], "paper-copy", 10, its, 0, f, 64, None)
    joined = tmp_path / "joined.jsonl"
    joined.write_text("".join((tmp_path / f"{c}.jsonl").read_text() for c in ("lstm", "dtriv")))
    summaries = copy_task.summaries(joined)
    assert [(r["cell"], r["iterations"], r["device"]) for r in summaries] == [("lstm", 2, "cpu"),
                                                                              ("dtriv", 3, "cpu")]
    assert copy_task.main(["--table", str(joined), "--iterations", "4000"]) == 0
    out = capsys.readouterr().out
    for r in summaries:
        row = next(line for line in out.splitlines() if line.startswith(f"| {r['cell']} |"))
        assert f"| {r['iterations']} of 4000 | {r['test_ce']:.3g} |" in row
    # a solved cell's near-zero loss keeps its digits (the table once printed 3.5e-05 as 0.0000)
    solved = {**summaries[1], "test_ce": 3.4721620613709093e-05, "last100_train_ce": 2.958e-05}
    row = copy_task.table([solved], 4000).splitlines()[-1]
    assert row.endswith("| 3 of 4000 | 3.47e-05 | 2.96e-05 | " + f"{solved['s_per_iteration']} |")
    (tmp_path / "bad.jsonl").write_text("not json\n")
    for bad in ("bad.jsonl", "missing.jsonl"):
        assert copy_task.main(["--table", str(tmp_path / bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and bad in err[0] and "valid: the log of a finished run" in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_copy_on_cuda_without_a_gpu_is_one_line_and_writes_nothing(tmp_path, capsys):
    log = tmp_path / "never.jsonl"
    assert copy_task.main(["--device", "cuda", "--log", str(log)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0] and "valid: --device cpu" in err[0]
    assert not log.exists()


def _losses(log: Path) -> list[tuple[str, int, float]]:
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    return [(r["cell"], r["iteration"], r["loss"]) for r in recs if "cell" in r]


def test_copy_run_resumed_from_its_checkpoint_gives_the_unbroken_runs_losses(tmp_path, capsys):
    """7 iterations, then the same command to 12: the losses, the test CE and the log equal one
    12-iteration run's, exactly. dtriv rebases every 3 steps with paper-copy's official rebase
    gradient, so a resumed cell that forgot its step count or its folded generator differs."""
    args = ["--cells", "dtriv[K=3],momentum_lstm", "--L", "10", "--test-sequences", "64"]
    whole, split = tmp_path / "whole.jsonl", tmp_path / "split.jsonl"
    assert copy_task.main([*args, "--iterations", "12", "--log", str(whole)]) == 0
    assert copy_task.main([*args, "--iterations", "7", "--log", str(split)]) == 0
    assert torch.load(f"{split}.ckpt", weights_only=True)["iteration"] == 7
    capsys.readouterr()
    assert copy_task.main([*args, "--iterations", "12", "--log", str(split)]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert _losses(split) == _losses(whole) and len(_losses(whole)) == 24
    assert [(r["cell"], r["iterations"], r["test_ce"], r["min_train_ce"])
            for r in copy_task.summaries(split)] == \
        [(r["cell"], 12, r["test_ce"], r["min_train_ce"]) for r in copy_task.summaries(whole)]
    # a kill between saves leaves records past the checkpoint: dropped on resume, logged once
    killed = tmp_path / "killed.jsonl"
    assert copy_task.main([*args, "--iterations", "7", "--log", str(tmp_path / "w7.jsonl")]) == 0
    killed.write_text(whole.read_text())
    Path(f"{killed}.ckpt").write_bytes(Path(f"{tmp_path / 'w7.jsonl'}.ckpt").read_bytes())
    assert copy_task.main([*args, "--iterations", "12", "--log", str(killed)]) == 0
    assert _losses(killed) == _losses(whole)


def test_copy_resume_on_another_thread_count_says_so_and_the_same_count_does_not(
        tmp_path, capsys, monkeypatch):
    """The checkpoint records its torch thread count; a resume on another count is allowed (the
    run is the same) but one stderr line says its losses round differently from there on."""
    log = tmp_path / "t.jsonl"
    base = ["--cells", "lstm", "--L", "10", "--test-sequences", "16", "--log", str(log)]
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert copy_task.main([*base, "--iterations", "2"]) == 0
        assert torch.load(f"{log}.ckpt", weights_only=True)["threads"] == 1
        capsys.readouterr()
        assert copy_task.main([*base, "--iterations", "3"]) == 0      # same count: no note
        assert "note:" not in capsys.readouterr().err
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert copy_task.main([*base, "--iterations", "4"]) == 0
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
        assert len(err) == 1 and "saved by a run on 1 torch thread(s), this one uses 2" in err[0]
        assert "OMP_NUM_THREADS=1 resumes it exactly" in err[0]
        assert [i for c, i, _ in _losses(log)] == [0, 1, 2, 3]       # resumed, not restarted
        assert torch.load(f"{log}.ckpt", weights_only=True)["threads"] == 2
    finally:
        torch.set_num_threads(before)


def test_copy_refuses_a_checkpoint_of_another_run_and_a_log_it_would_mix_into(tmp_path, capsys):
    log = tmp_path / "c.jsonl"
    base = ["--cells", "lstm", "--L", "10", "--test-sequences", "64", "--log", str(log)]
    assert copy_task.main([*base, "--iterations", "2"]) == 0
    before = log.read_text()
    capsys.readouterr()
    for extra, names in ((["--seed", "1"], "seed 0 (now 1)"), (["--L", "12"], "L 10 (now 12)")):
        assert copy_task.main([*base, "--iterations", "3", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and names in err[0] and "valid: the arguments it was written with" in err[0]
    Path(f"{log}.ckpt").unlink()
    assert copy_task.main([*base, "--iterations", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds iterations of lstm" in err[0] and "valid: a new --log" in err[0]
    for junk in (b"not a checkpoint", None):
        if junk is None:
            torch.save(torch.zeros(3), f"{log}.ckpt")      # a torch file, but not a checkpoint
        else:
            Path(f"{log}.ckpt").write_bytes(junk)
        assert copy_task.main([*base, "--iterations", "3"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cannot be read" in err[0]
    assert log.read_text() == before           # nothing written by any refusal


def test_copy_stops_on_sigint_after_a_round_and_resumes_to_the_unbroken_losses(tmp_path):
    """A real process, a real SIGINT: exit 130 with the iteration it saved; the same command
    then finishes, and every logged loss equals the uninterrupted run's (computed in-process)."""
    import signal
    import subprocess
    import time
    log = tmp_path / "sig.jsonl"
    cmd = [sys.executable, str(REPRO / "copy_task.py"), "--cells", "dtriv[K=3]", "--L", "40",
           "--test-sequences", "64", "--log", str(log)]
    proc = subprocess.Popen([*cmd, "--iterations", "500"], stderr=subprocess.PIPE, text=True,
                            stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while (not log.exists() or len(log.read_text().splitlines()) < 3) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    saved = torch.load(f"{log}.ckpt", weights_only=True)["iteration"]
    assert proc.returncode == 130, err
    assert "SIGINT: stopping after this round" in err
    assert f"stopped by SIGINT after {saved} of 500 iterations" in err and 3 <= saved < 500
    assert len(_losses(log)) == saved
    done = subprocess.run([*cmd, "--iterations", str(saved + 4)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming from {log}.ckpt: {saved} of {saved + 4}" in done.stdout
    torch.set_num_threads(1)
    with open(tmp_path / "ref.jsonl", "w") as f:
        copy_task.train_all(["dtriv[K=3]"], "paper-copy", 40, saved + 4, 0, f, 64, None)
    assert _losses(log) == _losses(tmp_path / "ref.jsonl")


@pytest.mark.parametrize("parallel", ["1", "0"])
@pytest.mark.parametrize("how", ["kill -INT <script pid>", "Ctrl-C (the terminal's group)"])
def test_paper_copy_sh_stops_each_cell_once_after_its_round_and_exits_130(tmp_path, how, parallel):
    """A SIGINT to the script alone must reach every cell (PARALLEL=1: one process per cell;
    0: one process for all), and a terminal's Ctrl-C (SIGINT to the script's process group) must
    reach each only once (a second SIGINT stops a cell at once, unsaved). The cells then save the
    iteration they logged last, the script says so and exits 130, and no table is joined."""
    import subprocess
    cells = ["dtriv", "momentum_dtriv"]
    env = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path), "CELLS": ",".join(cells),
           "PARALLEL": parallel, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(["bash", str(REPRO / "paper-copy.sh"), "500"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _stop_paper_copy(proc, cells if parallel == "1" else [",".join(cells)], tmp_path, how)
    finally:                     # a failing script may leave its cells running: they name tmp_path
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if str(tmp_path).encode() in cmdline.read_bytes():
                    os.kill(int(cmdline.parent.name), 9)
            except OSError:                              # gone meanwhile
                pass


def _stop_paper_copy(proc, procs: list[str], tmp_path: Path, how: str) -> None:
    """``procs``: the cells of each copy_task process ("a,b" when one process runs both)."""
    import signal
    import subprocess
    import time
    one = len(procs) == 1
    logs = [tmp_path / ("paper-copy.jsonl" if one else f"paper-copy-{c}.jsonl") for c in procs]
    deadline = time.monotonic() + 240
    while not all(log.exists() and log.read_text().count("\n") >= len(cells.split(","))
                  for log, cells in zip(logs, procs)):             # each process logged a round
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr and proc.stderr.read()
        time.sleep(0.2)
    if how.startswith("kill"):
        proc.send_signal(signal.SIGINT)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        err = proc.communicate(timeout=180)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 130, err
    for cells, log in zip(procs, logs):
        out = err if one else (tmp_path / f"paper-copy-{cells}.out").read_text()
        saved = torch.load(f"{log}.ckpt", weights_only=True)["iteration"]
        assert out.count("SIGINT: stopping after this round") == 1 and "stopped at once" not in out
        assert f"stopped by SIGINT after {saved} of 500 iterations" in out
        assert 1 <= saved < 500 and len(_losses(log)) == saved * len(cells.split(","))
        if not one:                                  # the script names the cell that stopped
            assert f"{cells}: exit 130: stopped by SIGINT after {saved} of 500 iterations" in err
    if not one:
        assert not (tmp_path / "paper-copy.jsonl").exists()      # nothing joined


def test_plot_copy_draws_a_log_and_refuses_what_is_not_one(tmp_path, capsys):
    """read_log gives each cell's losses in order and its last summary (a resumed run's wins);
    plot_copy writes a PNG of them, and a bad log or folder is one line, exit 2, no file."""
    import plot_copy
    log = tmp_path / "c.jsonl"
    recs = [{"cell": c, "iteration": i, "loss": 0.1 / (i + 1) + k, "seconds": i}
            for i in range(30) for k, c in enumerate(["dtriv", "lstm"])]
    recs.insert(10, {"summary": {"cell": "lstm", "test_ce": 9.0, "baseline": 0.0204}})
    recs += [{"summary": {"cell": "lstm", "test_ce": 0.5, "baseline": 0.0204}}]
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    losses, rows = copy_task.read_log(log)
    assert list(losses) == ["dtriv", "lstm"] and losses["lstm"] == [0.1 / (i + 1) + 1 for i in range(30)]
    assert rows == {"lstm": {"cell": "lstm", "test_ce": 0.5, "baseline": 0.0204}}
    import gzip
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(gzip.compress(log.read_bytes()))
    assert copy_task.read_log(gz) == (losses, rows)               # docs/ holds gzipped logs
    (tmp_path / "cut.jsonl.gz").write_bytes(gz.read_bytes()[:-20])
    png = tmp_path / "c.png"
    assert plot_copy.main([str(log), str(png), "--title", "t"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "dtriv (30 iterations), lstm (30 iterations)" in capsys.readouterr().out
    (tmp_path / "junk.jsonl").write_text("not json\n")
    (tmp_path / "list.jsonl").write_text("[1, 2]\n")
    (tmp_path / "nothing.jsonl").write_text(json.dumps(recs[-1]) + "\n")
    for bad, why in ((["missing.jsonl", "x.png"], "cannot be read as a log (FileNotFoundError)"),
                     (["junk.jsonl", "x.png"], "cannot be read as a log (JSONDecodeError)"),
                     (["list.jsonl", "x.png"], "cannot be read as a log (TypeError)"),
                     (["cut.jsonl.gz", "x.png"], "cannot be read as a log (ValueError)"),
                     (["c.png", "x.png"], "cannot be read as a log (UnicodeDecodeError)"),
                     (["nothing.jsonl", "x.png"], "no iteration in it"),
                     (["c.jsonl", "no/x.png"], "no folder")):
        assert plot_copy.main([str(tmp_path / b) for b in bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0] and "valid:" in err[0], (bad, err)
    assert not (tmp_path / "x.png").exists()
