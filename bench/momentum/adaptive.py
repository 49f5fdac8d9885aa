"""AdamLSTM and RMSPropLSTM (Nguyen et al., NeurIPS 2020), transcribing the official code
(minhtannguyen/MomentumRNN, mnist-timit/momentumnet.py, AdamLSTMCell)::

    g_t = W x_t + b_x
    v_t = mu v_{t-1} + s g_t
    r_t = beta r_{t-1} + (1 - beta) g_t * g_t
    pre_t = v_t / sqrt(r_t + 1e-16) + U h_{t-1} + b_h     -> the LSTM gates i, f, g, o

with v_0 = r_0 = 0 and no bias correction, as in the code. RMSPropLSTM is AdamLSTM with mu = 0:
the official recipes run ``alstm --mu 0.0`` for it. Parameters and initialisation are
MomentumLSTM's (W orthogonal, U identity, forget bias on both b_x and b_h).

The drive D_t = v_t / sqrt(r_t + 1e-16) depends on x only, so no input projection waits for h.
Fast paths, both exact:

- CPU (and any non-CUDA device): one custom autograd Function with a hand-written backward that
  walks time in blocks of ``BLOCK`` steps: per block, s g_t of every step in one op, the v and
  r recurrences together one op per step, the rest of D one op per block; then the LSTM steps.
  Why not autograd: on 2 CPU cores (B 64, T 784, H 128), D and its gradients as whole-sequence
  (T, B, 4H) tensors cost about 4x nn.LSTM's whole forward+backward by themselves (each such
  tensor is a fresh, page-faulted allocation streamed through memory), and an autograd loop
  over the LSTM steps alone about 2x.
- CUDA: D for all t at once (exponential filters, ``bench.momentum.filter``), then cuDNN
  ``torch.lstm`` over D with an identity input weight: one extra (T B, 4H) x (4H, 4H) GEMM,
  cheap on a GPU.
"""
from __future__ import annotations

import dataclasses
import warnings

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from bench.cell import State
from bench.kernels.filter import decayed, exp_filter
from bench.kernels.gates import (BLOCK, FORGET_BIAS, affine, hidden_buffer, lstm_gates_backward,
                                 lstm_gates_forward)
from bench.momentum.rnn import MOMENTUM, STEP_SIZE, MomentumLSTM
from bench.registry import HParam, register_cell

#: the official code's epsilon inside the square root
EPS = 1e-16
BETA = HParam("beta", 0.01, search=(0.0, 0.999), valid="[0, 1)",
              doc="decay of the squared-drive average r (the official code's mus)")
STEP_SIZE_ADAM = dataclasses.replace(STEP_SIZE, default=1.0)      # official pMNIST: --epsilon 1.0


class _AdamLSTMScan(torch.autograd.Function):
    """The whole AdamLSTM sequence in one loop, time-major, with a hand-written backward.

    Inputs: x (T, B, I), W, b_x, Ub = [U, b_h], the state, mu, s, beta. Per block of time
    steps: s g for every step in one op, the v and r recurrences together one op per step, the
    rest of the drive one op per block; then the LSTM steps. The backward mirrors it.
    """

    @staticmethod
    def forward(ctx, x: Tensor, W: Tensor, b_x: Tensor, Ub: Tensor, h0: Tensor, c0: Tensor,
                v0: Tensor, r0: Tensor, mu: float, s: float, beta: float):
        T, (B, n) = x.shape[0], h0.shape
        K = min(BLOCK, T)
        z = hidden_buffer(h0, T)
        zs, hs, Ut = z.unbind(0), z[:, :, :n].unbind(0), Ub.t()
        sW, sb = s * W, s * b_x
        # [v, r] advance together: [v_t, r_t] = [mu, beta] [v, r]_{t-1} + [s g_t, (1 - beta) g_t^2]
        rates = x.new_tensor([mu, beta]).view(2, 1, 1)
        IN, VR = x.new_empty(2, K, B, 4 * n), x.new_empty(2, K, B, 4 * n)   # reused per block
        vr, cs, acts, tcs, blocks = torch.stack([v0, r0]), [c0], [], [], []
        for b0 in range(0, T, K):
            L = min(K, T - b0)
            g, inp, out = IN[0, :L], IN[:, :L], VR[:, :L]
            affine(x[b0:b0 + L].flatten(0, 1), sW, sb, out=g.view(L * B, -1))       # s g_t
            torch.mul(g, g, out=IN[1, :L]).mul_((1 - beta) / s ** 2)                 # (1-beta) g^2
            for j in range(L):
                vr = torch.addcmul(inp[:, j], rates, vr, out=out[:, j])
            rq = x.new_empty(2, L, B, 4 * n)            # rs = (r + eps)^(-1/2), q = D / (r + eps)
            re = out[1] + EPS
            d = out[0] * torch.rsqrt(re, out=rq[0])     # the drive D_t
            torch.div(d, re, out=rq[1])                 # -2 dD/dr
            blocks.append(rq)
            for j in range(L):
                t = b0 + j
                a, c, tc = lstm_gates_forward(torch.addmm(d[j], zs[t], Ut), cs[t], hs[t + 1])
                cs.append(c)
                acts.append(a)
                tcs.append(tc)
        # saved, not kept on ctx: autograd frees saved tensors after the backward
        ctx.save_for_backward(x, sW, sb, Ub, z, *cs, *acts, *tcs, *blocks)
        ctx.coefs = (mu, s, beta)
        return z[1:, :, :n], hs[T].clone(), c.clone(), vr[0].clone(), vr[1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dY, dhT, dcT, dvT, drT):
        x, sW, sb, Ub, z, *rest = ctx.saved_tensors
        mu, s, beta = ctx.coefs
        T, (B, n) = x.shape[0], dhT.shape
        cs, acts, tcs = rest[:T + 1], rest[T + 1:2 * T + 1], rest[2 * T + 1:3 * T + 1]
        blocks = rest[3 * T + 1:]
        K = min(BLOCK, T)
        zs, hs, dYs, U = z.unbind(0), z[:, :, :n].unbind(0), dY.unbind(0), Ub[:, :n].contiguous()
        dx = x.new_empty(x.shape) if ctx.needs_input_grad[0] else None
        dWt, db_x, dUb = sW.new_zeros(sW.shape[::-1]), torch.zeros_like(sb), torch.zeros_like(Ub)
        P, G = dhT.new_empty(K, B, 4 * n), dhT.new_empty(K, B, 4 * n)
        one, rates = dhT.new_ones(()), dhT.new_tensor([mu, beta]).view(2, 1, 1)
        dh, dc = dY[T - 1] + dhT, dcT       # gradients reaching h_t and c_t
        Dvr = dhT.new_zeros(2, B, 4 * n)    # dL/dv_{t+1} and -2 dL/dr_{t+1}
        for b0 in reversed(range(0, T, K)):
            rq = blocks[b0 // K]
            L = rq.shape[1]
            dp, g = P[:L], G[:L]
            for j in reversed(range(L)):
                t = b0 + j
                dc = lstm_gates_backward(dh, dc, acts[t], cs[t], tcs[t], hs[t + 1], dp[j], one)
                dh = torch.addmm(dYs[t - 1], dp[j], U) if t else dp[j] @ U
            dUb.addmm_(dp.flatten(0, 1).t(), z[b0:b0 + L].flatten(0, 1))
            # the drive D = v rs, rs = (r + eps)^(-1/2): dD/dv = rs, dD/dr = -q/2
            dvr = dp * rq
            if b0 + L == T:                 # the returned v_T, r_T
                dvr[0, -1] += dvT
                dvr[1, -1].add_(drT, alpha=-2)
            for j in reversed(range(L)):
                Dvr = torch.addcmul(dvr[:, j], rates, Dvr, out=dvr[:, j])
            xb = x[b0:b0 + L].flatten(0, 1)
            affine(xb, sW, sb, out=g.view(L * B, -1))                               # s g again
            dg = torch.addcmul(dvr[0], g, dvr[1], value=-(1 - beta) / s ** 2)       # dL/d(s g)
            dg = dg.flatten(0, 1)
            dWt.addmm_(xb.t(), dg)          # x^T dg, not dg^T x: a skinny output is ~10x slower
            db_x += dg.sum(0)
            if dx is not None:
                torch.mm(dg, sW, out=dx[b0:b0 + L].view(L * B, -1))
        return (dx, dWt.t().mul_(s), db_x.mul_(s), dUb, dh, dc, Dvr[0] * mu,
                Dvr[1] * (-0.5 * beta), None, None, None)


@register_cell("adam_lstm", hparams=(MOMENTUM, STEP_SIZE_ADAM, BETA, FORGET_BIAS))
class AdamLSTM(MomentumLSTM):
    """AdamLSTM: an LSTM driven by an Adam-style normalised momentum (no bias correction)."""

    state_names = ("h", "c", "v", "r")
    #: "fused" (the CPU loop), "parallel" (filters + cuDNN), or None: by device
    fast_path: str | None = None

    def __init__(self, input_size: int, hidden_size: int, mu: float, s: float, beta: float,
                 forget_bias: float):
        super().__init__(input_size, hidden_size, mu, s, forget_bias)
        self.beta = float(beta)

    def state_sizes(self) -> tuple[int, ...]:
        n = self.hidden_size
        return (n, n, 4 * n, 4 * n)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One step, as AdamLSTMCell.forward of the official momentumnet.py."""
        h, c, v, r = state
        g = x_t @ self.W.T + self.b_x
        v = self.mu * v + self.s * g
        r = self.beta * r + (1 - self.beta) * (g * g)
        i, f, gg, o = (v / torch.sqrt(r + EPS) + h @ self.U.T + self.b_h).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c, v, r)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.initial_state(x.shape[0])
        path = self.fast_path or ("parallel" if x.is_cuda else "fused")
        if path == "parallel":
            return self._forward_parallel(x, *state)
        Ub = torch.cat([self.U, self.b_h[:, None]], 1)
        Y, h, c, v, r = _AdamLSTMScan.apply(x.transpose(0, 1).contiguous(), self.W, self.b_x,
                                            Ub, *state, self.mu, self.s, self.beta)
        return Y.transpose(0, 1), (h, c, v, r)

    def _forward_parallel(self, x: Tensor, h0: Tensor, c0: Tensor, v0: Tensor,
                          r0: Tensor) -> tuple[Tensor, State]:
        """Every D_t at once, then cuDNN over D with an identity input weight."""
        B, T, _ = x.shape
        x1 = torch.cat([x, x.new_ones(B, T, 1)], -1)          # [x, 1] @ [W, b_x]^T = g
        Wb = self.core.weight_ih_l0
        g = x1 @ Wb.T
        v = exp_filter(x1, self.mu, self.s) @ Wb.T + decayed(v0, self.mu, T)
        # chunk 64: the filter's cost grows with the chunk, and g is 4H wide
        r = exp_filter(g * g, self.beta, 1 - self.beta, chunk=64) + decayed(r0, self.beta, T)
        D = v / torch.sqrt(r + EPS) + self.b_h
        eye = torch.eye(D.shape[-1], dtype=D.dtype, device=D.device)
        with warnings.catch_warnings():   # cuDNN copies the two weights into one buffer: fine
            warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
            y, h, c = torch.lstm(D, (h0[None], c0[None]), [eye, self.U], False, 1, 0.0,
                                 torch.is_grad_enabled(), False, True)
        return y, (h[0], c[0], v[:, -1], r[:, -1])


@register_cell("rmsprop_lstm", hparams=(STEP_SIZE_ADAM, BETA, FORGET_BIAS))
class RMSPropLSTM(AdamLSTM):
    """RMSPropLSTM: AdamLSTM with mu = 0, its drive normalised by a running RMS of the input."""

    def __init__(self, input_size: int, hidden_size: int, s: float, beta: float,
                 forget_bias: float):
        super().__init__(input_size, hidden_size, 0.0, s, beta, forget_bias)
