"""NRU, the non-saturating recurrent unit (Chandar et al. 2019, "Towards non-saturating recurrent
units for modelling long-term dependencies"), transcribing the authors' code (apsarath/NRU,
nru_project/NRU.py, NRUCell with its defaults use_relu=False, layer_norm=False)::

    h_t = ReLU(W [x_t; h_{t-1}; m_{t-1}] + b)
    alpha, beta = linear maps of [h_t; m_{t-1}]                    (k write, k erase scalars)
    v_i = normalise_5(reshape_{k x m}(p ⊗ q)),  p, q = linear maps of [h_t; m_{t-1}] of size sqrt(k m)
    u_i likewise from their own p, q;   normalise_5(z) = z / max(||z||_5, 1e-12)
    m_t = m_{t-1} + mean_i(alpha_i v_i - beta_i u_i)

Initialisation: PyTorch's ``nn.Linear`` default, as in that code. Its four head maps (alpha,
beta, write p|q, erase p|q) are rows of one matrix here: same fan-in, so the same distribution
and parameter count.

Fast path: with s = sqrt(k m) and k dividing s, head i of reshape(p ⊗ q) is p_i ⊗ q, p_i the
i-th of k slices of p, and ||p_i ⊗ q||_5 = ||p_i||_5 ||q||_5. So the heads' sum is
(sum_i c_i p_i) ⊗ q with scalars c_i = alpha_i / (k max(||p_i||_5 ||q||_5, 1e-12)) (the same floor
as the code's): no k x m tensor is built. ``forward()`` runs it in a ``torch.autograd.Function``
with a hand-written backward; when k does not divide s it loops ``step()``. One difference: the
code's 5-norm of p ⊗ q overflows float32 once entries |p_i q_j| near 5e7 (a memory grown that
large), and F.normalize then writes zeros; the factored norm does not overflow and keeps writing.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bench.cell import Cell, State
from bench.errors import UserError
from bench.registry import HParam, register_cell

EPS = 1e-12      # F.normalize's floor on the norm, as in the authors' code


@register_cell("nru", hparams=(
    HParam("memory_size", 256, kind=int, valid="[1, inf)",
           doc="memory width m; sqrt(k m) must be an integer (published pMNIST: 256)"),
    HParam("k", 4, kind=int, valid="[1, inf)", doc="write/erase heads (published: 4)"),
))
class NRU(Cell):
    """NRU: a ReLU RNN with a flat memory updated additively by k write and k erase heads."""

    cuda_graph = True

    state_names = ("h", "m")

    def __init__(self, input_size: int, hidden_size: int, memory_size: int, k: int):
        super().__init__(input_size, hidden_size)
        s = math.isqrt(memory_size * k)
        if s * s != memory_size * k:
            raise UserError(f"nru: sqrt(k * memory_size) = sqrt({k} * {memory_size}) must be an "
                            f"integer; e.g. memory_size=256 with k=4, or memory_size=64 with k=1")
        self.memory_size, self.k, self.s = memory_size, k, s
        n, m = hidden_size, memory_size
        self.hidden = nn.Linear(input_size + n + m, n)     # W, b over [x_t; h_{t-1}; m_{t-1}]
        # Rows over [h_t; m_{t-1}]: alpha (k), beta (k), then write p, erase p, write q, erase q
        # (s each).
        self.heads = nn.Linear(n + m, 2 * k + 4 * s)

    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size, self.memory_size)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, m = state
        B, k, s = x_t.shape[0], self.k, self.s
        h = torch.relu(self.hidden(torch.cat([x_t, h, m], 1)))
        alpha, beta, p_v, p_u, q_v, q_u = self.heads(torch.cat([h, m], 1)).split(
            [k, k, s, s, s, s], 1)
        v = F.normalize(torch.bmm(p_v.unsqueeze(2), q_v.unsqueeze(1)).view(B, k, -1), p=5, dim=2)
        u = F.normalize(torch.bmm(p_u.unsqueeze(2), q_u.unsqueeze(1)).view(B, k, -1), p=5, dim=2)
        m = m + (alpha.unsqueeze(2) * v - beta.unsqueeze(2) * u).mean(1)
        return h, (h, m)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if self.s % self.k:
            return self.loop(x, state)      # heads split rows of p ⊗ q: no factored form
        h0, m0 = self.initial_state(x.shape[0]) if state is None else state
        I, n = self.input_size, self.hidden_size
        W, A = self.hidden.weight, self.heads.weight
        hs, m = _NRUScan.apply(x.transpose(0, 1), W[:, :I], self.hidden.bias, W[:, I:I + n],
                               W[:, I + n:], A[:, :n], A[:, n:], self.heads.bias, h0, m0, self.k)
        return hs.transpose(0, 1), (hs[-1], m)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", memory_size={self.memory_size}, k={self.k}"


class _NRUScan(torch.autograd.Function):
    """The NRU recurrence in its factored head form, with a hand-written backward.

    H[t] and O[t] (the heads' linear outputs) start as the hoisted input projection and the bias
    and are completed in place by the step's matmuls; the few per-head scalars the backward needs
    go to a small buffer; weight gradients are single matmuls over all steps after the loop.
    """

    @staticmethod
    def forward(ctx, x: Tensor, W_x: Tensor, b: Tensor, W_h: Tensor, W_m: Tensor, A_h: Tensor,
                A_m: Tensor, a: Tensor, h0: Tensor, m0: Tensor, k: int):
        T, B, n = x.shape[0], h0.shape[0], h0.shape[1]
        M, s = m0.shape[1], (a.shape[0] - 2 * k) // 4
        r = s // k
        # [1, -1] made on the device: a host-to-device copy cannot be captured in a CUDA graph
        sign = (1 - 2 * torch.arange(2, dtype=x.dtype, device=x.device)).view(1, 2, 1) / k
        H = torch.addmm(b, x.reshape(T * B, -1), W_x.T).view(T, B, n)
        O = a.expand(T, B, -1).contiguous()
        Mem = x.new_empty(T, B, M)
        # Per head (B, 2, k): P5 = ||p_i||^5, N = floored norm, cN = c_i; Q5 (B, 2, 1); w (B, 2, r).
        S = x.new_empty(T, B, 2, 3 * k + 1 + r)
        h, m = h0, m0
        for t in range(T):
            h = H[t].addmm_(m, W_m.T).addmm_(h, W_h.T).relu_()
            out = O[t].addmm_(m, A_m.T).addmm_(h, A_h.T)
            P5, N, cN, Q5, w = S[t].split([k, k, k, 1, r], 2)
            z = out[:, 2 * k:]
            z2 = z * z
            z5 = (z2 * z2 * z.abs()).view(B, 2, 2, s)              # |z|^5 (pow(5) is slow on CPU)
            torch.sum(z5[:, 0].view(B, 2, k, r), 3, out=P5)
            torch.sum(z5[:, 1], 2, keepdim=True, out=Q5)
            # ||p_i ⊗ q||_5 = ||p_i||_5 ||q||_5 (a product of roots: the product of the fifth
            # powers overflows float32 once |p_i q_j| nears 5e7), floored
            torch.clamp_min(P5.pow(0.2) * Q5.pow(0.2), EPS, out=N)
            torch.div(out[:, :2 * k].view(B, 2, k) * sign, N, out=cN)
            p, q = z[:, :2 * s].view(B, 2, k, r), z[:, 2 * s:].view(B, 2, s)
            torch.sum(cN.unsqueeze(3) * p, 2, out=w)
            m = torch.baddbmm(m.view(B, r, s), w.transpose(1, 2), q,
                              out=Mem[t].view(B, r, s)).view(B, M)
        ctx.k = k
        ctx.save_for_backward(x, W_x, W_h, W_m, A_h, A_m, h0, m0, H, O, Mem, S)
        return H, m

    @staticmethod
    def backward(ctx, dH: Tensor, dm_T: Tensor):
        x, W_x, W_h, W_m, A_h, A_m, h0, m0, H, O, Mem, S = ctx.saved_tensors
        k = ctx.k
        T, B, n = H.shape
        M, s = m0.shape[1], (O.shape[2] - 2 * k) // 4
        r = s // k
        sign = (1 - 2 * torch.arange(2, dtype=x.dtype, device=x.device)).view(1, 2, 1) / k
        zero, tiny = x.new_zeros(()), torch.finfo(x.dtype).tiny      # tiny: 0/0 where p = 0
        dZ, dO = torch.empty_like(H), torch.empty_like(O)
        dh, dm = torch.zeros_like(h0), dm_T.clone()
        for t in range(T - 1, -1, -1):
            P5, N, cN, Q5, w = S[t].split([k, k, k, 1, r], 2)
            z = O[t, :, 2 * k:]
            p, q = z[:, :2 * s].view(B, 2, k, r), z[:, 2 * s:].view(B, 2, s)
            dz = dO[t, :, 2 * k:]
            dp, dq = dz[:, :2 * s].view(B, 2, k, r), dz[:, 2 * s:].view(B, 2, s)
            # m_t = m_{t-1} + sum_g w_g ⊗ q_g,  w_g = sum_i cN_gi p_gi
            D = dm.view(B, r, s)
            dw = torch.bmm(D, q.transpose(1, 2)).transpose(1, 2)           # (B, 2, r)
            dcN = (p * dw.unsqueeze(2)).sum(3)                             # (B, 2, k)
            # cN = coef sign / N, N = (P5 Q5)^(1/5) unless floored; d|z|^5/dz = 5 z^3|z|, and
            # the 5 cancels the 1/5 of the root: dL/dz = -dcN cN z^3|z| / (P5 or Q5). Dividing
            # z^3|z| by P5 or Q5 first keeps large gradients from overflowing.
            g = torch.where(N > EPS, dcN * cN, zero).neg_()
            z3a = (z * z).mul_(z * z.abs()).view(B, 2, 2, s)
            torch.addcmul(cN.unsqueeze(3) * dw.unsqueeze(2), g.unsqueeze(3),
                          z3a[:, 0].view(B, 2, k, r) / P5.clamp_min(tiny).unsqueeze(3), out=dp)
            torch.addcmul(torch.bmm(w, D), g.sum(2, keepdim=True),
                          z3a[:, 1] / Q5.clamp_min(tiny), out=dq)
            torch.mul(dcN / N, sign, out=dO[t, :, :2 * k].view(B, 2, k))
            # out_t = a + A_h h_t + A_m m_{t-1};  h_t = relu(z_t),
            # z_t = W_x x_t + b + W_h h_{t-1} + W_m m_{t-1}
            dh += dH[t]
            # relu backward, one kernel: dz = dh where h_t > 0, else 0
            torch.ops.aten.threshold_backward.grad_input(dh.addmm_(dO[t], A_h), H[t], 0,
                                                         grad_input=dZ[t])
            dm.addmm_(dZ[t], W_m).addmm_(dO[t], A_m)
            dh = dZ[t] @ W_h
        # Weight gradients: one matmul each over all steps (step 0 reads the initial state).
        dZ2, dO2 = dZ.view(T * B, n), dO.view(T * B, -1)
        H2, Mem2 = H.view(T * B, n), Mem.view(T * B, M)
        dW_h = dZ2[B:].T @ H2[:-B] + dZ2[:B].T @ h0
        dW_m = dZ2[B:].T @ Mem2[:-B] + dZ2[:B].T @ m0
        dA_m = dO2[B:].T @ Mem2[:-B] + dO2[:B].T @ m0
        dx = (dZ2 @ W_x).view_as(x) if ctx.needs_input_grad[0] else None  # inputs rarely need it
        return (dx, dZ2.T @ x.reshape(T * B, -1), dZ2.sum(0), dW_h, dW_m, dO2.T @ H2, dA_m,
                dO2.sum(0), dh, dm, None)
