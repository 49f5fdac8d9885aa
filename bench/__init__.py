"""momentum-bench: do momentum recurrent cells beat well-tuned gated baselines, and why?"""
from bench.registry import (create_cell, list_ablations, list_cells, list_tasks, parse_spec,
                            register_ablation, register_cell, register_task)

__all__ = ["create_cell", "list_cells", "list_ablations", "list_tasks", "parse_spec",
           "register_cell", "register_ablation", "register_task"]
