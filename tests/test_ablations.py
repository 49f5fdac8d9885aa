"""The ablation cell forms (bench/momentum/ablations.py, baselines/lstm_ablations.py) against the
cells they reduce to, and their defining properties. The generic contract (forward equals the step
loop, split calls, gradients, gradcheck, 1000 steps) runs on them in tests/test_cells.py."""
import pytest
import torch

from bench import create_cell
from bench.registry import cell_entry
from tests.conftest import make, randomize, random_state

F64 = dict(atol=1e-12, rtol=0)


def official_init(inp, n, forget_bias=1.5):
    """lstm/official_init in float64 with its weights moved off their init."""
    torch.manual_seed(0)
    cell = create_cell("lstm/official_init", inp, n, forget_bias=forget_bias).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return cell


def with_official_weights(spec, official):
    """A momentum-LSTM-layout cell holding official_init's weights: W, b_x = b_ih, U, b_h = b_hh."""
    c = official.core
    mom = create_cell(spec, c.input_size, c.hidden_size).double()
    with torch.no_grad():
        mom.core.weight_ih_l0[:, :-1] = c.weight_ih_l0      # W
        mom.core.weight_ih_l0[:, -1] = c.bias_ih_l0         # b_x
        mom.core.weight_hh_l0.copy_(c.weight_hh_l0)         # U
        mom.core.bias_ih_l0.copy_(c.bias_hh_l0)             # b_h
    return mom


@pytest.mark.parametrize("spec", ["momentum_lstm/no_momentum[s=1]",
                                  "momentum_lstm/bias_unfiltered[mu=0,s=1]"])
def test_momentum_lstm_without_momentum_is_official_init(spec):
    """Same weights, from a zero and a carried-in state (at mu = 0 the carried v is forgotten)."""
    off = official_init(3, 6)
    mom = with_official_weights(spec, off)
    x = torch.randn(4, 30, 3, dtype=torch.float64)
    h0, c0, v0 = random_state(mom, 4)
    for s_off, s_mom in ((None, None), ((h0, c0), (h0, c0, v0))):
        y, (h, c) = off(x, s_off)
        for run in (mom.forward, mom.loop):
            y_m, (h_m, c_m, _) = run(x, s_mom)
            torch.testing.assert_close(y_m, y, **F64)
            torch.testing.assert_close(h_m, h, **F64)
            torch.testing.assert_close(c_m, c, **F64)


def test_bias_unfiltered_keeps_the_bias_out_of_the_filter():
    """At x = 0 the momentum state of momentum_lstm settles at s/(1-mu) b_x (the amplified bias,
    forget bias included); bias_unfiltered's stays 0, its b_x entering once, as in official_init."""
    x = torch.zeros(2, 400, 3, dtype=torch.float64)
    base = randomize(make("momentum_lstm", mu=0.8, s=0.6))
    unf = make("momentum_lstm/bias_unfiltered", mu=0.8, s=0.6)
    unf.load_state_dict(base.state_dict())
    v_base = base(x)[1][-1]
    v_unf = unf(x)[1][-1]
    torch.testing.assert_close(v_base, (0.6 / 0.2 * base.b_x).expand(2, -1), atol=1e-10, rtol=0)
    assert torch.all(v_unf == 0)
    fresh = create_cell("momentum_lstm/bias_unfiltered", 1, 5, forget_bias=1.5)   # the base's init
    assert torch.all(fresh.b_x[5:10] == 1.5) and torch.all(fresh.b_h[5:10] == 1.5)


@pytest.mark.parametrize("carried", [False, True])
def test_state_momentum_at_mu_0_s_1_is_no_momentum(carried):
    ref = randomize(make("momentum_lstm/no_momentum[s=1]"))
    cell = make("momentum_lstm/state_momentum[mu=0,s=1]")
    cell.load_state_dict(ref.state_dict())
    x = torch.randn(4, 40, 3, dtype=torch.float64)
    state = random_state(ref, 4) if carried else None
    y_ref, (h_ref, c_ref, _) = ref(x, state)
    for run in (cell.forward, cell.loop):
        y, (h, c, _) = run(x, state)
        torch.testing.assert_close(y, y_ref, **F64)
        torch.testing.assert_close(h, h_ref, **F64)
        torch.testing.assert_close(c, c_ref, **F64)
    # and at mu > 0 the recurrent term is filtered too: a different cell
    moving = make("momentum_lstm/state_momentum[mu=0.5,s=1]")
    moving.load_state_dict(ref.state_dict())
    assert (moving(x)[0] - y_ref).abs().max() > 1e-3


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9])
def test_unit_gain_filter_has_dc_gain_one(mu):
    """A long constant input: the momentum state settles at W x + b_x (momentum_lstm's at
    s/(1-mu) times it); with the DC gain s = 0.5 at half of it."""
    x = torch.randn(3, 1, 2, dtype=torch.float64).expand(3, 2000, 2)
    for spec, gain in ((f"momentum_lstm/unit_gain[mu={mu}]", 1.0),
                       (f"momentum_lstm/unit_gain[mu={mu},s=0.5]", 0.5),
                       (f"momentum_lstm[mu={mu},s=0.6]", 0.6 / (1 - mu))):
        cell = randomize(make(spec, inp=2))
        target = gain * (x[:, 0] @ cell.W.T + cell.b_x)
        assert cell.s == pytest.approx(0.6 if "unit" not in spec else gain * (1 - mu))
        for run in (cell.forward, cell.loop):
            torch.testing.assert_close(run(x)[1][-1], target, atol=1e-10, rtol=0)
    assert make("momentum_lstm/unit_gain").hparams["s"] == 1.0     # fixed by the ablation


@pytest.mark.parametrize("mu, s", [(0.6, 0.6), (0.0, 1.0), (0.95, 2.5)])
def test_learned_mu_and_s_are_trained_parameters(mu, s):
    cell = make("momentum_lstm/learned", mu=mu, s=s)
    n = cell.hidden_size
    params = dict(cell.named_parameters())
    assert params["a"].shape == params["b"].shape == (n,)
    mu_t, s_t = cell.coefficients()       # a, b are made in float32: equal to its precision
    torch.testing.assert_close(mu_t, torch.full((n,), max(mu, 1e-4), dtype=torch.float64),
                               atol=0, rtol=1e-6)
    torch.testing.assert_close(s_t, torch.full((n,), s, dtype=torch.float64), atol=0, rtol=1e-6)
    assert cell.num_parameters() == make("momentum_lstm").num_parameters() + 2 * n
    x = torch.randn(4, 30, 3, dtype=torch.float64)
    y, _ = cell(x)
    y.square().sum().backward()
    for name in ("a", "b"):
        g = params[name].grad
        assert g is not None and torch.isfinite(g).all() and (g.abs() > 0).all(), name
    opt = torch.optim.SGD(cell.parameters(), lr=0.1)
    opt.step()
    assert not torch.equal(cell.coefficients()[0], mu_t)


@pytest.mark.parametrize("path", ["parallel", "hoisted"])
def test_learned_fast_paths_equal_the_step_loop(path):
    """Both fast paths (the contract tests reach the CPU default only): values and gradients,
    from a zero and a carried-in state, across the filter's 64-step chunks."""
    cell = randomize(make("momentum_lstm/learned"), scale=0.3)
    cell.fast_path = path
    x = torch.randn(3, 150, 3, dtype=torch.float64)
    for state in (None, random_state(cell, 3)):
        outs = []
        for run in (cell.forward, cell.loop):
            y, st = run(x, state)
            grads = torch.autograd.grad(y.square().sum() + st[-1].sum(), [cell.a, cell.b, cell.U])
            outs.append((y, *st, *grads))
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_learned_and_gated_start_as_momentum_lstm():
    """At initialisation (per-unit mu, s at the cell's values; W_mu = U_mu = 0) both equal
    momentum_lstm with the same weights; a nonzero W_mu makes the gate data-dependent."""
    base = randomize(make("momentum_lstm", mu=0.7, s=0.8))
    x = torch.randn(4, 30, 3, dtype=torch.float64)
    y_ref = base(x)[0]
    logit = torch.logit(torch.tensor(0.7, dtype=torch.float64))
    for name in ("momentum_lstm/learned", "momentum_lstm/gated"):
        cell = make(name, mu=0.7, s=0.8)
        cell.core.load_state_dict(base.core.state_dict())
        with torch.no_grad():                 # the float32 init, redone in float64
            if name.endswith("learned"):
                cell.a.fill_(logit)
                cell.b.fill_(torch.log(torch.expm1(torch.tensor(0.8, dtype=torch.float64))))
            else:
                cell.b_mu.fill_(logit)
        torch.testing.assert_close(cell(x)[0], y_ref, atol=1e-10, rtol=0)
    with torch.no_grad():
        cell.W_mu.normal_()
    assert (cell(x)[0] - y_ref).abs().max() > 1e-3


def test_gated_parameter_count():
    """momentum_lstm at input I, hidden n: W, b_x 4n(I + 1), U 4n^2, b_h 4n (b_hh frozen);
    the gate adds W_mu n I, U_mu n^2, b_mu n. At I = 1, n = 69: 19872 + 69 + 4761 + 69."""
    base = create_cell("momentum_lstm", 1, 69)
    gated = create_cell("momentum_lstm/gated", 1, 69)
    assert base.num_parameters() == 4 * 69 * 2 + 4 * 69 ** 2 + 4 * 69 == 19872
    assert gated.num_parameters() == 19872 + 69 * 1 + 69 ** 2 + 69 == 24771
    shapes = {k: tuple(p.shape) for k, p in gated.named_parameters() if k.endswith("_mu")}
    assert shapes == {"W_mu": (69, 1), "U_mu": (69, 69), "b_mu": (69,)}


def test_torch_init_is_lstms_init():
    torch.manual_seed(0)
    n, inp = 500, 3
    cell = create_cell("momentum_lstm/torch_init", inp, n, forget_bias=1.5)
    k = n ** -0.5
    W, U = cell.W.detach(), cell.U.detach()
    b_x, b_h = cell.b_x.detach(), cell.b_h.detach()
    for w in (W, U, torch.cat([b_x[:n], b_x[2 * n:]]), torch.cat([b_h[:n], b_h[2 * n:]])):
        assert w.abs().max() <= k                                 # U(-1/sqrt(n), 1/sqrt(n))
        assert abs(w.mean().item()) < 0.05 * k
        assert abs(w.std().item() / (k / 3 ** 0.5) - 1) < 0.05
    # not orthogonal W (W^T W would be I) nor eye U
    assert (W.T @ W - torch.eye(inp)).abs().max() > 0.2
    assert (U - torch.eye(4 * n, n)).abs().max() > 0.5
    # the forget bias on one vector only: b_h, as lstm's bias_ih; b_x's forget entries 0
    assert torch.all(b_h[n:2 * n] == 1.5) and torch.all(b_x[n:2 * n] == 0)
    lstm = create_cell("lstm", inp, n, forget_bias=1.5).core
    assert torch.all(lstm.bias_ih_l0[n:2 * n] == 1.5) and torch.all(lstm.bias_hh_l0[n:2 * n] == 0)
    assert cell.num_parameters() == create_cell("momentum_lstm", inp, n).num_parameters()


def test_no_normalisation_is_momentum_lstm_under_adam_settings():
    ref = randomize(make("momentum_lstm", mu=0.6, s=1.0))
    cell = make("adam_lstm/no_normalisation")
    assert (cell.mu, cell.s) == (0.6, 1.0) and cell.state_names == ("h", "c", "v")
    cell.load_state_dict(ref.state_dict())
    x = torch.randn(4, 40, 3, dtype=torch.float64)
    for state in (None, random_state(ref, 4)):
        y_ref, st_ref = ref(x, state)
        y, st = cell(x, state)
        torch.testing.assert_close(y, y_ref, **F64)
        for a, b in zip(st, st_ref):
            torch.testing.assert_close(a, b, **F64)


def test_ema_input_filter_equals_a_hand_loop():
    cell = make("lstm/ema_input")
    assert torch.all(torch.sigmoid(cell.a) == 0.5)                 # decay 0.5 at init
    with torch.no_grad():
        cell.a.copy_(torch.tensor([-2.0, 0.3, 4.0]))
    x = torch.randn(2, 150, 3, dtype=torch.float64)                # > one 64-step chunk
    y0 = torch.randn(2, 3, dtype=torch.float64)
    d = torch.sigmoid(cell.a.detach())
    for start in (None, y0):
        y = torch.zeros(2, 3, dtype=torch.float64) if start is None else start
        ref = []
        for t in range(150):
            y = d * y + (1 - d) * x[:, t]
            ref.append(y)
        torch.testing.assert_close(cell.filtered(x, start), torch.stack(ref, 1), atol=1e-12,
                                   rtol=0)


def test_ema_input_without_decay_is_lstm():
    ema = randomize(make("lstm/ema_input"))
    with torch.no_grad():
        ema.a.fill_(-60.0)                                         # decay e^-60: y_t = x_t
    lstm = make("lstm")
    lstm.core.load_state_dict(ema.core.state_dict())
    x = torch.randn(4, 80, 3, dtype=torch.float64)
    h0, c0 = random_state(lstm, 4)
    y_ref, (h_ref, c_ref) = lstm(x, (h0, c0))
    for run in (ema.forward, ema.loop):
        y, (h, c, last) = run(x, (h0, c0, torch.randn(4, 3, dtype=torch.float64)))
        torch.testing.assert_close(y, y_ref, **F64)
        torch.testing.assert_close(h, h_ref, **F64)
        torch.testing.assert_close(last, x[:, -1], **F64)
    assert ema.num_parameters() == lstm.num_parameters() + 3


def test_ablations_registered_with_a_question():
    names = {
        "bench.momentum.ablations": [
            "momentum_lstm/s_one", "momentum_lstm/unit_gain", "momentum_lstm/torch_init",
            "momentum_lstm/bias_unfiltered", "momentum_lstm/learned", "momentum_lstm/gated",
            "momentum_lstm/state_momentum", "momentum_rnn/no_momentum", "momentum_rnn/s_one",
            "adam_lstm/no_momentum", "adam_lstm/no_normalisation", "sr_lstm/no_restart",
            "momentum_dtriv/no_momentum"],
        "baselines.lstm_ablations": ["lstm/ema_input", "lstm/forget_bias_2"],
    }
    for module, entries in names.items():
        for name in entries:
            e = cell_entry(name)
            assert e.is_ablation and e.module == module and "?" in e.doc, name
    assert cell_entry("momentum_lstm/unit_gain").family == "momentum"
    assert cell_entry("lstm/ema_input").family == "baselines"
    assert create_cell("sr_lstm/no_restart", 1, 4).restart == 0
    assert create_cell("lstm/forget_bias_2", 1, 4).core.bias_ih_l0[4:8].eq(2.0).all()
