"""lmu, dtriv, momentum_dtriv, adam_dtriv: each against an independent transcription of its
equations (plain tensor operations and scipy, none of the cells' helpers), and the facts their
papers and code state (LMU's closed forms and discretisation, dtriv's orthogonality and published
parameter counts). The cell contract (tests/test_cells.py) checks their gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from bench import create_cell
from tests.conftest import make, random_state, randomize

DT = torch.float64


# ---- independent transcriptions ------------------------------------------------------------

def lmu_matrices(order: int, theta: float) -> tuple[np.ndarray, ...]:
    """Voelker et al. 2019's (A, B) and their zero-order hold, written out element by element."""
    A = np.zeros((order, order))
    for i in range(order):
        for j in range(order):
            A[i, j] = (2 * i + 1) * (-1.0 if i < j else (-1.0) ** (i - j + 1))
    B = np.array([(2 * i + 1) * (-1.0) ** i for i in range(order)])
    M = np.zeros((order + 1, order + 1))
    M[:order, :order], M[:order, order] = A / theta, B / theta
    E = scipy.linalg.expm(M)
    return A, B, E[:order, :order], E[:order, order]


def lmu_reference(cell, x, state):
    _, _, Abar, Bbar = (torch.tensor(a, dtype=DT) for a in lmu_matrices(cell.order, cell.theta))
    h, m = state
    I = cell.input_size
    W_x, W_m = cell.core.weight_ih_l0[:, :I], cell.core.weight_ih_l0[:, I:]
    W_h = cell.core.weight_hh_l0
    hs = []
    for t in range(x.shape[1]):
        u = x[:, t] @ cell.e_x + h @ cell.e_h + m @ cell.e_m
        m = m @ Abar.T + u[:, None] * Bbar[None, :]
        h = torch.tanh(x[:, t] @ W_x.T + h @ W_h.T + m @ W_m.T)
        hs.append(h)
    return torch.stack(hs, 1), (h, m)


def orthogonal_reference(cell) -> torch.Tensor:
    """B = base expm(A), A skew-symmetric from its strict upper triangle (row-major)."""
    n = cell.hidden_size
    a = np.zeros((n, n))
    a[np.triu_indices(n, 1)] = cell.orthogonal.A.detach().numpy()
    return cell.orthogonal.base @ torch.tensor(scipy.linalg.expm(a - a.T), dtype=DT)


def modrelu_reference(z, b):
    return torch.where(z.abs() + b > 0, z.sign() * (z.abs() + b), torch.zeros_like(z))


def dtriv_reference(cell, x, state):
    B = orthogonal_reference(cell)
    (h,) = state
    hs = []
    for t in range(x.shape[1]):
        h = modrelu_reference(x[:, t] @ cell.W_in.T + h @ B, cell.b)
        hs.append(h)
    return torch.stack(hs, 1), (h,)


def momentum_dtriv_reference(cell, x, state):
    B = orthogonal_reference(cell)
    h, v = state
    hs = []
    for t in range(x.shape[1]):
        v = cell.mu * v + cell.s * (x[:, t] @ cell.W_in.T)
        h = modrelu_reference(v + h @ B, cell.b)
        hs.append(h)
    return torch.stack(hs, 1), (h, v)


def adam_dtriv_reference(cell, x, state):
    B = orthogonal_reference(cell)
    h, v, r = state
    hs = []
    for t in range(x.shape[1]):
        g = x[:, t] @ cell.W_in.T
        v = cell.mu * v + cell.s * g
        r = cell.beta * r + (1 - cell.beta) * g ** 2
        h = modrelu_reference(v / (r + 1e-16) ** 0.5 + h @ B, cell.b)
        hs.append(h)
    return torch.stack(hs, 1), (h, v, r)


CASES = {  # spec, hyperparameters, reference
    "lmu": ("lmu", dict(order=12, theta=9.0), lmu_reference),
    "lmu/parallel": ("lmu/parallel", dict(order=12, theta=9.0), lmu_reference),
    "dtriv": ("dtriv", {}, dtriv_reference),
    "dtriv_henaff": ("dtriv", dict(init="henaff"), dtriv_reference),
    "momentum_dtriv": ("momentum_dtriv", dict(mu=0.7, s=0.4), momentum_dtriv_reference),
    "adam_dtriv": ("adam_dtriv", dict(mu=0.6, s=0.8, beta=0.3), adam_dtriv_reference),
}


def case_cell(case: str, hidden_size: int = 7):
    spec, hp, ref = CASES[case]
    cell = randomize(make(spec, 3, hidden_size, **hp))
    if case.startswith("dtriv") or "_dtriv" in case:
        with torch.no_grad():    # a non-trivial base: random orthogonal
            q, _ = torch.linalg.qr(torch.randn(hidden_size, hidden_size, dtype=DT))
            cell.orthogonal.base.copy_(q)
    return cell, ref


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("carried", [False, True])
def test_matches_transcription(case, carried):
    cell, ref = case_cell(case)
    x = torch.randn(4, 23, 3, dtype=DT)
    state = random_state(cell, 4) if carried else cell.initial_state(4)
    y_ref, s_ref = ref(cell, x, state)
    with torch.no_grad():
        for y, s in (cell.loop(x, state), cell(x, state if carried else None)):
            torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=0)
            for a, b in zip(s, s_ref):
                torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_lmu_parallel_path_is_taken_only_without_feedback():
    assert case_cell("lmu/parallel")[0].parallel
    assert not case_cell("lmu")[0].parallel
    cell, ref = case_cell("lmu/parallel")            # a carried-in h alone keeps it parallel
    h0, _ = random_state(cell, 4)
    state = (h0, torch.zeros(4, cell.order, dtype=DT))
    x = torch.randn(4, 23, 3, dtype=DT)
    with torch.no_grad():
        torch.testing.assert_close(cell(x, state)[0], ref(cell, x, state)[0], atol=1e-10, rtol=0)


# ---- LMU facts --------------------------------------------------------------------------------

@pytest.mark.parametrize("order,theta", [(6, 4.0), (256, 784.0)])
def test_lmu_matrices_equal_closed_forms_and_expm(order, theta):
    cell = create_cell("lmu", 1, 4, order=order, theta=theta)
    A, B, Abar, Bbar = (torch.tensor(a, dtype=DT) for a in lmu_matrices(order, theta))
    assert torch.equal(cell.A, A) and torch.equal(cell.B, B)
    torch.testing.assert_close(cell.Abar, Abar, atol=1e-10, rtol=0)
    torch.testing.assert_close(cell.Bbar, Bbar, atol=1e-10, rtol=0)


def test_lmu_parallel_memory_equals_recurrence():
    cell = randomize(make("lmu/parallel", 2, 5, order=64, theta=200.0))
    x = torch.randn(3, 300, 2, dtype=DT)
    Abar, Bbar = cell.Abar, cell.Bbar
    m, ms = torch.zeros(3, 64, dtype=DT), []
    for t in range(300):
        m = m @ Abar.T + (x[:, t] @ cell.e_x)[:, None] * Bbar
        ms.append(m)
    torch.testing.assert_close(cell.memory(x), torch.stack(ms, 1), atol=1e-10, rtol=0)


def test_lmu_defaults_are_the_published_psmnist_setting():
    cell = create_cell("lmu", 1, 212, context={"seq_len": 784})
    assert (cell.order, cell.theta) == (256, 784.0)
    assert torch.equal(cell.e_x, torch.ones(1)) and not cell.e_h.any() and not cell.e_m.any()
    assert not cell.W_x.any() and not cell.W_h.any() and cell.W_m.std() > 0
    # the notebook's Keras summary: 102,027 trainable parameters with the Dense(10) readout
    assert cell.num_parameters() + 212 * 10 + 10 == 102_027


# ---- dtriv facts ------------------------------------------------------------------------------

def orthogonality_error(B: torch.Tensor) -> float:
    return (B.T @ B - torch.eye(B.shape[0], dtype=B.dtype)).abs().max().item()


@pytest.mark.parametrize("spec", ["dtriv", "momentum_dtriv", "adam_dtriv"])
@pytest.mark.parametrize("K", [10, math.inf])
def test_dtriv_stays_orthogonal_under_training(spec, K):
    torch.manual_seed(0)
    cell = create_cell(spec, 2, 32, K=str(K))
    readout = nn.Linear(32, 1)
    orth = cell.param_groups()["orthogonal"]
    assert [id(p) for p in orth] == [id(cell.orthogonal.A)]
    rest = [p for p in [*cell.parameters(), *readout.parameters()] if all(p is not q for q in orth)]
    opt = torch.optim.RMSprop([{"params": rest}, {"params": orth, "lr": 3e-3}], lr=3e-2)
    x, target = torch.randn(16, 30, 2), torch.randn(16, 1)
    for _ in range(50):
        y, _ = cell(x)
        loss = (readout(y[:, -1]) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        cell.after_optimizer_step()
    assert orthogonality_error(cell.B.detach()) < 1e-5
    # with K = 10 the 50th step rebased: A is back at zero; with K = inf it has moved
    assert (cell.orthogonal.A.abs().max() == 0) == (K == 10)


def test_rebase_keeps_the_function():
    cell, _ = case_cell("dtriv")
    x = torch.randn(2, 10, 3, dtype=DT)
    with torch.no_grad():
        before = cell(x)[0]
        cell.orthogonal.rebase()
        after = cell(x)[0]
    assert not cell.orthogonal.A.any()
    torch.testing.assert_close(before, after, atol=1e-10, rtol=0)


@pytest.mark.parametrize("spec", ["dtriv", "momentum_dtriv"])
@pytest.mark.parametrize("n,published", [(170, 16), (360, 69), (512, 137)])
def test_pmnist_model_size_matches_exprnn(spec, n, published):
    cell = create_cell(spec, 1, n)
    readout = nn.Linear(n, 10)
    total = cell.num_parameters() + sum(p.numel() for p in readout.parameters())
    assert total == n * (n - 1) // 2 + n + n + n * 10 + 10
    assert round(total / 1000) == published


def test_registered_defaults():
    assert create_cell("momentum_dtriv", 1, 4).hparams == dict(mu=0.3, s=0.3, K=math.inf,
                                                               init="cayley", rebase_grad="clean")
    # the authors' logged pMNIST runs: run-adtriv-pmnist-gc-mu-0.3-epsilon-0.3-mus-0.8
    assert create_cell("adam_dtriv", 1, 4).hparams == dict(mu=0.3, s=0.3, beta=0.8, K=math.inf,
                                                           init="cayley", rebase_grad="clean")
    assert create_cell("dtriv", 1, 4).hparams["rebase_grad"] == "clean"
    assert create_cell("lmu", 1, 4, context={"seq_len": 50}).theta == 50.0


# ---- dtriv's gradient at a rebase: the official update, transcribed ----------------------------

class OfficialOrthogonal(nn.Module):
    """expRNN's Parametrization + Orthogonal (parametrization.py, orthogonal.py), written out: B is
    generated once per optimizer step (a hook on A's gradient clears it); on generations 0, K,
    2K, ... it rebases *inside* the property through ``.data`` after ``base.mm(...)`` saved
    ``base`` for backward; every M-th rebase (the first counted) projects the base by SVD."""

    def __init__(self, A0: torch.Tensor, K: int, M: int):
        super().__init__()
        self.A = nn.Parameter(A0.clone())             # n x n; only its upper triangle is used
        self.register_buffer("base", torch.eye(A0.shape[0], dtype=A0.dtype))
        self._B, self.K, self.M, self.k, self.m = None, K, M, 0, 0

        def hook(grad):
            self._B = None
        self.A.register_hook(hook)

    def retraction(self, A, base):
        A = A.triu(diagonal=1)
        A = A - A.t()
        return base.mm(torch.linalg.matrix_exp(A))

    def rebase(self):
        with torch.no_grad():
            self.base.data.copy_(self._B.data)
            self.A.data.zero_()

    @property
    def B(self):
        not_B = self._B is None
        if not_B or (not self._B.grad_fn and torch.is_grad_enabled()):
            self._B = self.retraction(self.A, self.base)
            self._B.requires_grad_()
            self._B.retain_grad()
            if not_B:
                if self.k == 0:
                    self.rebase()
                    self.m = (self.m + 1) % self.M
                    if self.m == 0:
                        with torch.no_grad():
                            u, _, v = torch.svd(self.base)
                            self.base = u.mm(v.t())
                self.k = (self.k + 1) % self.K
        return self._B


def official_rnn_loss(orth, W_in, b, readout, x, y):
    """OrthogonalRNN's step (input kernel, h B, modrelu) over x, then a readout at the last step."""
    h = x.new_zeros(x.shape[0], W_in.shape[0])
    B = orth.B
    for t in range(x.shape[1]):
        z = x[:, t] @ W_in.t() + h.matmul(B)
        h = torch.sign(z) * torch.relu(z.abs() + b)
    return ((readout(h) - y) ** 2).mean()


def dtriv_pair(rebase_grad: str, K: int, M: int = 100, n: int = 6, seed: int = 3):
    """Our dtriv (float64) and the transcription with the same weights and initial generator."""
    torch.manual_seed(seed)
    cell = create_cell("dtriv", 3, n, K=K, init="henaff", rebase_grad=rebase_grad).double()
    cell.orthogonal.project_every = M
    rows = torch.triu_indices(n, n, 1)
    a = torch.zeros(n, n, dtype=DT)       # expRNN's initial A: the angles on (2k, 2k + 1)
    a[2 * torch.arange(n // 2), 2 * torch.arange(n // 2) + 1] = torch.rand(n // 2, dtype=DT) * 6 - 3
    with torch.no_grad():
        cell.orthogonal.base.copy_(torch.linalg.matrix_exp(a - a.T))
        cell.orthogonal.folded.copy_(a[rows[0], rows[1]])
    official = OfficialOrthogonal(a - a.T, K, M)
    W_in = nn.Parameter(cell.W_in.detach().clone())
    b = nn.Parameter(cell.b.detach().clone())
    readouts = [nn.Linear(n, 2).double() for _ in range(2)]
    readouts[1].load_state_dict(readouts[0].state_dict())
    return cell, readouts[0], (official, W_in, b, readouts[1]), rows


def train_both(rebase_grad: str, K: int, steps: int, M: int = 100):
    """Per step: (our loss, official loss, our gradients, official gradients), plain SGD."""
    cell, readout, (orth, W_in, b, readout_o), rows = dtriv_pair(rebase_grad, K, M)
    g = torch.Generator().manual_seed(0)
    ours = torch.optim.SGD([{"params": [cell.W_in, cell.b, *readout.parameters()]},
                            {"params": [cell.orthogonal.A], "lr": 0.3}], lr=0.1)
    theirs = torch.optim.SGD([{"params": [W_in, b, *readout_o.parameters()]},
                              {"params": [orth.A], "lr": 0.3}], lr=0.1)
    out = []
    for _ in range(steps):
        x = torch.randn(5, 7, 3, generator=g, dtype=DT)
        y = torch.randn(5, 2, generator=g, dtype=DT)
        hs, _ = cell(x)
        loss = ((readout(hs[:, -1]) - y) ** 2).mean()
        loss_o = official_rnn_loss(orth, W_in, b, readout_o, x, y)
        ours.zero_grad()
        theirs.zero_grad()
        loss.backward()
        loss_o.backward()
        grads = [cell.orthogonal.A.grad, cell.W_in.grad, cell.b.grad,
                 *(p.grad for p in readout.parameters())]
        grads_o = [orth.A.grad[rows[0], rows[1]], W_in.grad, b.grad,
                   *(p.grad for p in readout_o.parameters())]
        assert not orth.A.grad.tril().any()          # the official lower triangle never moves
        out.append((loss.item(), loss_o.item(), [t.clone() for t in grads],
                    [t.clone() for t in grads_o]))
        ours.step()
        theirs.step()
        cell.after_optimizer_step()
    return out


@pytest.mark.parametrize("K,M", [(3, 100), (2, 2)])
def test_official_rebase_gradient_matches_a_transcription_of_the_official_update(K, M):
    """rebase_grad=official: losses and every gradient equal the transcription's at 1e-10 over 8
    steps with rebases on steps 0, K, 2K, ... (M = 2: the base is also projected every 2nd)."""
    for loss, loss_o, grads, grads_o in train_both("official", K, steps=8, M=M):
        assert loss == pytest.approx(loss_o, abs=1e-10, rel=0)
        for a, b in zip(grads, grads_o):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_clean_gradient_differs_from_the_official_one_at_a_rebase_only():
    """Step 0 (the initial generator folded into the base) and step K = 3 are rebase steps: there
    the A-gradient differs; between rebases, with the same weights, it is the same."""
    K = 3
    cell, readout, *_ = dtriv_pair("clean", K)
    official, *_ = dtriv_pair("official", K)
    x = torch.randn(5, 7, 3, dtype=DT)

    def a_grad(c):
        c.orthogonal.A.grad = None
        c(x)[0][:, -1].pow(2).sum().backward()
        return c.orthogonal.A.grad.clone()

    clean0, official0 = a_grad(cell), a_grad(official)
    assert (clean0 - official0).norm() > 0.1 * clean0.norm()
    for c in (cell, official):
        c.after_optimizer_step()               # no rebase after step 1 of K = 3
    torch.testing.assert_close(a_grad(cell), a_grad(official), atol=1e-12, rtol=0)
    # over a training run the two differ (losses from step 1 on), the official one as transcribed
    clean = train_both("clean", K, steps=5)
    assert clean[0][0] == pytest.approx(clean[0][1], abs=1e-12)     # same start
    assert abs(clean[4][0] - clean[4][1]) > 1e-6
