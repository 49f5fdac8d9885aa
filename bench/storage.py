"""Opening an Optuna storage from a URL, checked before anything is written."""
from __future__ import annotations

import tempfile
from pathlib import Path

import optuna

from bench.errors import UserError

DEFAULT_URL = "sqlite:///runs/bench.db"
SCHEMES = ("sqlite:///PATH", "postgresql://...", "mysql://...", "journal:PATH")


def check_url(url: str) -> None:
    """Raise UserError for a malformed or unwritable storage URL, writing nothing."""
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):])
    elif url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
    elif url.startswith(("postgresql://", "postgresql+psycopg2://", "mysql://", "mysql+pymysql://")):
        return     # the server decides; a connection failure is reported by open_storage
    else:
        raise UserError(f"malformed storage URL {url!r}; valid: {', '.join(SCHEMES)}")
    if not path.name or path.is_dir():
        raise UserError(f"storage URL {url!r} names no file; valid: {', '.join(SCHEMES)}")
    parent = _existing_parent(path.parent)
    try:   # os.access says yes to root everywhere (even /proc): probe with a vanishing temp file
        with tempfile.TemporaryFile(dir=parent):
            pass
        if path.exists():
            with open(path, "ab"):
                pass
    except OSError as e:
        raise UserError(f"storage {url!r} is not writable ({e.strerror}: {parent})") from None


def _existing_parent(p: Path) -> Path:
    p = p.absolute()
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        raise UserError(f"storage path {p} is a file, not a directory")
    return p


def is_single_process(url: str) -> bool:
    """SQLite is single-process by Optuna's own FAQ: a RUNNING trial there is an interrupted one."""
    return url.startswith("sqlite:")


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Open (and create if needed) the storage behind ``url``."""
    check_url(url)
    try:
        if url.startswith("journal:"):
            path = Path(url[len("journal:"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.RDBStorage(url)
        # Several machines: heartbeats let a crashed worker's trial be failed and retried.
        return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - any driver error is a bad URL for the user
        raise UserError(f"cannot open storage {url!r}: {str(e).splitlines()[0]}") from None
