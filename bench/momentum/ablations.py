"""Ablations of the momentum family: each changes one thing and answers one question.

MomentumLSTM is ``v_t = mu v_{t-1} + s (W x_t + b_x)``, ``pre_t = v_t + U h_{t-1} + b_h``. The
controls here separate what travels with momentum from momentum itself (DESIGN.md, "Ablations"):

=================================  =============================================  ==============
ablation                           what changes                                   exact input
                                                                                  prefilter?
=================================  =============================================  ==============
momentum_lstm/s_one                s = 1 (mu still tuned)                         yes
momentum_lstm/unit_gain            s = gain (1 - mu), gain fixed 1: DC gain 1     yes
momentum_lstm/torch_init           nn.LSTM's uniform init, forget bias on b_h     yes
momentum_lstm/bias_unfiltered      b_x added after the filter                     yes
momentum_lstm/learned              mu, s per hidden unit, trained                 yes (x only)
momentum_lstm/gated                mu_t a sigmoid gate on x_t and h_{t-1}         no (needs h)
momentum_lstm/state_momentum       momentum on W x + b_x + U h_{t-1}              no (needs h)
momentum_rnn/no_momentum, s_one    mu = 0 / s = 1                                 yes
adam_lstm/no_momentum              mu = 0 (= rmsprop_lstm's model)                drive from x
adam_lstm/no_normalisation         drive v_t, no division by sqrt(r_t)            yes
sr_lstm/no_restart                 restart = 0                                    no (needs h)
momentum_dtriv/no_momentum         mu = 0                                         yes (identity)
=================================  =============================================  ==============

"Exact input prefilter": the momentum state depends on x only, so the cell is an ordinary
LSTM/RNN over a filtered input (``bench.kernels.filter``); the fast paths use that identity.

Registry note: an ablation has its base's hyperparameters (``register_ablation`` copies them and
resolves preset tables of the base into it), so a form whose s is derived from mu
(``unit_gain``) keeps an s, reinterpreted as the filter's DC gain and fixed to 1; one that no
longer uses beta (``adam_lstm/no_normalisation``) fixes beta so tuning does not search it.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.cell import State
from bench.kernels.filter import channel_filter, exp_filter
from bench.momentum import dtriv, nesterov  # noqa: F401  (register sr_lstm, momentum_dtriv first)
from bench.momentum.adaptive import BETA, AdamLSTM
from bench.momentum.rnn import MomentumLSTM
from bench.registry import register_ablation

#: smallest initial mu of the learned/gated forms: mu = 0 has no finite logit
MU_FLOOR = 1e-4


def lstm_update(pre: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The LSTM gates i, f, g, o from a pre-activation: (h_t, c_t)."""
    i, f, g, o = pre.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _logit(p: float) -> float:
    p = min(max(p, MU_FLOOR), 1 - MU_FLOOR)
    return math.log(p / (1 - p))


def _softplus_inverse(s: float) -> float:
    return s + math.log(-math.expm1(-s))           # log(exp(s) - 1), stable for large s


# ---- exact input prefilters --------------------------------------------------------------------

class UnitGainMomentumLSTM(MomentumLSTM):
    """MomentumLSTM whose filter has DC gain ``s``: v_t = mu v_{t-1} + (1 - mu) s (W x_t + b_x).

    The step size is derived from mu, s (1 - mu), so a constant input x gives v -> s (W x + b_x)
    at any mu: the filter only smooths, it does not amplify (MomentumLSTM's gain is
    s / (1 - mu), 2.5 at its defaults). Here ``s`` means the DC gain, not the step size;
    ``momentum_lstm/unit_gain`` fixes it to 1. Exact input prefilter (the base's fast path, with
    step size s (1 - mu)).
    """

    def __init__(self, input_size: int, hidden_size: int, mu: float, s: float,
                 forget_bias: float):
        super().__init__(input_size, hidden_size, mu, s * (1 - mu), forget_bias)
        self.gain = float(s)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, c, v = state
        v = self.mu * v + (1 - self.mu) * self.gain * (x_t @ self.W.T + self.b_x)
        h, c = lstm_update(v + h @ self.U.T + self.b_h, c)
        return h, (h, c, v)


class TorchInitMomentumLSTM(MomentumLSTM):
    """MomentumLSTM with ``lstm``'s initialisation: nn.LSTM's U(-1/sqrt(n), 1/sqrt(n)) for W, b_x,
    U and b_h, and the forget bias on one vector only (b_h, the unfiltered one, so the initial
    forget pre-activation is ``forget_bias`` at any mu, s, as in ``lstm``; b_x's forget entries
    are 0, like ``lstm``'s second vector). The momentum machinery is unchanged; exact input
    prefilter (the base's fast path).
    """

    def __init__(self, input_size: int, hidden_size: int, mu: float, s: float,
                 forget_bias: float):
        super().__init__(input_size, hidden_size, mu, s, forget_bias)
        n, k = hidden_size, hidden_size ** -0.5
        with torch.no_grad():
            for p in (self.core.weight_ih_l0, self.core.weight_hh_l0, self.core.bias_ih_l0):
                p.uniform_(-k, k)                       # nn.LSTM.reset_parameters
            self.core.weight_ih_l0[n:2 * n, -1] = 0.0   # b_x's forget entries
            self.core.bias_ih_l0[n:2 * n] = forget_bias  # b_h's forget entries


class BiasUnfilteredMomentumLSTM(MomentumLSTM):
    """MomentumLSTM with b_x added after the filter::

        v_t = mu v_{t-1} + s W x_t
        pre_t = v_t + b_x + U h_{t-1} + b_h

    In MomentumLSTM b_x is filtered, so at steady state it enters as s / (1 - mu) b_x: with the
    forget bias on b_x and b_h the initial forget pre-activation is (1 + s / (1 - mu))
    forget_bias, 2.5 x at the defaults. Here it is 2 x forget_bias at any mu, s, as in
    ``lstm/official_init``, which this cell equals at mu = 0, s = 1 with the same weights
    (tested). Same parameters and initialisation as MomentumLSTM. Exact input prefilter:
    nn.LSTM over [x~_t, 1] with x~ the filtered input and the constant unfiltered.
    """

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, c, v = state
        v = self.mu * v + self.s * (x_t @ self.W.T)
        h, c = lstm_update(v + self.b_x + h @ self.U.T + self.b_h, c)
        return h, (h, c, v)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if state is not None and bool(state[-1].any()):
            return self.loop(x, state)      # a carried-in v adds mu^(t+1) v_0: not an input filter
        B, T, _ = x.shape
        h0, c0, _ = self.initial_state(B) if state is None else state
        xf = exp_filter(x, self.mu, self.s)
        y, (h, c) = self.core(torch.cat([xf, x.new_ones(B, T, 1)], -1),
                              (h0[None].contiguous(), c0[None].contiguous()))
        return y, (h[0], c[0], xf[:, -1] @ self.W.T)


class LearnedMomentumLSTM(MomentumLSTM):
    """MomentumLSTM with mu and s trained, one pair per hidden unit (shared by its four gate
    rows)::

        mu = sigmoid(a),  s = softplus(b)               a, b: (n,) parameters
        v_t = mu * v_{t-1} + s * (W x_t + b_x)

    a and b start at the cell's mu (floored at 1e-4: mu = 0 has no finite logit) and s. v still
    depends on x only: an exact input prefilter, per channel. Fast paths, both exact:

    - "parallel" (CUDA): every v_t at once (``channel_filter`` on W x + b_x), then cuDNN
      ``torch.lstm`` over v + b_h with an identity input weight (one extra (T B, 4n) x (4n, 4n)
      GEMM), as adam_lstm's CUDA path.
    - "hoisted" (CPU): W x + b_x for all t in one op, then a loop over time. On one CPU thread
      (B 32, T 200, H 69; shared cores, so roughly) the parallel path took about 2x the step
      loop (~340 vs ~170 ms forward+backward; the 4n-channel Toeplitz filter and the identity
      GEMM each cost ~100 ms), the hoisted loop about what the step loop takes; nn.LSTM ~35 ms.
    """

    #: "parallel", "hoisted", or None: by device (parallel on CUDA)
    fast_path: str | None = None

    def __init__(self, input_size: int, hidden_size: int, mu: float, s: float,
                 forget_bias: float):
        super().__init__(input_size, hidden_size, mu, s, forget_bias)
        self.a = nn.Parameter(torch.full((hidden_size,), _logit(mu)))
        self.b = nn.Parameter(torch.full((hidden_size,), _softplus_inverse(s)))

    def coefficients(self) -> tuple[Tensor, Tensor]:
        """(mu, s), each (n,): the per-unit momentum and step size now."""
        return torch.sigmoid(self.a), F.softplus(self.b)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, c, v = state
        mu, s = (t.repeat(4) for t in self.coefficients())
        v = mu * v + s * (x_t @ self.W.T + self.b_x)
        h, c = lstm_update(v + h @ self.U.T + self.b_h, c)
        return h, (h, c, v)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        path = self.fast_path or ("parallel" if x.is_cuda else "hoisted")
        if path == "parallel":
            return self._forward_parallel(x, state)
        h, c, v = self.initial_state(x.shape[0]) if state is None else state
        mu, s = (t.repeat(4) for t in self.coefficients())
        drive = s * (x @ self.W.T + self.b_x)
        Ut = self.U.T
        hs = []
        for d_t in drive.unbind(1):
            v = torch.addcmul(d_t, mu, v)
            h, c = lstm_update(torch.addmm(v + self.b_h, h, Ut), c)
            hs.append(h)
        return torch.stack(hs, 1), (h, c, v)

    def _forward_parallel(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        """Every v_t at once, then cuDNN over v + b_h with an identity input weight."""
        B, T, _ = x.shape
        h0, c0, v0 = self.initial_state(B) if state is None else state
        log_mu, s = F.logsigmoid(self.a).repeat(4), F.softplus(self.b).repeat(4)
        v = channel_filter(x @ self.W.T + self.b_x, log_mu, s)
        if state is not None:               # a carried-in v adds mu^(t+1) v_0, per channel
            t = torch.arange(1, T + 1, device=x.device, dtype=x.dtype)
            v = v + torch.exp(t[:, None] * log_mu) * v0[:, None]
        D = v + self.b_h
        eye = torch.eye(D.shape[-1], dtype=D.dtype, device=D.device)
        with warnings.catch_warnings():   # cuDNN copies the two weights into one buffer: fine
            warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
            y, h, c = torch.lstm(D, (h0[None], c0[None]), [eye, self.U], False, 1, 0.0,
                                 torch.is_grad_enabled(), False, True)
        return y, (h[0], c[0], v[:, -1])


class NoNormalisationAdamLSTM(AdamLSTM):
    """AdamLSTM without its normalisation: the drive is v_t itself, not v_t / sqrt(r_t + eps)::

        v_t = mu v_{t-1} + s (W x_t + b_x);   pre_t = v_t + U h_{t-1} + b_h

    No beta makes r_t a constant 1, so this is a subclass: MomentumLSTM's equations and fast path
    (exact input prefilter) under adam_lstm's name, hyperparameters and preset tables; r is gone
    from the state and beta is unused (``adam_lstm/no_normalisation`` fixes it so tuning does
    not search it).
    """

    state_names = ("h", "c", "v")
    state_sizes = MomentumLSTM.state_sizes
    forward = MomentumLSTM.forward

    step = MomentumLSTM.step


# ---- not input prefilters: the mechanism made data-dependent, or moved into the recurrence ----

class GatedMomentumLSTM(MomentumLSTM):
    """MomentumLSTM with a data-dependent momentum gate per hidden unit (shared by its four gate
    rows)::

        mu_t = sigmoid(W_mu x_t + U_mu h_{t-1} + b_mu)
        v_t = mu_t * v_{t-1} + s (W x_t + b_x)
        pre_t = v_t + U h_{t-1} + b_h

    W_mu and U_mu start at zero and b_mu at logit(mu) (mu floored at 1e-4), so the cell starts as
    MomentumLSTM with the same weights and can learn to gate. mu_t depends on h: not an input
    prefilter; ``forward()`` hoists the input projections and loops over time.
    """

    def __init__(self, input_size: int, hidden_size: int, mu: float, s: float,
                 forget_bias: float):
        super().__init__(input_size, hidden_size, mu, s, forget_bias)
        self.W_mu = nn.Parameter(torch.zeros(hidden_size, input_size))
        self.U_mu = nn.Parameter(torch.zeros(hidden_size, hidden_size))
        self.b_mu = nn.Parameter(torch.full((hidden_size,), _logit(mu)))

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, c, v = state
        mu = torch.sigmoid(x_t @ self.W_mu.T + h @ self.U_mu.T + self.b_mu)
        v = mu.repeat(1, 4) * v + self.s * (x_t @ self.W.T + self.b_x)
        h, c = lstm_update(v + h @ self.U.T + self.b_h, c)
        return h, (h, c, v)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        h, c, v = self.initial_state(x.shape[0]) if state is None else state
        n = self.hidden_size
        drive = self.s * (x @ self.W.T + self.b_x)                 # (B, T, 4n)
        gate = x @ self.W_mu.T + self.b_mu                         # (B, T, n)
        R = torch.cat([self.U, self.U_mu]).T                       # h -> [U h, U_mu h]
        hs = []
        for d_t, g_t in zip(drive.unbind(1), gate.unbind(1)):
            r = h @ R
            mu = torch.sigmoid(g_t + r[:, 4 * n:])
            v = mu.repeat(1, 4) * v + d_t
            h, c = lstm_update(v + r[:, :4 * n] + self.b_h, c)
            hs.append(h)
        return torch.stack(hs, 1), (h, c, v)


class StateMomentumLSTM(MomentumLSTM):
    """Momentum on the whole pre-activation, recurrent term included::

        v_t = mu v_{t-1} + s (W x_t + b_x + U h_{t-1})
        pre_t = v_t + b_h

    Momentum moved from the input into the hidden-state update (heavy-ball on the recurrence, as
    the paper's optimiser analogy reads): v depends on h, so not an input prefilter. At mu = 0
    it is the cell without momentum with s folded into W, b_x and U; at mu = 0, s = 1 it equals
    ``momentum_lstm/no_momentum[s=1]`` with the same weights (tested). Same parameters and
    initialisation as MomentumLSTM; ``forward()`` hoists the input projection and loops.
    """

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h, c, v = state
        v = self.mu * v + self.s * (x_t @ self.W.T + self.b_x + h @ self.U.T)
        h, c = lstm_update(v + self.b_h, c)
        return h, (h, c, v)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        h, c, v = self.initial_state(x.shape[0]) if state is None else state
        drive = self.s * (x @ self.W.T + self.b_x)
        sU = (self.s * self.U).T
        hs = []
        for d_t in drive.unbind(1):
            v = torch.addmm(self.mu * v + d_t, h, sU)
            h, c = lstm_update(v + self.b_h, c)
            hs.append(h)
        return torch.stack(hs, 1), (h, c, v)


# ---- registrations -------------------------------------------------------------------------------

# One row per ablation: the base cell, the name, what it fixes or which class it runs, and
# the question it answers (with whether the cell stays an exact input prefilter).
ABLATIONS = [
    dict(base="momentum_lstm", name="s_one", fixed={"s": 1.0}, doc="s = 1, mu tuned: is the tuned step size (an input scale), not momentum, what matters? Exact input prefilter"),
    dict(base="momentum_lstm", name="unit_gain", fixed={"s": 1.0}, cls=UnitGainMomentumLSTM, doc="step size 1 - mu (s here is the DC gain, fixed 1): does momentum help by smoothing the input, or by amplifying it s/(1-mu) times? Exact input prefilter"),
    dict(base="momentum_lstm", name="torch_init", cls=TorchInitMomentumLSTM, doc="lstm's init (nn.LSTM uniform W, U, biases; forget bias on the unfiltered b_h only): is a gap to lstm the official init rather than momentum? Exact input prefilter"),
    dict(base="momentum_lstm", name="bias_unfiltered", cls=BiasUnfilteredMomentumLSTM, doc="b_x added after the filter, so the forget bias is official_init's 2 x fb, not (1 + s/(1-mu)) x fb: is momentum's gain its amplified forget bias? Exact input prefilter"),
    dict(base="momentum_lstm", name="learned", cls=LearnedMomentumLSTM, doc="mu = sigmoid(a), s = softplus(b) trained per hidden unit from the cell's values: does a learned filter beat a tuned one? Exact input prefilter (per channel)"),
    dict(base="momentum_lstm", name="gated", cls=GatedMomentumLSTM, doc="data-dependent mu_t = sigmoid(W_mu x_t + U_mu h_{t-1} + b_mu) per unit (the reviewers' data-driven gate): does gating the momentum help? Not an input prefilter"),
    dict(base="momentum_lstm", name="state_momentum", cls=StateMomentumLSTM, doc="momentum on W x + b_x + U h_{t-1}, not on the input alone: does momentum in the hidden-state update (the paper's claim) differ from the input filter? Not an input prefilter"),
    dict(base="momentum_rnn", name="no_momentum", fixed={"mu": 0.0}, doc="mu = 0: the same tanh RNN, init and step size without momentum: is momentum what helps momentum_rnn? Exact (identity) filter"),
    dict(base="momentum_rnn", name="s_one", fixed={"s": 1.0}, doc="s = 1, mu tuned: is the tuned step size, not momentum, what matters? Exact input prefilter"),
    dict(base="adam_lstm", name="no_momentum", fixed={"mu": 0.0}, doc="mu = 0: RMSprop normalisation only, under adam_lstm's settings (rmsprop_lstm's model): is the momentum or the normalisation what helps? Drive from x only"),
    dict(base="adam_lstm", name="no_normalisation", fixed={"beta": BETA.default}, cls=NoNormalisationAdamLSTM, doc="the drive is v_t, not v_t / sqrt(r_t) (beta unused, fixed): is the normalisation what helps? Exact input prefilter (momentum_lstm's form under adam_lstm's settings)"),
    dict(base="sr_lstm", name="no_restart", fixed={"restart": 0}, doc="restart = 0 (never): do the scheduled restarts matter? Not an input prefilter"),
    dict(base="momentum_dtriv", name="no_momentum", fixed={"mu": 0.0}, doc="mu = 0: dtriv with the input scaled by s, no momentum: is momentum what helps the orthogonal RNN? Exact (identity) filter"),
]
for _ablation in ABLATIONS:
    register_ablation(**_ablation)
