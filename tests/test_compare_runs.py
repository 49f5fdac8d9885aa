"""scripts/compare_runs.py: the unit-by-unit comparison the README's 1- vs 2-worker figures use."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
SCRIPT = SCRIPTS / "compare_runs.py"
sys.path.insert(0, str(SCRIPTS))      # as test_reproduction imports copy_task

import compare_runs  # noqa: E402


def journal(path: Path, trials: dict[str, list]) -> str:
    url = f"journal:{path}"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    for name, rows in trials.items():
        study = optuna.create_study(study_name=name, storage=storage)
        for t in rows:
            study.add_trial(t)
    return url


def done(key: int, value: float) -> optuna.trial.FrozenTrial:
    return create_trial(state=TrialState.COMPLETE, value=value, user_attrs={"seed": key})


def pruned(key: int, last: float) -> optuna.trial.FrozenTrial:
    return create_trial(state=TrialState.PRUNED, intermediate_values={0: 1.0, 3: last},
                        user_attrs={"seed": key})


def interrupted(key: int) -> optuna.trial.FrozenTrial:
    return create_trial(state=TrialState.FAIL, user_attrs={"seed": key,
                                                           "fail_reason": "interrupted"})


def test_units_values_and_exit_codes(tmp_path, capsys):
    a = journal(tmp_path / "a.journal", {
        "lstm · tune": [interrupted(0), done(0, 0.25), pruned(1, 0.5)],
        "lstm · seeds": [done(10000, 1e-4), done(10001, 2e-4), done(10002, 3e-4)],
    })
    b = journal(tmp_path / "b.journal", {
        "lstm · tune": [done(0, 0.25), pruned(1, 0.5), interrupted(2)],
        "lstm · seeds": [done(10000, 1e-4), done(10001, 2e-4 * (1 + 1e-7))],
    })
    # the interrupted trials are no units; unit 10001 differs at 1e-7, 10002 is only in A
    assert compare_runs.main([a, b]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == ("5 units in A, 4 in B; 3 equal to every bit, 1 differ (1 by more than "
                       "rtol 0); 1 only in A, 0 only in B")
    assert out[0].startswith("differs: lstm · seeds unit 10001: 0.0002 / ")
    assert out[0].endswith("(COMPLETE; relative 1e-07)")
    assert len(out) == 2
    # within rtol the values agree, but a unit only one storage holds still fails the comparison
    assert compare_runs.main([a, b, "--rtol", "2e-7"]) == 1
    assert "1 differ (0 by more than rtol 2e-07)" in capsys.readouterr().out
    c = journal(tmp_path / "c.journal", {
        "lstm · tune": [done(0, 0.25), pruned(1, 0.5)],
        "lstm · seeds": [done(10000, 1e-4), done(10001, 2e-4 * (1 + 1e-7)), done(10002, 3e-4)],
    })
    assert compare_runs.main([a, c, "--rtol", "2e-7"]) == 0
    assert compare_runs.main([a, c]) == 1
    capsys.readouterr()
    # a pruned unit is compared by state too: the same value as COMPLETE is a difference
    d = journal(tmp_path / "d.journal", {
        "lstm · tune": [done(0, 0.25), done(1, 0.5)],
        "lstm · seeds": [done(10000, 1e-4), done(10001, 2e-4), done(10002, 3e-4)],
    })
    assert compare_runs.main([a, d, "--rtol", "1"]) == 1
    assert "differs: lstm · tune unit 1: 0.5 / 0.5 (PRUNED / COMPLETE; relative 0)" in (
        capsys.readouterr().out)


@pytest.mark.parametrize("args, shown", [
    (["journal:{tmp}/missing.journal", "journal:{tmp}/a.journal"], "missing.journal"),
    (["journal:{tmp}/a.journal", "journal:{tmp}/a.journal", "--rtol", "-1"], "--rtol -1.0"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, shown):
    journal(tmp_path / "a.journal", {"lstm · seeds": [done(10000, 1e-4)]})
    before = sorted(p.name for p in tmp_path.iterdir())
    r = subprocess.run([sys.executable, str(SCRIPT), *[x.format(tmp=tmp_path) for x in args]],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and shown in lines[0] and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
