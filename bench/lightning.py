"""The one import of PyTorch Lightning. Only training needs it, and importing it costs about 5 s
of CPU (it pulls in ``torch._dynamo``), so ``list``, ``report``, ``dashboard`` and every refused
input start without it: modules that train import ``pl`` from here, and nothing that merely
parses, stores or reports imports them.

Lightning's import sets its loggers to INFO; a level the application chose before (the CLI
chooses ERROR in ``quiet_libraries``) is put back right after.
"""
from __future__ import annotations

import logging

LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch")

_chosen = {name: logging.getLogger(name).level for name in LOGGERS}
import pytorch_lightning as pl  # noqa: E402

for _name, _level in _chosen.items():
    if _level != logging.NOTSET:
        logging.getLogger(_name).setLevel(_level)

__all__ = ["pl", "LOGGERS"]
