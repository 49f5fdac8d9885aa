"""What a task is: a TaskSpec (sizes, loss, metric, trivial score) and its data, as batches per
split. Tasks do not import Lightning (parsing a task or reporting on it never trains);
:class:`bench.train.DataModule` is the LightningDataModule a run trains from.

Task options are given as ``name:k=v,k=v`` (``adding:T=200``); a budget preset may set defaults.
Data come from the task's ``data_seed`` only, never from the training seed, which only orders
the training batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Sequence

import torch
from torch import Tensor

from bench.errors import UserError, choices
from bench.registry import parse_options, task_entry


@dataclass(frozen=True)
class TaskSpec:
    """Everything the model and the report need to know about a task."""

    name: str
    input_size: int
    output_size: int
    seq_len: int                                  # (maximum) sequence length
    readout: Literal["last", "all"]               # read the output at the last step or every step
    loss: Literal["mse", "ce"]
    metric: Literal["mse", "ce", "accuracy"]
    direction: Literal["minimize", "maximize"]
    trivial: float                                # the trivial solution's metric (nominal)
    trivial_note: str = ""
    #: a seed "solves" the task when it beats the trivial score by this share: a loss below
    #: (1 - margin) x trivial, an accuracy above trivial + margin x (1 - trivial)
    solve_margin: float = 0.1

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` is strictly better than ``b``."""
        return a < b if self.direction == "minimize" else a > b

    def solve_threshold(self, trivial: float) -> float:
        """The value a seed must beat to count as solving the task."""
        if self.direction == "minimize":
            return trivial * (1 - self.solve_margin)
        return trivial + self.solve_margin * (1 - trivial)


@dataclass(frozen=True)
class TaskConfig:
    """A task name with every option resolved; ``id`` names the experiment in the storage."""

    name: str
    options: tuple[tuple[str, Any], ...]

    @property
    def id(self) -> str:
        local = task_entry(self.name).local
        opts = ",".join(f"{k}={v}" for k, v in self.options if k not in local)
        return f"{self.name}:{opts}" if opts else self.name

    def build(self) -> "TaskData":
        return task_entry(self.name).factory(**dict(self.options))


def parse_task(text: str, defaults: dict[str, Any] | None = None) -> TaskConfig:
    """Parse ``name[:k=v,...]``; options not given take the preset's, then the task's defaults."""
    name, _, rest = text.strip().partition(":")
    entry = task_entry(name)
    given = parse_options(rest, f"task {text!r}")
    for k in given:
        if k not in entry.options:
            raise UserError(f"task {name}: unknown option {k!r}; valid: {choices(entry.options)}")
    values = {k: o.default for k, o in entry.options.items()}
    values.update({k: v for k, v in (defaults or {}).items() if k in entry.options})
    values.update(given)
    checked = {k: entry.options[k].check(v, f"task {name}") for k, v in values.items()}
    return TaskConfig(name, tuple(sorted(checked.items())))


class Batches:
    """Mini-batches over in-memory tensors; shuffled by ``seed`` (None keeps the order)."""

    def __init__(self, tensors: Sequence[Tensor], batch_size: int, seed: int | None = None,
                 drop_last: bool = False, transform: Callable | None = None):
        self.tensors, self.batch_size, self.seed, self.drop_last = tensors, batch_size, seed, drop_last
        self.transform = transform or (lambda *b: b)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        n = len(self.tensors[0])
        if self.seed is None:
            order = torch.arange(n)
        else:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(n, generator=g)
            self.epoch += 1
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.transform(*(t[idx] for t in self.tensors))


class TaskData:
    """A task's data: subclasses set ``spec`` and build train/val/test in ``setup()``.

    Batches are ``(x, y)`` or ``(x, y, mask)``: x (B, T, input_size); y (B,) or (B, output) for a
    last-step readout, (B, T) or (B, T, output) for every step; mask (B, T) marks valid steps.
    """

    spec: TaskSpec
    #: names of the training, validation and test splits, and the evaluation batch size
    splits: tuple[str, str, str] = ("train", "val", "test")
    eval_batch: int = 1000

    def __init__(self) -> None:
        self.batch_size = 64
        self.train_seed = 0

    def setup(self, stage: str | None = None) -> None:
        """Build or read the splits (nothing to do unless a subclass needs it)."""

    def configure(self, batch_size: int, train_seed: int, test_each_epoch: bool = False) -> "TaskData":
        """Set what one run needs: the batch size, the seed that orders training batches, and
        whether validation also evaluates the test split (final seed runs only, never tuning)."""
        self.batch_size, self.train_seed = batch_size, train_seed
        self.test_each_epoch = test_each_epoch
        return self

    def trivial(self) -> float:
        """The trivial solution's metric on this run's own test split (the spec's by default)."""
        return self.spec.trivial

    def batches(self, split: str, batch_size: int, seed: int | None):
        """Batches of one split, shuffled by ``seed`` (None: in order)."""
        raise NotImplementedError

    def train_dataloader(self):
        return self.batches(self.splits[0], self.batch_size, self.train_seed)

    def val_dataloader(self):
        val = self.batches(self.splits[1], self.eval_batch, None)
        if getattr(self, "test_each_epoch", False):
            return [val, self.batches(self.splits[2], self.eval_batch, None)]
        return val

    def test_dataloader(self):
        return self.batches(self.splits[2], self.eval_batch, None)

    def summary(self) -> dict[str, Any]:
        """Counts for the user (e.g. utterances per split)."""
        return {}


class FileTaskData(TaskData):
    """A task read from files. Its spec depends on the data (trivial score, lengths), so the files
    are read once, on first need: ``spec``, ``setup()`` or a subclass's ``batches()``."""

    _spec: TaskSpec | None = None
    _loaded: bool = False

    @property
    def spec(self) -> TaskSpec:  # type: ignore[override]
        self.setup()
        assert self._spec is not None
        return self._spec

    def setup(self, stage: str | None = None) -> None:
        if not self._loaded:
            self.read_files()
            self._loaded = True

    def read_files(self) -> None:
        """Read the files and set ``self._spec`` and the splits."""
        raise NotImplementedError
