"""Comparison cells, one module per family; importing this package registers them."""
from baselines import dtriv, gru, janet, lmu, lstm, nru, urlstm  # noqa: F401
