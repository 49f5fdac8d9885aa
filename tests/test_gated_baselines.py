"""chrono_lstm, janet, urlstm and nru against independent transcriptions of their papers/code, and
their initialisations (the cell contract, tests/test_cells.py, checks gradients for every cell)."""
from __future__ import annotations

import math

import pytest
import torch

from bench import create_cell
from bench.errors import UserError
from tests.conftest import make, randomize, random_state

F64 = torch.float64


def sig(z):
    return 1 / (1 + torch.exp(-z))


# ---- independent transcriptions: plain tensor ops over the cell's parameters, one step each ----

def lstm_step(P, x, h, c):
    """LSTM (PyTorch gate order i, f, g, o) with both bias vectors."""
    z = x @ P["core.weight_ih_l0"].T + P["core.bias_ih_l0"] + h @ P["core.weight_hh_l0"].T \
        + P["core.bias_hh_l0"]
    n = h.shape[1]
    i, f, g, o = z[:, :n], z[:, n:2 * n], z[:, 2 * n:3 * n], z[:, 3 * n:]
    c = sig(f) * c + sig(i) * torch.tanh(g)
    return sig(o) * torch.tanh(c), (sig(o) * torch.tanh(c), c)


def janet_step(P, x, h, beta):
    """JANET (van der Westhuizen & Lasenby 2018, eqs. 9-12): s = forget pre-activation."""
    n = h.shape[1]
    W, U, b = P["weight_ih"], P["weight_hh"], P["bias"]
    s = h @ U[:n].T + x @ W[:n].T + b[:n]
    c_tilde = torch.tanh(h @ U[n:].T + x @ W[n:].T + b[n:])
    c = sig(s) * h + (1 - sig(s - beta)) * c_tilde
    return c, (c,)


def urlstm_step(P, x, h, c):
    """UR-LSTM (Gu et al. 2020, appendix A pseudocode); gate rows f, r, o, u."""
    n = h.shape[1]
    z = x @ P["weight_ih"].T + h @ P["weight_hh"].T + P["bias"]
    b_f = P["forget_bias"]
    f = sig(z[:, :n] + b_f)
    r = sig(z[:, n:2 * n] - b_f)
    o = sig(z[:, 2 * n:3 * n])
    u = torch.tanh(z[:, 3 * n:])
    g = 2 * r * f + (1 - 2 * r) * f * f
    c = g * c + (1 - g) * u
    h = o * torch.tanh(c)
    return h, (h, c)


def nru_step(P, x, h, m, k):
    """NRU (apsarath/NRU NRUCell, use_relu=False): head by head, norms written out."""
    M = m.shape[1]
    s = math.isqrt(k * M)
    h = torch.clamp(torch.cat([x, h, m], 1) @ P["hidden.weight"].T + P["hidden.bias"], min=0)
    out = torch.cat([h, m], 1) @ P["heads.weight"].T + P["heads.bias"]
    alpha, beta = out[:, :k], out[:, k:2 * k]
    vecs = out[:, 2 * k:]
    new_m = m.clone()
    for b in range(x.shape[0]):
        # rows: write p, erase p, write q, erase q
        wv = torch.outer(vecs[b, :s], vecs[b, 2 * s:3 * s]).flatten()
        wu = torch.outer(vecs[b, s:2 * s], vecs[b, 3 * s:]).flatten()
        total = torch.zeros(M, dtype=m.dtype)
        for i in range(k):
            v, u = wv[i * M:(i + 1) * M], wu[i * M:(i + 1) * M]
            v = v / max((v.abs() ** 5).sum() ** 0.2, torch.tensor(1e-12, dtype=m.dtype))
            u = u / max((u.abs() ** 5).sum() ** 0.2, torch.tensor(1e-12, dtype=m.dtype))
            total = total + alpha[b, i] * v - beta[b, i] * u
        new_m[b] = m[b] + total / k
    return h, (h, new_m)


def transcribe(name, cell, x, state):
    P = dict(cell.named_parameters())
    steps = {
        "chrono_lstm": lambda x_t, st: lstm_step(P, x_t, *st),
        "janet": lambda x_t, st: janet_step(P, x_t, *st, cell.beta),
        "urlstm": lambda x_t, st: urlstm_step(P, x_t, *st),
        "nru": lambda x_t, st: nru_step(P, x_t, *st, cell.k),
    }
    hs = []
    for t in range(x.shape[1]):
        h, state = steps[name](x[:, t], state)
        hs.append(h)
    return torch.stack(hs, 1), state


CASES = [
    ("chrono_lstm", {}),
    ("janet", {"beta": 0.7}),
    ("urlstm", {}),
    ("nru", {"memory_size": 16, "k": 4}),      # sqrt(k m) = 8, divisible by k: factored path
    ("nru", {"memory_size": 9, "k": 4}),       # sqrt(k m) = 6: outer-product path
]
IDS = [f"{n}{kw.get('memory_size', '')}" for n, kw in CASES]


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_matches_independent_transcription(name, kw):
    cell = randomize(make(name, hidden=5, **kw), scale=0.5)
    x = torch.randn(4, 9, 3, dtype=F64)
    state = random_state(cell, 4)
    y_ref, s_ref = transcribe(name, cell, x, state)
    for y, s in (cell.loop(x, state), cell(x, state)):
        torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=0)
        for a, b in zip(s, s_ref):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


# ---- initialisations ------------------------------------------------------------------------

def test_chrono_lstm_biases():
    torch.manual_seed(0)
    n, t_max = 4000, 100
    cell = create_cell("chrono_lstm", 1, n, context={"seq_len": t_max})
    assert cell.t_max == t_max
    b, b_hh = cell.core.bias_ih_l0.detach(), cell.core.bias_hh_l0.detach()
    b_i, b_f, rest = b[:n], b[n:2 * n], b[2 * n:]
    e = b_f.exp()
    assert e.min() >= 1 and e.max() <= t_max - 1        # log U[1, T_max - 1]
    assert abs(e.mean().item() - t_max / 2) < 2         # uniform: mean (1 + T_max - 1) / 2
    assert torch.equal(b_i, -b_f)
    assert torch.all(rest == 0) and torch.all(b_hh == 0)
    # An explicit t_max wins over the task's length.
    assert create_cell("chrono_lstm[t_max=30]", 1, 4, context={"seq_len": 784}).t_max == 30


def test_janet_biases():
    torch.manual_seed(0)
    n, t_max = 4000, 100
    cell = create_cell("janet", 1, n, context={"seq_len": t_max})
    b_f, b_c = cell.bias.detach()[:n], cell.bias.detach()[n:]
    e = b_f.exp()
    assert e.min() >= 1 and e.max() <= t_max            # authors' code: log U[1, T_max]
    assert abs(e.mean().item() - (1 + t_max) / 2) < 2
    assert torch.all(b_c == 0)
    assert cell.beta == 1.0


def test_urlstm_forget_bias_is_uniform_gate_init():
    torch.manual_seed(0)
    d = 4000
    cell = create_cell("urlstm", 1, d)
    f = torch.sigmoid(cell.forget_bias.detach())
    assert f.min() >= 1 / d - 1e-6 and f.max() <= 1 - 1 / d + 1e-6
    assert abs(f.mean().item() - 0.5) < 0.02 and abs(f.std().item() - 12 ** -0.5) < 0.02
    # The gates start with exactly (b_f, -b_f, 0, 0): the linear maps' own bias is zero.
    b = cell.gate_bias().detach()
    assert torch.equal(b[:d], cell.forget_bias.detach())
    assert torch.equal(b[d:2 * d], -cell.forget_bias.detach())
    assert torch.all(b[2 * d:] == 0)


def test_nru_rejects_non_square_k_m():
    with pytest.raises(UserError, match=r"sqrt\(k \* memory_size\)"):
        create_cell("nru", 1, 8, memory_size=10, k=4)
    with pytest.raises(UserError, match="integer"):
        create_cell("nru[memory_size=8,k=1]", 1, 8)


def test_nru_published_pmnist_size():
    cell = create_cell("nru", 1, 212)                   # defaults: memory 256, k 4
    assert cell.state_sizes() == (212, 256)
    assert [t.shape for t in cell.initial_state(2)] == [(2, 212), (2, 256)]
    # cell + 10-way linear readout: the paper's 165K for pMNIST
    assert cell.num_parameters() + 212 * 10 + 10 == 165_554


def test_nru_zero_write_vectors_stay_finite():
    """p = q = 0 hits the 1e-12 norm floor: forward and gradients stay finite and match step()."""
    cell = make("nru", hidden=5, memory_size=16, k=4)
    with torch.no_grad():
        cell.heads.weight[8:].zero_()
        cell.heads.bias[8:].zero_()
    x = torch.randn(2, 5, 3, dtype=F64, requires_grad=True)
    grads = []
    for run in (cell.loop, cell.forward):
        y, (h, m) = run(x)
        assert torch.all(m == 0)
        grads.append(torch.autograd.grad(y.sum() + m.sum(), [x, *cell.parameters()]))
    for a, b in zip(*grads):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_chrono_defaults_without_task_context():
    from baselines.lstm import DEFAULT_T_MAX
    assert create_cell("chrono_lstm", 1, 4).t_max == DEFAULT_T_MAX
    assert create_cell("janet", 1, 4).t_max == DEFAULT_T_MAX
    # chrono_lstm differs from lstm only in its initialisation
    assert create_cell("chrono_lstm", 3, 16).num_parameters() == \
        create_cell("lstm", 3, 16).num_parameters()


def test_official_init_lstm_is_the_papers_baseline():
    """lstm/official_init: W orthogonal, U = eye(4n, n), forget bias on both vectors; with the same
    weights it equals momentum_lstm/no_momentum[s=1] (the official LSTMCell), in float64."""
    import torch

    from bench import create_cell
    n, inp = 6, 3
    cell = create_cell("lstm/official_init", inp, n, forget_bias=1.5).double()
    c = cell.core
    W = c.weight_ih_l0.detach()
    torch.testing.assert_close(W.T @ W, torch.eye(inp, dtype=torch.float64), atol=1e-6, rtol=0)  # float32 init
    assert torch.equal(c.weight_hh_l0.detach(), torch.eye(4 * n, n, dtype=torch.float64))
    for b in (c.bias_ih_l0.detach(), c.bias_hh_l0.detach()):
        assert torch.equal(b[n:2 * n], torch.full((n,), 1.5, dtype=torch.float64))
        assert torch.count_nonzero(torch.cat([b[:n], b[2 * n:]])) == 0
    # the same weights in the momentum cell without momentum and with step size 1
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.1 * torch.randn_like(p))
    mom = create_cell("momentum_lstm/no_momentum[s=1]", inp, n).double()
    with torch.no_grad():
        mom.core.weight_ih_l0[:, :-1] = c.weight_ih_l0      # W
        mom.core.weight_ih_l0[:, -1] = c.bias_ih_l0         # b_x
        mom.core.weight_hh_l0.copy_(c.weight_hh_l0)         # U
        mom.core.bias_ih_l0.copy_(c.bias_hh_l0)             # b_h
    x = torch.randn(4, 30, inp, dtype=torch.float64)
    torch.testing.assert_close(mom(x)[0], cell(x)[0], atol=1e-12, rtol=0)
