"""What makes results comparable (task with options, budget preset, model size), the names of its
studies in the storage, and the provenance stored with every run."""
from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from collections.abc import Container
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import optuna

from bench.budget import Budget
from bench.registry import CellSpec
from bench.task import TaskConfig


@dataclass(frozen=True)
class Experiment:
    """What makes results comparable: task (with options), budget preset and model size."""

    task: TaskConfig
    budget: Budget
    hidden: int | None = None
    params: int | None = None

    @property
    def size(self) -> str:
        return f"hidden={self.hidden}" if self.hidden is not None else f"params={self.params}"

    @property
    def short_size(self) -> str:
        """The size as a name shows it: ``20K params``, ``hidden 16``."""
        if self.hidden is not None:
            return f"hidden {self.hidden}"
        n = self.params or 0
        return f"{n // 1000}K params" if n % 1000 == 0 else f"{n / 1000:.4g}K params"

    @property
    def short_task(self) -> str:
        """The task as a name shows it: its leading option (``adding T=50``, ``copy L=100``) and
        any other defining option off its registered default; data sizes, data seeds and the
        options that locate files are left to the hash and the ``task`` user attribute."""
        from bench.registry import task_entry
        entry = task_entry(self.task.name)
        values = dict(self.task.options)
        defining = [k for k in entry.options if k not in entry.local and k not in _DATA_OPTIONS]
        shown = [k for i, k in enumerate(defining) if k in values and (
            (i == 0 and next(iter(entry.options)) == k) or values[k] != entry.options[k].default)]
        return " ".join([self.task.name, *(f"{k}={values[k]}" for k in shown)])

    @property
    def key(self) -> str:
        """Six hex digits of a hash of the full identity (task id with every option, budget
        preset, size): what keeps two experiments with the same short name apart."""
        ident = f"{self.task.id}|{self.budget.name}|{self.size}"
        return hashlib.sha256(ident.encode()).hexdigest()[:6]

    def study_name(self, spec: CellSpec | str, kind: str) -> str:
        """The name a new study gets: cell and kind first, then the experiment, short
        (``momentum_lstm · seeds · adding T=50 · default · 20K params · 3f9a1c``)."""
        return f"{spec} · {kind} · {self.short_task} · {self.budget.name} · {self.short_size} · " \
               f"{self.key}"

    def index_name(self) -> str:
        """The experiment's index study: no trials, a note with the table and its studies."""
        return self.study_name(INDEX_CELL, INDEX_KIND)

    def legacy_name(self, spec: CellSpec | str, kind: str) -> str:
        """The name studies got before the short names (task id first); read, never written."""
        return f"{self.task.id} | {spec} | {self.budget.name} | {self.size} | {kind}"

    def stored_name(self, names: Container[str], spec: CellSpec | str, kind: str) -> str:
        """The legacy name where a study of that name is in ``names`` (the storage's study
        names), else the new name: an old storage keeps its studies, none is renamed."""
        legacy = self.legacy_name(spec, kind)
        return legacy if legacy in names else self.study_name(spec, kind)

    def identifies(self, attrs: dict, kind: str) -> bool | None:
        """Whether a study's user attributes say it is this experiment's ``kind`` study (None:
        attributes missing, so only its name can tell)."""
        want = {"task": self.task.id, "budget": self.budget.name, "size": self.size, "kind": kind}
        if not all(k in attrs for k in want):
            return None
        return all(attrs[k] == v for k, v in want.items())

    def cell_of(self, name: str, kind: str) -> str | None:
        """The cell of this experiment's ``kind`` study named ``name`` (either form), else None."""
        head, tail = f"{self.task.id} | ", f" | {self.budget.name} | {self.size} | {kind}"
        if name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail):
            return name[len(head):-len(tail)]
        tail = f" · {kind} · {self.short_task} · {self.budget.name} · {self.short_size} · {self.key}"
        if name.endswith(tail) and len(name) > len(tail):
            return name[:-len(tail)]
        return None


#: task options that size or seed the data (in the hash, not in the short name)
_DATA_OPTIONS = frozenset({"data_seed", "n_train", "n_val", "n_test", "val_fraction", "fresh"})
#: the index study's cell and kind slots
INDEX_CELL, INDEX_KIND = "all cells", "index"


@functools.cache
def provenance() -> dict[str, str]:
    """Package versions and the git commit of this checkout, stored with every run."""
    import torch
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        commit += "+dirty" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"git_commit": commit, "python": platform.python_version(), "torch": torch.__version__,
            "pytorch_lightning": metadata.version("pytorch-lightning"), "optuna": optuna.__version__}
