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
                                                               init="cayley")
    # the authors' logged pMNIST runs: run-adtriv-pmnist-gc-mu-0.3-epsilon-0.3-mus-0.8
    assert create_cell("adam_dtriv", 1, 4).hparams == dict(mu=0.3, s=0.3, beta=0.8, K=math.inf,
                                                           init="cayley")
    assert create_cell("lmu", 1, 4, context={"seq_len": 50}).theta == 50.0
