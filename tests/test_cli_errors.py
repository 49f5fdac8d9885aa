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
