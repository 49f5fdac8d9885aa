"""One run: (task, cell spec, hyperparameters, seed, budget) -> metrics at the best-validation epoch."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bench.budget import Budget
from bench.lightning import pl
from bench.model import Diverged, SeqModel
from bench.registry import CellSpec, create_cell
from bench.sizing import model_parameters
from bench.task import TaskData, TaskSpec


@dataclass
class RunResult:
    """What one finished run stores."""

    val: float                      # best validation metric
    test: float | None              # test metric at the best-validation epoch (None: not read)
    best_epoch: int
    epochs: int
    params: int                     # degrees of freedom of cell + readout
    flops_per_step: int             # of the cell (Cell.flops_per_step)
    curve: list[float] = field(default_factory=list)   # validation metric per epoch
    test_curve: list[float] = field(default_factory=list)   # test metric per epoch (final runs)
    wall_s: float = 0.0

    def as_attrs(self) -> dict[str, Any]:
        return asdict(self)


class BestState(pl.Callback):
    """Keeps a copy of the weights at the best validation metric (no checkpoint files)."""

    def __init__(self, spec: TaskSpec):
        self.spec, self.best, self.epoch, self.state = spec, None, -1, None
        self.curve: list[float] = []          # validation metric per epoch
        self.test_curve: list[float] = []     # test metric per epoch (final seed runs only)

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        value = float(trainer.callback_metrics["val_metric"])
        self.curve.append(value)
        if "test_metric_epoch" in trainer.callback_metrics:
            self.test_curve.append(float(trainer.callback_metrics["test_metric_epoch"]))
        if not math.isfinite(value):
            return
        if self.best is None or self.spec.better(value, self.best):
            self.best, self.epoch = value, trainer.current_epoch
            self.state = copy.deepcopy(module.state_dict())


def make_trainer(device: str, epochs: int, grad_clip: float | None,
                 callbacks: list[pl.Callback], **limits: Any) -> pl.Trainer:
    """The Lightning trainer of every run (and of ``bench speed --task``): no logger, checkpoint
    files or progress bar; deterministic on the CPU. ``device``: cpu, cuda (or gpu) or auto."""
    return pl.Trainer(
        max_epochs=epochs, accelerator={"cuda": "gpu"}.get(device, device), devices=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, gradient_clip_val=grad_clip,
        deterministic=device == "cpu", callbacks=callbacks, **limits)


class DataModule(pl.LightningDataModule):
    """Lightning's view of a task's data: it trains, validates and tests on ``data`` (tasks
    themselves do not import Lightning)."""

    def __init__(self, data: TaskData):
        super().__init__()
        self.data = data

    def setup(self, stage: str | None = None) -> None:
        self.data.setup(stage)

    def train_dataloader(self):
        return self.data.train_dataloader()

    def val_dataloader(self):
        return self.data.val_dataloader()

    def test_dataloader(self):
        return self.data.test_dataloader()


def train_run(data: TaskData, spec: CellSpec, hparams: dict, hidden: int, budget: Budget,
              optimizer: dict[str, Any], seed: int, callbacks: list[pl.Callback] = (),
              device: str = "cpu", read_test: bool = True) -> RunResult:
    """Train one model from ``seed``; the test metric is read with the best-validation weights,
    and only when ``read_test`` (tuning never reads it). A callback may stop training early."""
    start = time.perf_counter()
    pl.seed_everything(seed, workers=True, verbose=False)   # before the cell: init is seeded too
    cell = create_cell(spec, data.spec.input_size, hidden, **hparams)
    model = SeqModel(cell, data.spec, optimizer)
    data.configure(budget.batch_size, seed, test_each_epoch=read_test)
    best = BestState(data.spec)
    trainer = make_trainer(device, budget.epochs, budget.grad_clip, [best, *callbacks])
    trainer.fit(model, datamodule=DataModule(data))
    if best.state is None:
        raise Diverged("no finite validation metric")
    test = None
    if read_test:
        model.load_state_dict(best.state)
        test = float(trainer.test(model, datamodule=DataModule(data), verbose=False)[0]["test_metric"])
    return RunResult(val=best.best, test=test, best_epoch=best.epoch, epochs=trainer.current_epoch,
                     params=model_parameters(cell, data.spec),
                     flops_per_step=cell.flops_per_step(), curve=best.curve,
                     test_curve=best.test_curve, wall_s=time.perf_counter() - start)
