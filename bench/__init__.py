"""momentum-bench: do momentum recurrent cells beat well-tuned gated baselines, and why?

``from bench import create_cell, list_cells`` works as in timm: the first use discovers the cell
and task packages (``bench.discovery``). Nothing is imported when the package itself is, so cell
modules can import ``bench.cell`` and ``bench.registry`` without a cycle.
"""
from __future__ import annotations

from typing import Any

__all__ = ["create_cell", "list_cells", "list_ablations", "list_tasks", "parse_spec",
           "register_cell", "register_ablation", "register_task"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    from bench import discovery, registry
    if not name.startswith("register_"):
        discovery.discover()
    return getattr(registry, name)
