"""The synthetic long-memory tasks: adding (Hochreiter & Schmidhuber 1997) and copy memory.

Both are generated from the task's ``data_seed``: train, validation and test sets are fixed by it
(the training seed only orders batches). ``fresh=true`` redraws the training set every epoch, from
(data_seed, epoch), as the literature's "new samples every batch" does.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.errors import UserError
from bench.registry import Option, register_task
from bench.task import Batches, TaskData, TaskSpec

#: limits that keep a generated set in memory: lengths up to 100,000 steps, up to a million
#: sequences per split, and at most MAX_SET_BYTES per stored split (checked before generating)
MAX_LEN, MAX_N, MAX_SET_BYTES = 100_000, 1_000_000, 2 << 30

COMMON = (
    Option("data_seed", 0, kind=int, valid="[0, 4294967295]", doc="seed of every generated set"),
    Option("n_train", 10000, kind=int, valid=f"[1, {MAX_N}]", doc="training sequences (per epoch)"),
    Option("n_val", 1000, kind=int, valid=f"[1, {MAX_N}]", doc="validation sequences"),
    Option("n_test", 1000, kind=int, valid=f"[1, {MAX_N}]", doc="test sequences"),
    Option("fresh", False, kind=bool, doc="redraw the training set every epoch"),
)


class SyntheticTask(TaskData):
    """Train/val/test drawn by ``generate(n, generator)`` from seeds derived from data_seed."""

    def __init__(self, data_seed: int, n_train: int, n_val: int, n_test: int, fresh: bool):
        super().__init__()
        self.data_seed, self.fresh = data_seed, fresh
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self._sets: dict[str, tuple[Tensor, ...]] = {}

    #: bytes one stored sequence takes (input and target)
    bytes_per_sequence: int = 0

    def check_size(self) -> None:
        """Refuse sets too large for memory before generating them (one line, nothing built)."""
        for split, n in self.sizes.items():
            if n * self.bytes_per_sequence > MAX_SET_BYTES:
                raise UserError(f"{self.spec.name}: n_{split}={n} sequences of length "
                                f"{self.spec.seq_len} take {n * self.bytes_per_sequence / 2**30:.1f} "
                                f"GiB; valid: at most {MAX_SET_BYTES >> 30} GiB per split")

    def generate(self, n: int, g: torch.Generator) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def transform(self, *batch: Tensor) -> tuple[Tensor, ...]:
        return batch

    def split(self, name: str, epoch: int = 0) -> tuple[Tensor, ...]:
        """A fixed split (``epoch`` matters for a fresh training set only)."""
        key = f"{name}:{epoch}"
        if key not in self._sets:
            salt = {"train": 1, "val": 2, "test": 3}[name]
            g = torch.Generator().manual_seed(self.data_seed * 1_000_003 + salt * 7919 + epoch * 104729)
            if name == "train" and self.fresh:
                self._sets = {k: v for k, v in self._sets.items() if not k.startswith("train")}
            self._sets[key] = self.generate(self.sizes[name], g)
        return self._sets[key]

    def batches(self, split: str, batch_size: int, seed: int | None):
        if split == "train" and self.fresh:
            return _FreshBatches(self)
        return Batches(self.split(split), batch_size, seed, transform=self.transform)

    def summary(self) -> dict:
        return {f"{k} sequences": v for k, v in self.sizes.items()} | {"length": self.spec.seq_len}


class _FreshBatches:
    """A training set redrawn every epoch from (data_seed, epoch), ordered by the training seed."""

    def __init__(self, task: SyntheticTask):
        self.task, self.epoch = task, 0

    def __len__(self) -> int:
        return -(-self.task.sizes["train"] // self.task.batch_size)

    def __iter__(self):
        t = self.task
        batches = Batches(t.split("train", self.epoch), t.batch_size, t.train_seed + self.epoch,
                          transform=t.transform)
        self.epoch += 1
        return iter(batches)


class Adding(SyntheticTask):
    def __init__(self, T: int, **common):
        super().__init__(**common)
        self.T = T
        self.spec = TaskSpec("adding", input_size=2, output_size=1, seq_len=T, readout="last",
                             loss="mse", metric="mse", direction="minimize", trivial=1 / 6,
                             trivial_note="always predict 1: MSE = 2 Var(U[0,1]) = 0.167")
        self.bytes_per_sequence = T * 2 * 4 + 4
        self.check_size()

    def trivial(self) -> float:
        """Always predicting 1, scored on this run's own test split (0.167 only in expectation)."""
        y = self.split("test")[1]
        return float(((y - 1.0) ** 2).mean())

    def generate(self, n: int, g: torch.Generator) -> tuple[Tensor, ...]:
        T, half = self.T, self.T // 2
        values = torch.rand(n, T, generator=g)
        first = torch.randint(0, half, (n,), generator=g)
        second = torch.randint(half, T, (n,), generator=g)
        marker = torch.zeros(n, T)
        rows = torch.arange(n)
        marker[rows, first] = 1.0
        marker[rows, second] = 1.0
        x = torch.stack([values, marker], -1)
        y = (values * marker).sum(1, keepdim=True)
        return x, y


@register_task("adding", options=(
    Option("T", 100, kind=int, valid=f"[2, {MAX_LEN}]", doc="sequence length"), *COMMON))
def adding(**options) -> Adding:
    """Adding problem: sum the two marked values of a length-T sequence (MSE)."""
    return Adding(**options)


class Copy(SyntheticTask):
    SYMBOLS, BLANK, MARKER, N_COPY = 8, 0, 9, 10

    def __init__(self, L: int, **common):
        super().__init__(**common)
        self.L = L
        self.spec = TaskSpec("copy", input_size=10, output_size=9, seq_len=L + 20, readout="all",
                             loss="ce", metric="ce", direction="minimize",
                             trivial=self.N_COPY * math.log(self.SYMBOLS) / (L + 20),
                             trivial_note="blanks, then uniform over the 8 symbols: 10 ln 8 / (L+20)")
        self.bytes_per_sequence = 2 * (L + 20)
        self.check_size()

    def generate(self, n: int, g: torch.Generator) -> tuple[Tensor, ...]:
        L, k = self.L, self.N_COPY
        symbols = torch.randint(1, self.SYMBOLS + 1, (n, k), generator=g, dtype=torch.uint8)
        x = torch.zeros(n, L + 2 * k, dtype=torch.uint8)
        x[:, :k] = symbols
        x[:, L + k] = self.MARKER
        y = torch.zeros(n, L + 2 * k, dtype=torch.uint8)
        y[:, -k:] = symbols
        return x, y                  # tokens; one-hot per batch keeps the stored set small

    def transform(self, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        return F.one_hot(x.long(), 10).float(), y.long()


@register_task("copy", options=(
    Option("L", 100, kind=int, valid=f"[1, {MAX_LEN}]", doc="blank steps between symbols and marker"),
    *COMMON))
def copy(**options) -> Copy:
    """Copy memory: reproduce 10 symbols after L blanks and a marker (cross-entropy per step)."""
    return Copy(**options)
