"""CUDA graphs for the cells whose recurrence is a Python loop of small kernels.

On a GPU such a cell is launch-bound: at B 128, H 256 a time step is a few MFLOP, but its forward
and backward launch dozens of kernels, about 0.3 to 1 ms a step over 784 steps (measured on an
H100: 8x to 30x cuDNN's nn.LSTM). ``torch.cuda.make_graphed_callables`` records the whole
forward and backward once and replays them as two graph launches. It applies only where

- the module is in training mode with autograd on, on a CUDA device (evaluation runs eagerly);
- the cell sets ``cuda_graph = True`` (its forward has no host synchronisation and no
  data-dependent Python control flow; cuDNN-backed cells gain nothing and are left alone);
- ``BENCH_CUDA_GRAPHS`` is not ``0``.

A graph is recorded per input shape, dtype and requires-grad pattern (a full batch and the last,
smaller one), and replays the same kernels on the same parameters, so results equal eager ones
(``tests/test_cuda.py`` checks it). ``replay`` does the same for a loop written as a function of
tensors alone, where the rest of a forward cannot be captured (dtriv's matrix exponential
synchronises with the host to choose its degree).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn


_off = 0     # depth of ``eager()`` blocks


def enabled(*tensors: Tensor) -> bool:
    """Whether a graph applies to a call on these tensors now."""
    return (not _off and os.environ.get("BENCH_CUDA_GRAPHS", "1") != "0"
            and torch.is_grad_enabled() and all(t.is_cuda for t in tensors)
            and not torch.cuda.is_current_stream_capturing())


@contextmanager
def eager() -> Iterator[None]:
    """No graphs inside this block (e.g. to measure what a forward+backward allocates)."""
    global _off
    _off += 1
    try:
        yield
    finally:
        _off -= 1


def _signature(args: tuple[Tensor, ...]) -> tuple:
    return tuple((tuple(a.shape), a.dtype, a.requires_grad) for a in args)


def _sample(a: Tensor) -> Tensor:
    return torch.randn_like(a).requires_grad_(a.requires_grad)


class _Output(nn.Module):
    """cell(x) without the state: the graphed callable returns the hidden sequence alone."""

    def __init__(self, cell: nn.Module):
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor) -> Tensor:
        return self.cell(x)[0]


def _capture(fn: Callable[..., Any], args: tuple[Tensor, ...], name: str) -> Callable[..., Any]:
    """The graphed ``fn``, or ``fn`` itself (with a warning) if it cannot be captured."""
    try:
        return torch.cuda.make_graphed_callables(fn, tuple(_sample(a) for a in args),
                                                 allow_unused_input=True)
    except RuntimeError as e:        # e.g. a host copy inside the loop: run it eagerly
        warnings.warn(f"{name}: CUDA graph capture failed, running eagerly: {e}")
        return fn


class _Graphs:
    """The graphs of one cell or loop function, one per input signature, up to ``limit`` of them.

    A fixed-length task needs two (full batches and the last one). Past the limit the inputs vary
    in shape (TIMIT pads each batch to its longest utterance): recording a graph per shape would
    cost a capture per batch and memory per graph, so the graphs are dropped and it runs eagerly.
    """

    def __init__(self, limit: int):
        self.limit, self.graphs, self.off = limit, {}, False

    def get(self, key: tuple, capture: Callable[[], Callable[..., Any]]) -> Callable[..., Any] | None:
        if not self.off and key not in self.graphs:
            if len(self.graphs) == self.limit:
                self.off, self.graphs = True, {}
            else:
                self.graphs[key] = capture()
        return None if self.off else self.graphs[key]


def run_cell(cell: nn.Module, x: Tensor) -> Tensor:
    """The output sequence ``cell(x)[0]`` from a zero state, by graph replay where it applies."""
    if not (getattr(cell, "cuda_graph", False) and cell.training and enabled(x)):
        return cell(x)[0]
    graphs = cell.__dict__.setdefault("_cuda_graphs", _Graphs(limit=2))   # not in state_dict
    graph = graphs.get(_signature((x,)), lambda: _capture(_Output(cell), (x,), type(cell).__name__))
    return cell(x)[0] if graph is None else graph(x)


_FUNCTION_GRAPHS: dict[Callable[..., Any], _Graphs] = {}


def replay(fn: Callable[..., Any], *args: Tensor) -> Any:
    """``fn(*args)``, for a function of tensors alone, by graph replay where it applies."""
    if not enabled(*args):
        return fn(*args)
    graphs = _FUNCTION_GRAPHS.setdefault(fn, _Graphs(limit=4))     # cells of a family share it
    graph = graphs.get(_signature(args), lambda: _capture(fn, args, fn.__name__))
    return fn(*args) if graph is None else graph(*args)
