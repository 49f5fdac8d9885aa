"""JANET, the forget-gate-only LSTM (van der Westhuizen & Lasenby 2018, "The unreasonable
effectiveness of the forget gate"), transcribing the authors' code (JosvanderWesthuizen/janet,
aux_code/rnn_cells.py, CustomLSTMCell with forget_only=True)::

    s_t  = U_f h_{t-1} + W_f x_t + b_f
    c~_t = tanh(U_c h_{t-1} + W_c x_t + b_c)
    c_t  = sigmoid(s_t) c_{t-1} + (1 - sigmoid(s_t - beta)) c~_t;   h_t = c_t

Initialisation as in that code: W and U Glorot-uniform (TensorFlow's default), b_c = 0 and chrono
b_f = log(U[1, T_max]) with T_max the sequence length. The paper writes U[1, T_max - 1] (after
Tallec & Ollivier); the code samples up to T_max, and we follow the code.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from baselines.lstm import DEFAULT_T_MAX, T_MAX, chrono_bias
from bench.cell import Cell, State
from bench.registry import HParam, register_cell


@register_cell("janet", hparams=(
    HParam("beta", 1.0, search=(0.0, 3.0), valid="(-inf, inf)",
           doc="shift between forget and input gate: the input gate is 1 - sigmoid(s - beta)"),
    T_MAX,
))
class JANET(Cell):
    """JANET: an LSTM with only a forget gate, the input gate tied to it with a shift beta."""

    cuda_graph = True

    state_names = ("h",)

    def __init__(self, input_size: int, hidden_size: int, beta: float, t_max: int | None):
        super().__init__(input_size, hidden_size)
        n = hidden_size
        self.beta = float(beta)
        self.t_max = int(DEFAULT_T_MAX if t_max is None else t_max)
        # Rows [0, n) are the forget pre-activation s, rows [n, 2n) the candidate c~.
        self.weight_ih = nn.Parameter(nn.init.xavier_uniform_(torch.empty(2 * n, input_size)))
        self.weight_hh = nn.Parameter(nn.init.xavier_uniform_(torch.empty(2 * n, n)))
        self.bias = nn.Parameter(torch.cat([chrono_bias(n, self.t_max), torch.zeros(n)]))

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        (c,) = state
        s, z = (x_t @ self.weight_ih.T + c @ self.weight_hh.T + self.bias).chunk(2, 1)
        c = torch.sigmoid(s) * c + (1 - torch.sigmoid(s - self.beta)) * torch.tanh(z)
        return c, (c,)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        (h,) = self.initial_state(x.shape[0]) if state is None else state
        B, T, _ = x.shape
        # All input projections in one matmul, time-major so each step is a contiguous slice.
        xw = torch.addmm(self.bias, x.transpose(0, 1).reshape(T * B, -1), self.weight_ih.T)
        U_T, hs = self.weight_hh.T, []
        for xw_t in xw.view(T, B, -1).unbind(0):
            s, z = torch.addmm(xw_t, h, U_T).chunk(2, 1)
            # 1 - sigmoid(s - beta) == sigmoid(beta - s): one op fewer per step.
            h = torch.sigmoid(s) * h + torch.sigmoid(self.beta - s) * torch.tanh(z)
            hs.append(h)
        return torch.stack(hs, 1), (h,)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", beta={self.beta}, t_max={self.t_max}"
