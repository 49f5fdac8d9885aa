"""SRLSTM: an LSTM with a Nesterov-accelerated drive and scheduled restart (Nguyen et al.,
NeurIPS 2020), transcribing the official code (minhtannguyen/MomentumRNN,
mnist-timit/momentumnet.py NesterovLSTMCell, and the step counter of mnist-timit/mnist.py)::

    u_t   = U h_{t-1} + b_h - s (W x_t + b_x)
    pre_t = u_t + ((k_t - 1) / (k_t + 2)) (u_t - u_{t-1})      -> the LSTM gates i, f, g, o

The step counter, as the official training loop keeps it (``iter_indx``): a stored count starts
at 0; each step first adds 1 and uses the result as k_t, and after the step the count returns to
0 when ``restart > 0`` and k_t % restart == 0. From a fresh state, with t = 0, 1, ... counting
steps, k_t = (t mod restart) + 1 (k_t = t + 1 when restart = 0, the code's "never"), so the
momentum term is zero at t = 0, restart, 2 restart, ... and u_{-1} never matters from a fresh
state.
The state carries u_{t-1} and the count, so a sequence split across calls runs exactly as one.

u_t depends on h, so no cuDNN reduction exists; ``forward()`` is one time loop in a custom
autograd Function with a hand-written backward (see ``bench.momentum.adaptive`` for why; the gate kernels are ``bench.kernels.gates``).
Parameters and initialisation are MomentumLSTM's, as in the official cell.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from bench.cell import State
from bench.kernels.gates import (BLOCK, FORGET_BIAS, affine, hidden_buffer, lstm_gates_backward,
                                 lstm_gates_forward)
from bench.momentum.rnn import STEP_SIZE, MomentumLSTM
from bench.registry import HParam, register_cell

STEP_SIZE_SR = dataclasses.replace(STEP_SIZE, default=0.9)         # official pMNIST: --epsilon 0.9
RESTART = HParam("restart", 40, search=(1, 100), kind=int, valid="[0, inf)",
                 doc="restart the Nesterov count every this many steps (official pMNIST 40; "
                     "0: never, the official parser default)")


def step_counts(k0: Tensor, T: int, restart: int) -> tuple[Tensor, Tensor]:
    """k_t for t < T as (T, *k0.shape), and the stored count after step T - 1, from the stored
    count k0: the rule 'k += 1; use k; if restart and k % restart == 0: k = 0' in closed form."""
    t = torch.arange(T, dtype=k0.dtype, device=k0.device).view(T, *([1] * k0.dim()))
    k = k0 + t + 1                                  # until the first restart (if any)
    if restart <= 0:
        return k, k[-1]
    first = torch.remainder(restart - 1 - k0, restart)     # step of the first restart ...
    hits = k0 == k0.round()                                 # ... which needs an integer count
    k = torch.where(hits & (t > first), torch.remainder(t - first - 1, restart) + 1, k)
    return k, torch.where(torch.remainder(k[-1], restart) == 0, torch.zeros_like(k0), k[-1])


class _NesterovLSTMScan(torch.autograd.Function):
    """The whole SRLSTM sequence in one loop, time-major, with a hand-written backward.

    Inputs: x (T, B, I), M = [U, b_h - s b_x, -s W] so that u_t = [h_{t-1}, 1, x_t] M^T, the
    state, and the momentum coefficients (k_t - 1)/(k_t + 2) as (T, B, 1). The input part of u
    is one op per block of ``BLOCK`` steps; the backward's weight gradients one GEMM per block.
    """

    @staticmethod
    def forward(ctx, x: Tensor, M: Tensor, h0: Tensor, c0: Tensor, u0: Tensor, coef: Tensor):
        T, (B, n) = x.shape[0], h0.shape
        K = min(BLOCK, T)
        z = hidden_buffer(h0, T, extra=x.shape[2])
        z[:T, :, n + 1:] = x
        z[T, :, n + 1:] = 0
        hs, Ut, coefs = z[:, :, :n].unbind(0), M[:, :n].t(), coef.unbind(0)
        A = x.new_empty(K, B, 4 * n)                  # b_h - s (W x_t + b_x), reused per block
        u_prev, cs, acts, tcs = u0, [c0], [], []
        for b0 in range(0, T, K):
            L = min(K, T - b0)
            affine(x[b0:b0 + L].flatten(0, 1), M[:, n + 1:], M[:, n], out=A[:L].view(L * B, -1))
            for j in range(L):
                t = b0 + j
                u = torch.addmm(A[j], hs[t], Ut)
                a, c, tc = lstm_gates_forward(torch.addcmul(u, coefs[t], u - u_prev), cs[t],
                                              hs[t + 1])
                cs.append(c)
                acts.append(a)
                tcs.append(tc)
                u_prev = u
        # saved, not kept on ctx: autograd frees saved tensors after the backward
        ctx.save_for_backward(M, z, coef, *cs, *acts, *tcs)
        return z[1:, :, :n], hs[T].clone(), c.clone(), u_prev

    @staticmethod
    @once_differentiable
    def backward(ctx, dY, dhT, dcT, duT):
        M, z, coef, *rest = ctx.saved_tensors
        T, (B, n) = coef.shape[0], dhT.shape
        cs, acts, tcs = rest[:T + 1], rest[T + 1:2 * T + 1], rest[2 * T + 1:]
        K = min(BLOCK, T)
        hs, dYs, U = z[:, :, :n].unbind(0), dY.unbind(0), M[:, :n].contiguous()
        dx = z.new_empty(T, B, z.shape[2] - n - 1) if ctx.needs_input_grad[0] else None
        dM = torch.zeros_like(M)
        dp, DU = dhT.new_empty(B, 4 * n), dhT.new_empty(K, B, 4 * n)
        one, w, negc = dhT.new_ones(()), (1 + coef).unbind(0), (-coef).unbind(0)
        dh, dc, du_next = dY[T - 1] + dhT, dcT, duT   # gradients reaching h_t, c_t, u_t
        for b0 in reversed(range(0, T, K)):
            L = min(K, T - b0)
            du = DU[:L]
            for j in reversed(range(L)):
                t = b0 + j
                dc = lstm_gates_backward(dh, dc, acts[t], cs[t], tcs[t], hs[t + 1], dp, one)
                # pre_t = (1 + c_t) u_t - c_t u_{t-1}
                torch.addcmul(du_next, dp, w[t], out=du[j])
                du_next = dp * negc[t]
                dh = torch.addmm(dYs[t - 1], du[j], U) if t else du[j] @ U
            dM.addmm_(du.flatten(0, 1).t(), z[b0:b0 + L].flatten(0, 1))
            if dx is not None:
                torch.mm(du.flatten(0, 1), M[:, n + 1:], out=dx[b0:b0 + L].view(L * B, -1))
        return dx, dM, dh, dc, du_next, None


@register_cell("sr_lstm", hparams=(STEP_SIZE_SR, RESTART, FORGET_BIAS))
class SRLSTM(MomentumLSTM):
    """SRLSTM: an LSTM whose drive takes Nesterov steps, restarted every ``restart`` steps.

    Built on MomentumLSTM for its parameter layout and initialisation (the official cells share
    them); mu is unused and fixed at 0.
    """

    cuda_graph = True

    state_names = ("h", "c", "u", "k")

    def __init__(self, input_size: int, hidden_size: int, s: float, restart: int,
                 forget_bias: float):
        super().__init__(input_size, hidden_size, 0.0, s, forget_bias)
        self.restart = int(restart)

    def state_sizes(self) -> tuple[int, ...]:
        n = self.hidden_size
        return (n, n, 4 * n, 1)     # k: the stored step count, one per row, as a float

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One step, as NesterovLSTMCell.forward with mnist.py's counter (k: iter_indx)."""
        h, c, u_prev, k = state
        k = k + 1
        u = h @ self.U.T + self.b_h - self.s * (x_t @ self.W.T + self.b_x)
        i, f, g, o = (u + (k - 1) / (k + 2) * (u - u_prev)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if self.restart > 0:     # the official loop: if not (iter_indx % restart): iter_indx = 0
            k = torch.where(torch.remainder(k, self.restart) == 0, torch.zeros_like(k), k)
        return h, (h, c, u, k)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.initial_state(x.shape[0])
        h0, c0, u0, k0 = state
        k, k_last = step_counts(k0, x.shape[1], self.restart)
        M = torch.cat([self.U, (self.b_h - self.s * self.b_x)[:, None], -self.s * self.W], 1)
        Y, h, c, u = _NesterovLSTMScan.apply(x.transpose(0, 1).contiguous(), M, h0, c0, u0,
                                             (k - 1) / (k + 2))
        return Y.transpose(0, 1), (h, c, u, k_last)
