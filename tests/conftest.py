"""Tests check correctness, not speed: one thread avoids OpenMP oversubscription on shared cores."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")   # inherited by the CLI subprocesses too

import torch  # noqa: E402

from bench.cli import quiet_libraries  # noqa: E402
from bench.discovery import discover  # noqa: E402

torch.set_num_threads(1)
quiet_libraries()
discover()          # what the CLI does first: fill the registry from the cell and task packages
