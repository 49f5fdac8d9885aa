"""Budget presets and the optimizers they describe: per-group optimizers (dtriv's lr_orth) step
exactly as two separate torch optimizers would, through Lightning too; every preset loads and its
per-cell settings are valid hyperparameters of registered cells."""
from __future__ import annotations

import copy
import math

import optuna
import pytest
import torch

from bench.budget import list_budgets, load_budget
from bench.errors import UserError
from bench.optim import JointOptimizer, build_optimizer
from bench.registry import create_cell, parse_spec
from bench.task import parse_task
from bench.train import train_run

ORTH = {"name": "adam", "lr": 1e-3, "orthogonal": {"name": "rmsprop", "lr": 2e-4}}


def dtriv_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cell = create_cell("dtriv", 1, 6)
    return torch.nn.ModuleDict({"cell": cell, "readout": torch.nn.Linear(6, 1)})


def loss_of(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    y, _ = model["cell"](x)
    return model["readout"](y[:, -1]).pow(2).sum()


def test_group_optimizer_steps_like_two_torch_optimizers():
    model = dtriv_model()
    twin = copy.deepcopy(model)
    opt = build_optimizer(ORTH, model.parameters(), model["cell"].param_groups())
    assert isinstance(opt, JointOptimizer)
    A = twin["cell"].orthogonal.A
    rest = [p for p in twin.parameters() if p is not A]
    ref = [torch.optim.Adam(rest, lr=1e-3), torch.optim.RMSprop([A], lr=2e-4)]
    x = torch.randn(4, 5, 1)
    for _ in range(3):
        opt.zero_grad()
        loss_of(model, x).backward()
        opt.step()
        for o in ref:
            o.zero_grad()
        loss_of(twin, x).backward()
        for o in ref:
            o.step()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    assert not torch.equal(model["cell"].orthogonal.A, dtriv_model()["cell"].orthogonal.A)
    # the parts' own group dicts are visible (clipping and lr logging reach them)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 2e-4]


def test_group_lr_factor_keeps_one_optimizer():
    model = dtriv_model()
    opt = build_optimizer({"name": "rmsprop", "lr": 1e-3, "orthogonal_lr_factor": 0.25},
                          model.parameters(), model["cell"].param_groups())
    assert isinstance(opt, torch.optim.RMSprop)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 2.5e-4]
    assert opt.param_groups[1]["params"] == [model["cell"].orthogonal.A]


def test_lightning_run_with_group_optimizer_and_clipping(tmp_path):
    preset = tmp_path / "orth.toml"
    preset.write_text(
        'trials = 1\nseeds = 1\nepochs = 2\nbatch_size = 16\nhidden = 6\ngrad_clip = 0.5\n'
        'optimizer = { name = "adam", lr = 1e-2, orthogonal = { name = "rmsprop", lr = [1e-4, 1e-3] } }\n'
        '[cells.dtriv]\nK = 1\n')
    budget = load_budget(str(preset))
    trial = optuna.trial.FixedTrial({"lr_orthogonal": 5e-4})
    opt = budget.suggest_optimizer(trial)
    assert opt == {"name": "adam", "lr": 1e-2, "orthogonal": {"name": "rmsprop", "lr": 5e-4}}
    assert budget.tuned_lrs == {"lr_orthogonal": (1e-4, 1e-3)}     # the top-level lr is fixed
    data = parse_task("adding:T=10,n_train=64,n_val=32,n_test=32").build()
    data.setup("fit")
    result = train_run(data, parse_spec("dtriv"), {"K": 1, "init": "cayley"}, 6, budget, opt, seed=0)
    assert len(result.curve) == 2 and math.isfinite(result.test)


def test_every_preset_loads_and_names_valid_cell_settings():
    names = list_budgets()
    assert {"paper-pmnist-dtriv-n170", "paper-pmnist-dtriv-n360", "paper-pmnist-dtriv-n512",
            "paper-timit-dtriv", "paper-pmnist-lmu", "paper-pmnist-nru"} <= set(names)
    for name in names:
        b = load_budget(name)
        for cell, values in b.cells.items():
            parse_spec(cell).resolve(b.cells, context={"seq_len": 784})
    n512 = load_budget("paper-pmnist-dtriv-n512")
    assert (n512.hidden, n512.optimizer["lr"], n512.optimizer["orthogonal"]["lr"]) == (512, 3e-4, 7e-5)
    assert n512.suggest_optimizer(optuna.trial.FixedTrial({})) == {
        "name": "rmsprop", "lr": 3e-4, "orthogonal": {"name": "rmsprop", "lr": 7e-5}}


@pytest.mark.parametrize("optimizer, fragment", [
    ('{ name = "adamw", lr = 1e-3 }', "optimizer 'adamw'; valid: adam, rmsprop, sgd"),
    ('{ name = "adam", lr = -1 }', "lr=-1; valid"),
    ('{ name = "adam", lr = 1e-3, orthogonal = { name = "lbfgs", lr = 1e-4 } }',
     "optimizer.orthogonal: optimizer 'lbfgs'"),
    ('{ name = "adam", lr = 1e-3, orthogonal = { name = "rmsprop" } }', "optimizer.orthogonal: lr=None"),
    ('{ name = "adam", lr = 1e-3, betas = 0.9 }', "unknown optimizer key 'betas'"),
])
def test_bad_optimizer_tables(tmp_path, optimizer, fragment):
    preset = tmp_path / "bad.toml"
    preset.write_text(f"trials = 1\nseeds = 1\nepochs = 1\nbatch_size = 8\nhidden = 4\n"
                      f"optimizer = {optimizer}\n")
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        load_budget(str(preset))


def test_missing_keys_are_named(tmp_path):
    preset = tmp_path / "short.toml"
    preset.write_text("trials = 1\nseeds = 1\nhidden = 4\n")
    with pytest.raises(UserError, match="missing key\\(s\\) epochs, batch_size, optimizer"):
        load_budget(str(preset))
