"""The momentum family of recurrent cells (MomentumRNN, NeurIPS 2020, and its variants)."""
from bench.momentum import rnn  # noqa: F401  (registers the cells)
from bench.momentum import dtriv  # noqa: F401
from bench.momentum import adaptive, nesterov  # noqa: F401
