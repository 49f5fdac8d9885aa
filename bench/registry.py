"""Cells, ablations and tasks by name: register with a decorator, create and list with patterns.

A spec string names what runs:
  ``lstm``                         a registered cell with its defaults
  ``momentum_lstm[mu=0.3,s=0.6]``  fixed hyperparameters (removed from tuning)
  ``momentum_lstm/no_momentum``    a registered ablation (itself a cell with fixed overrides)
"""
from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.errors import UserError, choices

Value = float | int | bool | str | None


@dataclass(frozen=True)
class HParam:
    """A cell hyperparameter: its default, the interval tuning searches, and the valid interval.

    ``valid`` is written like an interval, e.g. ``"[0, 1)"`` or ``"(0, inf)"``. ``search`` is a
    (low, high) pair for numbers, or a tuple of choices; ``None`` means never tuned.
    ``default_from`` names a task property (``"seq_len"``) used when the default is ``None``.
    """

    name: str
    default: Value
    search: tuple | None = None
    log: bool = False
    valid: str | None = None
    kind: type = float
    choices: tuple | None = None
    default_from: str | None = None
    doc: str = ""

    def check(self, value: Value, owner: str) -> Value:
        """Coerce and range-check a value; raise UserError naming it and the valid range."""
        if value is None:
            return None
        try:
            if self.kind is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1")
            elif self.kind is int and isinstance(value, str) and value.lower() in ("inf", "infinity"):
                value = math.inf
            elif self.kind is int and isinstance(value, float) and math.isinf(value):
                pass      # K = infinity (e.g. dtriv: never rebase)
            elif self.kind is int:
                if float(value) != int(float(value)):
                    raise ValueError(value)
                value = int(float(value))
            else:
                value = self.kind(value)
        except (TypeError, ValueError):
            raise UserError(f"{owner}: {self.name}={value!r} is not a {self.kind.__name__}") from None
        if self.choices is not None and value not in self.choices:
            raise UserError(f"{owner}: {self.name}={value!r} is not valid; choices: "
                            f"{', '.join(map(str, self.choices))}")
        if self.valid is not None and not _in_interval(value, self.valid):
            raise UserError(f"{owner}: {self.name}={value} is out of range; valid: {self.valid}")
        return value

    def describe(self) -> str:
        """One-line summary for ``bench list``."""
        space = "fixed" if self.search is None else (
            "{" + ", ".join(map(str, self.search)) + "}" if self.choices
            else f"[{self.search[0]}, {self.search[1]}]" + (" log" if self.log else ""))
        default = f"task {self.default_from}" if self.default is None and self.default_from else self.default
        return f"{self.name}={default} (search {space}; valid {self.valid or 'any'})"


def _in_interval(value: float, interval: str) -> bool:
    m = re.fullmatch(r"\s*([\[(])\s*([^,]+?)\s*,\s*([^\])]+?)\s*([\])])\s*", interval)
    if not m:
        raise ValueError(f"bad interval {interval!r}")
    lo, hi = float(m.group(2)), float(m.group(3))
    ok_lo = value >= lo if m.group(1) == "[" else value > lo
    ok_hi = value <= hi if m.group(4) == "]" else value < hi
    return ok_lo and ok_hi


@dataclass
class CellEntry:
    """A registered cell or ablation."""

    name: str
    cls: type
    hparams: dict[str, HParam]
    family: str
    doc: str
    base: str | None = None               # for an ablation: the cell it ablates
    fixed: dict[str, Value] = field(default_factory=dict)

    @property
    def is_ablation(self) -> bool:
        return self.base is not None

    def tunable(self) -> dict[str, HParam]:
        """Hyperparameters tuning searches (those with a search space and not fixed)."""
        return {k: p for k, p in self.hparams.items() if p.search is not None and k not in self.fixed}


_CELLS: dict[str, CellEntry] = {}
_TASKS: dict[str, Any] = {}
_LOADED = False


def register_cell(name: str, hparams: tuple[HParam, ...] | list[HParam] = (), family: str = ""):
    """Class decorator: add a Cell subclass to the registry under ``name``."""

    def deco(cls):
        if name in _CELLS:
            raise ValueError(f"cell {name!r} registered twice")
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        _CELLS[name] = CellEntry(name, cls, {p.name: p for p in hparams},
                                 family or cls.__module__.rsplit(".", 1)[-1], doc)
        cls.registered_name = name
        return cls

    return deco


def register_ablation(base: str, name: str, fixed: dict[str, Value] | None = None,
                      cls: type | None = None, doc: str = "") -> None:
    """Register ``base/name``: the base cell with some hyperparameters fixed, or another class."""
    entry = _CELLS[base]
    full = f"{base}/{name}"
    hp = dict(entry.hparams)
    for k, v in (fixed or {}).items():
        hp[k].check(v, full)
    _CELLS[full] = CellEntry(full, cls or entry.cls, hp, entry.family, doc, base=base,
                             fixed=dict(fixed or {}))


def _load_builtin() -> None:
    """Import the modules whose decorators fill the registry (once)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import baselines  # noqa: F401
    import bench.momentum  # noqa: F401
    import tasks  # noqa: F401


def cell_entry(name: str) -> CellEntry:
    _load_builtin()
    if name not in _CELLS:
        kind = "ablation" if "/" in name else "cell"
        valid = [n for n in _CELLS if ("/" in n) == ("/" in name)]
        raise UserError(f"unknown {kind} {name!r}; valid: {choices(valid)}")
    return _CELLS[name]


def list_cells(pattern: str = "*", ablations: bool = False) -> list[str]:
    """Registered cell names matching a glob pattern (base cells only unless ``ablations``)."""
    _load_builtin()
    return sorted(n for n, e in _CELLS.items()
                  if fnmatch.fnmatch(n, pattern) and (ablations or not e.is_ablation))


def list_ablations(base: str | None = None) -> list[str]:
    _load_builtin()
    return sorted(n for n, e in _CELLS.items() if e.is_ablation and (base is None or e.base == base))


@dataclass(frozen=True)
class CellSpec:
    """A parsed spec string: the registry entry plus user-fixed hyperparameters."""

    name: str
    fixed: tuple[tuple[str, Value], ...] = ()

    @property
    def entry(self) -> CellEntry:
        return cell_entry(self.name)

    def fixed_hparams(self) -> dict[str, Value]:
        """Every fixed value: the ablation's, then the user's."""
        return {**self.entry.fixed, **dict(self.fixed)}

    def tunable(self) -> dict[str, HParam]:
        user = dict(self.fixed)
        return {k: p for k, p in self.entry.tunable().items() if k not in user}

    def __str__(self) -> str:
        if not self.fixed:
            return self.name
        return self.name + "[" + ",".join(f"{k}={v}" for k, v in self.fixed) + "]"


_SPEC_RE = re.compile(r"^([A-Za-z_][\w]*(?:/[A-Za-z_][\w]*)?)(?:\[(.*)\])?$")


def parse_spec(spec: str) -> CellSpec:
    """Parse ``name``, ``name/ablation`` or ``name[k=v,...]`` into a checked CellSpec."""
    m = _SPEC_RE.match(spec.strip())
    if not m:
        raise UserError(f"malformed cell spec {spec!r}; expected name, name/ablation or name[k=v,...]")
    entry = cell_entry(m.group(1))
    fixed: dict[str, Value] = {}
    for item in filter(None, (m.group(2) or "").split(",")):
        if "=" not in item:
            raise UserError(f"malformed hyperparameter {item!r} in {spec!r}; expected k=v")
        k, v = (s.strip() for s in item.split("=", 1))
        if k not in entry.hparams:
            raise UserError(f"{entry.name}: unknown hyperparameter {k!r}; valid: {choices(entry.hparams)}")
        fixed[k] = entry.hparams[k].check(v, entry.name)
    return CellSpec(entry.name, tuple(sorted(fixed.items())))


def parse_cells(text: str, ablations: bool = False) -> list[CellSpec]:
    """Parse a comma list of specs (``all`` = every base cell), respecting brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    specs: list[CellSpec] = []
    for p in (p.strip() for p in parts):
        if not p:
            continue
        if p == "all":
            specs += [CellSpec(n) for n in list_cells()]
        elif any(c in p for c in "*?") and "[" not in p:
            names = list_cells(p, ablations=True)
            if not names:
                raise UserError(f"pattern {p!r} matches no cell; valid: {choices(list_cells())}")
            specs += [CellSpec(n) for n in names]
        else:
            specs.append(parse_spec(p))
    if ablations:
        specs += [CellSpec(a) for s in list(specs) for a in list_ablations(s.name)]
    seen, out = set(), []
    for s in specs:
        if str(s) not in seen:
            seen.add(str(s))
            out.append(s)
    if not out:
        raise UserError("no cells selected; valid: all, " + choices(list_cells()))
    return out


def resolve_hparams(spec: CellSpec, chosen: dict[str, Value] | None = None,
                    context: dict[str, Any] | None = None) -> dict[str, Value]:
    """Every hyperparameter of the cell: default, then tuned choice, then fixed; checked."""
    entry = spec.entry
    out: dict[str, Value] = {}
    for k, p in entry.hparams.items():
        v = p.default
        if v is None and p.default_from and context and p.default_from in context:
            v = context[p.default_from]
        out[k] = v
    out.update(chosen or {})
    out.update(spec.fixed_hparams())
    return {k: entry.hparams[k].check(v, entry.name) for k, v in out.items()}


def create_cell(spec: str | CellSpec, input_size: int, hidden_size: int,
                context: dict[str, Any] | None = None, **hparams: Value):
    """Build a cell from a spec string; keyword hyperparameters override defaults."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if hidden_size is None or int(hidden_size) <= 0:
        raise UserError(f"hidden size {hidden_size} is out of range; valid: a positive integer")
    entry = spec.entry
    for k in hparams:
        if k not in entry.hparams:
            raise UserError(f"{entry.name}: unknown hyperparameter {k!r}; valid: {choices(entry.hparams)}")
    hp = resolve_hparams(spec, hparams, context)   # the spec's fixed values win over keywords
    cell = entry.cls(int(input_size), int(hidden_size), **hp)
    cell.spec = str(spec)
    cell.hparams = hp
    return cell


# ---- tasks --------------------------------------------------------------------------------

@dataclass
class TaskEntry:
    """A registered task: a factory ``f(**options) -> TaskData`` and its checked options."""

    name: str
    factory: Callable
    options: dict[str, HParam]
    doc: str
    #: options that locate data rather than define the experiment (kept out of the task id)
    local: tuple[str, ...] = ()


def register_task(name: str, options: tuple[HParam, ...] | list[HParam] = (),
                  local: tuple[str, ...] = ()) -> Callable:
    """Decorator for a task factory ``f(**options) -> TaskData``."""

    def deco(factory):
        doc = (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else ""
        _TASKS[name] = TaskEntry(name, factory, {o.name: o for o in options}, doc, tuple(local))
        return factory

    return deco


def task_entry(name: str) -> TaskEntry:
    _load_builtin()
    if name not in _TASKS:
        raise UserError(f"unknown task {name!r}; valid: {choices(_TASKS)}")
    return _TASKS[name]


def list_tasks() -> list[str]:
    _load_builtin()
    return sorted(_TASKS)
