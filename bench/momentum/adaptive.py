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
  walks time in blocks of ``BLOCK`` steps: per block, s g_t of every step in one GEMM, the v and
  r recurrences one op per step each, the rest of D in one op per block; then the LSTM steps.
  Computing D and its gradients as whole-sequence (T, B, 4H) tensors under autograd measured
  3x to 4x nn.LSTM on 2 CPU cores by itself (each such tensor is a fresh, page-faulted
  allocation streamed through memory); an autograd loop over steps, about 2.5x.
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
from bench.momentum.filter import exp_filter
from bench.momentum.rnn import MU, S, MomentumLSTM
from bench.registry import HParam, register_cell

#: the official code's epsilon inside the square root
EPS = 1e-16
BETA = HParam("beta", 0.01, search=(0.0, 0.999), valid="[0, 1)",
              doc="decay of the squared-drive average r (the official code's mus)")
S_ADAM = dataclasses.replace(S, default=1.0)      # official pMNIST: --epsilon 1.0
FORGET_BIAS = HParam("forget_bias", 1.0, valid="(-inf, inf)",
                     doc="fg_init of the official code: added to the forget part of b_x and of b_h")


# ---- the LSTM gates, forward and backward, one step at a time --------------------------------
# Per-step results are kept as separate (B, .) tensors, not slices of one (T, B, .) buffer: the
# allocator reuses freed small blocks, while every page of a fresh giant buffer costs a page fault
# on first write (measured: 5x the cost of a sigmoid, per step).

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

    dh and dc are the gradients reaching h_t and c_t from the output and from later steps;
    ``one`` is a 0-d tensor holding 1 (made once, not per step).
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


class _AdamLSTMScan(torch.autograd.Function):
    """The whole AdamLSTM sequence in one loop, time-major, with a hand-written backward.

    Inputs: x1 = [x, 1] (T, B, I + 1), Wb = [W, b_x], Ub = [U, b_h], the state, mu, s, beta.
    Per block of time steps: s g for every step in one GEMM, the v and r recurrences one op per
    step each, and the rest of the drive in one op per block; then the LSTM steps.
    """

    @staticmethod
    def forward(ctx, x1: Tensor, Wb: Tensor, Ub: Tensor, h0: Tensor, c0: Tensor, v0: Tensor,
                r0: Tensor, mu: float, s: float, beta: float):
        T, (B, n) = x1.shape[0], h0.shape
        K = min(BLOCK, T)
        z = hidden_buffer(h0, T)
        sWb = s * Wb
        G, GG, V, R, RE, D = (x1.new_empty(K, B, 4 * n) for _ in range(6))   # reused per block
        v, r, cs, acts, tcs, blocks = v0, r0, [c0], [], [], []
        for b0 in range(0, T, K):
            L = min(K, T - b0)
            g, gg, vb, rb, re, d = G[:L], GG[:L], V[:L], R[:L], RE[:L], D[:L]
            torch.mm(x1[b0:b0 + L].flatten(0, 1), sWb.t(), out=g.view(L * B, -1))   # s g_t
            torch.mul(g, g, out=gg).div_(s * s)                                      # g_t^2
            for j in range(L):
                v = torch.add(g[j], v, alpha=mu, out=vb[j])     # mu v + s g
                r = torch.lerp(r, gg[j], 1 - beta, out=rb[j])   # beta r + (1 - beta) g^2
            rs = torch.add(rb, EPS, out=re).rsqrt()
            torch.mul(vb, rs, out=d)                            # the drive D_t
            blocks += [rs, d / re]                              # D / (r + eps) = -2 dD/dr
            for j in range(L):
                t = b0 + j
                p = torch.addmm(d[j], z[t], Ub.t())
                a, c, tc = lstm_gates_forward(p, cs[t], z[t + 1, :, :n])
                cs.append(c)
                acts.append(a)
                tcs.append(tc)
        # saved, not kept on ctx: autograd frees saved tensors after the backward
        ctx.save_for_backward(x1, sWb, Ub, z, *cs, *acts, *tcs, *blocks)
        ctx.coefs = (mu, s, beta)
        return z[1:, :, :n], z[T, :, :n].clone(), c.clone(), v.clone(), r.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dY, dhT, dcT, dvT, drT):
        x1, sWb, Ub, z, *rest = ctx.saved_tensors
        mu, s, beta = ctx.coefs
        T, (B, n) = x1.shape[0], dhT.shape
        cs, acts, tcs = rest[:T + 1], rest[T + 1:2 * T + 1], rest[2 * T + 1:3 * T + 1]
        blocks = rest[3 * T + 1:]                       # rs, q of each block
        K = min(BLOCK, T)
        dx1 = torch.empty_like(x1) if ctx.needs_input_grad[0] else None
        dWb, dUb = torch.zeros_like(sWb), torch.zeros_like(Ub)
        P, G = dhT.new_empty(K, B, 4 * n), dhT.new_empty(K, B, 4 * n)
        one = dhT.new_ones(())
        dh, dc = dhT, dcT                   # gradients reaching h_t and c_t from later steps
        Dv, Dr = torch.zeros_like(dvT), torch.zeros_like(drT)   # dL/dv_{t+1}, -2 dL/dr_{t+1}
        for b0 in reversed(range(0, T, K)):
            rs, q = blocks[2 * (b0 // K):2 * (b0 // K) + 2]
            L = rs.shape[0]
            dp, g = P[:L], G[:L]
            for j in reversed(range(L)):
                t = b0 + j
                dc = lstm_gates_backward(dY[t] + dh, dc, acts[t], cs[t], tcs[t],
                                         z[t + 1, :, :n], dp[j], one)
                dh = torch.mm(dp[j], Ub[:, :n])
            dUb.addmm_(dp.flatten(0, 1).t(), z[b0:b0 + L].flatten(0, 1))
            # the drive D = v rs, rs = (r + eps)^(-1/2): dD/dv = rs, dD/dr = -q/2
            dv, dr = dp * rs, dp * q
            if b0 + L == T:                 # the returned v_T, r_T
                dv[-1] += dvT
                dr[-1].add_(drT, alpha=-2)
            for j in reversed(range(L)):
                Dv = torch.add(dv[j], Dv, alpha=mu, out=dv[j])
                Dr = torch.add(dr[j], Dr, alpha=beta, out=dr[j])
            torch.mm(x1[b0:b0 + L].flatten(0, 1), sWb.t(), out=g.view(L * B, -1))   # s g again
            dg = torch.addcmul(dv, g, dr, value=-(1 - beta) / s ** 2).flatten(0, 1)  # dL/d(s g)
            dWb.addmm_(dg.t(), x1[b0:b0 + L].flatten(0, 1))
            if dx1 is not None:
                torch.mm(dg, sWb, out=dx1[b0:b0 + L].view(L * B, -1))
        return dx1, dWb.mul_(s), dUb, dh, dc, Dv * mu, Dr * (-0.5 * beta), None, None, None


def decayed(x0: Tensor, rate: float, T: int) -> Tensor:
    """rate^(t+1) x0 for t < T, shape (B, T, C): what a carried-in filter state adds at step t."""
    powers = rate ** torch.arange(1, T + 1, device=x0.device, dtype=x0.dtype)
    return powers[:, None] * x0[:, None, :]


@register_cell("adam_lstm", hparams=(MU, S_ADAM, BETA, FORGET_BIAS), family="momentum")
class AdamLSTM(MomentumLSTM):
    """AdamLSTM: an LSTM driven by an Adam-style normalised momentum (no bias correction)."""

    state_names = ("h", "c", "v", "r")
    #: "fused" (the CPU loop), "parallel" (filters + cuDNN), or None: by device
    fast_path: str | None = None

    def __init__(self, input_size: int, hidden_size: int, mu: float, s: float, beta: float,
                 forget_bias: float = 1.0):
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
        xt = x.transpose(0, 1)
        x1 = torch.cat([xt, xt.new_ones(*xt.shape[:2], 1)], -1)      # [x_t, 1], time-major
        Ub = torch.cat([self.U, self.b_h[:, None]], 1)
        Y, h, c, v, r = _AdamLSTMScan.apply(x1, self.core.weight_ih_l0, Ub, *state,
                                            self.mu, self.s, self.beta)
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


@register_cell("rmsprop_lstm", hparams=(S_ADAM, BETA, FORGET_BIAS), family="momentum")
class RMSPropLSTM(AdamLSTM):
    """RMSPropLSTM: AdamLSTM with mu = 0, its drive normalised by a running RMS of the input."""

    def __init__(self, input_size: int, hidden_size: int, s: float, beta: float,
                 forget_bias: float = 1.0):
        super().__init__(input_size, hidden_size, 0.0, s, beta, forget_bias)
