"""The cell contract for every registered cell and ablation (new cells are covered automatically),
plus the variants in ``tests.conftest.VARIANTS`` that reach other code paths.

In float64, from a zero and from a carried-in (random nonzero) state: forward() (the fast path)
equals looping step(), a sequence split across two calls equals one call, forward()'s gradients
equal autograd's through the step loop across the fast paths' 32-step time blocks, and gradcheck
holds for the output and the final state. Gradients are finite through 1000 steps. Each family's
own tests check the cells against independent transcriptions of their papers and code.
"""
import pytest
import torch

from bench.kernels.filter import exp_filter
from tests.conftest import CELLS, make, random_state

F64 = dict(atol=1e-10, rtol=0)
#: state names of step counts: integers kept as floats, which nothing differentiates through
COUNTS = {"k"}
#: cells built to carry a signal over 1000 steps at initialisation (chrono init with t_max = T,
#: LMU's window theta = T, orthogonal recurrences, NRU's additive memory): the first input still
#: reaches the last output there (float32). Others' gradients may underflow to zero.
LONG_MEMORY = {"chrono_lstm", "janet", "nru", "lmu", "dtriv", "momentum_dtriv", "adam_dtriv"}


def differentiable(cell):
    """Indices of the state tensors that gradients flow through (all but step counts)."""
    return [i for i, n in enumerate(cell.state_names) if n not in COUNTS]


def assert_states_close(a, b):
    assert len(a) == len(b)
    for s, t in zip(a, b):
        torch.testing.assert_close(s, t, **F64)


@pytest.mark.parametrize("name", CELLS)
def test_forward_equals_step_loop_and_split_calls(name):
    """forward() equals the step loop, and (the final state carries everything: memories, step
    counts) a sequence split across two calls equals one call."""
    cell = make(name)
    x = torch.randn(4, 60, 3, dtype=torch.float64)
    for state in (None, random_state(cell, 4)):
        y, st = cell(x, state)
        y_ref, st_ref = cell.loop(x, state)
        torch.testing.assert_close(y, y_ref, **F64)
        assert_states_close(st, st_ref)
        y1, st1 = cell(x[:, :25], state)
        y2, st2 = cell(x[:, 25:], st1)
        torch.testing.assert_close(torch.cat([y1, y2], 1), y, **F64)
        assert_states_close(st2, st)


@pytest.mark.parametrize("name", CELLS)
def test_forward_gradients_equal_loop_gradients(name):
    """forward()'s backward (hand-written in several cells) against autograd through step(), for
    the input, the parameters and the carried-in state, over 70 steps (two time-block edges)."""
    cell = make(name)
    d = differentiable(cell)
    x = torch.randn(2, 70, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 70, cell.hidden_size, dtype=torch.float64)
    params = [p for p in cell.parameters() if p.requires_grad]
    carried = tuple(s.requires_grad_(i in d) for i, s in enumerate(random_state(cell, 2)))
    for state in (None, carried):
        inputs = [x, *params, *([carried[i] for i in d] if state else [])]

        def grads(run):
            y, st = run(x, state)
            loss = (y * w).sum() + sum(st[i].square().sum() for i in d)
            got = torch.autograd.grad(loss, inputs, allow_unused=True)
            return [torch.zeros_like(t) if g is None else g for g, t in zip(got, inputs)]

        for a, b in zip(grads(cell.forward), grads(cell.loop)):
            # round-off relative to the largest entry: NRU's gradients reach 1e8 over 70 steps
            torch.testing.assert_close(a, b, atol=1e-10 * (1 + b.abs().max().item()), rtol=0)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("carried", [False, True], ids=["zero_state", "carried_state"])
def test_gradcheck(name, carried):
    """Gradients of the output and the final state, for the input, the parameters and (carried)
    the state, against finite differences (fast mode: random projections of each Jacobian; the
    comparison with the step loop above checks every entry)."""
    cell = make(name, inp=2, hidden=3)
    d = differentiable(cell)
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    params = [p for p in cell.parameters() if p.requires_grad]
    state = random_state(cell, 2)
    leaves = [state[i].requires_grad_() for i in d] if carried else []

    def f(x, *args):
        st = list(state)
        for i, s in zip(d, args[:len(leaves)]):
            st[i] = s
        y, final = cell(x, tuple(st) if carried else None)
        return y, *(final[i] for i in d)

    assert torch.autograd.gradcheck(f, (x, *leaves, *params), atol=1e-6, eps=1e-6, fast_mode=True)


@pytest.mark.parametrize("name", CELLS)
def test_finite_gradients_through_1000_steps(name):
    cell = make(name, inp=2, hidden=8, seq_len=1000).float()
    x = torch.randn(2, 1000, 2, requires_grad=True)
    y, _ = cell(x)
    y[:, -1].sum().backward()
    grads = [p.grad for p in cell.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(x.grad).all()
    if name.split("/")[0].split("[")[0] in LONG_MEMORY:
        assert x.grad[:, 0].abs().sum() > 0          # the first input still reaches the output


@pytest.mark.parametrize("name", CELLS)
def test_num_parameters_positive_and_state_contract(name):
    cell = make(name)
    assert cell.num_parameters() > 0
    state = cell.initial_state(5)
    assert len(state) == len(cell.state_names) == len(cell.state_sizes())
    h, new = cell.step(torch.zeros(5, 3, dtype=torch.float64), state)
    assert h.shape == (5, 6) and len(new) == len(state)
    assert all(a.shape == b.shape for a, b in zip(new, state))


def test_exp_filter_long_sequences_and_chunks():
    x = torch.randn(2, 700, 3, dtype=torch.float64)
    y = torch.zeros(2, 3, dtype=torch.float64)
    ref = []
    for t in range(700):
        y = 0.9 * y + 0.5 * x[:, t]
        ref.append(y)
    torch.testing.assert_close(exp_filter(x, 0.9, 0.5, chunk=64), torch.stack(ref, 1), **F64)
    torch.testing.assert_close(exp_filter(x, 0.0, 1.0), x)
