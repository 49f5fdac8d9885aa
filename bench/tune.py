"""Equal-budget tuning with Optuna, then the best configuration retrained on N seeds: the pieces
one unit of work needs (its study, its sampled configuration, its training and its record).

Every cell gets the same sampler (TPE, fixed seed), trials, epochs, pruner, optimizer and seeds;
only its registered hyperparameters differ. Per (task, cell, budget, size) there are two studies in
one storage: ``tune`` (the trials) and ``seeds`` (the final runs). Which process trains which unit,
in what order, and how interrupted work resumes is :mod:`bench.work`'s business.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import optuna

from bench import studies
from bench.budget import Budget, budget_json
from bench.errors import UserError
from bench.experiment import Experiment, provenance
from bench.lightning import pl
from bench.model import Diverged
from bench.progress import EpochTicker, Progress
from bench.registry import CellSpec
from bench.sizing import size_and_hparams
from bench.studies import counted  # noqa: F401 - re-exported: where callers look for it
from bench.task import TaskData
from bench.train import train_run

TrialState = optuna.trial.TrialState


def open_study(storage, exp: Experiment, spec: CellSpec, kind: str, data: TaskData) -> optuna.Study:
    """The cell's ``tune`` or ``seeds`` study, created with its attributes on first use."""
    direction = data.spec.direction
    name = exp.stored_name(set(optuna.get_all_study_names(storage)), spec, kind)  # old storages too
    study = optuna.create_study(storage=storage, study_name=name, direction=direction,
                                load_if_exists=True)
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
                     "selection": getattr(data, "selection", "the best validation epoch"),
                     "budget_fingerprint": exp.budget.fingerprint, **provenance()}.items():
            study.set_user_attr(k, v)
    if study.metric_names is None:        # what optuna-dashboard labels the objective with
        with warnings.catch_warnings():   # Optuna marks set_metric_names experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([f"val {data.spec.metric} (best epoch)" if kind == "tune"
                                    else f"test {data.spec.metric} (one seed)"])
    return study


class _Report(pl.Callback):
    """Reports every epoch's validation metric to Optuna (the dashboard's curve, and what a run's
    supervisor shows as progress); in a tuning trial, stops the run if the pruner says so."""

    def __init__(self, trial: optuna.Trial, prune: bool):
        self.trial, self.prune, self.pruned = trial, prune, False

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        value = float(trainer.callback_metrics["val_metric"])
        if math.isfinite(value) or self.prune:
            self.trial.report(value, trainer.current_epoch)
        if self.prune and self.trial.should_prune():
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


def run_unit(study: optuna.Study, trial: optuna.Trial, exp: Experiment, spec: CellSpec,
             data: TaskData, seed: int, device: str, final: bool, progress: Progress) -> bool:
    """Size, train and record one claimed trial: COMPLETE with its metrics, PRUNED, or FAIL with a
    reason. Ctrl-C, a signal or a crash anywhere marks it interrupted (it is run again), so no
    trial is left RUNNING by a live process. False when the trial was taken from this process
    meanwhile (its lease expired and another worker failed it): nothing of it is kept."""
    try:
        _train_and_tell(study, trial, exp, spec, data, seed, device, final, progress)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    except BaseException:
        studies.fail(study, trial.number, "interrupted")    # a no-op if it had been told already
        raise
    return True


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
    report = _Report(trial, prune=not final)
    try:
        res = train_run(data, spec, hp, hidden, exp.budget, opt, seed,
                        [EpochTicker(progress), report], device, read_test=final)
    except Diverged as e:
        if report.pruned:
            study.tell(trial, state=TrialState.PRUNED)
            return
        trial.set_user_attr("fail_reason", f"diverged: {e}")
        study.tell(trial, state=TrialState.FAIL)
        return
    for k, v in res.as_attrs().items():
        if v is not None:
            trial.set_user_attr(k, v)
    if report.pruned:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, res.test if final else res.val)


def default_config(spec: CellSpec, budget: Budget) -> dict[str, Any]:
    """What the seeds train when no tuning trial completed: every searched hyperparameter at its
    registered default, and each tuned learning rate at the geometric middle of its range."""
    out: dict[str, Any] = {k: p.default for k, p in spec.searched(budget.cells).items()}
    out.update({name: float((lo * hi) ** 0.5) for name, (lo, hi) in budget.tuned_lrs.items()})
    return out


def best_config(study: optuna.Study, spec: CellSpec, budget: Budget) -> tuple[dict[str, Any], str]:
    """The best completed tuning trial's parameters and where they came from (ties go to the
    lower trial key, so the choice never depends on which process stored first); the registered
    defaults (``default_config``) when no trial completed, never a random draw."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not done:
        return default_config(spec, budget), "registered defaults (no tuning trial completed)"
    sign = 1 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1
    best = min(done, key=lambda t: (sign * t.value, t.user_attrs.get("seed", t.number), t.number))
    return dict(best.params), f"tuning trial {best.user_attrs.get('seed', best.number) + 1} (val {best.value:.4g})"
