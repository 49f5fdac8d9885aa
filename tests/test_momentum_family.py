"""The momentum family against independent transcriptions of the official code
(minhtannguyen/MomentumRNN, mnist-timit/momentumnet.py and the loop of mnist-timit/mnist.py),
written here with plain tensor ops; the step counter's schedule, the LSTM special case and
bench.speed (the cell contract, tests/test_cells.py, checks gradients and split sequences).

Sequences are longer than the fast paths' time block (32 steps), so block edges are crossed.
"""
import math

import pytest
import torch

from bench.kernels.filter import exp_filter
from bench.momentum.nesterov import step_counts
from tests.conftest import make, random_state, randomize

T = 45
F64 = dict(atol=1e-10, rtol=0)


def random_cell(name, **kw):
    """A cell in float64 with random parameters, so no weight sits at its init value (the
    momentum cells' frozen bias_hh stays zero)."""
    return randomize(make(name, hidden=5, seq_len=T, **kw))


def weights(cell):
    """The paper's W, b_x, U, b_h from the documented layout of the cell's nn.LSTM/nn.RNN core."""
    core = cell.core
    return (core.weight_ih_l0[:, :-1].detach(), core.weight_ih_l0[:, -1].detach(),
            core.weight_hh_l0.detach(), core.bias_ih_l0.detach())


def lstm_gates(gates, c):
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


# ---- transcriptions of the official cells -------------------------------------------------

def official_momentum(cell, x, mu, s, lstm=True):
    """MomentumLSTMCell.forward (and its tanh-RNN analogue), looped like mnist.py."""
    W, b_x, U, b_h = weights(cell)
    B, n = x.shape[0], cell.hidden_size
    h = torch.zeros(B, n, dtype=x.dtype)
    c = torch.zeros_like(h)
    v = torch.zeros(B, U.shape[0], dtype=x.dtype)
    out = []
    for t in range(x.shape[1]):
        v = mu * v + s * (x[:, t] @ W.T + b_x)
        gates = v + h @ U.T + b_h
        h, c = lstm_gates(gates, c) if lstm else (torch.tanh(gates), c)
        out.append(h)
    return torch.stack(out, 1)


def official_adam(cell, x, mu, s, beta, state=None):
    """AdamLSTMCell.forward: vy = mu v + eps x2h(x); sy = mus s + (1 - mus) x2h(x)^2;
    gates = vy / sqrt(sy + 1e-16) + h2h(h)."""
    W, b_x, U, b_h = weights(cell)
    h, c, v, r = state if state is not None else cell.initial_state(x.shape[0])
    out = []
    for t in range(x.shape[1]):
        grad_val = x[:, t] @ W.T + b_x
        v = mu * v + s * grad_val
        r = beta * r + (1.0 - beta) * (grad_val * grad_val)
        h, c = lstm_gates(v / torch.sqrt(r + 1e-16) + h @ U.T + b_h, c)
        out.append(h)
    return torch.stack(out, 1), (h, c, v, r)


def official_nesterov(cell, x, s, restart, state=None):
    """NesterovLSTMCell.forward with mnist.py's counter: iter_indx += 1 before each step, the
    cell gets k = iter_indx, and 'if restart > 0 and not (iter_indx % restart): iter_indx = 0'."""
    W, b_x, U, b_h = weights(cell)
    h, c, v, k = state if state is not None else cell.initial_state(x.shape[0])
    iter_indx = int(k[0, 0])          # the official counter is one Python int for the batch
    out = []
    for t in range(x.shape[1]):
        iter_indx = iter_indx + 1
        vy = h @ U.T + b_h - s * (x[:, t] @ W.T + b_x)
        gates = vy + (iter_indx - 1.0) / (iter_indx + 2.0) * (vy - v)
        h, c = lstm_gates(gates, c)
        v = vy
        out.append(h)
        if restart > 0 and not (iter_indx % restart):
            iter_indx = 0
    return torch.stack(out, 1), (h, c, v, torch.full_like(k, iter_indx))


def assert_runs_match(cell, x, ref_y, ref_state, state=None):
    for run in (cell.loop, cell.forward):
        y, st = run(x, state)
        torch.testing.assert_close(y, ref_y, **F64)
        for a, b in zip(st, ref_state):
            torch.testing.assert_close(a, b, **F64)


# ---- adam_lstm, rmsprop_lstm, sr_lstm ---------------------------------------------------------

@pytest.mark.parametrize("name, hp", [("adam_lstm", dict(mu=0.6, s=0.7, beta=0.3)),
                                      ("adam_lstm", dict(mu=0.9, s=1.0, beta=0.0)),
                                      ("rmsprop_lstm", dict(s=0.8, beta=0.9))])
@pytest.mark.parametrize("carried", [False, True])
def test_adam_family_matches_official_transcription(name, hp, carried):
    cell = random_cell(name, **hp)
    x = torch.randn(3, T, 3, dtype=torch.float64)
    state = random_state(cell, 3) if carried else None
    y, st = official_adam(cell, x, hp.get("mu", 0.0), hp["s"], hp["beta"], state)
    assert_runs_match(cell, x, y, st, state)


def test_adam_parallel_path_matches_transcription():
    """The CUDA fast path (filters + torch.lstm with an identity input weight), run on the CPU."""
    cell = random_cell("adam_lstm", mu=0.5, s=0.9, beta=0.2)
    cell.fast_path = "parallel"
    x = torch.randn(3, T, 3, dtype=torch.float64)
    for state in (None, random_state(cell, 3)):
        y, st = official_adam(cell, x, 0.5, 0.9, 0.2, state)
        y_fast, st_fast = cell(x, state)
        torch.testing.assert_close(y_fast, y, **F64)
        for a, b in zip(st_fast, st):
            torch.testing.assert_close(a, b, **F64)


@pytest.mark.parametrize("restart, k0", [(0, None), (1, None), (2, None), (7, None), (40, None),
                                         (7, 0), (7, 3), (7, 9), (0, 3)])
def test_sr_lstm_matches_official_transcription(restart, k0):
    """k0: a carried-in count, also one past restart (the official modulo rule then applies)."""
    cell = random_cell("sr_lstm", s=0.9, restart=restart)
    x = torch.randn(3, T, 3, dtype=torch.float64)
    state = None
    if k0 is not None:
        h, c, u, _ = random_state(cell, 3)
        state = (h, c, u, torch.full((3, 1), float(k0), dtype=torch.float64))
    y, st = official_nesterov(cell, x, 0.9, restart, state)
    assert_runs_match(cell, x, y, st, state)


def test_sr_lstm_counter_is_documented_schedule():
    """From a fresh state k_t = (t mod restart) + 1."""
    for restart in (1, 3, 40):
        k, last = step_counts(torch.zeros(2, 1), 100, restart)
        expect = torch.tensor([t % restart + 1 for t in range(100)], dtype=torch.float32)
        torch.testing.assert_close(k[:, 0, 0], expect)
        assert last[0, 0] == (0 if 100 % restart == 0 else 100 % restart)


def test_step_counts_closed_form_equals_rule():
    k0 = torch.tensor([[0.], [1.], [5.], [6.], [13.], [-4.], [2.5], [40.]], dtype=torch.float64)
    for restart in (0, 1, 3, 6):
        ks, last = step_counts(k0, 50, restart)
        k = k0.clone()
        for t in range(50):
            k = k + 1
            torch.testing.assert_close(ks[t], k)
            if restart > 0:
                k = torch.where(torch.remainder(k, restart) == 0, torch.zeros_like(k), k)
        torch.testing.assert_close(last, k)


# ---- momentum_rnn, momentum_lstm --------------------------------------------------------------

@pytest.mark.parametrize("name, lstm", [("momentum_lstm", True), ("momentum_rnn", False)])
def test_momentum_cells_match_official_transcription(name, lstm):
    cell = random_cell(name, mu=0.7, s=0.4)
    x = torch.randn(3, T, 3, dtype=torch.float64)
    y = official_momentum(cell, x, 0.7, 0.4, lstm)
    torch.testing.assert_close(cell.loop(x)[0], y, **F64)
    torch.testing.assert_close(cell(x)[0], y, **F64)


def test_momentum_lstm_without_momentum_is_lstm():
    """mu = 0, s = 1 and lstm's weights: W, b_x <- W_ih, b_ih; U, b_h <- W_hh, b_hh."""
    lstm, mom = random_cell("lstm"), random_cell("momentum_lstm", mu=0.0, s=1.0)
    with torch.no_grad():
        mom.core.weight_ih_l0[:, :-1] = lstm.core.weight_ih_l0
        mom.core.weight_ih_l0[:, -1] = lstm.core.bias_ih_l0
        mom.core.weight_hh_l0.copy_(lstm.core.weight_hh_l0)
        mom.core.bias_ih_l0.copy_(lstm.core.bias_hh_l0)
    x = torch.randn(3, T, 3, dtype=torch.float64)
    torch.testing.assert_close(mom(x)[0], lstm(x)[0], **F64)
    torch.testing.assert_close(mom.loop(x)[0], lstm.loop(x)[0], **F64)


def test_filtered_input_reduction_equals_momentum_recurrence():
    """v_t = mu v_{t-1} + s (W x_t + b_x) equals W x~_t + b_x c_t, x~ and c filtered x and 1."""
    cell = random_cell("momentum_lstm", mu=0.8, s=0.3)
    W, b_x, _, _ = weights(cell)
    x = torch.randn(2, 300, 3, dtype=torch.float64)
    v, vs = torch.zeros(2, W.shape[0], dtype=torch.float64), []
    for t in range(x.shape[1]):
        v = 0.8 * v + 0.3 * (x[:, t] @ W.T + b_x)
        vs.append(v)
    xf = exp_filter(torch.cat([x, torch.ones(2, 300, 1, dtype=torch.float64)], -1), 0.8, 0.3)
    torch.testing.assert_close(xf[..., :-1] @ W.T + xf[..., -1:] * b_x, torch.stack(vs, 1), **F64)
    ones_filtered = 0.3 * (1 - 0.8 ** torch.arange(1, 301, dtype=torch.float64)) / (1 - 0.8)
    torch.testing.assert_close(xf[0, :, -1], ones_filtered, **F64)


# ---- bench.speed ------------------------------------------------------------------------------

def test_speed_measure_rows():
    from bench.speed import REFERENCE, measure
    rows = measure(["momentum_lstm", "sr_lstm"], batch=2, seq=6, hidden=4, device="cpu", reps=2)
    assert [r["cell"] for r in rows] == [REFERENCE, "momentum_lstm", "sr_lstm"]
    assert rows[0]["ratio"] == 1.0
    for r in rows:
        assert r["ms"] > 0 and math.isfinite(r["ratio"]) and r["ratio"] > 0
        assert r["params"] > 0 and r["device"] == "cpu" and r["seq"] == 6
        assert r["peak_mb"] is None or r["peak_mb"] >= 0
    assert rows[1]["params"] == rows[0]["params"]     # x2h and h2h biases, like b_ih and b_hh
