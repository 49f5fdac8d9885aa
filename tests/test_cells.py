"""The cell contract for every registered cell and ablation (new cells are covered automatically).

forward() (the fast path) equals looping step() in float64; gradients are right (gradcheck) and
finite through 1000 steps; the momentum reduction holds (mu = 0 vs lstm: test_momentum_family).
"""
import pytest
import torch

from bench import create_cell, list_cells

ALL = list_cells("*", ablations=True)
CONTEXT = {"seq_len": 50}


# Defaults sized for pMNIST make gradcheck slow; shrink those hyperparameters in every test.
TINY = {"nru": {"memory_size": 4, "k": 4}, "lmu": {"order": 4}}


def make(name, inp=3, hidden=6, **kw):
    torch.manual_seed(0)
    small = TINY.get(name.split("/")[0], {})
    return create_cell(name, inp, hidden, context=CONTEXT, **{**small, **kw}).double()


def nonzero_state(cell, batch):
    g = torch.Generator().manual_seed(1)
    # abs(): some states are non-negative by construction (Adam second moments)
    return tuple(torch.randn(s.shape, generator=g, dtype=torch.float64).abs() * 0.5
                 for s in cell.initial_state(batch))


@pytest.mark.parametrize("name", ALL)
def test_forward_equals_step_loop(name):
    cell = make(name)
    x = torch.randn(4, 40, 3, dtype=torch.float64)
    for state in (None, nonzero_state(cell, 4)):
        y_fast, s_fast = cell(x, state)
        y_ref, s_ref = cell.loop(x, state)
        torch.testing.assert_close(y_fast, y_ref, atol=1e-10, rtol=0)
        for a, b in zip(s_fast, s_ref):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_gradcheck(name):
    cell = make(name, inp=2, hidden=3)
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    params = [p for p in cell.parameters() if p.requires_grad]

    def f(x, *ps):
        return cell(x)[0]

    assert torch.autograd.gradcheck(f, (x, *params), atol=1e-6, eps=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_finite_gradients_through_1000_steps(name):
    cell = make(name, inp=2, hidden=8).float()
    x = torch.randn(2, 1000, 2)
    y, _ = cell(x)
    y[:, -1].sum().backward()
    grads = [p.grad for p in cell.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ALL)
def test_num_parameters_positive_and_state_contract(name):
    cell = make(name)
    assert cell.num_parameters() > 0
    state = cell.initial_state(5)
    h, new = cell.step(torch.zeros(5, 3, dtype=torch.float64), state)
    assert h.shape == (5, 6) and len(new) == len(state)
    assert all(a.shape == b.shape for a, b in zip(new, state))


@pytest.mark.parametrize("name, core", [("momentum_lstm", "lstm"), ("momentum_rnn", "rnn")])
def test_filtered_input_reduction_matches_official_transcription(name, core):
    """Plain transcription of the official step: v = mu v + s (W x + b_x); pre = v + U h + b_h."""
    cell = make(name, mu=0.7, s=0.4)
    W, b_x = cell.core.weight_ih_l0[:, :-1], cell.core.weight_ih_l0[:, -1]
    U, b_h = cell.core.weight_hh_l0, cell.core.bias_ih_l0
    x = torch.randn(2, 25, 3, dtype=torch.float64)
    n = cell.hidden_size
    h = torch.zeros(2, n, dtype=torch.float64)
    c = torch.zeros_like(h)
    v = torch.zeros(2, U.shape[0], dtype=torch.float64)
    outs = []
    for t in range(x.shape[1]):
        v = 0.7 * v + 0.4 * (x[:, t] @ W.T + b_x)
        pre = v + h @ U.T + b_h
        if core == "lstm":
            i, f, g, o = pre.split(n, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        else:
            h = torch.tanh(pre)
        outs.append(h)
    torch.testing.assert_close(cell(x)[0], torch.stack(outs, 1), atol=1e-10, rtol=0)


def test_exp_filter_long_sequences_and_chunks():
    from bench.kernels.filter import exp_filter
    x = torch.randn(2, 700, 3, dtype=torch.float64)
    y = torch.zeros(2, 3, dtype=torch.float64)
    ref = []
    for t in range(700):
        y = 0.9 * y + 0.5 * x[:, t]
        ref.append(y)
    torch.testing.assert_close(exp_filter(x, 0.9, 0.5, chunk=64), torch.stack(ref, 1), atol=1e-10, rtol=0)
    torch.testing.assert_close(exp_filter(x, 0.0, 1.0), x)
