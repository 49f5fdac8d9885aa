"""What makes results comparable (task with options, budget preset, model size), the names of its
studies in the storage, and the provenance stored with every run."""
from __future__ import annotations

import functools
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytorch_lightning as pl

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

    def study_name(self, spec: CellSpec | str, kind: str) -> str:
        return f"{self.task.id} | {spec} | {self.budget.name} | {self.size} | {kind}"

    def prefix(self) -> tuple[str, str]:
        """Study names of this experiment start and end with these."""
        return f"{self.task.id} | ", f" | {self.budget.name} | {self.size} | seeds"


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
            "pytorch_lightning": pl.__version__, "optuna": optuna.__version__}
