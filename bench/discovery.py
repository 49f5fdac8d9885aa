"""Find cells, ablations and tasks by importing every module of their packages.

A new cell is one file with one ``@register_cell`` in ``baselines/`` or ``bench/momentum/`` (a
task: one file in ``tasks/``); nothing else names it. Packages outside the project join through
the environment variable ``BENCH_PLUGINS`` (a comma list of importable package names), so a
researcher can keep cells in their own package. Modules whose name starts with ``_`` are skipped.
"""
from __future__ import annotations

import importlib
import os
import pkgutil

from bench import registry
from bench.errors import UserError

PACKAGES = ("baselines", "bench.momentum", "tasks")
PLUGINS_ENV = "BENCH_PLUGINS"

_found: dict[str, tuple[str, ...]] = {}


def packages() -> tuple[str, ...]:
    """The built-in packages, then those named in ``$BENCH_PLUGINS``."""
    extra = [p.strip() for p in os.environ.get(PLUGINS_ENV, "").split(",") if p.strip()]
    return PACKAGES + tuple(p for p in extra if p not in PACKAGES)


def modules(package: str) -> list[str]:
    """Every public module of a package, by full name."""
    try:
        pkg = importlib.import_module(package)
    except ImportError as e:
        raise UserError(f"cannot import cell package {package!r} (from ${PLUGINS_ENV}?): {e}") from None
    path = getattr(pkg, "__path__", None)
    if path is None:
        raise UserError(f"{package!r} is a module, not a package; valid in ${PLUGINS_ENV}: packages")
    return sorted(f"{package}.{m.name}" for m in pkgutil.iter_modules(path) if not m.name.startswith("_"))


def discover() -> dict[str, tuple[str, ...]]:
    """Import every module of every package (once); return what each module registered."""
    for package in packages():
        if package in _found:
            continue
        names = modules(package)
        for name in names:
            importlib.import_module(name)
        _found[package] = tuple(names)
    return registered_by_module()


def registered_by_module() -> dict[str, tuple[str, ...]]:
    """Module -> the cells, ablations and tasks it registered, for every discovered module."""
    entries = [*registry.registered_cells().values(), *registry.registered_tasks().values()]
    return {m: tuple(sorted(e.name for e in entries if e.module == m))
            for ms in _found.values() for m in ms}
