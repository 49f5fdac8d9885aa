"""Ablations of the LSTM baseline that answer questions about the momentum cells.

- ``lstm/ema_input``: an LSTM over a learned per-channel exponential moving average of its input,
  the "plain additive linear recurrence" prefilter the reviewers asked about. Exact input
  prefilter (that is all it adds).
- ``lstm/forget_bias_2``: forget bias 2, what the momentum cells start with at mu = 0, s = 1
  (their forget bias sits on both bias vectors).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.lstm import LSTM
from bench.cell import State
from bench.kernels.filter import channel_filter
from bench.registry import register_ablation


class EMAInputLSTM(LSTM):
    """LSTM over a learned exponential moving average of its input, per input channel c::

        d = sigmoid(a)                        a: (I,), 0 at init (d = 0.5)
        y_t = d * y_{t-1} + (1 - d) * x_t     (DC gain 1, like momentum_lstm/unit_gain)
        h_t, c_t = LSTM(y_t, h_{t-1}, c_t-1)

    The simplest additive linear recurrence in front of an LSTM: what momentum_lstm reduces to
    (an exact input prefilter) with the filter learned instead of tuned and without its
    step-size and bias amplification. ``lstm``'s parameters, init and forget bias, plus a.
    Fast path: the filter for all t at once, then ``nn.LSTM``.
    """

    state_names = ("h", "c", "y")

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float):
        super().__init__(input_size, hidden_size, forget_bias)
        self.a = nn.Parameter(torch.zeros(input_size))

    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size, self.hidden_size, self.input_size)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, c, y = state
        d = torch.sigmoid(self.a)
        y = d * y + (1 - d) * x_t
        h, (h, c) = super().step(y, (h, c))
        return h, (h, c, y)

    def filtered(self, x: Tensor, y0: Tensor | None = None) -> Tensor:
        """Every y_t of a (B, T, I) input at once, from y_{-1} = y0 (zero if None)."""
        log_d = F.logsigmoid(self.a)
        y = channel_filter(x, log_d, torch.sigmoid(-self.a))          # 1 - d = sigmoid(-a)
        if y0 is not None:
            t = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)
            y = y + torch.exp(t[:, None] * log_d) * y0[:, None]
        return y

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        h0, c0, y0 = self.initial_state(x.shape[0]) if state is None else state
        y = self.filtered(x, None if state is None else y0)
        out, (h, c) = super().forward(y, (h0, c0))
        return out, (h, c, y[:, -1])


register_ablation(
    "lstm", "ema_input", cls=EMAInputLSTM,
    doc="lstm over a learned per-channel EMA of its input (decay 0.5 at init, DC gain 1): does "
        "a plain linear prefilter give what momentum gives? Exact input prefilter")
register_ablation(
    "lstm", "forget_bias_2", fixed={"forget_bias": 2.0},
    doc="forget bias 2, the momentum cells' initial forget pre-activation at mu = 0, s = 1 (on "
        "both vectors): is a gap to momentum_lstm its larger forget bias?")
