"""The LSTM gates' forward and backward one step at a time, for the hand-written scans of the
momentum cells, and the forget-gate bias every LSTM-family cell shares.

Per-step results are kept as separate (B, .) tensors, not slices of one (T, B, .) buffer: the
allocator reuses freed small blocks, while every page of a fresh giant buffer costs a page fault
on first write (measured: 5x the cost of a sigmoid, per step).
"""
from __future__ import annotations

import torch
from torch import Tensor

from bench.registry import HParam

FORGET_BIAS = HParam("forget_bias", 1.0, valid="(-inf, inf)",
                     doc="initial forget-gate bias (lstm: on b_ih only; the momentum cells: on "
                         "b_x and b_h, the official code's fg_init)")


def lstm_gates_forward(p: Tensor, c_prev: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gates of pre-activation p (B, 4H): write h; return activations (i, f, g, o), c, tanh c."""
    n = c_prev.shape[1]
    a = torch.sigmoid(p)                            # one call for all gates; g is redone below
    torch.tanh(p[:, 2 * n:3 * n], out=a[:, 2 * n:3 * n])
    c = torch.addcmul(a[:, n:2 * n] * c_prev, a[:, :n], a[:, 2 * n:3 * n])
    tc = torch.tanh(c)
    torch.mul(a[:, 3 * n:], tc, out=h)
    return a, c, tc


def lstm_gates_backward(dh: Tensor, dc: Tensor, a: Tensor, c_prev: Tensor, tc: Tensor,
                        h: Tensor, dp: Tensor, one: Tensor) -> Tensor:
    """Backward of ``lstm_gates_forward``: write dL/dp into dp; return dL/dc_prev.

    dh and dc are the whole gradients reaching h_t (output and later steps) and, from later
    steps, c_t; ``one`` is a 0-d tensor holding 1 (made once, not per step).
    """
    n = dh.shape[1]
    i, f, g, o = a.split(n, 1)
    dc = torch.addcmul(dc, dh, torch.addcmul(o, h, tc, value=-1))   # o (1 - tc^2) = o - h tc
    torch.mul(dc, g, out=dp[:, :n])
    torch.mul(dc, c_prev, out=dp[:, n:2 * n])
    torch.mul(dc, i, out=dp[:, 2 * n:3 * n])
    torch.mul(dh, tc, out=dp[:, 3 * n:])
    deriv = torch.addcmul(a, a, a, value=-1)       # sigmoid' = a (1 - a) ...
    torch.addcmul(one, g, g, value=-1, out=deriv[:, 2 * n:3 * n])   # ... and tanh' = 1 - a^2
    dp.mul_(deriv)
    return dc * f


def hidden_buffer(h0: Tensor, T: int, extra: int = 0) -> Tensor:
    """(T + 1, B, H + 1 + extra) buffer of rows [h_{t-1}, 1, ...]: one GEMM of a row with
    [U, b, ...] gives U h_{t-1} + b (+ ...), and one GEMM in the backward all their gradients.
    Its [:, :, :H] part is the output sequence."""
    B, n = h0.shape
    z = h0.new_empty(T + 1, B, n + 1 + extra)
    z[0, :, :n] = h0
    z[:, :, n] = 1
    return z


#: time steps per block: work that does not wait for h runs as one op per block, not per step
BLOCK = 32


def affine(x: Tensor, W: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """out = x W^T + b for x (N, I): an outer product when I = 1 (a K = 1 GEMM is ~8x slower)."""
    if x.shape[1] == 1:
        return torch.addcmul(b, x, W.t(), out=out)
    return torch.addmm(b, x, W.t(), out=out)
