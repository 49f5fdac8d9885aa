"""Legendre Memory Unit (Voelker, Kajic & Eliasmith, NeurIPS 2019), transcribing the authors' code
(nengo/keras-lmu: code/lmu.py, LMUCell, and experiments/psMNIST-standard.ipynb)::

    u_t = e_x . x_t + e_h . h_{t-1} + e_m . m_{t-1}
    m_t = Abar m_{t-1} + Bbar u_t
    h_t = tanh(W_x x_t + W_h h_{t-1} + W_m m_t)

(A, B) is the Legendre delay system, A_ij = (2i+1) (-1 if i < j else (-1)^(i-j+1)),
B_i = (2i+1) (-1)^i, with window theta; (Abar, Bbar) its zero-order hold with dt = 1, read off
expm([[A, B], [0, 0]] / theta) = [[Abar, Bbar], [0, 1]]. A and B are fixed buffers.

Defaults are the published psMNIST setting: order 256, theta = sequence length, e_x = 1,
e_h = e_m = 0, W_x = W_h = 0, W_m Glorot normal (Keras' variant truncates it; immaterial), every
encoder and kernel trainable, no bias (the code has none). Parameter counts match the notebook's
trainable count (102,027 with the Dense(10) readout at 212 units).

With e_h and e_m frozen at zero (``trainable_encoders=False`` freezes all three encoders at their
initial values) the memory is a fixed causal convolution of the input (Chilkuri & Eliasmith 2021,
"Parallelizing Legendre Memory Unit Training"): ``forward()`` then computes every m_t at once by
FFT and runs h_t, an ordinary tanh RNN over [x_t, m_t], on ``nn.RNN``. W_x and W_m are the
columns of the core's ``weight_ih_l0``, W_h its ``weight_hh_l0``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.cell import Cell, State
from bench.registry import HParam, register_ablation, register_cell

#: window a cell assumes when no task context gives ``seq_len`` (pMNIST's 784, as published)
DEFAULT_THETA = 784.0


def legendre_ab(order: int) -> tuple[Tensor, Tensor]:
    """The continuous Legendre delay system (A, B) for theta = 1, in float64."""
    q = torch.arange(order, dtype=torch.float64)
    i, j = q[:, None], q[None, :]
    A = (2 * i + 1) * torch.where(i < j, -1.0, (-1.0) ** (i - j + 1))
    B = (2 * q + 1) * (-1.0) ** q
    return A, B


def zoh(A: Tensor, B: Tensor, dt: float = 1.0) -> tuple[Tensor, Tensor]:
    """Zero-order hold: Abar = e^(A dt), Bbar = A^-1 (Abar - I) B, from one matrix exponential."""
    n = A.shape[0]
    M = A.new_zeros(n + 1, n + 1)
    M[:n, :n], M[:n, n] = A, B
    E = torch.linalg.matrix_exp(M * dt)
    return E[:n, :n], E[:n, n]


def impulse_response(Abar: Tensor, Bbar: Tensor, T: int) -> Tensor:
    """K[k] = Abar^k Bbar for k < T, shape (T, N), by repeated squaring."""
    K, P = Bbar[None], Abar
    while K.shape[0] < T:
        K = torch.cat([K, K @ P.T])
        P = P @ P
    return K[:T]


def causal_conv(u: Tensor, K: Tensor) -> Tensor:
    """m[b, t] = sum_{k <= t} K[k] u[b, t - k] for u (B, T) and K (T, N), by FFT."""
    T = u.shape[1]
    n = 2 * T                                       # no wrap-around for lags below T
    spec = torch.fft.rfft(u, n)[:, :, None] * torch.fft.rfft(K, n, dim=0)
    return torch.fft.irfft(spec, n, dim=1)[:, :T]


@register_cell("lmu", hparams=(
    HParam("order", 256, kind=int, valid="[1, inf)", doc="memory size: Legendre coefficients"),
    HParam("theta", None, valid="(0, inf)", default_from="seq_len",
           doc="memory window in steps; the task's sequence length"),
    HParam("trainable_encoders", True, kind=bool,
           doc="train e_x, e_h, e_m (the code); false freezes them at 1, 0, 0: parallel memory"),
))
class LMU(Cell):
    """Legendre Memory Unit: a linear Legendre delay memory read by a tanh RNN."""

    @property
    def cuda_graph(self) -> bool:      # the parallel path is cuDNN's; the loop wants a graph
        return self.e_h.requires_grad

    state_names = ("h", "m")

    def __init__(self, input_size: int, hidden_size: int, order: int,
                 theta: float | None, trainable_encoders: bool):
        super().__init__(input_size, hidden_size)
        self.order, self.theta = order, float(theta or DEFAULT_THETA)
        A, B = legendre_ab(order)
        Abar, Bbar = zoh(A / self.theta, B / self.theta)
        for name, t in (("A", A), ("B", B), ("Abar", Abar), ("Bbar", Bbar)):
            self.register_buffer(name, t)           # float64; cast where used
        self.core = nn.RNN(input_size + order, hidden_size, bias=False, batch_first=True)
        with torch.no_grad():
            self.core.weight_ih_l0.zero_()
            self.core.weight_hh_l0.zero_()
            self.core.weight_ih_l0[:, input_size:] = nn.init.xavier_normal_(
                torch.empty(hidden_size, order))
        self.e_x = nn.Parameter(torch.ones(input_size), requires_grad=trainable_encoders)
        self.e_h = nn.Parameter(torch.zeros(hidden_size), requires_grad=trainable_encoders)
        self.e_m = nn.Parameter(torch.zeros(order), requires_grad=trainable_encoders)
        self._kernels: dict[tuple, Tensor] = {}

    # The paper's symbols, as views of the core's parameters.
    @property
    def W_x(self) -> Tensor:
        return self.core.weight_ih_l0[:, :self.input_size]

    @property
    def W_m(self) -> Tensor:
        return self.core.weight_ih_l0[:, self.input_size:]

    @property
    def W_h(self) -> Tensor:
        return self.core.weight_hh_l0

    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size, self.order)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, m = state
        Abar, Bbar = self.Abar.to(x_t.dtype), self.Bbar.to(x_t.dtype)
        u = x_t @ self.e_x + h @ self.e_h + m @ self.e_m
        m = m @ Abar.T + u[:, None] * Bbar
        h = torch.tanh(x_t @ self.W_x.T + h @ self.W_h.T + m @ self.W_m.T)
        return h, (h, m)

    @property
    def parallel(self) -> bool:
        """Whether the memory is a fixed filter of the input (no feedback from h or m)."""
        frozen = not (self.e_h.requires_grad or self.e_m.requires_grad)
        return frozen and not bool(self.e_h.any() or self.e_m.any())

    def memory(self, x: Tensor) -> Tensor:
        """Every m_t at once when e_h = e_m = 0 and m_{-1} = 0: Abar^k Bbar convolved with u."""
        T = x.shape[1]
        key = (T, x.dtype, x.device, self.Abar._version)
        if key not in self._kernels:                # A, B are fixed: one kernel per length
            self._kernels = {key: impulse_response(self.Abar, self.Bbar, T).to(x.dtype)}
        return causal_conv(x @ self.e_x, self._kernels[key])

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        h, m = self.initial_state(x.shape[0]) if state is None else state
        if self.parallel and (state is None or not bool(m.any())):
            ms = self.memory(x)
            y, hT = self.core(torch.cat([x, ms], -1), h.unsqueeze(0).contiguous())
            return y, (hT.squeeze(0), ms[:, -1])
        return self._scan(x, h, m)

    def _scan(self, x: Tensor, h: Tensor, m: Tensor) -> tuple[Tensor, State]:
        """The recurrence of ``step()`` with the input terms hoisted out of the loop; Abar is
        applied to m alone, so its (N x N) product never needs a weight gradient."""
        AbarT, Bbar = self.Abar.T.to(x.dtype), self.Bbar.to(x.dtype)
        W_mT, W_hT = self.W_m.T, self.W_h.T
        ux, xh = x @ self.e_x, x @ self.W_x.T
        hs = []
        for ux_t, xh_t in zip(ux.unbind(1), xh.unbind(1)):
            u = torch.addmv(torch.addmv(ux_t, h, self.e_h), m, self.e_m)
            m = torch.addmm(torch.outer(u, Bbar), m, AbarT)
            h = torch.tanh(torch.addmm(torch.addmm(xh_t, h, W_hT), m, W_mT))
            hs.append(h)
        return torch.stack(hs, 1), (h, m)


register_ablation("lmu", "parallel", fixed={"trainable_encoders": False},
                  doc="encoders frozen at e_x = 1, e_h = e_m = 0: the memory is a fixed causal "
                      "convolution of the input, computed in parallel (Chilkuri & Eliasmith 2021)")
