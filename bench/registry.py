"""Cells, ablations and tasks by name: register with a decorator, create and list with patterns.

A spec string names what runs:
  ``lstm``                         a registered cell with its defaults
  ``momentum_lstm[mu=0.3,s=0.6]``  fixed hyperparameters (removed from tuning)
  ``momentum_lstm/no_momentum``    a registered ablation (itself a cell with fixed overrides)
  ``family:momentum``              every base cell of a family (its package: momentum, baselines)

This module imports no cell or task: ``bench.discovery`` imports the packages whose decorators
fill it (the CLI and ``bench.create_cell`` trigger that), so imports flow one way.
"""
from __future__ import annotations

import fnmatch
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.errors import UserError, choices

Value = float | int | bool | str | None


@dataclass(frozen=True)
class Option:
    """A named, typed, range-checked value: a task option, or the base of a cell hyperparameter.

    ``valid`` is written like an interval, e.g. ``"[0, 1)"`` or ``"(0, inf)"``; ``choices`` lists
    the allowed values of a categorical one.
    """

    name: str
    default: Value
    kind: type = float
    valid: str | None = None
    choices: tuple | None = None
    doc: str = ""

    def check(self, value: Value, owner: str) -> Value:
        """Coerce and range-check a value; raise UserError naming it and the valid range."""
        if value is None:
            return None
        value = self._coerce(value, owner)
        if self.choices is not None and value not in self.choices:
            raise UserError(f"{owner}: {self.name}={value!r} is not valid; choices: "
                            f"{', '.join(map(str, self.choices))}")
        if self.valid is not None and not _in_interval(value, self.valid):
            raise UserError(f"{owner}: {self.name}={value} is out of range; valid: {self.valid}")
        return value

    def _coerce(self, value: Value, owner: str) -> Value:
        article = "an" if self.kind is int else "a"
        bad = UserError(f"{owner}: {self.name}={value!r} is not {article} {self.kind.__name__}"
                        + (f"; valid: {self.valid}" if self.valid else ""))
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
                return value.lower() in ("true", "1")
            raise bad                       # TOML `true` for an int, or 2 for a bool, is an error
        if isinstance(value, bool):
            raise bad
        if self.kind is int:
            if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
                return math.inf             # K = infinity (e.g. dtriv: never rebase)
            if isinstance(value, float) and math.isinf(value) and value > 0:
                return value
            try:
                number = float(value)
                if not math.isfinite(number) or number != int(number):
                    raise bad
                return int(number)
            except (TypeError, ValueError, OverflowError):
                raise bad from None
        try:
            return self.kind(value)
        except (TypeError, ValueError, OverflowError):
            raise bad from None


@dataclass(frozen=True)
class HParam(Option):
    """A cell hyperparameter: an Option plus the interval tuning searches.

    ``search`` is a (low, high) pair for numbers, or a tuple of choices; ``None`` means never
    tuned. ``default_from`` names a task property (``"seq_len"``) used when the default is None.
    """

    search: tuple | None = None
    log: bool = False
    default_from: str | None = None

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


def parse_options(text: str, owner: str) -> dict[str, str]:
    """``k=v,k=v`` -> {k: v} (values stay strings); a malformed item or a repeated key is an error."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in item:
            raise UserError(f"malformed option {item!r} in {owner}; expected k=v")
        k, v = (s.strip() for s in item.split("=", 1))
        if k in out:
            raise UserError(f"{owner}: {k} given twice ({k}={out[k]}, {k}={v}); give each option once")
        out[k] = v
    return out


# ---- cells ----------------------------------------------------------------------------------

@dataclass
class CellEntry:
    """A registered cell or ablation."""

    name: str
    cls: type
    hparams: dict[str, HParam]
    module: str                           # where it was registered (discovery checks this)
    doc: str
    base: str | None = None               # for an ablation: the cell it ablates
    fixed: dict[str, Value] = field(default_factory=dict)

    @property
    def is_ablation(self) -> bool:
        return self.base is not None

    @property
    def family(self) -> str:
        """The package it lives in: ``momentum``, ``baselines``, or a plugin package's name."""
        parts = self.module.split(".")
        return parts[-2] if len(parts) > 1 else parts[0]


_CELLS: dict[str, CellEntry] = {}
_TASKS: dict[str, "TaskEntry"] = {}


def _first_line(obj: Any) -> str:
    """The first sentence-complete paragraph line of a docstring (for listings)."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return " ".join(doc.split("\n\n", 1)[0].split()) if doc else ""


def _claim(table: dict, name: str, module: str, kind: str) -> None:
    if name in table:
        raise UserError(f"{kind} {name!r} registered twice: by {table[name].module} and by {module}; "
                        f"give one of them another name")


def register_cell(name: str, hparams: tuple[HParam, ...] | list[HParam] = ()):
    """Class decorator: add a Cell subclass to the registry under ``name``."""

    def deco(cls):
        _claim(_CELLS, name, cls.__module__, "cell")
        _CELLS[name] = CellEntry(name, cls, {p.name: p for p in hparams}, cls.__module__,
                                 _first_line(cls))
        return cls

    return deco


def register_ablation(base: str, name: str, fixed: dict[str, Value] | None = None,
                      cls: type | None = None, doc: str = "") -> None:
    """Register ``base/name``: the base cell with some hyperparameters fixed, or another class."""
    entry = _CELLS[base]
    full = f"{base}/{name}"
    module = sys._getframe(1).f_globals.get("__name__", entry.module)   # the registering module
    _claim(_CELLS, full, module, "ablation")
    hp = dict(entry.hparams)
    for k, v in (fixed or {}).items():
        hp[k].check(v, full)
    _CELLS[full] = CellEntry(full, cls or entry.cls, hp, module, doc, base=base,
                             fixed=dict(fixed or {}))


def _known(table: dict, kind: str) -> None:
    if not table:
        raise UserError(f"no {kind}s registered: call bench.discovery.discover() first "
                        "(the CLI and bench.create_cell do)")


def cell_entry(name: str) -> CellEntry:
    _known(_CELLS, "cell")
    if name not in _CELLS:
        kind = "ablation" if "/" in name else "cell"
        valid = [n for n in _CELLS if ("/" in n) == ("/" in name)]
        raise UserError(f"unknown {kind} {name!r}; valid: {choices(valid)}")
    return _CELLS[name]


def registered_cells() -> dict[str, CellEntry]:
    """Every registered cell and ablation, by name (a copy)."""
    return dict(_CELLS)


def list_cells(pattern: str = "*", ablations: bool = False, family: str | None = None) -> list[str]:
    """Registered cell names matching a glob pattern (base cells only unless ``ablations``)."""
    _known(_CELLS, "cell")
    return sorted(n for n, e in _CELLS.items()
                  if fnmatch.fnmatch(n, pattern) and (ablations or not e.is_ablation)
                  and (family is None or e.family == family))


def list_families() -> list[str]:
    _known(_CELLS, "cell")
    return sorted({e.family for e in _CELLS.values()})


def list_ablations(base: str | None = None) -> list[str]:
    _known(_CELLS, "cell")
    return sorted(n for n, e in _CELLS.items() if e.is_ablation and (base is None or e.base == base))


@dataclass(frozen=True)
class CellSpec:
    """A parsed spec string: the registry entry plus user-fixed hyperparameters."""

    name: str
    fixed: tuple[tuple[str, Value], ...] = ()

    @property
    def entry(self) -> CellEntry:
        return cell_entry(self.name)

    def pinned(self, preset: dict[str, dict[str, Value]] | None = None) -> dict[str, Value]:
        """Values tuning never changes, lowest precedence first: the preset's ``[cells.BASE]``
        then ``[cells.NAME]``, the ablation's own, then the spec's ``[k=v]``."""
        e, preset = self.entry, preset or {}
        out: dict[str, Value] = {}
        if e.base:
            out.update(preset.get(e.base, {}))
        out.update(preset.get(self.name, {}))
        out.update(e.fixed)
        out.update(dict(self.fixed))
        return out

    def searched(self, preset: dict[str, dict[str, Value]] | None = None) -> dict[str, HParam]:
        """The hyperparameters tuning searches: a search space, and not pinned."""
        pinned = self.pinned(preset)
        return {k: p for k, p in self.entry.hparams.items()
                if p.search is not None and k not in pinned}

    def resolve(self, preset: dict[str, dict[str, Value]] | None = None,
                tuned: dict[str, Value] | None = None,
                context: dict[str, Any] | None = None) -> dict[str, Value]:
        """Every hyperparameter, checked. The one precedence rule: registered default (or the
        task property it names) < preset < ablation < spec ``[k=v]`` < tuned value."""
        e = self.entry
        out: dict[str, Value] = {}
        for k, p in e.hparams.items():
            v = p.default
            if v is None and p.default_from and context and p.default_from in context:
                v = context[p.default_from]
            out[k] = v
        out.update(self.pinned(preset))
        for k, v in (tuned or {}).items():
            if k not in e.hparams:
                raise UserError(f"{e.name}: unknown hyperparameter {k!r}; valid: {choices(e.hparams)}")
            out[k] = v
        return {k: e.hparams[k].check(v, e.name) for k, v in out.items()}

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
    for k, v in parse_options(m.group(2) or "", repr(spec)).items():
        if k not in entry.hparams:
            raise UserError(f"{entry.name}: unknown hyperparameter {k!r}; valid: {choices(entry.hparams)}")
        fixed[k] = entry.hparams[k].check(v, entry.name)
    return CellSpec(entry.name, tuple(sorted(fixed.items())))


def _split_top(text: str) -> list[str]:
    """Split a comma list, keeping commas inside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in parts + [cur]]


def _expand(item: str) -> list[CellSpec]:
    if item == "all":
        return [CellSpec(n) for n in list_cells()]
    if item.startswith("family:"):
        fam = item[len("family:"):]
        if fam not in list_families():
            raise UserError(f"unknown family {fam!r}; valid: {choices(list_families())}")
        return [CellSpec(n) for n in list_cells(family=fam)]
    if any(c in item for c in "*?") and "[" not in item:
        names = list_cells(item, ablations=True)
        if not names:
            raise UserError(f"pattern {item!r} matches no cell; valid: {choices(list_cells())}")
        return [CellSpec(n) for n in names]
    return [parse_spec(item)]


def parse_cells(text: str, ablations: bool = False) -> list[CellSpec]:
    """Parse a comma list of specs, ``all``, ``family:NAME`` or glob patterns, in order, once each."""
    specs = [s for item in _split_top(text) if item for s in _expand(item)]
    if ablations:
        specs += [CellSpec(a) for s in list(specs) for a in list_ablations(s.name)]
    seen, out = set(), []
    for s in specs:
        if str(s) not in seen:
            seen.add(str(s))
            out.append(s)
    if not out:
        raise UserError(f"no cells selected by {text!r}; valid: all, family:NAME, a glob, or "
                        + choices(list_cells()))
    return out


def create_cell(spec: str | CellSpec, input_size: int, hidden_size: int,
                context: dict[str, Any] | None = None, **hparams: Value):
    """Build a cell from a spec string; keyword hyperparameters override defaults (not the spec's
    fixed values, which win)."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if hidden_size is None or int(hidden_size) <= 0:
        raise UserError(f"hidden size {hidden_size} is out of range; valid: a positive integer")
    pinned = spec.pinned()
    hp = spec.resolve(tuned={k: v for k, v in hparams.items() if k not in pinned}, context=context)
    cell = spec.entry.cls(int(input_size), int(hidden_size), **hp)
    cell.spec = str(spec)
    cell.hparams = hp
    return cell


# ---- tasks --------------------------------------------------------------------------------

@dataclass
class TaskEntry:
    """A registered task: a factory ``f(**options) -> TaskData`` and its checked options."""

    name: str
    factory: Callable
    options: dict[str, Option]
    doc: str
    module: str
    #: options that locate data rather than define the experiment (kept out of the task id)
    local: tuple[str, ...] = ()


def register_task(name: str, options: tuple[Option, ...] | list[Option] = (),
                  local: tuple[str, ...] = ()) -> Callable:
    """Decorator for a task factory ``f(**options) -> TaskData``."""

    def deco(factory):
        _claim(_TASKS, name, factory.__module__, "task")
        _TASKS[name] = TaskEntry(name, factory, {o.name: o for o in options}, _first_line(factory),
                                 factory.__module__, tuple(local))
        return factory

    return deco


def task_entry(name: str) -> TaskEntry:
    _known(_TASKS, "task")
    if name not in _TASKS:
        raise UserError(f"unknown task {name!r}; valid: {choices(_TASKS)}")
    return _TASKS[name]


def registered_tasks() -> dict[str, TaskEntry]:
    """Every registered task, by name (a copy)."""
    return dict(_TASKS)


def list_tasks() -> list[str]:
    _known(_TASKS, "task")
    return sorted(_TASKS)
