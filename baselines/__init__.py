"""The comparison cells, one module per family. Modules here are discovered, not listed:
``bench.discovery`` imports every module of this package, and each registers its cells."""
