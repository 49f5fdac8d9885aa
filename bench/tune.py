"""Equal-budget tuning with Optuna, then the best configuration retrained on N seeds.

Every cell gets the same sampler (TPE, fixed seed), trials, epochs, pruner, optimizer and seeds;
only its registered hyperparameters differ. Per (task, cell, budget, size) there are two studies
in one storage: ``... | tune`` (the trials) and ``... | seeds`` (the final runs). Interrupted work
resumes: finished trials and seed runs are reused, a trial left RUNNING is marked failed and rerun.
Determinism across interruptions: trial k is sampled by a TPE seeded with (sampler_seed, k) over
the same history, and trained from seed k, so a resumed job equals an uninterrupted one.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Any

import optuna
import pytorch_lightning as pl

from bench import studies
from bench.budget import Budget, budget_json
from bench.experiment import Experiment, provenance
from bench.errors import UserError
from bench.model import Diverged
from bench.progress import EpochTicker, Progress
from bench.registry import CellSpec
from bench.task import TaskData
from bench.train import size_and_hparams, train_run

TrialState = optuna.trial.TrialState


def counted(t: optuna.trial.FrozenTrial) -> bool:
    """A trial that used budget: finished, pruned, or diverged (an interrupted one did not)."""
    return t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        t.state == TrialState.FAIL and "fail_reason" in t.user_attrs
        and t.user_attrs.get("fail_reason") != "interrupted")


def _fail_stale(study: optuna.Study, single_process: bool) -> None:
    if single_process:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            studies.mark_interrupted(study, t)
    else:
        optuna.storages.fail_stale_trials(study)


def _study(storage, exp: Experiment, spec: CellSpec, kind: str, data: TaskData,
           single_process: bool) -> optuna.Study:
    direction = data.spec.direction
    study = optuna.create_study(storage=storage, study_name=exp.study_name(spec, kind),
                                direction=direction, load_if_exists=True)
    if "task" not in study.user_attrs:       # readable in optuna-dashboard, and for the report
        # the trivial score of the final runs is computed on their own test split; tuning studies
        # keep the nominal one (computing it does not train anything, but tuning never reads test)
        trivial = data.trivial() if kind == "seeds" else data.spec.trivial
        for k, v in {"task": exp.task.id, "cell": str(spec), "budget": exp.budget.name,
                     "size": exp.size, "kind": kind, "metric": data.spec.metric,
                     "direction": direction, "trivial": trivial,
                     "trivial_nominal": data.spec.trivial, "trivial_note": data.spec.trivial_note,
                     "solve_threshold": data.spec.solve_threshold(trivial),
                     "solve_margin": data.spec.solve_margin, "budget_json": budget_json(exp.budget),
                     "budget_fingerprint": exp.budget.fingerprint, **provenance()}.items():
            study.set_user_attr(k, v)
    if study.metric_names is None:        # what optuna-dashboard labels the objective with
        with warnings.catch_warnings():   # Optuna marks set_metric_names experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([f"val {data.spec.metric} (best epoch)" if kind == "tune"
                                    else f"test {data.spec.metric} (one seed)"])
    _fail_stale(study, single_process)
    return study


class _Pruning(pl.Callback):
    """Reports every epoch's validation metric to Optuna; stops the run if the pruner says so."""

    def __init__(self, trial: optuna.Trial):
        self.trial, self.pruned = trial, False

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        value = float(trainer.callback_metrics["val_metric"])
        self.trial.report(value, trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True


def suggest(trial: optuna.Trial, spec: CellSpec, budget: Budget) -> tuple[dict, dict]:
    """Sample the shared optimizer settings and the cell's own registered hyperparameters."""
    opt = budget.suggest_optimizer(trial)
    chosen: dict[str, Any] = {}
    for name, p in spec.searched(budget.cells).items():
        if p.choices is not None:
            chosen[name] = trial.suggest_categorical(name, list(p.search))
        elif p.kind is int:
            chosen[name] = trial.suggest_int(name, int(p.search[0]), int(p.search[1]), log=p.log)
        else:
            chosen[name] = trial.suggest_float(name, p.search[0], p.search[1], log=p.log)
    return opt, chosen


def _run_and_tell(study: optuna.Study, trial: optuna.Trial, exp: Experiment, spec: CellSpec,
                  data: TaskData, seed: int, device: str, final: bool, progress: Progress) -> None:
    """Sample, size, train and record one asked trial: COMPLETE with its metrics, PRUNED, or FAIL
    with a reason. Ctrl-C, a signal or a crash anywhere after ``ask`` marks it interrupted (the
    next run reruns it), so no trial is left RUNNING by a live process."""
    try:
        _train_and_tell(study, trial, exp, spec, data, seed, device, final, progress)
    except BaseException:
        try:
            trial.set_user_attr("fail_reason", "interrupted")
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass                # it had been told already: nothing left to mark
        raise


def _train_and_tell(study: optuna.Study, trial: optuna.Trial, exp: Experiment, spec: CellSpec,
                    data: TaskData, seed: int, device: str, final: bool, progress: Progress) -> None:
    """A tuning trial (``final`` False) reports to the pruner and its value is the validation
    metric; a final seed run never prunes, reads the test split, and its value is the test metric."""
    opt, chosen = suggest(trial, spec, exp.budget)
    hidden, hp = size_and_hparams(spec, chosen, data.spec, exp.budget, exp.hidden, exp.params)
    attrs = {"spec": str(spec), "hparams": hp, "optimizer": opt, "seed": seed, "hidden": hidden,
             "budget": exp.budget.name, "budget_fingerprint": exp.budget.fingerprint, **provenance()}
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    pruning = None if final else _Pruning(trial)
    callbacks = [EpochTicker(progress)] + ([pruning] if pruning else [])
    try:
        res = train_run(data, spec, hp, hidden, exp.budget, opt, seed, callbacks, device,
                        read_test=final)
    except Diverged as e:
        if pruning and pruning.pruned:
            study.tell(trial, state=TrialState.PRUNED)
            return
        trial.set_user_attr("fail_reason", f"diverged: {e}")
        study.tell(trial, state=TrialState.FAIL)
        return
    for k, v in res.as_attrs().items():
        if v is not None:
            trial.set_user_attr(k, v)
    if final:    # the learning curve as intermediate values (tuning reported them to the pruner)
        for epoch, value in enumerate(res.curve):
            if math.isfinite(value):
                trial.report(value, epoch)
    if pruning and pruning.pruned:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, res.test if final else res.val)


def tune_one(study: optuna.Study, exp: Experiment, spec: CellSpec, data: TaskData,
             progress: Progress, device: str = "cpu") -> bool:
    """Run the cell's next tuning trial if it has fewer counted trials than the budget; trial k
    is sampled by a TPE seeded with (sampler_seed, k) over the study's own history."""
    b = exp.budget
    done = sum(map(counted, study.get_trials(deepcopy=False)))
    if done >= b.trials:
        return False
    study.sampler = optuna.samplers.TPESampler(seed=b.sampler_seed * 100_003 + done,
                                               n_startup_trials=b.startup_trials)
    study.pruner = b.make_pruner()
    progress.begin(f"{spec} trial {done + 1}/{b.trials}", b.epochs)
    start = time.perf_counter()
    _run_and_tell(study, study.ask(), exp, spec, data, seed=done, device=device, final=False,
                  progress=progress)
    progress.end(str(spec), "tune", time.perf_counter() - start)
    return True


def tune_cell(storage, exp: Experiment, spec: CellSpec, data: TaskData, progress: Progress,
              device: str = "cpu", single_process: bool = True) -> optuna.Study:
    """Run the cell's tuning study up to the budget's number of counted trials."""
    study = _study(storage, exp, spec, "tune", data, single_process)
    while tune_one(study, exp, spec, data, progress, device):
        pass
    return study


def default_config(spec: CellSpec, budget: Budget) -> dict[str, Any]:
    """What the seeds train when no tuning trial completed: every searched hyperparameter at its
    registered default, and each tuned learning rate at the geometric middle of its range."""
    out: dict[str, Any] = {k: p.default for k, p in spec.searched(budget.cells).items()}

    def lrs(opt: dict[str, Any], name: str) -> None:
        for k, v in opt.items():
            if isinstance(v, dict):
                lrs(v, f"lr_{k}")
        if isinstance(opt.get("lr"), list):
            out[name] = float((opt["lr"][0] * opt["lr"][1]) ** 0.5)

    lrs(budget.optimizer, "lr")
    return out


def best_config(study: optuna.Study, spec: CellSpec, budget: Budget) -> tuple[dict[str, Any], str]:
    """The best completed trial's parameters and where they came from; the registered defaults
    (``default_config``) when no trial completed, never a random draw."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not done:
        return default_config(spec, budget), "registered defaults (no tuning trial completed)"
    best = study.best_trial
    return dict(best.params), f"tuning trial {best.number} (val {best.value:.4g})"


def check_budget(storage, budget: Budget) -> None:
    """Refuse a preset whose content differs from what the storage holds under the same name."""
    for name, s in studies.summaries(storage).items():
        stored = s.user_attrs.get("budget_fingerprint")
        if s.user_attrs.get("budget") == budget.name and stored and stored != budget.fingerprint:
            raise UserError(f"budget preset {budget.name!r} (fingerprint {budget.fingerprint}) differs "
                            f"from the one stored under that name (fingerprint {stored}); give the "
                            "changed preset another name, or use another --storage")


def train_seeds(storage, exp: Experiment, spec: CellSpec, data: TaskData, params: dict,
                source: str, progress: Progress, device: str = "cpu",
                single_process: bool = True) -> optuna.Study:
    """Retrain the chosen configuration on every seed of the budget not yet finished."""
    study = _study(storage, exp, spec, "seeds", data, single_process)
    study.set_user_attr("config_source", source)
    finished = {t.user_attrs.get("seed") for t in study.get_trials(deepcopy=False) if counted(t)}
    for seed in exp.budget.seed_list():
        if seed in finished:
            continue
        study.enqueue_trial(params, skip_if_exists=False)
        progress.begin(f"{spec} seed {seed - exp.budget.seed_list()[0] + 1}/{exp.budget.seeds}",
                       exp.budget.epochs)
        start = time.perf_counter()
        _run_and_tell(study, study.ask(), exp, spec, data, seed=seed, device=device, final=True,
                      progress=progress)
        progress.end(str(spec), "seeds", time.perf_counter() - start)
    return study


def stored_work(storage, exp: Experiment, specs: list[CellSpec]
                ) -> tuple[int, list[tuple[str, str]], dict[tuple[str, str], list[float]]]:
    """Runs already finished, the (cell, kind) of every unit still to run, and the stored run
    times of this experiment's cells by (cell, kind): what the progress bar and its ETA start from."""
    names = studies.summaries(storage)
    done, remaining, times = 0, [], {}
    for spec in specs:
        for kind, cap in (("tune", exp.budget.trials), ("seeds", exp.budget.seeds)):
            name = exp.study_name(spec, kind)
            runs = [t for t in studies.trials(storage, name) if counted(t)] if name in names else []
            done += min(cap, len(runs))
            remaining += [(str(spec), kind)] * max(0, cap - len(runs))
            times[(str(spec), kind)] = [t.user_attrs["wall_s"] for t in runs if "wall_s" in t.user_attrs]
    return done, remaining, times


def run_experiment(storage, exp: Experiment, specs: list[CellSpec], data: TaskData,
                   progress: Progress, device: str = "cpu", single_process: bool = True) -> None:
    """Tune every cell under the same budget, then retrain each one's best on the seeds.

    Tuning goes round-robin (every cell's trial k before any cell's trial k + 1), so the ETA
    learns every cell's speed early; each study's trials depend on that study alone, so the
    order changes no number."""
    tune = {spec: _study(storage, exp, spec, "tune", data, single_process) for spec in specs}
    for _ in range(exp.budget.trials):
        for spec in specs:
            tune_one(tune[spec], exp, spec, data, progress, device)
    for spec, study in tune.items():
        params, source = best_config(study, spec, exp.budget)
        train_seeds(storage, exp, spec, data, params, source, progress, device, single_process)
