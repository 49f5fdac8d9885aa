"""Comparison cells, one module per family; importing this package registers them."""
from baselines import gru, lstm  # noqa: F401
