"""The orthogonal kernel of dynamic trivialization (Lezcano-Casado 2019), shared by ``dtriv`` and
the momentum dtriv cells, transcribing the authors' code (Lezcano/expRNN: orthogonal.py,
parametrization.py, initialization.py)::

    B = base exp(A),  A skew-symmetric          (every K optimizer steps: base <- B, A <- 0)
    h_t = modrelu(W_in x_t + h_{t-1} B),  modrelu(z) = sign(z) ReLU(|z| + b)

A is stored as its strict upper triangle, n(n-1)/2 numbers, so parameter counts are degrees of
freedom.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bench.cell import Cell
from bench.registry import HParam

#: rebases between projections of the base back onto O(n) (the code's M = 100): float error
#: accumulates in a product of many orthogonal matrices.
PROJECT_EVERY = 100

REBASE_EVERY = HParam("K", math.inf, kind=int, valid="[1, inf]",
           doc="rebase every K optimizer steps; inf: once, at the start (pMNIST n 360/512)")
INIT = HParam("init", "cayley", search=("cayley", "henaff"), kind=str, choices=("cayley", "henaff"),
              doc="initial rotation angles of B: Cayley or Henaff (both expRNN's)")


def modrelu(z: Tensor, b: Tensor) -> Tensor:
    """modrelu(z) = sign(z) ReLU(|z| + b) (Arjovsky et al. 2016, real form)."""
    return torch.sign(z) * torch.relu(z.abs() + b)


def modrelu_scan(drive: Tensor, h: Tensor, B: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """h_t = modrelu(drive_t + h_{t-1} B) over dim 1 of ``drive``; returns (all h, last h)."""
    hs = []
    for d_t in drive.unbind(1):
        h = modrelu(torch.addmm(d_t, h, B), b)
        hs.append(h)
    return torch.stack(hs, 1), h


def initial_angles(n: int, init: str) -> Tensor:
    """The n // 2 rotation angles of expRNN's block-diagonal initial generator."""
    if init == "henaff":
        return torch.empty(n // 2, dtype=torch.float64).uniform_(-math.pi, math.pi)
    # cayley_init_: theta = -sqrt((1 - cos u) / (1 + cos u)), u ~ U[0, pi/2]
    u = torch.empty(n // 2, dtype=torch.float64).uniform_(0.0, math.pi / 2)
    return -torch.sqrt((1 - torch.cos(u)) / (1 + torch.cos(u)))


class Orthogonal(nn.Module):
    """B = base exp(A) with A skew-symmetric from its strict upper triangle; dynamic rebasing."""

    def __init__(self, n: int, init: str = "cayley", K: float = math.inf):
        super().__init__()
        if not (K == math.inf or (K >= 1 and float(K) == int(K))):
            raise ValueError(f"K={K} is not valid; valid: a positive integer or inf")
        self.n, self.K = n, K
        self.register_buffer("rows", torch.triu_indices(n, n, 1), persistent=False)
        self.A = nn.Parameter(torch.zeros(n * (n - 1) // 2))
        self.steps = self.rebases = 0
        # expRNN puts the angles on A's superdiagonal at (2k, 2k+1) and rebases before the first
        # step for every K, so the initial A becomes the base and A starts at zero.
        a = torch.zeros(n, n, dtype=torch.float64)
        k = torch.arange(n // 2)
        a[2 * k, 2 * k + 1] = initial_angles(n, init)
        self.register_buffer("base", torch.linalg.matrix_exp(a - a.T).to(self.A.dtype))

    def skew(self) -> Tensor:
        """The n x n skew-symmetric generator A."""
        a = self.A.new_zeros(self.n, self.n).index_put((self.rows[0], self.rows[1]), self.A)
        return a - a.T

    def forward(self) -> Tensor:
        """The orthogonal matrix B = base exp(A)."""
        return self.base @ torch.linalg.matrix_exp(self.skew())

    @torch.no_grad()
    def rebase(self) -> None:
        """base <- base exp(A), A <- 0: the function is unchanged, the chart is recentred."""
        base = self.base.double() @ torch.linalg.matrix_exp(self.skew().double())
        self.rebases += 1
        if self.rebases % PROJECT_EVERY == 0:
            u, _, vh = torch.linalg.svd(base)
            base = u @ vh
        self.base.copy_(base)
        self.A.zero_()

    def after_optimizer_step(self) -> None:
        self.steps += 1
        if self.K != math.inf and self.steps % int(self.K) == 0:
            self.rebase()


class OrthogonalCell(Cell):
    """The parts every modrelu cell with an orthogonal kernel shares: B, b and the input map."""

    def __init__(self, input_size: int, hidden_size: int, K: float, init: str):
        super().__init__(input_size, hidden_size)
        self.orthogonal = Orthogonal(hidden_size, init, K)
        self.W_in = nn.Parameter(nn.init.kaiming_normal_(torch.empty(hidden_size, input_size),
                                                         nonlinearity="relu"))
        self.b = nn.Parameter(torch.empty(hidden_size).uniform_(-0.01, 0.01))

    @property
    def B(self) -> Tensor:
        return self.orthogonal()

    def per_sequence_flops(self) -> int:
        """step() rebuilds B = base exp(A) every call; forward() builds it once per sequence."""
        from torch.utils.flop_counter import FlopCounterMode
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            self.orthogonal()
        return int(counter.get_total_flops())

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        # expRNN trains A with its own (smaller) learning rate lr_orth
        return {"orthogonal": [self.orthogonal.A]}

    def after_optimizer_step(self) -> None:
        self.orthogonal.after_optimizer_step()
