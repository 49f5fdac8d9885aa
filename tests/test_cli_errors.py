"""Bad input: one line naming the bad value and the valid choices, exit code 2, storage unchanged."""
import hashlib
from pathlib import Path

import pytest

from bench.cli import main

RUN = ["run", "--task", "adding", "--cells", "lstm", "--budget", "smoke", "--no-progress"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


@pytest.mark.parametrize("args, fragment", [
    (["run", "--task", "adding", "--cells", "nope", "--budget", "smoke"], "unknown cell 'nope'"),
    (["run", "--task", "nope", "--cells", "lstm", "--budget", "smoke"], "unknown task 'nope'"),
    (["run", "--task", "adding", "--cells", "lstm/nope", "--budget", "smoke"], "unknown ablation"),
    (["run", "--task", "adding", "--cells", "lstm", "--budget", "nope"], "unknown budget preset 'nope'"),
    (["run", "--task", "adding", "--cells", "momentum_lstm[mu=1]", "--budget", "smoke"], "mu=1.0 is out of range"),
    (["run", "--task", "adding", "--cells", "momentum_lstm[s=0]", "--budget", "smoke"], "s=0.0 is out of range"),
    (["run", "--task", "adding", "--cells", "lstm", "--budget", "smoke", "--hidden", "0"], "valid: a positive integer"),
    (["run", "--task", "adding", "--cells", "lstm", "--budget", "smoke", "--storage", "bogus://x"], "malformed storage URL"),
    (["run", "--task", "adding", "--cells", "lstm", "--budget", "smoke", "--storage", "sqlite:////proc/x/bench.db"], "not writable"),
    (["run", "--task", "adding", "--cells", "lstm", "--budget", "smoke", "--reference", "nope"], "unknown cell 'nope'"),
    (["report", "--task", "adding", "--budget", "smoke", "--format", "docx"], "invalid choice: 'docx'"),
    (RUN + ["--workers", "2"], "--workers 2 with storage 'sqlite:///runs/bench.db': SQLite serves one process"),
    (RUN + ["--workers", "0"], "0 is out of range; valid: a positive integer"),
    (RUN + ["--workers-per-gpu", "4"], "--workers-per-gpu 4 without a GPU"),
    (["worker", "--task", "adding", "--cells", "nope", "--budget", "smoke"], "unknown cell 'nope'"),
])
def test_bad_input_exits_2_with_one_line(args, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # An existing storage must stay byte-identical.
    db = tmp_path / "runs" / "bench.db"
    db.parent.mkdir()
    db.write_bytes(b"")
    before = digest(db)
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(args))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2
    assert len(err.splitlines()) == 1 and fragment in err, err
    assert digest(db) == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bench.db", "runs"]


def test_bad_input_creates_no_storage(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(RUN[:4] + ["nope"]) == 2
    assert not (tmp_path / "runs").exists()


def _binary_toml(d: Path) -> str:
    (d / "bin.toml").write_bytes(b"\xff\xfe\x00\x01trials")
    return str(d / "bin.toml")


def _bool_trials(d: Path) -> str:
    text = (Path(__file__).parent.parent / "studies" / "smoke.toml").read_text()
    (d / "b.toml").write_text(text.replace("trials = 2", "trials = true"))
    return str(d / "b.toml")


def _foreign_db(d: Path) -> str:
    import sqlite3
    with sqlite3.connect(d / "app.db") as con:
        con.execute("create table users (id integer)")
    return f"sqlite:///{d / 'app.db'}"


# (args, expected fragment); a callable builds a file outside the checked folder first
MORE = [
    (["run", "--task", "adding", "--cells", "", "--budget", "smoke"], "no cells selected"),
    (["run", "--task", "adding", "--cells", "momentum_lstm[mu=0.3,mu=0.5]"], "mu given twice"),
    (["run", "--task", "adding", "--cells", "dtriv[K=1e400]"], "K='1e400' is not an int"),
    (["run", "--task", "adding:T=1e400", "--cells", "lstm"], "T='1e400' is not an int"),
    (["run", "--task", "adding:T=1e9", "--cells", "lstm"], "valid: [2, 100000]"),
    (["run", "--task", "adding:T=20,T=30", "--cells", "lstm"], "T given twice"),
    (["run", "--task", "adding", "--cells", "lstm", "--budget", _binary_toml], "not a text file"),
    (["run", "--task", "adding", "--cells", "lstm", "--budget", _bool_trials], "trials=True"),
    (["run", "--task", "adding", "--cells", "lstm", "--storage", "sqlite:////nonexistent/dir/x.db"],
     "does not exist"),
    (["run", "--task", "adding", "--cells", "lstm", "--storage", _foreign_db], "another application"),
    (["report", "--task", "adding", "--storage", "sqlite:///none.db"], "does not exist"),
    (["report", "--task", "adding", "--out", "/nonexistent/dir/t.md"], "does not exist"),
    (["dashboard", "--port", "70000"], "valid: 1-65535"),
    (["dashboard", "--storage", "sqlite:///none.db"], "does not exist"),
    (["data", "fake", "--task", "pmnist", "--data-dir", "/proc/1/nope"], "cannot write there"),
    (["report", "--across", "adding", "--budget", "smoke"], "valid: at least 2 tasks"),
]


@pytest.mark.parametrize("args, fragment", MORE, ids=[" ".join(map(str, a[:5])) for a, _ in MORE])
def test_more_bad_input_writes_nothing(args, fragment, tmp_path, tmp_path_factory, monkeypatch, capsys):
    files = tmp_path_factory.mktemp("inputs")
    args = [a(files) if callable(a) else a for a in args]
    if "--budget" not in args and args[0] == "run":
        args += ["--budget", "smoke"]
    before = {p: digest(p) for p in files.rglob("*")}
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(args))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and fragment in err, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []                       # nothing written here
    assert {p: digest(p) for p in files.rglob("*")} == before   # nor to the files it was given


@pytest.mark.skipif(__import__("torch").cuda.is_available(),
                    reason="this machine has CUDA: nothing to refuse")
def test_device_cuda_without_a_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(RUN + ["--device", "cuda"]) == 2
    assert "no CUDA device here; valid: cpu, auto" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_broken_pipe_is_quiet():
    import subprocess
    import sys
    p = subprocess.run(f"{sys.executable} -m bench list | head -1", shell=True, capture_output=True,
                       text=True, timeout=120)
    assert p.stdout.startswith("Cells") and p.stderr == ""


def test_sphere_header_with_a_non_numeric_count(tmp_path):
    from bench.errors import UserError
    from tasks.timit import sphere_header
    head = (b"NIST_1A\n   1024\nsample_rate -i 16000\nchannel_count -i 1\nsample_n_bytes -i 2\n"
            b"sample_count -s9 x5663\nend_head\n").ljust(1024, b" ")
    with pytest.raises(UserError, match="bad SPHERE header field sample_count = 'x5663'"):
        sphere_header(tmp_path / "a.wav", head)
