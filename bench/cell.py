"""The Cell base class: ``step()`` is the reference semantics, ``forward()`` the fast path.

Contract (batch-first)::

    state = cell.initial_state(batch_size)     # tuple of tensors on the cell's device
    y, state = cell(x, state)                  # x (B, T, I) -> y (B, T, H)
    h, state = cell.step(x_t, state)           # x_t (B, I) -> h (B, H)
    cell.num_parameters()                      # trainable degrees of freedom

A subclass writes ``step()`` like its paper's equations and overrides ``forward()`` only where it
has something faster; the default ``forward()`` loops ``step()`` (using ``unbind``, whose backward
is cheap, rather than ``x[:, t]``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]


class Cell(nn.Module):
    """A recurrent cell under study."""

    #: names of the state tensors, each (B, state_sizes[i]); the first is the output h.
    state_names: tuple[str, ...] = ("h",)
    #: a Python-loop forward with no host sync: on CUDA, training replays it as a CUDA graph
    #: (``bench.graphs``)
    cuda_graph: bool = False

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size

    # -- the contract ----------------------------------------------------------------------
    def state_sizes(self) -> tuple[int, ...]:
        """Width of each state tensor; default: every state is hidden_size wide."""
        return (self.hidden_size,) * len(self.state_names)

    def initial_state(self, batch_size: int) -> State:
        """Zero state on the cell's device and dtype."""
        p = next(self.parameters())
        return tuple(torch.zeros(batch_size, n, device=p.device, dtype=p.dtype)
                     for n in self.state_sizes())

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One time step, written like the paper's equations."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run the whole sequence; the default loops ``step()``."""
        return self.loop(x, state)

    def loop(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Reference: loop ``step()`` over time."""
        if state is None:
            state = self.initial_state(x.shape[0])
        hs = []
        for x_t in x.unbind(1):
            h, state = self.step(x_t, state)
            hs.append(h)
        return torch.stack(hs, 1), state

    # -- bookkeeping -----------------------------------------------------------------------
    def num_parameters(self) -> int:
        """Trainable degrees of freedom (a cell with constrained parameters overrides this)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def flops_per_step(self) -> int:
        """FLOPs of one ``step()`` at batch 1, counted by ``torch.utils.flop_counter`` (matrix
        products only: elementwise work is not counted), less what ``step()`` recomputes that the
        fast path does once per sequence (``per_sequence_flops``)."""
        from torch.utils.flop_counter import FlopCounterMode
        p = next(self.parameters())
        x = torch.zeros(1, self.input_size, dtype=p.dtype, device=p.device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            self.step(x, self.initial_state(1))
        return int(counter.get_total_flops()) - self.per_sequence_flops()

    def per_sequence_flops(self) -> int:
        """FLOPs ``step()`` spends on functions of the weights alone (none by default)."""
        return 0

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters that want their own optimizer settings, by group name (e.g. 'orthogonal')."""
        return {}

    def after_optimizer_step(self) -> None:
        """Hook called after every optimizer step (e.g. to rebase an orthogonal parametrization)."""

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"

