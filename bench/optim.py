"""The optimizer a budget preset describes, with per-group settings for cells that ask for them.

A budget's ``optimizer`` table names one optimizer (``adam``, ``rmsprop`` or ``sgd``) and its
learning rate. A cell may set some parameters apart (``Cell.param_groups()``, e.g. dtriv's
skew-symmetric generator, group ``orthogonal``); for such a group the table says either

- ``<group>_lr_factor = f``: the same optimizer at lr x f (default 0.1, expRNN's rule of thumb), or
- ``<group> = { name = "rmsprop", lr = 2e-4, ... }``: an optimizer of its own, as dtriv's and
  MomentumRNN's scripts trained the orthogonal part (RMSprop at ``lr_orth``) beside Adam or RMSprop
  for the rest. Both optimizers then step together as one (``JointOptimizer``), so Lightning's
  automatic optimization and gradient clipping (over every parameter, as those scripts clipped)
  work unchanged.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from bench.errors import UserError, choices

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda groups, o: torch.optim.Adam(groups, lr=o["lr"]),
    "rmsprop": lambda groups, o: torch.optim.RMSprop(groups, lr=o["lr"], alpha=o.get("alpha", 0.99)),
    "sgd": lambda groups, o: torch.optim.SGD(groups, lr=o["lr"], momentum=o.get("momentum", 0.0)),
}
#: keys an optimizer table may hold besides group tables and ``<group>_lr_factor``
KEYS = ("name", "lr", "alpha", "momentum")
DEFAULT_LR = 1e-3      # a preset that names no lr trains with this


class JointOptimizer(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters, stepped as one.

    ``param_groups`` are the parts' own group dicts, so anything that reads or sets them (gradient
    clipping, learning-rate logging or schedules) reaches the real optimizers.
    """

    def __init__(self, parts: list[torch.optim.Optimizer]):
        super().__init__([p for o in parts for g in o.param_groups for p in g["params"]], {})
        self.parts = parts
        self.param_groups = [g for o in parts for g in o.param_groups]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:      # Lightning's closure runs forward and backward: once
            with torch.enable_grad():
                loss = closure()
        for o in self.parts:
            o.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.parts:
            o.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"parts": [o.state_dict() for o in self.parts]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for o, s in zip(self.parts, state_dict["parts"], strict=True):
            o.load_state_dict(s)


def build_optimizer(opt: dict[str, Any], params: Iterable[nn.Parameter],
                    special: dict[str, list[nn.Parameter]]) -> torch.optim.Optimizer:
    """The optimizer for ``params``, of which the cell's ``special`` groups get their own settings."""
    taken = {id(p) for ps in special.values() for p in ps}
    main = [{"params": [p for p in params if p.requires_grad and id(p) not in taken]}]
    own: list[torch.optim.Optimizer] = []
    for group, ps in special.items():
        sub = opt.get(group)
        if isinstance(sub, dict):
            sub = {"name": opt["name"], **sub}
            own.append(OPTIMIZERS[sub["name"]]([{"params": ps}], sub))
        else:
            main.append({"params": ps, "lr": opt["lr"] * opt.get(f"{group}_lr_factor", 0.1)})
    first = OPTIMIZERS[opt["name"]](main, opt)
    return JointOptimizer([first, *own]) if own else first


def check_optimizer(opt: Any, where: str) -> None:
    """Raise a UserError naming the bad entry of a budget's optimizer table."""
    if not isinstance(opt, dict):
        raise UserError(f"{where}: optimizer must be a table, e.g. {{ name = \"adam\", lr = 1e-3 }}")
    _check_one(opt, where, top=True)
    for key, value in opt.items():
        if isinstance(value, dict):
            _check_one({"name": opt["name"], **value}, f"{where}: optimizer.{key}", top=False)


def _check_one(opt: dict[str, Any], where: str, top: bool) -> None:
    if opt.get("name") not in OPTIMIZERS:
        raise UserError(f"{where}: optimizer {opt.get('name')!r}; valid: {choices(OPTIMIZERS)}")
    lr = opt.get("lr", DEFAULT_LR if top else None)
    ok = (isinstance(lr, (int, float)) and lr > 0) or (
        isinstance(lr, list) and len(lr) == 2 and all(isinstance(v, (int, float)) for v in lr)
        and 0 < lr[0] < lr[1])
    if not ok:
        raise UserError(f"{where}: lr={lr!r}; valid: a positive number or a range [low, high]")
    for key, value in opt.items():
        if key in KEYS or (top and (key.endswith("_lr_factor") or isinstance(value, dict))):
            continue
        raise UserError(f"{where}: unknown optimizer key {key!r}; valid: {choices(KEYS)}"
                        + (", <group>_lr_factor or a <group> table" if top else ""))
