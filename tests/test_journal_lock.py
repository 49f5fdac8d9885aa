"""The journal lock: a process stalled while holding it loses it after the grace period, and on
waking neither crashes nor frees the lock its successor holds (CI once died of exactly that)."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna

from bench.journal_lock import OwnedSymlinkLock
from bench.storage import open_storage

HOLDER = """
import sys, time
from bench.journal_lock import OwnedSymlinkLock
lock = OwnedSymlinkLock(sys.argv[1], grace_period=1)
lock.acquire()
print("held", flush=True)
sys.stdin.readline()            # stalled here (SIGSTOP on top) while holding the lock
lock.release()
print("released", flush=True)
"""


def _link(path: Path) -> str | None:
    try:
        return os.readlink(f"{path}.lock")
    except OSError:
        return None


def test_a_stalled_holder_loses_the_lock_and_wakes_without_freeing_its_successors(tmp_path,
                                                                                 caplog):
    journal = tmp_path / "j.journal"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(journal)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parents[1])
    try:
        assert holder.stdout.readline() == "held\n"
        stale = _link(journal)
        assert stale is not None and stale.startswith(f"{holder.pid}-")
        os.kill(holder.pid, signal.SIGSTOP)
        mine = OwnedSymlinkLock(str(journal), grace_period=1)
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="bench.journal_lock"):
            assert mine.acquire()
        assert time.monotonic() - t0 >= 1               # it waited out the grace period
        assert "for more than 1 s; breaking it" in caplog.text
        ours = _link(journal)
        assert ours is not None and ours.startswith(f"{os.getpid()}-")
        os.kill(holder.pid, signal.SIGCONT)
        holder.stdin.write("\n")
        holder.stdin.flush()
        out, err = holder.communicate(timeout=30)
        assert holder.returncode == 0, err
        assert out == "released\n"
        assert "was broken while this process held it" in err
        assert _link(journal) == ours                   # the woken holder left our lock alone
        mine.release()
        assert _link(journal) is None
        assert list(tmp_path.iterdir()) == []           # no link or renamed link left behind
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
            holder.kill()


def test_a_lock_that_changes_hands_is_never_broken(tmp_path, caplog):
    """Held for 4 s against a 3 s grace period, but by two holders in turn (2 s each, the link
    replaced atomically so the waiter never sees it free): the waiter breaks neither."""
    path = str(tmp_path / "j.journal")
    link = f"{path}.lock"
    os.symlink("holder-a", link)
    got: list[float] = []
    waiter = OwnedSymlinkLock(path, grace_period=3)
    t0 = time.monotonic()
    thread = threading.Thread(target=lambda: got.append(waiter.acquire() and time.monotonic()))
    with caplog.at_level(logging.WARNING, logger="bench.journal_lock"):
        thread.start()
        time.sleep(2)
        os.symlink("holder-b", f"{link}.next")
        os.rename(f"{link}.next", link)         # a hand-over with no gap
        time.sleep(2)
        os.unlink(link)
        thread.join(timeout=30)
    assert got and got[0] - t0 >= 4, "the waiter broke a lock held for less than its grace period"
    assert "breaking" not in caplog.text
    waiter.release()
    assert _link(Path(path)) is None


def test_journal_storages_use_the_owned_lock(tmp_path):
    storage = open_storage(f"journal:{tmp_path / 'x.journal'}")
    assert isinstance(storage._backend._lock, OwnedSymlinkLock)
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: 0.0, n_trials=1)
    assert not (tmp_path / "x.journal.lock").exists()


def test_the_lock_is_the_file_optunas_own_lock_uses(tmp_path):
    """A plain Optuna process on the same journal must contend for the same lock file: the name
    is Optuna's, and a link Optuna's lock made blocks ours (released, ours takes it)."""
    from optuna.storages.journal import JournalFileSymlinkLock
    path = str(tmp_path / "j.log")
    theirs, ours = JournalFileSymlinkLock(path), OwnedSymlinkLock(path, grace_period=30)
    assert ours._lock_file == theirs._lock_file
    assert theirs.acquire()
    got = threading.Event()
    waiter = threading.Thread(target=lambda: ours.acquire() and got.set())
    waiter.start()
    assert not got.wait(1.0)                    # Optuna holds it: ours waits
    theirs.release()
    assert got.wait(10.0)                       # released: ours takes it
    waiter.join()
    assert os.path.islink(theirs._lock_file)    # and Optuna's lock would now see it held
    ours.release()
    assert not os.path.lexists(ours._lock_file)
