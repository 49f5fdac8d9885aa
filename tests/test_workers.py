"""Several worker processes on one storage, as a user runs them: real processes, real kill -9,
SIGSTOP past a lease, SIGINT, a real PostgreSQL server and the journal file.

Every run is checked against a one-worker reference: the same table, byte for byte, and a study
holding exactly the budgeted counted units (none trained twice, none lost).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from bench.errors import UserError

from tests.pg import needs_postgres, postgres_server  # noqa: F401 - the fixture

CELLS = "lstm,momentum_lstm,gru"
TRIALS, SEEDS, PARALLEL = 4, 3, 2
# ~1 s per unit here: long enough to be killed mid-training, short enough for CI
BUDGET = f"""name = "workers"
description = "tests: several workers"
trials = {TRIALS}
parallel = {PARALLEL}
seeds = {SEEDS}
epochs = 3
batch_size = 32
hidden = 16
sampler_seed = 0
startup_trials = 2
grad_clip = 1.0
optimizer = {{ name = "adam", lr = [1e-3, 3e-2] }}
conclusive = false
pruner = {{ type = "median", n_startup_trials = 1, n_warmup_steps = 1 }}

[tasks.adding]
T = 20
n_train = 512
n_val = 64
n_test = 64
"""
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
# kill -9s per kill test, on the journal (through `run`'s supervisor) and on PostgreSQL; each
# restart costs a fresh interpreter (~5 s of CPU: torch and Lightning imports)
KILLS = 10


def args(budget: Path, storage: str) -> list[str]:
    return ["--task", "adding", "--cells", CELLS, "--budget", str(budget), "--storage", storage]


def bench(cwd: Path, *argv: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *argv], cwd=cwd, capture_output=True,
                          text=True, env=env or ENV, timeout=900)


def table(stdout: str) -> str:
    return stdout[stdout.index("| cell"):].rstrip()


def all_trials(storage: str, kind: str | None = None) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Trials of every study (of one kind: tune or seeds, by the study's attribute)."""
    st = _open(storage)
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=st).get_trials(
        deepcopy=False) for s in optuna.get_all_study_summaries(st, include_best_trial=False)
        if kind is None or s.user_attrs.get("kind") == kind}


def _open(storage: str):
    from bench.storage import open_storage
    return open_storage(storage, create=False)


def check_exact_budget(storage: str) -> dict[str, int]:
    """Every tune study holds exactly TRIALS counted trials and every seeds study SEEDS, one per
    unit key; returns the counts of trials by fail reason (interrupted, duplicate)."""
    reasons: dict[str, int] = {}
    for kind in ("tune", "seeds"):
        studies = all_trials(storage, kind)
        assert len(studies) == len(CELLS.split(","))
        for name, trials in studies.items():
            _check_units(name, kind, trials, reasons)
    return reasons


def _check_units(name, kind, trials, reasons) -> None:
    from bench.tune import counted
    keys = [t.user_attrs["seed"] for t in trials if counted(t)]
    want = list(range(TRIALS)) if kind == "tune" else [10_000 + i for i in range(SEEDS)]
    assert sorted(keys) == want, (name, sorted(keys))        # each unit once, none lost
    for t in trials:
        assert t.state.name != "RUNNING", (name, t.number)
        if t.state.name == "FAIL" and not counted(t):
            r = t.user_attrs.get("fail_reason", "?")
            reasons[r] = reasons.get(r, 0) + 1


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The one-worker run every multi-worker run must equal."""
    cwd = tmp_path_factory.mktemp("ref")
    budget = cwd / "workers.toml"
    budget.write_text(BUDGET)
    p = bench(cwd, "run", *args(budget, "journal:ref.journal"), "--no-progress", "--workers", "1")
    assert p.returncode == 0, p.stderr[-3000:]
    assert check_exact_budget(f"journal:{cwd / 'ref.journal'}") == {}
    return budget, table(p.stdout)


def holders(storage: str) -> list[int]:
    """Pids of the processes training a unit now (from the leases in the storage)."""
    out = []
    for trials in all_trials(storage).values():
        for t in trials:
            lease = t.system_attrs.get("bench:lease")
            if t.state.name == "RUNNING" and lease:
                out.append(int(lease["pid"]))
    return out


def children(pid: int) -> set[int]:
    """Live (not zombie) child processes of ``pid``."""
    kids = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids |= {int(k) for k in (task / "children").read_text().split()}
    return {k for k in kids if _state(k) not in ("Z", "X", None)}


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_kill_injection_on_the_journal(reference, tmp_path):
    """`run --workers 4` while KILLS of its workers are killed with SIGKILL mid-unit: the supervisor
    restarts each, the killed units are run again, and the table equals the one-worker run's."""
    budget, ref = reference
    storage = f"journal:{tmp_path / 'kill.journal'}"
    p = subprocess.Popen([sys.executable, "-m", "bench", "run", *args(budget, storage),
                          "--no-progress", "--workers", "4"], cwd=tmp_path, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rng, killed = random.Random(0), set()
    deadline = time.monotonic() + 600
    while len(killed) < KILLS and p.poll() is None and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.1, 0.5))   # start-up is ~4 s now: keep pace with the run
        if not (tmp_path / "kill.journal").exists():
            continue
        victims = sorted(set(holders(storage)) & children(p.pid) - killed)
        if victims:
            victim = rng.choice(victims)
            os.kill(victim, signal.SIGKILL)
            killed.add(victim)
    kills = len(killed)
    out, err = p.communicate(timeout=900)
    assert p.returncode == 0, err[-3000:]
    assert kills == KILLS, f"the run ended before {KILLS} kills: make its units longer"
    assert err.count("was killed by SIGKILL") == KILLS
    assert table(out) == ref
    reasons = check_exact_budget(storage)
    print(f"journal kill injection: {kills} kills, failed trials by reason {reasons}")
    # each kill hit a process holding a unit: that unit was failed as interrupted and rerun
    assert 1 <= reasons.get("interrupted", 0) <= KILLS
    assert set(reasons) <= {"interrupted", "duplicate"}


@needs_postgres
def test_kill_injection_with_standalone_workers_on_postgresql(reference, tmp_path, postgres_server):
    """Four `bench worker` processes (as on four hosts) on a real PostgreSQL server, KILLS of
    them killed with SIGKILL mid-unit and started again by hand: `report` equals the one-worker
    table."""
    budget, ref = reference
    url = postgres_server.url(postgres_server.create_database("workers"))
    cmd = [sys.executable, "-m", "bench", "worker", *args(budget, url), "--quiet", "--threads", "1"]

    def start():
        return subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    procs = [start() for _ in range(4)]
    rng, kills = random.Random(1), 0
    deadline = time.monotonic() + 600
    while kills < KILLS and any(q.poll() is None for q in procs) and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.1, 0.5))   # start-up is ~4 s now: keep pace with the run
        try:
            held = set(holders(url))
        except Exception:  # noqa: BLE001 - the studies are being created
            continue
        live = {q.pid: i for i, q in enumerate(procs) if q.poll() is None and q.pid in held}
        if live:
            i = live[rng.choice(sorted(live))]
            procs[i].kill()
            procs[i].wait()
            procs[i] = start()
            kills += 1
    for q in procs:
        out, err = q.communicate(timeout=900)
        assert q.returncode == 0, err[-3000:]
        assert url.split("@")[0].split(":")[-1] not in out + err        # no password printed
    assert kills == KILLS
    r = bench(tmp_path, "report", *args(budget, url))
    assert r.returncode == 0, r.stderr[-3000:]
    assert table(r.stdout) == ref
    reasons = check_exact_budget(url)
    print(f"PostgreSQL kill injection: {kills} kills, failed trials by reason {reasons}")
    assert 1 <= reasons.get("interrupted", 0) <= KILLS


def test_a_stalled_worker_loses_its_unit_after_the_lease(reference, tmp_path):
    """A worker frozen with SIGSTOP (alive, so only its lease can tell) loses its unit to the
    other worker after BENCH_LEASE_S; thawed, it finds the unit taken, drops its result and
    exits 0; every unit is stored once."""
    budget, _ = reference
    storage = f"journal:{tmp_path / 'stall.journal'}"
    env = {**ENV, "BENCH_LEASE_S": "3"}
    one = [a if a != CELLS else "lstm" for a in args(budget, storage)]     # 7 units suffice
    cmd = [sys.executable, "-m", "bench", "worker", *one, "--threads", "1"]
    a = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    frozen_holding = False
    while not frozen_holding and time.monotonic() < deadline and a.poll() is None:
        time.sleep(0.2)
        if (tmp_path / "stall.journal").exists() and a.pid in holders(storage):
            os.kill(a.pid, signal.SIGSTOP)
            # it may have finished that unit between the read and the stop: read again, frozen
            frozen_holding = a.pid in holders(storage)
            if not frozen_holding:
                os.kill(a.pid, signal.SIGCONT)
    assert frozen_holding, "the worker never held a unit while the test looked"
    stopped_at = time.monotonic()
    b = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert b.returncode == 0, b.stderr[-3000:]
    assert time.monotonic() - stopped_at >= 3          # it had to wait for the lease
    os.kill(a.pid, signal.SIGCONT)
    out, err = a.communicate(timeout=300)
    assert a.returncode == 0, err[-3000:]
    assert "dropped (taken over by another worker" in out
    reasons: dict[str, int] = {}
    for kind in ("tune", "seeds"):
        for name, trials in all_trials(storage, kind).items():
            _check_units(name, kind, trials, reasons)        # each unit once, none lost
    assert reasons.get("interrupted", 0) >= 1


def test_a_signal_stops_every_worker_and_a_rerun_completes(reference, tmp_path):
    """Ctrl-C (SIGINT; SIGTERM takes the same path, forwarded as itself) during `run --workers 2`."""
    budget, ref = reference
    sig, code = signal.SIGINT, 130
    storage = f"journal:{tmp_path / 'sig.journal'}"
    p = subprocess.Popen([sys.executable, "-m", "bench", "run", *args(budget, storage),
                          "--no-progress", "--workers", "2"], cwd=tmp_path, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
        if (tmp_path / "sig.journal").exists() and len(holders(storage)) == 2:
            break
    kids = children(p.pid)
    assert len(kids) == 2
    sent = time.monotonic()
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    took = time.monotonic() - sent
    assert p.returncode == code
    assert took < 30, took      # a hang guard (1.5 s grace for the workers, then the exit)
    lines = [l for l in err.splitlines() if l.strip()]
    assert lines[-1].startswith(f"interrupted by {signal.Signals(sig).name}: finished runs are stored")
    assert not any(Path(f"/proc/{k}").exists() for k in kids)      # no orphaned worker
    interrupted = [t for ts in all_trials(storage).values() for t in ts
                   if t.user_attrs.get("fail_reason") == "interrupted"]
    assert interrupted                       # the running units were marked, not left RUNNING
    again = bench(tmp_path, "run", *args(budget, storage), "--no-progress", "--workers", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert table(again.stdout) == ref
    check_exact_budget(storage)


def test_a_second_process_on_one_sqlite_file_is_refused(reference, tmp_path):
    budget, _ = reference
    storage = f"sqlite:///{tmp_path / 'one.db'}"
    p = subprocess.Popen([sys.executable, "-m", "bench", "run", *args(budget, storage),
                          "--no-progress"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
        try:
            if (tmp_path / "one.db").exists() and holders(storage):
                break
        except UserError:     # read while the first run was still creating Optuna's tables
            pass
    before = (tmp_path / "one.db").stat().st_size
    second = bench(tmp_path, "run", *args(budget, storage), "--no-progress")
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=60)
    assert p.returncode == 130
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "is in use by another bench run or worker" in lines[0]
    assert "journal:PATH" in lines[0] and before > 0


def test_a_unit_queued_twice_is_trained_once(tmp_path):
    """Two processes may queue one unit at the same moment: the first trial is the unit, the copy
    is failed as a duplicate by whoever claims it, and the budget counts the unit once."""
    import dataclasses

    from bench.budget import load_budget
    from bench.experiment import Experiment
    from bench.progress import Silent
    from bench.registry import parse_spec
    from bench.storage import open_storage
    from bench.task import parse_task
    from bench.tune import counted
    from bench.work import Worker

    budget = dataclasses.replace(load_budget("smoke"), seeds=1)
    exp = Experiment(parse_task("adding:T=10,n_train=64,n_val=32,n_test=32"), budget, hidden=4)
    data = exp.task.build()
    worker = Worker(open_storage(f"sqlite:///{tmp_path / 'd.db'}"), exp, [parse_spec("lstm")],
                    data, Silent(), single_process=True)
    worker.enqueue()
    study = worker.studies[("lstm", "tune")]
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs["seed"] for t in waiting] == [0]           # parallel 1: one unit ready
    study.enqueue_trial(waiting[0].params, user_attrs={"seed": 0}, skip_if_exists=False)
    worker.run()
    trials = study.get_trials()
    assert sorted(t.user_attrs["seed"] for t in trials if counted(t)) == [0, 1]
    dup = [t for t in trials if t.user_attrs.get("fail_reason") == "duplicate"]
    assert [t.number for t in dup] == [1]             # the later copy, never the first
    assert trials[0].state.name in ("COMPLETE", "PRUNED")


def test_stale_leases():
    import datetime
    import socket

    from bench.work import LEASE_S, stale

    def running(lease, started=0.0):
        t = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING,
                                      system_attrs={"bench:lease": lease} if lease else {})
        t.datetime_start = datetime.datetime.fromtimestamp(started)
        return t

    now = time.time()
    other = {"host": "elsewhere", "pid": os.getpid(), "time": now - 1}
    assert not stale(running(other), now)                                    # renewed a second ago
    assert stale(running({**other, "time": now - LEASE_S - 1}), now)          # expired
    dead = subprocess.Popen(["true"])
    dead.wait()
    here = {"host": socket.gethostname(), "pid": dead.pid, "time": now}
    assert stale(running(here), now)                  # its process on this host is gone
    assert not stale(running({**here, "pid": os.getpid()}), now)
    assert not stale(running(None, started=now - 1), now)      # claimed, first lease on its way
    assert stale(running(None, started=now - LEASE_S - 1), now)
