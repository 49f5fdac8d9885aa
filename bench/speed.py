"""Forward+backward speed of cells against ``nn.LSTM`` of the same size, in one interleaved run.

``measure`` times, per batch, the forward pass of every cell plus the backward of the sum of its
outputs, and the same for a reference ``nn.LSTM`` (cuDNN on a GPU, oneDNN on a CPU). The cells
and the reference take turns rep by rep, so machine noise (other processes, clocks) hits all
alike; the median over reps is reported, and the ratio to the reference's median.

Peak memory of one forward+backward, beyond what was held before it:
- CUDA: ``torch.cuda.max_memory_allocated`` (the caching allocator's own count).
- CPU: the same idea, counted by a dispatch mode: every tensor storage an op creates counts
  from its creation until it is freed, and the peak of that running sum is reported. It sees
  every tensor (oneDNN's RNN workspace included) but not scratch memory an op frees before it
  returns. (The resident-set peak, VmHWM, is no measure: freed memory is reused without new
  pages, so it reads 0 after a warm-up.) Counting adds Python work per op, so it runs apart
  from the timed reps.

``epoch_time`` answers another question: how long one epoch of a real task takes per cell,
trained through the same path as ``bench run`` (``SeqModel``, a Lightning ``Trainer``, gradient
clipping, validation at the epoch's end). With ``batches`` it times only the first N training and
validation batches and projects the epoch from their mean (an epoch's time is a sum, so the mean
is the estimate; a median projected 13-18% low on a GPU, missing the occasional slow batch).
"""
from __future__ import annotations

import statistics
import time
import weakref
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from bench.graphs import eager, run_cell
from bench.lightning import pl
from bench.model import SeqModel
from bench.registry import CellSpec, create_cell
from bench.sizing import model_parameters
from bench.task import TaskData
from bench.train import DataModule, make_trainer

REFERENCE = "nn.LSTM"
#: the optimizer of an epoch-time run: the MomentumRNN paper's pMNIST one
EPOCH_OPTIMIZER = {"name": "rmsprop", "lr": 1e-3, "alpha": 0.9}
EPOCH_GRAD_CLIP = 1.0


def measure(cells: list[str | CellSpec], batch: int, seq: int, hidden: int, device: str,
            reps: int, input_size: int = 1, dtype: torch.dtype = torch.float32,
            warmup: int = 1) -> list[dict]:
    """One row per model (the reference nn.LSTM first): ms, ratio, peak_mb, params and the sizes."""
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(batch, seq, input_size, device=dev, dtype=dtype, generator=gen)
    ref = nn.LSTM(input_size, hidden, batch_first=True)
    models: list[tuple[str, nn.Module, int]] = [
        (REFERENCE, ref, sum(p.numel() for p in ref.parameters()))]
    for spec in cells:
        cell = create_cell(spec, input_size, hidden, context={"seq_len": seq})
        models.append((str(spec), cell, cell.num_parameters()))
    models = [(name, m.to(dev, dtype), n) for name, m, n in models]

    def run(model: nn.Module) -> None:
        model.zero_grad(set_to_none=True)
        y = run_cell(model, x)
        y.sum().backward()

    sync: Callable[[], None] = ((lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda"
                                else (lambda: None))
    for _ in range(warmup):
        for _, m, _ in models:
            run(m)
    times: dict[str, list[float]] = {name: [] for name, _, _ in models}
    for rep in range(reps):
        k = rep % len(models)            # rotate the order too, so no model always runs first
        for name, m, _ in models[k:] + models[:k]:
            sync()
            t0 = time.perf_counter()
            run(m)
            sync()
            times[name].append((time.perf_counter() - t0) * 1e3)
    ref_ms = statistics.median(times[REFERENCE])
    rows = []
    for name, m, n in models:
        ms = statistics.median(times[name])
        with eager():     # a graph holds about this much for as long as it lives
            peak = _peak_mb(lambda: run(m), dev)
        rows.append(dict(cell=name, ms=ms, ratio=ms / ref_ms, peak_mb=peak,
                         params=n, device=str(dev), batch=batch, seq=seq, hidden=hidden,
                         dtype=str(dtype).removeprefix("torch."), reps=reps))
    return rows


def _peak_mb(fn: Callable[[], None], dev: torch.device) -> float | None:
    """Peak memory of fn() beyond what was in use before it, in MiB (see the module docstring)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        before = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn()
        torch.cuda.synchronize(dev)
        return (torch.cuda.max_memory_allocated(dev) - before) / 2 ** 20
    if dev.type != "cpu":
        return None
    with _LiveBytes() as counter:
        fn()
    return counter.peak / 2 ** 20


class _LiveBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages that ops create under this mode and that are alive."""

    def __init__(self) -> None:
        super().__init__()
        self.live: set[int] = set()
        self.used = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes and key not in inputs and key not in self.live:   # new, not a view/out=
                self.live.add(key)
                self.used += nbytes
                self.peak = max(self.peak, self.used)
                weakref.finalize(storage, self._free, key, nbytes)
        return out

    def _free(self, key: int, nbytes: int) -> None:
        self.live.discard(key)
        self.used -= nbytes


def epoch_time(data: TaskData, spec: str | CellSpec, hidden: int, batch_size: int,
               device: str = "cpu", batches: int | None = None, seed: int = 0) -> dict:
    """Seconds of one training epoch plus its validation for one cell; measured or projected.

    ``data`` is a set-up ``TaskData``. Train seconds: the whole epoch when it ran, else the mean
    seconds per training batch (the first, a warm-up, left out) times the batches per epoch.
    Validation likewise, from the mean validation batch. ``how`` says which.
    """
    pl.seed_everything(seed, workers=True, verbose=False)
    cell = create_cell(spec, data.spec.input_size, hidden, context={"seq_len": data.spec.seq_len})
    model = SeqModel(cell, data.spec, EPOCH_OPTIMIZER)
    data.configure(batch_size, seed)
    n_train, n_val = len(data.train_dataloader()), len(data.val_dataloader())
    clock = _EpochClock(torch.device(device))
    trainer = make_trainer(device, 1, EPOCH_GRAD_CLIP, [clock], limit_train_batches=batches or 1.0,
                           limit_val_batches=batches or 1.0)
    trainer.fit(model, datamodule=DataModule(data))
    train_steps, val_steps = clock.steps("train"), clock.steps("val")
    per_batch = statistics.mean(train_steps[1:] or train_steps)
    train_full, val_full = len(train_steps) >= n_train, len(val_steps) >= n_val
    train_s = sum(train_steps) if train_full else per_batch * n_train
    val_s = sum(val_steps) if val_full else statistics.mean(val_steps) * n_val
    return dict(cell=str(spec), hidden=hidden, params=model_parameters(cell, data.spec),
                batches=n_train, s_per_batch=per_batch, train_s=train_s, val_batches=n_val,
                val_s=val_s, epoch_s=train_s + val_s,
                how="measured" if train_full and val_full else "projected")


class _EpochClock(pl.Callback):
    """Timestamps of every training and validation batch end (after a CUDA sync), per loop."""

    def __init__(self, dev: torch.device) -> None:
        self.dev = dev
        self.stamps: dict[str, list[float]] = {"train": [], "val": []}

    def _now(self) -> float:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, module) -> None:
        self.stamps["train"] = [self._now()]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.stamps["train"].append(self._now())

    def on_validation_start(self, trainer, module) -> None:
        self.stamps["val"] = [self._now()]

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        self.stamps["val"].append(self._now())

    def steps(self, loop: str) -> list[float]:
        """Seconds of each batch of ``loop`` ('train' or 'val'), in order."""
        t = self.stamps[loop]
        return [b - a for a, b in zip(t, t[1:])]
