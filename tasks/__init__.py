"""Tasks, one module per family; each registers its task factories. Modules here are discovered
(``bench.discovery``), not listed."""
