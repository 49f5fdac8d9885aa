"""LSTM (Hochreiter & Schmidhuber 1997, with forget gate) on ``nn.LSTM``'s cuDNN/oneDNN kernel.

i, f, g, o = split(W x_t + b_ih + U h_{t-1} + b_hh)
c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g);  h_t = sigmoid(o) tanh(c_t)
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.cell import Cell, State
from bench.kernels.gates import FORGET_BIAS
from bench.registry import HParam, register_ablation, register_cell


class TorchRNN(Cell):
    """A cell whose fast path is one torch ``nn.RNNBase`` layer (cuDNN on a GPU)."""

    core: nn.RNNBase

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is None:
            state = self.initial_state(x.shape[0])
        hidden = tuple(t.unsqueeze(0).contiguous() for t in state)
        y, out = self.core(x, hidden if len(hidden) > 1 else hidden[0])
        out = out if isinstance(out, tuple) else (out,)
        return y, tuple(t.squeeze(0) for t in out)


@register_cell("lstm", hparams=(FORGET_BIAS,))
class LSTM(TorchRNN):
    """LSTM with PyTorch's initialisation and a forget-gate bias on one bias vector."""

    state_names = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float):
        super().__init__(input_size, hidden_size)
        self.core = nn.LSTM(input_size, hidden_size, batch_first=True)
        n = hidden_size
        with torch.no_grad():
            # One vector only: setting b_ih and b_hh both would double the bias.
            self.core.bias_ih_l0[n:2 * n] = forget_bias
            self.core.bias_hh_l0[n:2 * n] = 0.0

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        p = self.core
        i, f, g, o = (x_t @ p.weight_ih_l0.T + p.bias_ih_l0 + h @ p.weight_hh_l0.T
                      + p.bias_hh_l0).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class OfficialInitLSTM(LSTM):
    """The paper's LSTM baseline: MomentumRNN's ``momentumnet.py`` LSTMCell initialisation.

    W orthogonal, U = eye(4n, n) (identity in the input-gate block, zeros elsewhere), every bias
    zero but the forget gate's, which is ``forget_bias`` on *both* bias vectors (so the initial
    forget pre-activation is 2 x forget_bias, as in the official code). The same model as ``lstm``;
    only the initialisation differs. With the same weights it equals
    ``momentum_lstm/no_momentum[s=1]`` exactly (tested).
    """

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float):
        super().__init__(input_size, hidden_size, forget_bias)
        n = hidden_size
        with torch.no_grad():
            nn.init.orthogonal_(self.core.weight_ih_l0)
            nn.init.eye_(self.core.weight_hh_l0)
            for b in (self.core.bias_ih_l0, self.core.bias_hh_l0):
                b.zero_()
                b[n:2 * n] = forget_bias


register_ablation("lstm", "official_init", cls=OfficialInitLSTM,
                  doc="the paper's LSTM baseline init (orthogonal W, eye U, forget bias on both "
                      "vectors): is a gap to momentum_lstm its initialisation?")


#: sequence length a chrono-initialised cell assumes when no task context gives ``seq_len``
#: (pMNIST's 784); the harness always passes the task's length.
DEFAULT_T_MAX = 784


def chrono_bias(n: int, high: float) -> Tensor:
    """``n`` chrono forget biases log(U[1, high]) (Tallec & Ollivier 2018)."""
    return torch.empty(n).uniform_(1.0, float(high)).log_()


T_MAX = HParam("t_max", None, valid="[2, inf)", kind=int, default_from="seq_len",
               doc="longest dependency the chrono init targets; the task's sequence length")


@register_cell("chrono_lstm", hparams=(T_MAX,))
class ChronoLSTM(LSTM):
    """LSTM with chrono initialisation (Tallec & Ollivier 2018, "Can RNNs warp time?").

    b_f ~ log(U[1, T_max - 1]), b_i = -b_f, b_g = b_o = 0, all on ``bias_ih_l0``;
    ``bias_hh_l0`` starts at zero (a second nonzero vector would double the bias) and stays
    trainable, so the parameterisation equals ``lstm``'s and only the initialisation differs.
    """

    def __init__(self, input_size: int, hidden_size: int, t_max: int | None):
        super().__init__(input_size, hidden_size, FORGET_BIAS.default)
        n, t_max = hidden_size, DEFAULT_T_MAX if t_max is None else t_max
        self.t_max = int(t_max)
        b_f = chrono_bias(n, self.t_max - 1)
        with torch.no_grad():                      # gate order i, f, g, o
            self.core.bias_ih_l0.copy_(torch.cat([-b_f, b_f, b_f.new_zeros(2 * n)]))
            self.core.bias_hh_l0.zero_()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", t_max={self.t_max}"
