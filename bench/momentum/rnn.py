"""MomentumRNN and MomentumLSTM (Nguyen et al., NeurIPS 2020). MomentumLSTM transcribes the
official code (minhtannguyen/MomentumRNN, mnist-timit/momentumnet.py, MomentumLSTMCell); the
official code has no vanilla MomentumRNN cell, so ``momentum_rnn`` applies the paper's momentum
equation to a tanh RNN with ``nn.RNN``'s default initialisation::

    v_t = mu v_{t-1} + s (W x_t + b_x)
    pre_t = v_t + U h_{t-1} + b_h          -> tanh (RNN) or the LSTM gates i, f, g, o

The momentum state depends on x only, so ``forward()`` filters [x_t, 1] with the exponential
filter and runs cuDNN/oneDNN ``nn.LSTM``/``nn.RNN`` over it: exact, not an approximation.
Parameters live in that module: W and b_x are the columns of ``weight_ih_l0``, U is
``weight_hh_l0``, b_h is ``bias_ih_l0``; ``bias_hh_l0`` is a frozen zero so counts match the paper.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.cell import Cell, State
from bench.kernels.filter import exp_filter
from bench.kernels.gates import FORGET_BIAS
from bench.registry import HParam, register_ablation, register_cell

MOMENTUM = HParam("mu", 0.6, search=(0.0, 0.99), valid="[0, 1)", doc="momentum coefficient")
STEP_SIZE = HParam("s", 0.6, search=(0.01, 1.0), valid="(0, inf)", doc="step size on the input")


class _Momentum(Cell):
    """Shared parameter layout and fast path of the momentum cells with an nn.RNNBase core."""

    core: nn.RNNBase
    gates: int

    def __init__(self, input_size: int, hidden_size: int, mu: float, s: float):
        super().__init__(input_size, hidden_size)
        self.mu, self.s = float(mu), float(s)
        self.core = self._make_core(input_size + 1, hidden_size)
        with torch.no_grad():
            self.core.bias_hh_l0.zero_()
        self.core.bias_hh_l0.requires_grad_(False)

    def _make_core(self, input_size: int, hidden_size: int) -> nn.RNNBase:
        raise NotImplementedError

    # The paper's symbols, as views of the core's parameters.
    @property
    def W(self) -> Tensor:
        return self.core.weight_ih_l0[:, :-1]

    @property
    def b_x(self) -> Tensor:
        return self.core.weight_ih_l0[:, -1]

    @property
    def U(self) -> Tensor:
        return self.core.weight_hh_l0

    @property
    def b_h(self) -> Tensor:
        return self.core.bias_ih_l0

    def state_sizes(self) -> tuple[int, ...]:
        n = self.hidden_size
        return (n,) * (len(self.state_names) - 1) + (self.gates * n,)

    def momentum(self, v: Tensor, x_t: Tensor) -> Tensor:
        return self.mu * v + self.s * (x_t @ self.W.T + self.b_x)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is not None and bool(state[-1].any()):
            return self.loop(x, state)      # a carried-in v adds mu^(t+1) v_0: not an input filter
        B = x.shape[0]
        if state is None:
            state = self.initial_state(B)
        xf = exp_filter(torch.cat([x, x.new_ones(B, x.shape[1], 1)], -1), self.mu, self.s)
        hidden = tuple(t.unsqueeze(0).contiguous() for t in state[:-1])
        y, out = self.core(xf, hidden if len(hidden) > 1 else hidden[0])
        out = out if isinstance(out, tuple) else (out,)
        v = xf[:, -1] @ self.core.weight_ih_l0.T
        return y, tuple(t.squeeze(0) for t in out) + (v,)


@register_cell("momentum_rnn", hparams=(MOMENTUM, STEP_SIZE))
class MomentumRNN(_Momentum):
    """MomentumRNN: a tanh RNN whose input drive carries heavy-ball momentum."""

    state_names = ("h", "v")
    gates = 1

    def _make_core(self, input_size: int, hidden_size: int) -> nn.RNNBase:
        return nn.RNN(input_size, hidden_size, nonlinearity="tanh", batch_first=True)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, v = state
        v = self.momentum(v, x_t)
        h = torch.tanh(v + h @ self.U.T + self.b_h)
        return h, (h, v)


@register_cell("momentum_lstm", hparams=(MOMENTUM, STEP_SIZE, FORGET_BIAS))
class MomentumLSTM(_Momentum):
    """MomentumLSTM: an LSTM whose input drive carries heavy-ball momentum.

    Initialisation follows the official code: W orthogonal, U identity, biases zero except the
    forget gate's, set to ``forget_bias`` on both b_x and b_h.
    """

    state_names = ("h", "c", "v")
    gates = 4

    def __init__(self, input_size: int, hidden_size: int, mu: float, s: float,
                 forget_bias: float):
        super().__init__(input_size, hidden_size, mu, s)
        n = hidden_size
        with torch.no_grad():
            self.core.weight_ih_l0[:, :-1] = nn.init.orthogonal_(torch.empty(4 * n, input_size))
            nn.init.eye_(self.core.weight_hh_l0)            # eye_ on 4n x n: identity top block
            self.core.weight_ih_l0[:, -1].zero_()
            self.core.weight_ih_l0[n:2 * n, -1] = forget_bias
            self.core.bias_ih_l0.zero_()
            self.core.bias_ih_l0[n:2 * n] = forget_bias

    def _make_core(self, input_size: int, hidden_size: int) -> nn.RNNBase:
        return nn.LSTM(input_size, hidden_size, batch_first=True)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, c, v = state
        v = self.momentum(v, x_t)
        i, f, g, o = (v + h @ self.U.T + self.b_h).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c, v)


register_ablation("momentum_lstm", "no_momentum", fixed={"mu": 0.0},
                  doc="mu = 0: the same cell, init and step size without momentum")
