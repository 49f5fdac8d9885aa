"""Gradient flow through time: ||dL/dh_t|| for every step t, recorded at chosen epochs of training.

The vanishing-gradient claim, measured: the gradient of the loss on a fixed validation batch with
respect to each hidden state h_t, through the recurrence (the *total* derivative: h_t reaches the
loss directly and through h_{t+1}, ...). Fast paths such as cuDNN give only the direct part for
their output sequence, so the probe runs the cell's reference ``step()`` loop on the trained
weights, keeping every h_t's gradient. One number per cell and epoch summarises it: the ratio
||dL/dh_1|| / ||dL/dh_T|| (below 1: the signal from the end fades on its way to the start).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from bench.cell import Cell
from bench.lightning import pl


def hidden_grad_norms(cell: Cell, loss_of_hidden: Callable[[Tensor], Tensor], x: Tensor) -> list[float]:
    """Mean over the batch of ||dL/dh_t||_2 for t = 1..T: the step loop keeps every h_t, and
    autograd differentiates the loss with respect to each (through all later steps too);
    ``loss_of_hidden`` maps the (B, T, H) hidden sequence to the scalar loss."""
    state = cell.initial_state(x.shape[0])
    hs = []
    with torch.enable_grad():
        for x_t in x.unbind(1):
            h, state = cell.step(x_t, state)
            hs.append(h)
        grads = torch.autograd.grad(loss_of_hidden(torch.stack(hs, 1)), hs, allow_unused=True)
    return [float(g.norm(dim=-1).mean()) if g is not None else 0.0 for g in grads]


@dataclass
class GradientFlow:
    """What ``diagnose`` records for one cell: norms[epoch] = ||dL/dh_t|| for t = 1..T."""

    cell: str
    epochs: list[int] = field(default_factory=list)
    norms: list[list[float]] = field(default_factory=list)
    val_curve: list[float] = field(default_factory=list)

    def ratios(self) -> list[float]:
        """||dL/dh_1|| / ||dL/dh_T|| per recorded epoch."""
        return [n[0] / n[-1] if n and n[-1] > 0 else math.nan for n in self.norms]


class GradientProbe(pl.Callback):
    """Records ``hidden_grad_norms`` on a fixed batch after the chosen epochs (0: before training)."""

    def __init__(self, batch: tuple[Tensor, Tensor], at: set[int], flow: GradientFlow):
        self.batch, self.at, self.flow = batch, at, flow

    def record(self, module: pl.LightningModule, epoch: int) -> None:
        was_training = module.training
        module.eval()
        x, y = (t.to(module.device) for t in self.batch)
        norms = hidden_grad_norms(module.cell, lambda hs: module.loss_of_hidden(hs, y), x)
        module.train(was_training)
        self.flow.epochs.append(epoch)
        self.flow.norms.append(norms)

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if 0 in self.at:
            self.record(module, 0)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 in self.at:
            self.record(module, trainer.current_epoch + 1)


def diagnose_cell(storage, exp, spec, data, batch: tuple[Tensor, Tensor], at: set[int]
                  ) -> GradientFlow:
    """Retrain ``spec`` from its stored configuration and first final seed (the registered
    defaults when none is stored), probing at the epochs ``at``; store the flow as a study."""
    import optuna

    from bench import studies
    from bench.sizing import size_and_hparams
    from bench.train import train_run
    from bench.tune import default_config, suggest

    b = exp.budget
    names = studies.summaries(storage)
    name = exp.stored_name(names, spec, "seeds")
    done = [t for t in studies.trials(storage, name) if t.state.name == "COMPLETE"] \
        if name in names else []
    params = dict(done[0].params) if done else default_config(spec, b)
    opt, chosen = suggest(optuna.trial.FixedTrial(params), spec, b)
    hidden, hp = size_and_hparams(spec, chosen, data.spec, b, exp.hidden, exp.params)
    flow = GradientFlow(str(spec))
    res = train_run(data, spec, hp, hidden, b, opt, b.seed_list()[0],
                    [GradientProbe(batch, at, flow)], "cpu", read_test=False)
    flow.val_curve = res.curve
    study = optuna.create_study(storage=storage, study_name=exp.stored_name(names, spec, "diagnose"),
                                load_if_exists=True)
    for k, v in {"task": exp.task.id, "budget": exp.budget.name, "size": exp.size,
                 "cell": str(spec), "kind": "diagnose", "config": params, "epochs": flow.epochs,
                 "norms": flow.norms, "ratios": flow.ratios(), "val_curve": flow.val_curve,
                 "config_source": "stored seed run" if done else "registered defaults"}.items():
        study.set_user_attr(k, v)
    return flow
