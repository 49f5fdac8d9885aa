"""Budget presets: TOML files in ``studies/`` that fix everything every cell shares.

A preset fixes the number of trials, the training length per trial, the pruner, the optimizer and
its search space, the number of seeds and the model size (a parameter budget or a pinned hidden
size); only the cells' own registered hyperparameters differ between studies.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import optuna

from bench.errors import UserError, choices
from bench.optim import DEFAULT_LR, check_optimizer

STUDIES = Path(__file__).resolve().parent.parent / "studies"


@dataclass(frozen=True)
class Budget:
    """One preset, validated."""

    name: str
    trials: int
    seeds: int
    epochs: int
    batch_size: int
    description: str = ""
    params: int | None = None             # parameter budget (model = cell + readout)
    hidden: int | None = None             # or a pinned hidden size
    sampler_seed: int = 0
    startup_trials: int = 4               # TPE's random start
    #: tuning trials per round: trial k sees only the trials of earlier rounds, so any number of
    #: workers gives the same trials (bench.work); 1 = each cell tunes sequentially
    parallel: int = 1
    grad_clip: float | None = None
    optimizer: dict[str, Any] = field(default_factory=dict)   # see bench.optim
    pruner: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task option defaults
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-cell fixed hyperparameters
    #: the comparison the preset declares: test (mwu or welch), reference cell and alpha; flags
    #: may override them, and the table says when they do
    stats: dict[str, Any] = field(default_factory=dict)
    #: false for presets too small to conclude anything from (smoke): the table says so
    conclusive: bool = True
    #: "published": the table also shows the test value a paper's selection would report (the
    #: best test epoch), beside the honest one, so the optimism is measured
    protocol: str = "honest"
    source: str = ""

    def declared(self) -> dict[str, Any]:
        """The declared test, reference and alpha, with the harness defaults filled in."""
        return {"test": "mwu", "reference": "lstm", "alpha": 0.05, **self.stats}

    @cached_property
    def fingerprint(self) -> str:
        """Short hash of the preset's content, stored with every run (parsed once, though
        ``check_budget`` asks for it once per stored study)."""
        return fingerprint(self.source)

    def matches(self, stored: str, stored_json: str | None = None) -> bool:
        """Whether a fingerprint stored with runs is this preset's. Storages written before the
        fingerprint ignored comments hold the hash of the text; those still match when the text
        is the same or the stored preset JSON equals this one (only comments changed)."""
        return (stored in (self.fingerprint, text_fingerprint(self.source))
                or (stored_json is not None and stored_json == budget_json(self)))

    @classmethod
    def from_stored(cls, stored_json: str, stored_fingerprint: str) -> "Budget":
        """The preset as a storage holds it beside its runs (``budget_json``), with the
        fingerprint stored there: what those runs were made with, whatever the file says now."""
        fields = {k: v for k, v in json.loads(stored_json).items() if k in cls.__dataclass_fields__}
        b = cls(**fields)
        b.__dict__["fingerprint"] = stored_fingerprint    # the cached_property's slot: no source
        return b

    def differences(self, other: "Budget") -> str:
        """What differs from ``other``, e.g. ``epochs 12 (now 24), pruner ...``."""
        mine, theirs = json.loads(budget_json(self)), json.loads(budget_json(other))
        keys = [k for k in sorted(mine) if mine[k] != theirs.get(k)]
        return ", ".join(f"{k} {json.dumps(mine[k])} (now {json.dumps(theirs.get(k))})" for k in keys)

    def seed_list(self) -> list[int]:
        """Training seeds of the final runs (offset so they never equal a tuning trial's seed)."""
        return [10_000 + i for i in range(self.seeds)]

    def make_pruner(self) -> optuna.pruners.BasePruner:
        kind = self.pruner.get("type", "median")
        args = {k: v for k, v in self.pruner.items() if k != "type"}
        if kind == "median":
            return optuna.pruners.MedianPruner(**args)
        if kind == "hyperband":
            return optuna.pruners.HyperbandPruner(max_resource=self.epochs, **args)
        if kind == "none":
            return optuna.pruners.NopPruner()
        raise UserError(f"budget {self.name}: unknown pruner {kind!r}; valid: median, hyperband, none")

    def _with_lrs(self, choose: Callable[[str, tuple[float, float]], float]) -> dict[str, Any]:
        """The optimizer settings with every tuned learning rate (a ``[low, high]`` range under
        ``lr``, or under a parameter group's own table as ``lr_<group>``) replaced by
        ``choose(name, range)``: the one place that knows which rates a preset tunes."""
        def walk(opt: dict[str, Any], name: str) -> dict[str, Any]:
            opt = {k: walk(v, f"lr_{k}") if isinstance(v, dict) else v for k, v in opt.items()}
            if isinstance(opt.get("lr"), list):
                opt["lr"] = choose(name, tuple(opt["lr"]))
            return opt

        return {"lr": DEFAULT_LR, **walk(self.optimizer, "lr")}

    def suggest_optimizer(self, trial: optuna.Trial) -> dict[str, Any]:
        """The shared optimizer settings, each tuned learning rate suggested on a log scale."""
        return self._with_lrs(lambda name, r: trial.suggest_float(name, *r, log=True))

    @cached_property
    def tuned_lrs(self) -> dict[str, tuple[float, float]]:
        """The learning rates this preset tunes, by Optuna parameter name, with their ranges
        (empty when every rate is fixed)."""
        out: dict[str, tuple[float, float]] = {}

        def note(name: str, r: tuple[float, float]) -> float:
            out[name] = r
            return r[0]

        self._with_lrs(note)
        return out


def fingerprint(source: str) -> str:
    """Short hash of a preset's content, its TOML data: same name and different content is
    refused by `run`. Comments and layout do not count, so explaining a preset better never
    orphans the runs stored under it."""
    content = json.dumps(tomllib.loads(source), sort_keys=True, default=str)
    return hashlib.sha256(content.encode()).hexdigest()[:12]


def text_fingerprint(source: str) -> str:
    """The hash of the text itself: what storages written before 2026-12-04 hold."""
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def list_budgets() -> list[str]:
    return sorted(p.stem for p in STUDIES.glob("*.toml"))


def load_budget(name: str) -> Budget:
    """Load a preset by name (from ``studies/``) or by the path of a TOML file."""
    path = Path(name) if name.endswith(".toml") else STUDIES / f"{name}.toml"
    if not path.is_file():
        raise UserError(f"unknown budget preset {name!r}; valid: {choices(list_budgets())} "
                        "or the path of a .toml file")
    try:
        source = path.read_text(encoding="utf-8")
        raw = tomllib.loads(source)
    except UnicodeDecodeError:
        raise UserError(f"budget preset {path}: not a text file (not UTF-8); valid: a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"budget preset {path}: not valid TOML ({e})") from None
    known = set(Budget.__dataclass_fields__) - {"source", "name"}
    unknown = set(raw) - known - {"name"}
    if unknown:
        raise UserError(f"budget preset {path}: unknown key(s) {', '.join(sorted(unknown))}; "
                        f"valid: {choices(known)}")
    missing = [k for k in ("trials", "seeds", "epochs", "batch_size", "optimizer") if k not in raw]
    if missing:
        raise UserError(f"budget preset {path}: missing key(s) {', '.join(missing)}")
    name = raw.pop("name", path.stem)
    if not isinstance(name, str) or not name:
        raise UserError(f"budget preset {path}: name={name!r}; valid: a non-empty string")
    if path.resolve().parent != STUDIES:
        # a preset given by path never merges with a built-in one of the same name
        name = f"{name}@{fingerprint(source)[:8]}"
    b = Budget(name=name, source=source,
               **{k: v for k, v in raw.items() if k in known})
    for key in ("trials", "seeds", "epochs", "batch_size", "parallel"):
        v = getattr(b, key)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 100_000:
            raise UserError(f"budget preset {b.name}: {key}={v!r}; valid: an integer in [1, 100000]")
    _check_stats(b)
    if (b.params is None) == (b.hidden is None):
        raise UserError(f"budget preset {b.name}: give exactly one of params and hidden")
    check_optimizer(b.optimizer, f"budget preset {b.name}")
    b.make_pruner()
    return b


def _check_stats(b: Budget) -> None:
    from bench.stats import TESTS
    d = b.declared()
    unknown = set(d) - {"test", "reference", "alpha"}
    if unknown:
        raise UserError(f"budget preset {b.name}: unknown stats key(s) {', '.join(sorted(unknown))}; "
                        "valid: alpha, reference, test")
    if d["test"] not in TESTS:
        raise UserError(f"budget preset {b.name}: stats.test={d['test']!r}; valid: {choices(TESTS)}")
    if isinstance(d["alpha"], bool) or not isinstance(d["alpha"], (int, float)) or not 0 < d["alpha"] < 1:
        raise UserError(f"budget preset {b.name}: stats.alpha={d['alpha']!r}; valid: (0, 1)")
    if b.protocol not in ("honest", "published"):
        raise UserError(f"budget preset {b.name}: protocol={b.protocol!r}; valid: honest, published")
    if not isinstance(b.conclusive, bool):
        raise UserError(f"budget preset {b.name}: conclusive={b.conclusive!r}; valid: true, false")


def budget_json(b: Budget) -> str:
    """The preset as JSON, for storing beside the runs."""
    return json.dumps({k: getattr(b, k) for k in Budget.__dataclass_fields__ if k != "source"},
                      sort_keys=True, default=str)
