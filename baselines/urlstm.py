"""UR-LSTM (Gu et al. 2020, "Improving the gating mechanism of recurrent neural networks"):
an LSTM whose forget gate is refined by a second gate and uniformly initialised::

    f = sigmoid(L_f(x_t, h_{t-1}) + b_f)         r = sigmoid(L_r(x_t, h_{t-1}) - b_f)
    g = r (1 - (1 - f)^2) + (1 - r) f^2           (the effective forget gate)
    c_t = g c_{t-1} + (1 - g) tanh(L_u(x_t, h_{t-1}));   h_t = sigmoid(L_o(x_t, h_{t-1})) tanh(c_t)
    b_f = logit(U[1/d, 1 - 1/d]),  d = hidden size  (uniform gate initialisation)

There is no official code release; this follows the paper's pseudocode (appendix A): one
``forget_bias`` vector, added to the forget gate and *subtracted* from the refine gate (so b_r is
tied to -b_f, not zero), and the input gate tied to the forget gate as 1 - g. L_* are affine maps
with one shared bias vector; it starts at zero so the gates' initial biases are exactly
(b_f, -b_f, 0, 0). Weights use PyTorch's LSTM initialisation, as the ``lstm`` baseline does.

``forward()`` runs the recurrence in a ``torch.autograd.Function`` whose backward is written by
hand: the per-step work is one matmul plus elementwise ops, and the weight gradient is a single
matmul over all steps after the loop.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bench.cell import Cell, State
from bench.registry import register_cell


@register_cell("urlstm")
class URLSTM(Cell):
    """UR-LSTM: LSTM with a refine gate on the forget gate and uniform gate initialisation."""

    cuda_graph = True

    state_names = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        n = hidden_size
        k = 1 / math.sqrt(n)
        # Rows in blocks of n: forget f, refine r, output o, candidate u.
        self.weight_ih = nn.Parameter(torch.empty(4 * n, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(4 * n, n).uniform_(-k, k))
        self.bias = nn.Parameter(torch.zeros(4 * n))
        # U[1/d, 1 - 1/d] is empty for d < 2; a single unit starts at u = 1/2.
        u = torch.empty(n).uniform_(1 / n, 1 - 1 / n) if n > 2 else torch.full((n,), 0.5)
        self.forget_bias = nn.Parameter(torch.logit(u))

    def gate_bias(self) -> Tensor:
        """Bias of each gate's pre-activation: L_*'s bias plus (b_f, -b_f, 0, 0)."""
        b_f = self.forget_bias
        return self.bias + torch.cat([b_f, -b_f, b_f.new_zeros(2 * self.hidden_size)])

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        L_f, L_r, L_o, L_u = (x_t @ self.weight_ih.T + h @ self.weight_hh.T + self.bias).chunk(4, 1)
        f = torch.sigmoid(L_f + self.forget_bias)
        r = torch.sigmoid(L_r - self.forget_bias)
        g = r * (1 - (1 - f) ** 2) + (1 - r) * f ** 2
        c = g * c + (1 - g) * torch.tanh(L_u)
        h = torch.sigmoid(L_o) * torch.tanh(c)
        return h, (h, c)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        h0, c0 = self.initial_state(x.shape[0]) if state is None else state
        hs, c = _URLSTMScan.apply(x.transpose(0, 1), self.weight_ih, self.gate_bias(),
                                  self.weight_hh, h0, c0)
        return hs.transpose(0, 1), (hs[-1], c)


class _URLSTMScan(torch.autograd.Function):
    """The UR-LSTM recurrence over time-major x, with a hand-written backward.

    The input projection of all steps is one matmul into the buffer that then holds each step's
    gate activations in place, and each step writes into preallocated (T, B, .) buffers: storing
    activations for backward costs page faults, so only a, c and tanh(c) are kept.
    """

    @staticmethod
    def forward(ctx, x: Tensor, W: Tensor, b: Tensor, U: Tensor, h0: Tensor, c0: Tensor):
        T, B, n = x.shape[0], h0.shape[0], h0.shape[1]
        # tanh(z) = 2 sigmoid(2z) - 1: doubling u's rows lets one sigmoid cover all four gates
        # (tanh_ on a strided slice is ~4x slower than sigmoid_ on CPU).
        two = torch.ones(4 * n, 1, dtype=x.dtype, device=x.device)
        two[3 * n:] = 2
        A = torch.addmm(b * two[:, 0], x.reshape(T * B, -1), (W * two).T).view(T, B, 4 * n)
        C, TAU, H = (x.new_empty(T, B, n) for _ in range(3))
        U_T, h, c, one = (U * two).T, h0, c0, x.new_ones(())
        for t in range(T):
            a = A[t].addmm_(h, U_T).sigmoid_()
            a[:, 3 * n:].lerp_(one, -1.0)                                  # 2 s - 1
            f, r, o, u = a[:, :n], a[:, n:2 * n], a[:, 2 * n:3 * n], a[:, 3 * n:]
            g = f * torch.addcmul(f, r, 1 - f, value=2)                    # f^2 + 2rf(1-f)
            c = torch.lerp(u, c, g, out=C[t])                              # g c + (1 - g) u
            h = torch.mul(o, torch.tanh(c, out=TAU[t]), out=H[t])
        ctx.save_for_backward(x, W, U, h0, c0, A, C, TAU, H)
        return H, c

    @staticmethod
    def backward(ctx, dH: Tensor, dc_T: Tensor):
        x, W, U, h0, c0, A, C, TAU, H = ctx.saved_tensors
        T, B, n = H.shape
        dP = torch.empty_like(A)
        # d activation / d pre-activation: a (1 - a) for the sigmoids, (1 - a)(1 + a) for tanh.
        shift = torch.zeros(4 * n, dtype=A.dtype, device=A.device)
        shift[3 * n:] = 1
        dh, dc = torch.zeros_like(h0), dc_T.clone()
        for t in range(T - 1, -1, -1):
            a, tau = A[t], TAU[t]
            f, r, o, u = a[:, :n], a[:, n:2 * n], a[:, 2 * n:3 * n], a[:, 3 * n:]
            d = dP[t]
            df, dr, do, du = d[:, :n], d[:, n:2 * n], d[:, 2 * n:3 * n], d[:, 3 * n:]
            dh += dH[t]
            torch.mul(dh, tau, out=do)
            dc.addcmul_(dh * o, 1 - tau * tau)
            e = torch.sub(C[t - 1] if t else c0, u).mul_(dc).mul_(2)   # 2 dL/dg
            act = (1 - a) * (a + shift)
            g = torch.addcmul(f * f, r, act[:, :n], value=2)             # f^2 + 2rf(1-f)
            torch.mul(dc, 1 - g, out=du)
            dc.mul_(g)                                                   # now dL/dc_{t-1}
            torch.mul(e, torch.add(f, r).addcmul_(r, f, value=-2), out=df)   # dg/df = 2(f+r-2rf)
            torch.mul(e, act[:, :n], out=dr)                                 # dg/dr = 2f(1-f)
            d.mul_(act)
            dh = d @ U
        dP2 = dP.view(T * B, 4 * n)
        H_prev = torch.cat([h0.unsqueeze(0), H[:-1]]).view(T * B, n)
        dx = (dP2 @ W).view_as(x) if ctx.needs_input_grad[0] else None   # inputs rarely need it
        return dx, dP2.T @ x.reshape(T * B, -1), dP2.sum(0), dP2.T @ H_prev, dh, dc
