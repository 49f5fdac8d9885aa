"""GRU (Cho et al. 2014) as PyTorch defines it, on ``nn.GRU``'s cuDNN/oneDNN kernel.

r, z = sigmoid(W_{r,z} x_t + b_i + U_{r,z} h_{t-1} + b_h)
n_t = tanh(W_n x_t + b_in + r * (U_n h_{t-1} + b_hn));  h_t = (1 - z) n_t + z h_{t-1}
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from baselines.lstm import TorchRNN
from bench.cell import State
from bench.registry import register_cell


@register_cell("gru")
class GRU(TorchRNN):
    """GRU with PyTorch's initialisation."""

    state_names = ("h",)

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.core = nn.GRU(input_size, hidden_size, batch_first=True)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        p = self.core
        xr, xz, xn = (x_t @ p.weight_ih_l0.T + p.bias_ih_l0).chunk(3, 1)
        hr, hz, hn = (h @ p.weight_hh_l0.T + p.bias_hh_l0).chunk(3, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return h, (h,)
