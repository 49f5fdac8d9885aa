"""MomentumDTRIV and AdamDTRIV (Nguyen et al., NeurIPS 2020): the dtriv orthogonal RNN with a
momentum input drive, transcribing the official code (minhtannguyen/MomentumRNN,
mnist-timit/orthogonal.py, OrthogonalMomentumRNN and OrthogonalAdamRNN)::

    momentum_dtriv:  v_t = mu v_{t-1} + s V x_t;                      h_t = modrelu(v_t + h_{t-1} B)
    adam_dtriv:      g_t = V x_t;  v_t = mu v_{t-1} + s g_t;  r_t = beta r_{t-1} + (1 - beta) g_t^2
                     h_t = modrelu(v_t / sqrt(r_t + 1e-16) + h_{t-1} B)   (v_0 = r_0 = 0, no bias
                     correction)

B = base exp(A) with dynamic trivialization, modrelu and the initialisation are dtriv's
(``bench.kernels.orthogonal``); V has no bias. The momentum states depend on x only, so ``forward()``
computes every v_t and r_t at once with the exponential filter and loops over h alone.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from bench.cell import State
from bench.graphs import replay
from bench.kernels.filter import decayed, exp_filter
from bench.kernels.orthogonal import (INIT, REBASE_EVERY, REBASE_GRAD, OrthogonalCell, modrelu,
                                      modrelu_scan)
from bench.momentum.adaptive import BETA, EPS
from bench.momentum.rnn import MOMENTUM, STEP_SIZE
from bench.registry import register_cell


class _MomentumOrthogonal(OrthogonalCell):
    """The momentum dtriv cells: V is dtriv's input map W_in, renamed as in the paper."""

    def __init__(self, input_size: int, hidden_size: int, mu: float, s: float, K: float,
                 init: str, rebase_grad: str = "clean"):
        super().__init__(input_size, hidden_size, K=K, init=init, rebase_grad=rebase_grad)
        self.mu, self.s = float(mu), float(s)

    @property
    def V(self) -> Tensor:
        return self.W_in

    def momentum(self, x: Tensor, v0: Tensor | None) -> Tensor:
        """All v_t at once: V applied to the filtered input, plus the decayed initial v."""
        v = exp_filter(x, self.mu, self.s) @ self.V.T      # filter the narrow x, then project
        return v if v0 is None else v + decayed(v0, self.mu, x.shape[1])


@register_cell("momentum_dtriv", hparams=(
    dataclasses.replace(MOMENTUM, default=0.3), dataclasses.replace(STEP_SIZE, default=0.3),
    REBASE_EVERY, INIT, REBASE_GRAD))
class MomentumDTriv(_MomentumOrthogonal):
    """dtriv orthogonal RNN whose input drive carries heavy-ball momentum (official pMNIST
    setting at n 360/512: mu 0.3, s 0.3, K inf)."""

    state_names = ("h", "v")

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, v = state
        v = self.mu * v + self.s * (x_t @ self.V.T)
        h = modrelu(v + h @ self.B, self.b)
        return h, (h, v)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        h0, v0 = self.initial_state(x.shape[0]) if state is None else state
        v = self.momentum(x, None if state is None else v0)
        y, h = replay(modrelu_scan, v, h0, self.B, self.b)
        return y, (h, v[:, -1])


@register_cell("adam_dtriv", hparams=(
    dataclasses.replace(MOMENTUM, default=0.3), dataclasses.replace(STEP_SIZE, default=0.3),
    dataclasses.replace(BETA, default=0.8), REBASE_EVERY, INIT, REBASE_GRAD))
class AdamDTriv(_MomentumOrthogonal):
    """dtriv orthogonal RNN with an Adam-normalised momentum drive. The recipes publish no
    adam_dtriv setting; the defaults (mu 0.3, s 0.3, beta 0.8) are those the authors' logged
    pMNIST runs are named by: ``run-adtriv-pmnist-gc-mu-0.3-epsilon-0.3-mus-0.8`` (epsilon is
    the code's name for s, mus for beta)."""

    state_names = ("h", "v", "r")

    def __init__(self, input_size: int, hidden_size: int, mu: float, s: float, beta: float,
                 K: float, init: str, rebase_grad: str = "clean"):
        super().__init__(input_size, hidden_size, mu, s, K=K, init=init, rebase_grad=rebase_grad)
        self.beta = float(beta)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, v, r = state
        g = x_t @ self.V.T
        v = self.mu * v + self.s * g
        r = self.beta * r + (1 - self.beta) * g * g
        h = modrelu(v / torch.sqrt(r + EPS) + h @ self.B, self.b)
        return h, (h, v, r)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        h0, v0, r0 = self.initial_state(x.shape[0]) if state is None else state
        v = self.momentum(x, None if state is None else v0)
        g = x @ self.V.T
        # r needs g^2, which is H wide: a short chunk keeps the Toeplitz matmul cheap
        r = exp_filter(g * g, self.beta, 1 - self.beta, chunk=32)
        if state is not None:
            r = r + decayed(r0, self.beta, x.shape[1])
        y, h = replay(modrelu_scan, v * torch.rsqrt(r + EPS), h0, self.B, self.b)
        return y, (h, v[:, -1], r[:, -1])
