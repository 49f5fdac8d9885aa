"""Opening an Optuna storage from a URL, checked before anything is written.

Every error is a one-line :class:`UserError` that names the URL with its password masked
(:func:`mask_url`); text from a driver is scrubbed of the password before it is shown, and the
driver's exception is not chained (``__cause__`` and ``__context__`` are None), so no traceback
can show it either. Nothing is written on error: no folder, no file, no table.
"""
from __future__ import annotations

import json
import re
import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote

import optuna

from bench.errors import UserError
from bench.journal_lock import OwnedSymlinkLock

DEFAULT_URL = "sqlite:///runs/bench.db"
SCHEMES = ("sqlite:///PATH", "journal:PATH", "postgresql://USER:PASSWORD@HOST:PORT/DB",
           "mysql://USER:PASSWORD@HOST:PORT/DB")
VALID = "valid: " + ", ".join(SCHEMES)
RUN_FIRST = "run `python -m bench run` first"
OPTUNA_TABLES = frozenset({"studies", "version_info"})   # present in every Optuna RDB schema
CONNECT_TIMEOUT_S = 10
_JOURNAL_LINE_MAX = 1 << 20


# ---------------------------------------------------------------------------------- masking


def mask_url(url) -> str:
    """``url`` with its password (and any ``password=`` query value) replaced by ``***``.

    Never raises. Over-masks rather than leaks: the password runs from the first ``:`` of the
    user part to the last ``@`` before the query, so an unencoded ``@``, ``/`` or ``?`` in a
    password is masked too. URLs without ``://`` (``journal:PATH``) are returned unchanged.
    """
    if isinstance(url, (bytes, bytearray)):
        url = bytes(url).decode("utf-8", "backslashreplace")
    url = str(url)
    span = _password_span(url)
    if span:
        url = url[:span[0]] + "***" + url[span[1]:]
    head, q, query = url.partition("?")
    if q and "://" in head:
        query = "&".join(_mask_param(p) for p in query.split("&"))
    return head + q + query


def _password_span(url: str) -> tuple[int, int] | None:
    """[start, end) of the password in ``scheme://user:password@host...``, or None."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        return None
    start = scheme_end + 3
    m = re.compile(r"[^:/?@]*").match(url, start)     # the user name
    colon = m.end()
    if colon >= len(url) or url[colon] != ":":
        return None
    first_at = url.find("@", colon)
    if first_at < 0:
        return None          # host:port, no user information
    query = url.find("?", first_at)
    last_at = url.rfind("@", colon, query if query >= 0 else len(url))
    return colon + 1, last_at


def _mask_param(param: str) -> str:
    key, eq, _ = param.partition("=")
    return f"{key}=***" if eq and "password" in unquote(key).lower() else param


def _secrets(url: str) -> list[str]:
    """Every form of the URL's passwords that a driver might echo, longest first."""
    found = set()
    span = _password_span(url)
    if span:
        found.add(url[span[0]:span[1]])
    _, q, query = url.partition("?")
    for param in query.split("&") if q else ():
        key, eq, value = param.partition("=")
        if eq and "password" in unquote(key).lower():
            found.add(value)
    try:
        from sqlalchemy.engine import make_url
        parsed = make_url(url)
        if parsed.password:
            found.add(str(parsed.password))
        found.update(str(v) for k, v in parsed.query.items() if "password" in k.lower())
    except Exception:  # noqa: BLE001 - masking never fails
        pass
    found |= {unquote(s) for s in found} | {quote(s, safe="") for s in found}
    return sorted((s for s in found if s), key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    """``text`` on one line with the URL masked and every form of its password removed."""
    text = " ".join(str(text).split())
    text = text.replace(url, mask_url(url))
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def _show(url: str) -> str:
    """The URL as an error message shows it: masked, quoted, one line, printable, not huge."""
    shown = mask_url(url)
    if len(shown) > 300:
        shown = shown[:200] + "..." + shown[-60:]
    return repr(shown)


# ---------------------------------------------------------------------------------- parsing


def _as_text(url) -> str:
    """The URL as a str of valid text, or a UserError (bytes, undecodable bytes, control chars)."""
    # Errors are raised outside ``except`` blocks: a codec error holds the whole URL.
    if isinstance(url, (bytes, bytearray)):
        text = bytes(url).decode("utf-8", "surrogateescape")
        url = text
    if not isinstance(url, str):
        raise UserError(f"storage URL of type {type(url).__name__} is not text; {VALID}")
    if any("\udc80" <= c <= "\udcff" for c in url) or not _encodable(url):
        # surrogates stand for undecodable bytes from argv or the file system
        raise UserError(f"storage URL {_show(url)} is not UTF-8 text (undecodable bytes); "
                        f"{VALID}")
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise UserError(f"storage URL {_show(url)} contains control characters; {VALID}")
    return url


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _kind(url: str) -> str:
    """'journal', 'sqlite' or 'server' (PostgreSQL, MySQL); UserError for anything else."""
    if url.startswith("journal:"):
        return "journal"
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    family = scheme.partition("+")[0]
    if family == "sqlite":
        return "sqlite"
    if family in ("postgresql", "postgres", "mysql") and url.partition("://")[2]:
        return "server"
    raise UserError(f"malformed storage URL {_show(url)}; {VALID}")


def _file_path(url: str, kind: str) -> Path:
    if kind == "journal":
        name = url[len("journal:"):]
    else:
        from sqlalchemy.engine import make_url
        try:
            name = make_url(url).database or ""
        except Exception:  # noqa: BLE001
            name = None
        if name is None:
            raise UserError(f"malformed storage URL {_show(url)}; {VALID}")
        if name == ":memory:" or name.startswith("file:"):
            name = ""
    path = Path(name)
    if not name or not path.name or name.endswith("/") or path.is_dir():
        raise UserError(f"storage URL {_show(url)} names no file; {VALID}")
    return path


def _server_url(url: str) -> str:
    """The SQLAlchemy URL to open: plain postgresql:// and postgres:// use psycopg 3."""
    from sqlalchemy.engine import make_url
    detail = None
    try:
        parsed = make_url(url)
        parsed.port   # noqa: B018 - parsing checks it
    except Exception as e:  # noqa: BLE001
        detail = _scrub(e, url)
    if detail is not None:
        raise UserError(f"malformed storage URL {_show(url)} ({detail}); {VALID}")
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if not parsed.database:
        raise UserError(f"storage URL {_show(url)} names no database; {VALID}")
    return parsed.render_as_string(hide_password=False)


# ---------------------------------------------------------------------------------- checks


def check_url(url: str, create: bool = True) -> None:
    """Raise UserError for a storage URL that cannot be used, without connecting or writing.

    Files (``sqlite:///PATH``, ``journal:PATH``): the folder must exist (except the default
    ``runs/`` folder of :data:`DEFAULT_URL`, which :func:`open_storage` creates); an existing file
    must be an Optuna storage of that kind or an empty SQLite database / empty journal. With
    ``create=True`` the file (or its folder) must be writable; with ``create=False`` the file must
    exist and hold Optuna's tables. Server URLs are only parsed here: :func:`open_storage` reports
    connection problems.
    """
    url = _as_text(url)
    kind = _kind(url)
    if kind == "server":
        _server_url(url)
        return
    problem = None
    try:
        _check_file(url, kind, create)
    except OSError as e:      # e.g. a name too long for the file system
        problem = e.strerror or type(e).__name__
    if problem is not None:
        raise UserError(f"storage {_show(url)} cannot be used ({problem}); {VALID}")


def _check_file(url: str, kind: str, create: bool) -> None:
    path = _file_path(url, kind)
    folder = path.parent
    if not create and not folder.exists():
        raise UserError(f"storage {_show(url)} does not exist (no folder {_show_path(folder)}); "
                        f"{RUN_FIRST}")
    if not folder.is_dir() and not (url == DEFAULT_URL and create):
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise UserError(f"storage {_show(url)} is not writable: folder {_show_path(folder)} "
                        f"{what}; create it first")
    if path.exists():
        if not path.is_file():
            raise UserError(f"storage {_show(url)} is not a regular file; {VALID}")
        if kind == "sqlite":
            _check_sqlite_file(url, path, create)
        else:
            _check_journal_file(url, path)
    elif not create:
        raise UserError(f"storage {_show(url)} does not exist; {RUN_FIRST}")
    if create:
        _check_writable(url, path)


def _show_path(p: Path) -> str:
    return repr(str(p.absolute()))


def _check_writable(url: str, path: Path) -> None:
    parent = _existing_parent(path.parent)
    problem = None
    try:   # os.access says yes to root everywhere (even /proc): probe with a vanishing temp file
        with tempfile.TemporaryFile(dir=parent):
            pass
        if path.exists():
            with open(path, "ab"):
                pass
    except OSError as e:
        problem = e.strerror
    if problem is not None:
        raise UserError(f"storage {_show(url)} is not writable ({problem}: {parent})")


def _existing_parent(p: Path) -> Path:
    p = p.absolute()
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        raise UserError(f"storage path {p} is a file, not a directory")
    return p


def _sqlite_tables(url: str, path: Path) -> set[str]:
    """Table names of an existing SQLite file, read without writing (read-only URI)."""
    uri = "file:" + quote(str(path.absolute())) + "?mode=ro"
    problem = None
    try:
        con = sqlite3.connect(uri, uri=True)
        try:
            rows = con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        problem = _scrub(e, url)
    if problem is not None:
        raise UserError(f"storage {_show(url)} is not a SQLite database ({problem}); {VALID}")
    return {r[0] for r in rows}


def _check_sqlite_file(url: str, path: Path, create: bool) -> None:
    tables = _sqlite_tables(url, path)
    if OPTUNA_TABLES <= tables:
        return
    if tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise UserError(f"storage {_show(url)} is a SQLite database of another application "
                        f"(tables: {shown}); refusing to add Optuna's tables; valid: a new file "
                        f"or an Optuna storage")
    if not create:
        raise UserError(f"storage {_show(url)} does not exist (empty database); {RUN_FIRST}")


def _check_journal_file(url: str, path: Path) -> None:
    first = problem = None
    try:
        with open(path, "rb") as f:
            first = f.readline(_JOURNAL_LINE_MAX)
    except OSError as e:
        problem = e.strerror
    if problem is not None:
        raise UserError(f"storage {_show(url)} cannot be read ({problem})")
    if not first:
        return          # empty: a journal with no operations yet
    try:
        op = json.loads(first.decode("utf-8"))
        ok = isinstance(op, dict) and "op_code" in op
    except ValueError:      # UnicodeDecodeError and JSONDecodeError are ValueErrors
        ok = False
    if not ok:
        raise UserError(f"storage {_show(url)} is not an Optuna journal (its first line is not a "
                        f"JSON operation with an op_code); valid: a new file or an Optuna journal")


def is_single_process(url: str) -> bool:
    """SQLite is single-process by Optuna's own FAQ: a RUNNING trial there is an interrupted one."""
    return isinstance(url, str) and url.startswith("sqlite")


def check_workers(url: str, workers: int) -> None:
    """Refuse several worker processes on a storage that serves one (SQLite)."""
    if workers > 1 and _kind(_as_text(url)) == "sqlite":
        raise UserError(f"--workers {workers} with storage {_show(url)}: SQLite serves one process "
                        "(Optuna's FAQ); valid: --workers 1, or --storage journal:PATH (several "
                        "processes on this host) or postgresql://USER:PASSWORD@HOST:PORT/DB "
                        "(several hosts)")


_held: dict[str, int] = {}      # SQLite files this process holds, with their descriptors


def hold(url: str) -> None:
    """Take the one-writer lock of a SQLite storage for this process's lifetime; a second run or
    worker on the same file is refused (SQLite serves one process). Other storages take units
    from a shared queue and need no lock. ``flock`` is released when the process dies however it
    dies, and is independent of SQLite's own (fcntl) locks on the same file."""
    import fcntl
    import os
    url = _as_text(url)
    if _kind(url) != "sqlite" or url in _held:
        return
    path = _file_path(url, "sqlite")
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UserError(f"storage {_show(url)} is in use by another bench run or worker, and SQLite "
                        "serves one process; valid: wait for it to finish, or use --storage "
                        "journal:PATH for several processes on one host") from None
    _held[url] = fd


# ---------------------------------------------------------------------------------- opening


def open_storage(url: str, create: bool = True) -> optuna.storages.BaseStorage:
    """Open the storage behind ``url``; with ``create=True`` create it if it is missing.

    ``create=False`` (report, dashboard) refuses a missing SQLite or journal file, an empty SQLite
    database and a server database without Optuna's tables, creating nothing. ``postgresql://``
    and ``postgres://`` are opened with psycopg 3 (``postgresql+psycopg://``); an explicit
    ``postgresql+psycopg2://`` uses psycopg2 when it is installed.
    """
    url = _as_text(url)
    check_url(url, create)
    kind = _kind(url)
    error = None
    try:
        if kind == "journal":
            path = Path(url[len("journal:"):])
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
                str(path), lock_obj=OwnedSymlinkLock(str(path))))
        if kind == "sqlite":
            if create and url == DEFAULT_URL:
                _file_path(url, kind).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.RDBStorage(url, skip_table_creation=not create)
        target = _server_url(url)
        engine_kwargs = _engine_kwargs(target)
        _check_server(url, target, engine_kwargs, create)
        # a crashed worker's unit is found by bench.work's lease, not Optuna's heartbeat (which
        # only Study.optimize renews)
        return _create_tables_once(lambda: optuna.storages.RDBStorage(
            target, engine_kwargs=engine_kwargs, skip_table_creation=not create))
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - any driver error is a bad URL for the user
        error = _describe(e, url)
    # Raised outside the except block: no __context__ that could carry the password.
    raise UserError(f"cannot open storage {_show(url)}: {error}")


def _create_tables_once(make, attempts: int = 8):
    """``make()``, again after a short random wait when another process was creating the same
    tables at the same moment (workers started together on a new database: PostgreSQL then
    reports a duplicate key in its catalogue, or a table that already exists)."""
    import random
    import time
    for attempt in range(attempts):
        try:
            return make()
        except Exception as e:  # noqa: BLE001 - only the creation race is retried
            race = any(m in str(e) for m in ("already exists", "duplicate key", "UniqueViolation"))
            if not race or attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))


def _engine_kwargs(target: str) -> dict:
    from sqlalchemy.engine import make_url
    parsed = make_url(target)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


def _check_server(url: str, target: str, engine_kwargs: dict, create: bool) -> None:
    """Connect once (clean errors) and, for create=False, require Optuna's tables."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    driver = sqlalchemy.engine.make_url(target).get_driver_name()
    try:
        engine = sqlalchemy.create_engine(target, poolclass=NullPool, **engine_kwargs)
    except ImportError:
        error = driver
    else:
        error = None
    if error:
        if sqlalchemy.engine.make_url(target).get_backend_name() == "postgresql":
            valid = ("valid: postgresql:// with psycopg 3 (pip install -e '.[postgres]'), "
                     "postgresql+psycopg2:// with psycopg2 installed")
        else:
            valid = "install it, or use mysql+pymysql:// with PyMySQL installed"
        raise UserError(f"cannot open storage {_show(url)}: database driver {driver} is not "
                        f"installed; {valid}")
    try:
        with engine.connect() as con:
            tables = set(sqlalchemy.inspect(con).get_table_names())
    finally:
        engine.dispose()
    if not create and not OPTUNA_TABLES <= tables:
        db = sqlalchemy.engine.make_url(target).database
        raise UserError(f"storage {_show(url)} does not exist (no Optuna tables in database "
                        f"{db!r}); {RUN_FIRST}")


def _describe(e: BaseException, url: str) -> str:
    """One scrubbed line for a driver exception (SQLAlchemy's wrapper and links dropped)."""
    orig = getattr(e, "orig", None)
    base = orig if isinstance(orig, BaseException) else e
    lines = [ln.strip() for ln in str(base).splitlines() if ln.strip()]
    text = lines[0] if lines else type(base).__name__
    text = re.sub(r"^\([\w.]+\) ", "", text)
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
    return _scrub(text, url)
