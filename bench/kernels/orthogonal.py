"""The orthogonal kernel of dynamic trivialization (Lezcano-Casado 2019), shared by ``dtriv`` and
the momentum dtriv cells, transcribing the authors' code (Lezcano/expRNN: orthogonal.py,
parametrization.py, initialization.py)::

    B = base exp(A),  A skew-symmetric          (every K optimizer steps: base <- B, A <- 0)
    h_t = modrelu(W_in x_t + h_{t-1} B),  modrelu(z) = sign(z) ReLU(|z| + b)

A is stored as its strict upper triangle, n(n-1)/2 numbers, so parameter counts are degrees of
freedom.

**The gradient at a rebase** (``rebase_grad``). We rebase after optimizer steps K, 2K, ... (and
once at construction: the initial generator becomes the base), so every step differentiates
``B = base exp(A)`` at the A it computes with: the clean gradient (``clean``, the default). The
official code (expRNN ``parametrization.py``, copied into MomentumRNN) rebases *inside* the forward
pass of steps 0, K, 2K, ...: it computes ``B = base.mm(expm(S))`` with S the generator reached so
far, then ``base.data.copy_(B.data)`` and ``A.data.zero_()``. ``mm`` had saved ``base`` for
backward, and ``.data`` bypasses autograd's version check, so that step's backward uses the
overwritten base: the gradient passed to ``expm`` is ``B^T G`` (G = dL/dB) instead of
``base_old^T G``, and ``expm``'s adjoint is taken at S; the optimizer then applies it to the zeroed
A. ``official`` reproduces exactly that: on the first optimizer step after each rebase (ours runs
one step earlier, between steps), ``exp(A)`` keeps its value but its gradient is the adjoint of
``exp`` at ``S + A`` (A = 0 there) applied to ``base^T G`` with the new base, which is what the
official step computes. It is not the derivative of the function computed (gradcheck fails on
purpose); it changes nothing between rebases. Two scheduling details of the official code are not
reproduced: its evaluation passes also count as a "generation" of B (each test pass advances the
K counter by one), and it projects the base back onto O(n) at its M-th rebase counting the initial
one (M = 100 in ``2_mnist.py``, 30 in ``1_copying.py``; here ``PROJECT_EVERY`` = 100 for all).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bench.cell import Cell
from bench.registry import HParam

#: rebases between projections of the base back onto O(n) (the code's M = 100, counting the initial
#: rebase as the code does): float error accumulates in a product of many orthogonal matrices.
PROJECT_EVERY = 100

REBASE_EVERY = HParam("K", math.inf, kind=int, valid="[1, inf]",
           doc="rebase every K optimizer steps; inf: once, at the start (pMNIST n 360/512)")
REBASE_GRAD = HParam("rebase_grad", "clean", kind=str, choices=("clean", "official"),
                     doc="gradient on the step after a rebase: clean (of the function computed) or "
                         "official (expRNN's, through the overwritten base; see the module docstring)")
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

    def __init__(self, n: int, init: str = "cayley", K: float = math.inf,
                 rebase_grad: str = "clean"):
        super().__init__()
        if not (K == math.inf or (K >= 1 and float(K) == int(K))):
            raise ValueError(f"K={K} is not valid; valid: a positive integer or inf")
        if rebase_grad not in REBASE_GRAD.choices:
            raise ValueError(f"rebase_grad={rebase_grad!r} is not valid; valid: clean, official")
        self.n, self.K, self.rebase_grad = n, K, rebase_grad
        self.project_every = PROJECT_EVERY
        self.register_buffer("rows", torch.triu_indices(n, n, 1), persistent=False)
        self.A = nn.Parameter(torch.zeros(n * (n - 1) // 2))
        # the construction below is the official code's first rebase (counted, as it counts it)
        self.steps, self.rebases = 0, 1
        # expRNN puts the angles on A's superdiagonal at (2k, 2k+1) and rebases before the first
        # step for every K, so the initial A becomes the base and A starts at zero.
        a = torch.zeros(n, n, dtype=torch.float64)
        k = torch.arange(n // 2)
        a[2 * k, 2 * k + 1] = initial_angles(n, init)
        self.register_buffer("base", torch.linalg.matrix_exp(a - a.T).to(self.A.dtype))
        # rebase_grad = official: the generator the last rebase folded into the base (here the
        # initial one), whose exp adjoint the next step's gradient uses; active until that step
        self.register_buffer("folded", a[self.rows[0], self.rows[1]].to(self.A.dtype),
                             persistent=False)
        self.folded_active = rebase_grad == "official"

    def skew(self, A: Tensor | None = None) -> Tensor:
        """The n x n skew-symmetric generator of ``A`` (default: the parameter A)."""
        A = self.A if A is None else A
        a = A.new_zeros(self.n, self.n).index_put((self.rows[0], self.rows[1]), A)
        return a - a.T

    def forward(self) -> Tensor:
        """The orthogonal matrix B = base exp(A)."""
        E = torch.linalg.matrix_exp(self.skew())
        if self.folded_active and torch.is_grad_enabled():
            # the official gradient: exp(A)'s value, exp's adjoint at (folded + A)
            at = torch.linalg.matrix_exp(self.skew(self.folded + self.A))
            E = E.detach() + (at - at.detach())
        return self.base @ E

    @torch.no_grad()
    def rebase(self) -> None:
        """base <- base exp(A), A <- 0: the function is unchanged, the chart is recentred."""
        base = self.base.double() @ torch.linalg.matrix_exp(self.skew().double())
        self.rebases += 1
        if self.rebases % self.project_every == 0:
            u, _, vh = torch.linalg.svd(base)
            base = u @ vh
        self.base.copy_(base)
        if self.rebase_grad == "official":
            self.folded.copy_(self.A)
            self.folded_active = True
        self.A.zero_()

    def get_extra_state(self) -> dict:
        # the rebase schedule lives in Python attributes; in the state_dict, a restored cell
        # rebases (and projects) at the same steps as one that never stopped
        return {"steps": self.steps, "rebases": self.rebases, "folded": self.folded.clone(),
                "folded_active": self.folded_active}

    def set_extra_state(self, state: dict) -> None:
        self.steps, self.rebases = state["steps"], state["rebases"]
        self.folded.copy_(state["folded"])
        self.folded_active = state["folded_active"]

    def after_optimizer_step(self) -> None:
        self.steps += 1
        self.folded_active = False
        if self.K != math.inf and self.steps % int(self.K) == 0:
            self.rebase()


class OrthogonalCell(Cell):
    """The parts every modrelu cell with an orthogonal kernel shares: B, b and the input map."""

    def __init__(self, input_size: int, hidden_size: int, K: float, init: str,
                 rebase_grad: str = "clean"):
        super().__init__(input_size, hidden_size)
        self.orthogonal = Orthogonal(hidden_size, init, K, rebase_grad)
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
