"""``run --workers N``: N local ``bench worker`` processes over one shared storage, supervised.

The supervisor trains nothing itself. It starts the workers, shows progress read from the storage
(every unit counted so far, and the epoch each running unit has reached), restarts a worker that a
signal killed (its unit is reaped and run again, see :mod:`bench.work`), stops everything on a
worker's error, and forwards SIGINT/SIGTERM once, so each worker marks its unit interrupted.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.experiment import Experiment
from bench.registry import CellSpec
from bench.work import KEY, read_trials, stored_work

POLL_S = 2.0          # the storage is read once per poll: every study's trials
GRACE_S = 1.5          # how long a signalled worker gets to mark its unit before SIGKILL


@dataclass
class Slot:
    """One worker's place: its command, its environment and its current process."""

    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    done: bool = False

    def start(self) -> None:
        # a session of its own: a terminal's Ctrl-C reaches the supervisor, which forwards it once
        self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True,
                                     stdin=subprocess.DEVNULL)


@dataclass
class Pool:
    slots: list[Slot] = field(default_factory=list)

    def alive(self) -> list[Slot]:
        return [s for s in self.slots if s.proc is not None and s.proc.poll() is None]

    def signal_all(self, sig: int) -> None:
        """Forward ``sig`` to every live worker, wait ``GRACE_S`` for them, then kill the rest."""
        for s in self.alive():
            s.proc.send_signal(sig)
        deadline = time.monotonic() + GRACE_S
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        for s in self.alive():
            s.proc.kill()
            s.proc.wait()


def threads_per_worker(n: int) -> tuple[int, str]:
    """Torch threads for each of ``n`` workers on this host, and what decided it (for the run's
    first line): the cores not already busy when the run starts (the one-minute load average),
    split between the workers, at least one each.

    On this project's small models a second thread makes a step at most ~1.8x faster on idle
    cores, but 4-7x slower beside busy processes, where every step waits for a descheduled
    partner thread (README, "Threads"): so a busy machine gets one thread per worker.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    free = cores - min(cores, round(load))
    return max(1, free // n), f"{cores} cores, load {load:.1f}"


def worker_argv(args, specs: list[CellSpec], threads: int | None, device: str) -> list[str]:
    """The ``bench worker`` command line that works on the same experiment as ``args``."""
    argv = [sys.executable, "-m", "bench", "worker", "--task", args.task, "--cells",
            ",".join(str(s) for s in specs), "--budget", args.budget, "--storage", args.storage,
            "--device", device, "--quiet", "--parent", str(os.getpid())]
    for flag, value in (("--hidden", args.hidden), ("--match-params", args.match_params),
                        ("--data-dir", args.data_dir), ("--threads", threads)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def running_labels(exp: Experiment, trials: dict[tuple[str, str], list]) -> list[str]:
    """What each running unit is at, e.g. ``gru trial 2/6 epoch 4/12``."""
    b, out = exp.budget, []
    for (cell, kind), ts in trials.items():
        for t in ts:
            if t.state.name != "RUNNING" or KEY not in t.user_attrs:
                continue
            key = t.user_attrs[KEY]
            what = (f"trial {key + 1}/{b.trials}" if kind == "tune"
                    else f"seed {key - b.seed_list()[0] + 1}/{b.seeds}")
            out.append(f"{cell} {what} epoch {len(t.intermediate_values)}/{b.epochs}")
    return out


def supervise(storage, exp: Experiment, specs: list[CellSpec], argvs: list[list[str]],
              envs: list[dict[str, str]], show: Callable[[int, list[str], float | None], None],
              note: Callable[[str], None], received: Callable[[], int | None]) -> None:
    """Run the workers to the end. ``show(done, running, seconds_left)`` gets the progress every
    second; ``note(line)`` a message (a restart). On KeyboardInterrupt, forwards the signal
    ``received()`` names (SIGINT by default) and re-raises; RuntimeError when a worker fails with an error (the others are stopped)."""
    from bench.progress import Eta

    pool = Pool([Slot(a, e) for a, e in zip(argvs, envs)])
    for s in pool.slots:
        s.start()
    try:
        while not all(s.done for s in pool.slots):
            for i, s in enumerate(pool.slots):
                rc = None if s.done else s.proc.poll()
                if rc is None:
                    continue
                if rc == 0:
                    s.done = True
                elif rc < 0:          # killed by a signal (kill -9, the OOM killer): start again
                    old = s.proc.pid
                    s.restarts += 1
                    s.start()
                    note(f"worker {i + 1} (pid {old}) was killed by {signal.Signals(-rc).name}; its "
                         f"unit is run again; restarted as pid {s.proc.pid}")
                else:
                    raise RuntimeError(f"worker {i + 1} (pid {s.proc.pid}) failed with exit code "
                                       f"{rc} (its message is above); the other workers were stopped")
            trials = read_trials(storage, exp, specs)
            done, remaining, times = stored_work(storage, exp, specs, trials)
            left = Eta(times, remaining).seconds_left()
            show(done, running_labels(exp, trials),
                 None if left is None else left / max(1, len(pool.alive()) or 1))
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        pool.signal_all(received() or signal.SIGINT)
        raise
    except BaseException:
        pool.signal_all(signal.SIGTERM)
        raise
