"""Shared pieces below both cell families: filters, the orthogonal kernel, shared hyperparameters.

Nothing here registers a cell, and nothing here is discovered: ``baselines`` and
``bench.momentum`` import from this package, never from each other.
"""
