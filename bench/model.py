"""The LightningModule every run trains: a cell, a linear readout, the task's loss and metric."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor, nn

from bench.cell import Cell
from bench.graphs import run_cell
from bench.lightning import pl
from bench.optim import build_optimizer
from bench.task import TaskSpec


class Diverged(RuntimeError):
    """The training loss became NaN or infinite; the run is recorded as failed with this reason."""


def make_metric(spec: TaskSpec) -> torchmetrics.Metric:
    """Accuracy for classification at the last step; otherwise the mean loss over valid elements."""
    if spec.metric == "accuracy":
        return torchmetrics.classification.MulticlassAccuracy(spec.output_size, average="micro")
    return torchmetrics.MeanMetric()


class SeqModel(pl.LightningModule):
    """Cell + readout, trained with one optimizer as the budget preset says."""

    def __init__(self, cell: Cell, spec: TaskSpec, optimizer: dict[str, Any]):
        super().__init__()
        self.cell, self.spec, self.opt = cell, spec, dict(optimizer)
        self.readout = nn.Linear(cell.hidden_size, spec.output_size)
        self.val_metric, self.test_metric = make_metric(spec), make_metric(spec)

    def forward(self, x: Tensor) -> Tensor:
        y = run_cell(self.cell, x)
        return self.readout(y[:, -1] if self.spec.readout == "last" else y)

    def loss_terms(self, out: Tensor, y: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """Sum of the per-element loss and the number of elements it covers (masked steps excluded)."""
        if self.spec.loss == "ce":
            per = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1).long(),
                                  reduction="none").view(y.shape)
        else:
            per = (out - y.to(out.dtype)) ** 2
        if mask is not None:
            m = mask.to(per.dtype).view(*mask.shape, *([1] * (per.dim() - mask.dim())))
            return (per * m).sum(), m.sum() * (per[0, 0].numel() if per.dim() > 2 else 1)
        return per.sum(), torch.tensor(per.numel(), dtype=per.dtype, device=per.device)

    def loss_of_hidden(self, hidden: Tensor, y: Tensor) -> Tensor:
        """The mean loss from a (B, T, H) hidden sequence (no mask): for gradient probes."""
        out = self.readout(hidden[:, -1] if self.spec.readout == "last" else hidden)
        total, count = self.loss_terms(out, y, None)
        return total / count

    def _split(self, batch):
        x, y, *rest = batch
        return x, y, (rest[0] if rest else None)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        x, y, mask = self._split(batch)
        total, count = self.loss_terms(self(x), y, mask)
        loss = total / count
        if not torch.isfinite(loss):
            raise Diverged(f"training loss {loss.item()} at step {self.global_step}")
        self.log("train_loss", loss, prog_bar=False, batch_size=x.shape[0])
        return loss

    def _evaluate(self, batch, metric: torchmetrics.Metric) -> None:
        x, y, mask = self._split(batch)
        out = self(x)
        if self.spec.metric == "accuracy":
            metric.update(out.argmax(-1), y)
        else:
            total, count = self.loss_terms(out, y, mask)
            metric.update(total / count, weight=count)

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        # a final seed run also evaluates the test split every epoch (loader 1): the anytime curve
        self._evaluate(batch, self.test_metric if dataloader_idx else self.val_metric)

    def on_validation_epoch_end(self) -> None:
        self.log("val_metric", self.val_metric.compute())
        self.val_metric.reset()
        if self.test_metric.update_count:
            self.log("test_metric_epoch", self.test_metric.compute())
            self.test_metric.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metric)

    def on_test_epoch_end(self) -> None:
        self.log("test_metric", self.test_metric.compute())
        self.test_metric.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.opt, self.parameters(), self.cell.param_groups())

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.cell.after_optimizer_step()
