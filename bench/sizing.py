"""How big a model is: its parameter count, and the hidden size that meets a parameter budget.

Torch only (no Lightning): ``run`` checks every cell's size before it writes anything.
"""
from __future__ import annotations

from bench.budget import Budget
from bench.cell import Cell
from bench.errors import UserError
from bench.registry import CellSpec, create_cell
from bench.task import TaskSpec


def model_parameters(cell: Cell, spec: TaskSpec) -> int:
    """Degrees of freedom of cell plus readout (what published sizes count)."""
    return cell.num_parameters() + cell.hidden_size * spec.output_size + spec.output_size


def size_for(spec: CellSpec, hparams: dict, task: TaskSpec, params: int, tol: float = 0.02) -> int:
    """The hidden size whose model (cell + readout) has the parameter count closest to ``params``."""
    def count(h: int) -> int:
        return model_parameters(create_cell(spec, task.input_size, h, **hparams), task)

    lo, hi = 1, 1
    while count(hi) < params:
        lo, hi = hi, hi * 2
        if hi > 1 << 16:
            raise UserError(f"{spec}: no hidden size reaches {params} parameters")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < params else (lo, mid)
    best = min((lo, hi), key=lambda h: abs(count(h) - params))
    got = count(best)
    if abs(got - params) > tol * params:
        raise UserError(f"{spec}: cannot match {params} parameters within {tol:.0%} "
                        f"(closest: hidden {best} with {got}); choose another parameter budget")
    return best


def size_and_hparams(spec: CellSpec, tuned: dict, task: TaskSpec, budget: Budget,
                     hidden: int | None, params: int | None) -> tuple[int, dict]:
    """The cell's hidden size (pinned, or sized to the parameter budget) and every hyperparameter."""
    hp = spec.resolve(budget.cells, tuned, {"seq_len": task.seq_len})
    return (hidden if hidden is not None else size_for(spec, hp, task, params)), hp
