"""Orthogonal RNN trained by dynamic trivialization (Lezcano-Casado 2019, "Trivializations for
gradient-based optimization on manifolds"), transcribing the authors' code (Lezcano/expRNN)::

    B = base exp(A),  A skew-symmetric          (every K optimizer steps: base <- B, A <- 0)
    h_t = modrelu(W_in x_t + h_{t-1} B),  modrelu(z) = sign(z) ReLU(|z| + b)

The code multiplies row vectors, ``h_{t-1} B`` (the paper's B h_{t-1} with B transposed; the same
model, as B^T is orthogonal too and the initial distributions agree): we follow the code.
The orthogonal kernel and modrelu live in ``bench.kernels.orthogonal``, shared with the momentum
family.
"""
from __future__ import annotations

from torch import Tensor

from bench.cell import State
from bench.graphs import replay
from bench.kernels.orthogonal import (INIT, REBASE_EVERY, REBASE_GRAD, OrthogonalCell, modrelu,
                                      modrelu_scan)
from bench.registry import register_cell


@register_cell("dtriv", hparams=(REBASE_EVERY, INIT, REBASE_GRAD))
class DTriv(OrthogonalCell):
    """Orthogonal RNN with modrelu, B = base exp(A) by dynamic trivialization (dtrivK).

    The rebase runs in ``after_optimizer_step`` after steps K, 2K, ..., as expRNN and the
    MomentumRNN copy of its code do. The official code rebases inside the forward pass through
    ``.data``, after ``base.mm(...)`` saved ``base`` for backward, so its gradient on every rebase
    step uses the overwritten base (and exp's adjoint at the folded generator); ours is the clean
    gradient of the function computed (``rebase_grad=clean``, default), and ``rebase_grad=official``
    reproduces the official one (``bench.kernels.orthogonal`` says exactly how). A is a
    vector of its n(n-1)/2 free entries, not an n x n matrix whose lower triangle is ignored:
    the same model, with the count of degrees of freedom as parameter count.
    """

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        h = modrelu(x_t @ self.W_in.T + h @ self.B, self.b)
        return h, (h,)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        h0 = self.initial_state(x.shape[0])[0] if state is None else state[0]
        y, h = replay(modrelu_scan, x @ self.W_in.T, h0, self.B, self.b)
        return y, (h,)
