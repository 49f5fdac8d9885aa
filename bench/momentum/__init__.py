"""The momentum family of recurrent cells (MomentumRNN, NeurIPS 2020, and its variants), one module
per form. Modules here are discovered (``bench.discovery``), not listed."""
