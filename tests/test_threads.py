"""Torch threads per worker: the cores not busy at the start, split between the workers, at least
one each (two threads beside busy processes ran 4-6x slower than one; README, "Threads")."""
from __future__ import annotations

import os

import pytest
import torch

from bench import cli, pool


@pytest.mark.parametrize("cores, load, n, expected", [
    (2, 0.2, 1, 2),      # idle 2 cores, one worker: both threads
    (2, 2.3, 1, 1),      # two busy processes beside it: one thread, never two waiting on each other
    (2, 1.4, 1, 1),      # one busy core
    (2, 0.1, 2, 1),      # two workers share the cores
    (16, 0.0, 4, 4),     # a GPU host: 4 workers per GPU
    (16, 8.4, 4, 2),
    (4, 9.0, 3, 1),      # overloaded: still one each
])
def test_threads_split_the_free_cores(monkeypatch, cores, load, n, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load), raising=False)
    threads, why = pool.threads_per_worker(n)
    assert threads == expected and why == f"{cores} cores, load {load:.1f}"


def test_run_uses_and_prints_the_thread_count(tmp_path, monkeypatch, capsys):
    """An in-process run (one worker) trains with the threads it prints; --threads overrides."""
    monkeypatch.chdir(tmp_path)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        code = cli.main(["run", "--task", "adding:T=10,n_train=64,n_val=32,n_test=32", "--cells",
                         "lstm", "--budget", "smoke", "--no-progress", "--threads", "1"])
        assert code == 0 and torch.get_num_threads() == 1
        first = capsys.readouterr().out.splitlines()[0]
        assert "; 1 worker x 1 thread (--threads); storage" in first
    finally:
        torch.set_num_threads(saved)
