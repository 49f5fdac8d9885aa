"""Tasks: each module registers a task factory; importing this package registers them all."""
from tasks import synthetic  # noqa: F401
from tasks import mnist, timit  # noqa: F401
