"""Forward+backward speed of cells against ``nn.LSTM`` of the same size, in one interleaved run.

``measure`` times, per batch, the forward pass of every cell plus the backward of the sum of its
outputs, and the same for a reference ``nn.LSTM`` (cuDNN on a GPU, oneDNN on a CPU). The cells
and the reference take turns rep by rep, so machine noise (other processes, clocks) hits all
alike; the median over reps is reported, and the ratio to the reference's median.

Peak memory of one forward+backward, beyond what was held before it:
- CUDA: ``torch.cuda.max_memory_allocated`` (the caching allocator's own count).
- CPU: the peak of the running sum of allocations and frees that the profiler records
  (``profile_memory=True``) for PyTorch's CPU allocator: every tensor, including oneDNN's RNN
  workspace; memory a library allocates outside PyTorch is not seen. ``None`` if unavailable.
  (The resident-set peak, VmHWM, is no measure here: freed memory is reused without new pages.)
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
from torch import nn

from bench.registry import CellSpec, create_cell

REFERENCE = "nn.LSTM"


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
        y = model(x)[0]
        y.sum().backward()

    sync: Callable[[], None] = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
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
        rows.append(dict(cell=name, ms=ms, ratio=ms / ref_ms, peak_mb=_peak_mb(lambda: run(m), dev),
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
    try:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events = prof.profiler.kineto_results.events()
        changes = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    except (AttributeError, RuntimeError):      # the profiler's result API moved
        return None
    used = peak = 0
    for _, nbytes in changes:
        used += nbytes
        peak = max(peak, used)
    return peak / 2 ** 20
