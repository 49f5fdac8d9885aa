"""The momentum family of recurrent cells (MomentumRNN, NeurIPS 2020, and its variants)."""
from bench.momentum import rnn  # noqa: F401  (registers the cells)
