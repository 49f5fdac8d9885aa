"""Tests check correctness, not speed: one thread avoids OpenMP oversubscription on shared cores."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")   # inherited by the CLI subprocesses too

import torch  # noqa: E402

torch.set_num_threads(1)
