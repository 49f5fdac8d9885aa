"""Reading, claiming and marking stored studies: the one module that touches Optuna's internals.

Optuna has public API to read studies (``get_all_study_summaries``, ``load_study``) but none to
claim a given waiting trial, to set an attribute on a trial that no live ``Trial`` object holds
(marking a stale RUNNING trial interrupted, renewing a lease from another thread), or to fail a
trial by number with a reason; those calls go through the storage here and nowhere else.
"""
from __future__ import annotations

import sys
import traceback
from typing import TYPE_CHECKING

import optuna

from bench.errors import UserError

if TYPE_CHECKING:
    from bench.budget import Budget

TrialState = optuna.trial.TrialState


def summaries(storage: optuna.storages.BaseStorage) -> dict[str, optuna.study.FrozenStudy]:
    """Every study in the storage by name, with its attributes (no trials are read: the storage's
    own listing, 5-20x faster here than ``get_all_study_summaries``, which counts trials)."""
    return {s.study_name: s for s in storage.get_all_studies()}


def trials(storage: optuna.storages.BaseStorage, name: str) -> list[optuna.trial.FrozenTrial]:
    """The trials of one study, without copies."""
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def counted(t: optuna.trial.FrozenTrial) -> bool:
    """A trial that used budget: finished, pruned, or diverged (an interrupted or duplicate one
    did not)."""
    return t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        t.state == TrialState.FAIL and str(t.user_attrs.get("fail_reason", "")).startswith("diverged"))


LEASE = "bench:lease"      # system attribute: {host, pid, time} of the process training the trial


def claim(study: optuna.Study, trial_id: int) -> optuna.Trial | None:
    """Move a WAITING trial to RUNNING for this process, atomically (a row lock in an RDB; the
    journal's ordered log); None if another process claimed or finished it first."""
    try:
        if not study._storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
            return None
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    return optuna.Trial(study, trial_id)


def set_lease(study: optuna.Study, trial_id: int, lease: dict) -> None:
    """Renew the lease of a RUNNING trial (raises once the trial is finished)."""
    study._storage.set_trial_system_attr(trial_id, LEASE, lease)


def release(study: optuna.Study) -> None:
    """Free what a signal cut short inside a storage call, before writing again. The exception
    being handled keeps the interrupted frames, and with them a SQLite cursor whose read lock
    makes the next write (marking the unit interrupted) wait out the 5 s busy timeout and fail,
    leaving the trial RUNNING; and the thread's session may hold a half-done transaction."""
    exc = sys.exc_info()[1]
    if exc is None:             # not handling an exception: nothing was cut short
        return
    tb = exc.__traceback__
    in_storage = any(f.f_globals.get("__name__", "").startswith("sqlalchemy")
                     for f, _ in traceback.walk_tb(tb))
    traceback.clear_frames(tb)
    if in_storage:              # SQLAlchemy's result objects sit in reference cycles
        import gc
        gc.collect()
    backend = getattr(study._storage, "_backend", study._storage)    # under Optuna's cache
    scoped = getattr(backend, "scoped_session", None)                # RDB storages only
    if scoped is not None:
        scoped.remove()


def fail(study: optuna.Study, number: int, reason: str, only_running: bool = False) -> None:
    """Fail a trial with a reason that does not count it (``interrupted``, ``duplicate``); a
    trial another process finished meanwhile is left as it is, and with ``only_running`` so is
    one still WAITING (a claim cut short before it was written)."""
    release(study)
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    if only_running and study._storage.get_trial(trial_id).state != TrialState.RUNNING:
        return
    try:
        study._storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def mark_interrupted(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Fail a RUNNING trial whose process is gone, with the reason ``interrupted``."""
    fail(study, trial.number, "interrupted")


def _differing(storage: optuna.storages.BaseStorage, budget: Budget) -> tuple[str, str | None] | None:
    """(fingerprint, JSON) of the preset stored under ``budget.name`` when its content is not
    ``budget``'s, else None (``run`` refuses to mix the two, so there is at most one)."""
    for s in summaries(storage).values():
        stored = s.user_attrs.get("budget_fingerprint")
        stored_json = s.user_attrs.get("budget_json")
        if (s.user_attrs.get("budget") == budget.name and stored
                and not budget.matches(stored, stored_json)):
            return stored, stored_json
    return None


def stored_budget(storage: optuna.storages.BaseStorage, budget: Budget) -> tuple[Budget, str | None]:
    """The preset the stored runs under ``budget.name`` were made with, and a note when that is
    not the current file's content: a report of those runs must count their epochs, not today's.
    (``run`` refuses such a storage instead: see ``check_budget``.)"""
    from bench.budget import Budget
    differing = _differing(storage, budget)
    if differing is None:
        return budget, None
    stored, stored_json = differing
    if stored_json is None:
        raise UserError(f"budget preset {budget.name!r} (fingerprint {budget.fingerprint}) differs "
                        f"from the one stored under that name (fingerprint {stored}), and the "
                        "storage holds no copy of it; valid: --budget PATH of the preset it ran")
    old = Budget.from_stored(stored_json, stored)
    return old, (f"Preset {budget.name} as stored with these runs (fingerprint {stored}); the "
                 f"current preset file differs (fingerprint {budget.fingerprint}): "
                 f"{old.differences(budget)}.")


def check_budget(storage: optuna.storages.BaseStorage, budget: Budget) -> None:
    """Refuse a preset whose content differs from what the storage holds under the same name."""
    differing = _differing(storage, budget)
    if differing is not None:
        raise UserError(f"budget preset {budget.name!r} (fingerprint {budget.fingerprint}) differs "
                        f"from the one stored under that name (fingerprint {differing[0]}); give the "
                        "changed preset another name, or use another --storage")
