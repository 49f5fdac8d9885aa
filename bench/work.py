"""Work units claimed from the storage: any number of processes, on any number of hosts, train each
unit of a run exactly once.

A run's work is a fixed list of units derived from the experiment and its preset alone: per cell,
the tuning trials k = 0 .. trials - 1 and the final seeds. A unit is an Optuna trial whose user
attribute ``seed`` is its key (k for a tuning trial, which trains from seed k; 10000 + i for final
seed i). A process *enqueues* the units that are ready, as WAITING trials whose parameters are
already chosen, and *claims* one by moving it from WAITING to RUNNING, which both kinds of storage
do atomically (RDB: a locked row; journal: an append-only log replayed in order), so no unit is
claimed twice. Two processes may enqueue the same unit at once: the lowest-numbered live trial of a
key is the unit, and whoever claims a later one drops it as a duplicate.

**Determinism whatever the number of workers.** Tuning trials go in rounds of ``budget.parallel``
(1 by default): trial k is sampled by a TPE seeded with (sampler_seed, k) over the counted trials
of earlier rounds only, and pruned against those only. So 1, 2 or 8 workers, and any pattern of
kills and restarts, give the same trials, the same best configuration and the same table. The cost:
the trials of one round do not see each other. With ``parallel = 1`` each cell tunes sequentially
and the cells run side by side; a larger round lets several workers tune one cell.

**Crashes.** The process training a unit writes a lease on it (host, pid, time) every
``HEARTBEAT_S`` seconds. A RUNNING unit whose lease is older than ``LEASE_S`` seconds, or whose
process on this host is gone, is marked interrupted by whoever sees it, and enqueued again.
Interrupted units never count toward the budget.
"""
from __future__ import annotations

import copy
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import optuna

from bench import studies
from bench.experiment import Experiment
from bench.progress import Progress
from bench.registry import CellSpec
from bench.task import TaskData
from bench.tune import (TrialState, best_config, counted, open_study, run_unit, suggest)

KEY = "seed"                  # the user attribute naming a trial's unit
LEASE_S = float(os.environ.get("BENCH_LEASE_S", "60"))     # clocks across hosts agree to seconds
HEARTBEAT_S = max(0.5, LEASE_S / 6)
POLL_S = 1.0                  # how often an idle worker looks for work
LIVE = (TrialState.WAITING, TrialState.RUNNING)


@dataclass(frozen=True)
class Unit:
    """One claimed unit: the cell, its kind (``tune`` or ``seeds``) and its key."""

    cell: str
    kind: str
    key: int

    def label(self, exp: Experiment) -> str:
        b = exp.budget
        if self.kind == "tune":
            return f"{self.cell} trial {self.key + 1}/{b.trials}"
        return f"{self.cell} seed {self.key - b.seed_list()[0] + 1}/{b.seeds}"


def units(trials: Iterable[optuna.trial.FrozenTrial]) -> dict[int, optuna.trial.FrozenTrial]:
    """Per key, the trial that is the unit: the lowest-numbered one that is waiting, running or
    counted (a failed-as-interrupted or duplicate trial is no unit)."""
    out: dict[int, optuna.trial.FrozenTrial] = {}
    for t in sorted(trials, key=lambda t: t.number):
        key = t.user_attrs.get(KEY)
        if key is not None and key not in out and (t.state in LIVE or counted(t)):
            out[key] = t
    return out


def done_units(trials: Iterable[optuna.trial.FrozenTrial]) -> dict[int, optuna.trial.FrozenTrial]:
    """Per key, the unit's trial where it is counted (finished, pruned or diverged)."""
    return {k: t for k, t in units(trials).items() if counted(t)}


def rounds(trials: int, parallel: int) -> list[range]:
    """The tuning trial keys, in rounds of ``parallel``."""
    return [range(r, min(trials, r + parallel)) for r in range(0, trials, parallel)]


# ---------------------------------------------------------------------------------- sampling

class _History(optuna.pruners.BasePruner):
    """The preset's pruner, judging a trial against the counted trials of earlier rounds only (a
    running neighbour's progress must not decide, or the worker count would change results)."""

    def __init__(self, base: optuna.pruners.BasePruner, history: list[optuna.trial.FrozenTrial],
                 direction: str, key: int):
        self.base, self.key = base, key
        # a fixed name: Hyperband picks brackets from the study name and trial number
        self.memory = optuna.create_study(study_name="history", direction=direction)
        self.memory.add_trials(history)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        trial = copy.copy(trial)
        trial.number = self.key       # the unit, not the storage's count of attempts
        return self.base.prune(self.memory, trial)


class _FixedOnly(optuna.samplers.RandomSampler):
    """The sampler of claimed trials: their parameters were chosen at enqueue time, so a draw here
    would be a bug that makes results depend on timing."""

    def sample_independent(self, study, trial, param_name, param_distribution):
        raise RuntimeError(f"{param_name} was not fixed when trial {trial.number} was enqueued")


def sample(exp: Experiment, spec: CellSpec, direction: str, key: int,
           history: list[optuna.trial.FrozenTrial]) -> dict:
    """Tuning trial ``key``'s parameters: a TPE seeded with (sampler_seed, key) over ``history``."""
    b = exp.budget
    memory = optuna.create_study(
        study_name="history", direction=direction,
        sampler=optuna.samplers.TPESampler(seed=b.sampler_seed * 100_003 + key,
                                           n_startup_trials=b.startup_trials))
    memory.add_trials(history)
    trial = memory.ask()
    suggest(trial, spec, b)
    return dict(trial.params)


# ---------------------------------------------------------------------------------- leases

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale(t: optuna.trial.FrozenTrial, now: float) -> bool:
    """A RUNNING trial nobody trains: its process on this host is gone, or its last sign of life
    (lease or claim) is older than ``LEASE_S``."""
    lease = t.system_attrs.get(studies.LEASE)
    if not lease:     # claimed a moment ago (the first lease follows the claim at once), or never
        start = t.datetime_start.timestamp() if t.datetime_start else 0.0    # local time: one host
        return now - start > LEASE_S
    if lease["host"] == socket.gethostname() and not _alive(int(lease["pid"])):
        return True
    return now - float(lease["time"]) > LEASE_S


class _Heartbeat:
    """Renews the lease on a claimed trial until stopped."""

    def __init__(self, study: optuna.Study, trial_id: int):
        self.study, self.trial_id = study, trial_id
        self.stop = threading.Event()
        self.beat()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def beat(self) -> None:
        studies.set_lease(self.study, self.trial_id, {"host": socket.gethostname(),
                                                      "pid": os.getpid(), "time": time.time()})

    def _run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - the trial was finished or reaped: stop renewing
                return

    def close(self) -> None:
        """Stop renewing. Waits briefly only: a beat still in flight (say, on a SQLite file that
        a signal left locked for the busy timeout) fails on its own against the finished trial,
        and must not delay an exit the user asked for."""
        self.stop.set()
        self.thread.join(timeout=0.2)


# ---------------------------------------------------------------------------------- the worker

class Worker:
    """Enqueues ready units, claims one at a time and trains it, until every unit is counted."""

    def __init__(self, storage, exp: Experiment, specs: list[CellSpec], data: TaskData,
                 progress: Progress, device: str = "cpu", single_process: bool = False):
        self.exp, self.specs, self.data, self.progress, self.device = exp, specs, data, progress, device
        self.single_process = single_process
        self.stored = self.dropped = 0
        self.studies = {(str(s), kind): open_study(storage, exp, s, kind, data)
                        for kind in ("tune", "seeds") for s in specs}
        for study in self.studies.values():
            study.sampler = _FixedOnly()
        self.spec = {str(s): s for s in specs}
        self.trials: dict[tuple[str, str], list[optuna.trial.FrozenTrial]] = {}
        if single_process:     # nobody else can be training: every RUNNING trial is a dead one's
            for study in self.studies.values():
                for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    studies.mark_interrupted(study, t)
        self.refresh()

    # -- what is left (read once per step: a server storage answers each read with a query)

    def refresh(self, keys: Iterable[tuple[str, str]] | None = None) -> None:
        """Read the trials of every study (or of ``keys``) into ``self.trials``."""
        for k in self.studies if keys is None else keys:
            self.trials[k] = self.studies[k].get_trials(deepcopy=False)

    def remaining(self) -> int:
        """Units not yet counted (as of the last ``refresh``)."""
        b = self.exp.budget
        return sum(b.trials - min(b.trials, len(done_units(self.trials[(c, "tune")])))
                   + b.seeds - min(b.seeds, len(done_units(self.trials[(c, "seeds")])))
                   for c in self.spec)

    def reap(self) -> list[tuple[str, str]]:
        """Mark every stale RUNNING trial of this experiment interrupted; the studies touched."""
        now, touched = time.time(), []
        for key, trials in self.trials.items():
            for t in trials:
                if t.state == TrialState.RUNNING and stale(t, now):
                    studies.mark_interrupted(self.studies[key], t)
                    touched.append(key)
        return touched

    def enqueue(self) -> list[tuple[str, str]]:
        """Enqueue every ready unit that has no live trial: the tuning trials of the first round
        not yet counted, and the seeds of a cell whose tuning is counted; the studies touched."""
        b, touched = self.exp.budget, []
        for cell, spec in self.spec.items():
            tune = self.studies[(cell, "tune")]
            live = units(self.trials[(cell, "tune")])
            done = {k: t for k, t in live.items() if counted(t)}
            history: list[optuna.trial.FrozenTrial] = []
            tuned = True
            for keys in rounds(b.trials, b.parallel):
                for k in keys:
                    if k not in live:
                        params = sample(self.exp, spec, tune.direction.name.lower(), k, history)
                        if self._unqueued(tune, k):
                            tune.enqueue_trial(params, user_attrs={KEY: k}, skip_if_exists=False)
                            touched.append((cell, "tune"))
                if not all(k in done for k in keys):
                    tuned = False
                    break
                history += [done[k] for k in keys]
            if not tuned:
                continue
            seeds = self.studies[(cell, "seeds")]
            have = units(self.trials[(cell, "seeds")])
            todo = [s for s in b.seed_list() if s not in have]
            if todo:
                params, source = best_config(tune, spec, b)
                seeds.set_user_attr("config_source", source)
                # one fresh read per seed, starting at a place of this process's own: two workers
                # queueing one cell's seeds at once then collide only where their paths meet
                turn = os.getpid() % len(todo)
                for s in todo[turn:] + todo[:turn]:
                    if self._unqueued(seeds, s):
                        seeds.enqueue_trial(params, user_attrs={KEY: s}, skip_if_exists=False)
                touched.append((cell, "seeds"))
        return touched

    def _unqueued(self, study: optuna.Study, key: int) -> bool:
        """Whether unit ``key`` has no live trial in a fresh read of ``study``. The step's
        snapshot can be seconds old (sampling, best_config), and a unit another worker queued
        meanwhile would be queued twice, its copy failed as a duplicate; the re-read leaves a
        window of milliseconds. A single process needs none."""
        return self.single_process or key not in units(study.get_trials(deepcopy=False))

    def claim(self) -> tuple[Unit, optuna.Study, optuna.Trial] | None:
        """Claim the first waiting unit, tuning before seeds and in key order across cells (so
        every cell's speed is known early); None when nothing is waiting."""
        waiting = []
        order = list(self.spec)
        for (cell, kind), trials in self.trials.items():
            for t in trials:
                if t.state == TrialState.WAITING:
                    waiting.append((kind != "tune", t.user_attrs.get(KEY, math.inf),
                                    order.index(cell), t.number, cell, kind, t))
        for *_, cell, kind, t in sorted(waiting, key=lambda w: w[:4]):
            study = self.studies[(cell, kind)]
            trial = None
            try:
                trial = studies.claim(study, t._trial_id)
                if trial is None:
                    continue
                key = t.user_attrs[KEY]
                unit = units(study.get_trials(deepcopy=False)).get(key)
            except BaseException:
                # Ctrl-C during or right after the claim: give the unit back, marked. A signal
                # can land after the claim is written and before it returns; only a single
                # process knows the RUNNING trial is then its own (a worker's is reaped by lease)
                if trial is not None or self.single_process:
                    studies.fail(study, t.number, "interrupted", only_running=True)
                raise
            if unit is None or unit.number != t.number:     # a later copy of a live unit
                studies.fail(study, trial.number, "duplicate")
                continue
            return Unit(cell, kind, key), study, trial
        return None

    # -- running

    def run_claimed(self, unit: Unit, study: optuna.Study, trial: optuna.Trial) -> None:
        b = self.exp.budget
        spec = self.spec[unit.cell]
        if unit.kind == "tune":
            done = done_units(study.get_trials(deepcopy=False))
            first = (unit.key // b.parallel) * b.parallel
            history = [done[k] for k in range(first)]
            study.pruner = _History(b.make_pruner(), history, study.direction.name.lower(), unit.key)
        heart = _Heartbeat(study, trial._trial_id)
        self.progress.begin(unit.label(self.exp), b.epochs)
        start = time.perf_counter()
        try:
            kept = run_unit(study, trial, self.exp, spec, self.data, unit.key, self.device,
                            final=unit.kind == "seeds", progress=self.progress)
        finally:
            heart.close()
        if kept:
            self.stored += 1
            self.progress.end(unit.cell, unit.kind, time.perf_counter() - start)
        else:       # its lease expired while this process was stalled: another one reran it
            self.dropped += 1

    def step(self) -> bool:
        """Reap, enqueue, and train one unit; False when nothing could be claimed. Reads every
        study once (``refresh``), and again only the studies it changed."""
        touched = [] if self.single_process else self.reap()
        touched += self.enqueue()
        self.refresh(set(touched))
        got = self.claim()
        if got is None:
            return False
        try:
            self.run_claimed(*got)
        except BaseException:     # a signal before training began: the unit is run again
            studies.fail(got[1], got[2].number, "interrupted")      # no-op once it is finished
            raise
        return True

    def run(self, keep_going: Callable[[], bool] = lambda: True) -> None:
        """Work until every unit is counted, or ``keep_going()`` says stop (checked between
        units). While others hold the last units, poll: a crashed holder's unit comes back."""
        self.refresh()
        while self.remaining() and keep_going():
            if not self.step():
                if self.single_process:
                    raise RuntimeError(f"{self.remaining()} units left and none to claim")
                time.sleep(POLL_S)
            self.refresh()


def run_experiment(storage, exp: Experiment, specs: list[CellSpec], data: TaskData,
                   progress: Progress, device: str = "cpu", single_process: bool = True) -> None:
    """Tune every cell under the same budget, then retrain each one's best on the seeds, in this
    process (the units are claimed like any worker's)."""
    Worker(storage, exp, specs, data, progress, device, single_process).run()


def read_trials(storage, exp: Experiment, specs: list[CellSpec]
                ) -> dict[tuple[str, str], list[optuna.trial.FrozenTrial]]:
    """The trials of every study of the experiment by (cell, kind); a study not yet created has
    none."""
    names = studies.summaries(storage)
    out = {}
    for spec in specs:
        for kind in ("tune", "seeds"):
            name = exp.stored_name(names, spec, kind)
            out[(str(spec), kind)] = studies.trials(storage, name) if name in names else []
    return out


def stored_work(storage, exp: Experiment, specs: list[CellSpec],
                trials: dict[tuple[str, str], list[optuna.trial.FrozenTrial]] | None = None
                ) -> tuple[int, list[tuple[str, str]], dict[tuple[str, str], list[float]]]:
    """Units already counted, the (cell, kind) of every unit still to run, and the stored run
    times of this experiment's cells by (cell, kind): what the progress bar and its ETA start from."""
    trials = read_trials(storage, exp, specs) if trials is None else trials
    done, remaining, times = 0, [], {}
    for (cell, kind), ts in trials.items():
        cap = exp.budget.trials if kind == "tune" else exp.budget.seeds
        runs = list(done_units(ts).values())
        done += min(cap, len(runs))
        remaining += [(cell, kind)] * max(0, cap - len(runs))
        times[(cell, kind)] = [t.user_attrs["wall_s"] for t in runs if "wall_s" in t.user_attrs]
    return done, remaining, times
