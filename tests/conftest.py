"""Tests check correctness, not speed: one thread avoids OpenMP oversubscription on shared cores."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")   # inherited by the CLI subprocesses too

import torch  # noqa: E402

from bench.cli import quiet_libraries  # noqa: E402
from bench.discovery import discover  # noqa: E402

torch.set_num_threads(1)
quiet_libraries()
discover()          # what the CLI does first: fill the registry from the cell and task packages


# ---- helpers shared by the test modules (``from tests.conftest import make``) -----------------

import pytest  # noqa: E402

from bench import create_cell, list_cells  # noqa: E402
from bench.errors import UserError  # noqa: E402

#: every registered cell and ablation
REGISTERED = list_cells("*", ablations=True)
#: code paths a registered default does not reach: NRU's unfactored heads (k does not divide
#: sqrt(k m)) and SRLSTM's restarts within a few steps
VARIANTS = ["nru[memory_size=2,k=8]", "sr_lstm[restart=3]"]
#: what the cell contract (tests/test_cells.py) runs over
CELLS = REGISTERED + VARIANTS
#: the hyperparameters sized for pMNIST, shrunk (keywords and a spec's [k=v] win)
TINY = {"nru": {"memory_size": 4, "k": 4}, "lmu": {"order": 4}}


def make(name, inp=3, hidden=6, seq_len=50, **kw):
    """A small cell in float64, seeded; ``seq_len`` is the task length (chrono t_max, LMU theta)."""
    torch.manual_seed(0)
    small = TINY.get(name.split("/")[0].split("[")[0], {})
    return create_cell(name, inp, hidden, context={"seq_len": seq_len}, **{**small, **kw}).double()


def randomize(cell, scale=0.4, seed=0):
    """Random values for every trainable parameter (frozen ones keep theirs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in cell.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return cell


def random_state(cell, batch, seed=1):
    """A nonzero state in float64; abs(): some states are non-negative by construction (Adam's
    running mean of squares, SRLSTM's step count)."""
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(s.shape, generator=g, dtype=torch.float64).abs() * 0.5
                 for s in cell.initial_state(batch))


def assert_one_line_error(fn, fragment):
    """fn() raises a UserError whose message contains fragment and is one line."""
    with pytest.raises(UserError) as e:
        fn()
    assert fragment in str(e.value) and "\n" not in str(e.value), str(e.value)
