"""Reading and marking stored studies: the one module that touches Optuna's internals.

Optuna has public API to read studies (``get_all_study_summaries``, ``load_study``) but none to set
a user attribute on a trial that no live ``Trial`` object holds, which marking a stale RUNNING
trial (left by a killed process) as interrupted needs; that one call is wrapped here.
"""
from __future__ import annotations

import optuna

TrialState = optuna.trial.TrialState


def summaries(storage: optuna.storages.BaseStorage) -> dict[str, optuna.study.StudySummary]:
    """Every study in the storage by name (attributes only; no trials are read)."""
    return {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}


def trials(storage: optuna.storages.BaseStorage, name: str) -> list[optuna.trial.FrozenTrial]:
    """The trials of one study, without copies."""
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def mark_interrupted(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Fail a RUNNING trial whose process is gone, with the reason ``interrupted``."""
    study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", "interrupted")  # no public API
    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
