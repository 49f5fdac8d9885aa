"""Storage URLs: they open (SQLite, journal, a real PostgreSQL server), fail with one clean line,
never show a password, and write nothing when they fail."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sqlite3
import subprocess
import sys
import traceback
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
import sqlalchemy

from bench.errors import UserError
from bench.storage import DEFAULT_URL, check_url, is_single_process, mask_url, open_storage
from tests.pg import free_port, needs_postgres, postgres_server  # noqa: F401 - the fixture

optuna.logging.set_verbosity(optuna.logging.WARNING)
RUN_FIRST = "run `python -m bench run` first"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def refused(url, *secrets, create=True) -> str:
    """open_storage(url) raises one clean UserError; returns its message."""
    with pytest.raises(UserError) as info:
        open_storage(url, create=create)
    exc = info.value
    msg = str(exc)
    assert len(msg.splitlines()) == 1, msg
    assert exc.__cause__ is None and exc.__context__ is None     # no driver text chained on
    shown = "".join(traceback.format_exception(exc))
    for s in secrets:
        assert s not in shown, (s, shown)
    return msg


def add_trial(storage, name: str, value: float) -> None:
    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True)
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5},
                                              distributions={"x": optuna.distributions.
                                                             FloatDistribution(0, 1)},
                                              value=value))


def values(storage, name: str) -> list[float]:
    return [t.value for t in optuna.load_study(storage=storage, study_name=name).trials]


# ------------------------------------------------------------------------------------ mask_url

@pytest.mark.parametrize("url, masked", [
    ("postgresql://user:pw@host:5432/db", "postgresql://user:***@host:5432/db"),
    ("postgresql://user@host:5432/db", "postgresql://user@host:5432/db"),
    ("postgresql://host/db", "postgresql://host/db"),
    ("postgresql://user:pw@host/db?sslmode=require&application_name=x",
     "postgresql://user:***@host/db?sslmode=require&application_name=x"),
    ("postgresql://user@host/db?password=pw&sslmode=require",
     "postgresql://user@host/db?password=***&sslmode=require"),
    ("postgresql://user:" + quote("p@ss:w/rd", safe="") + "@host:5432/db",
     "postgresql://user:***@host:5432/db"),
    ("postgresql://user:p@ss:w/rd@host:5432/db", "postgresql://user:***@host:5432/db"),
    ("postgresql://user:pa?ss@host/db?sslmode=x", "postgresql://user:***@host/db?sslmode=x"),
    ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
    ("mysql+pymysql://u:pw@h:3306/db", "mysql+pymysql://u:***@h:3306/db"),
    ("postgresql://user:@host/db", "postgresql://user:***@host/db"),
    ("sqlite:///runs/bench.db", "sqlite:///runs/bench.db"),
    ("journal:runs/j.log", "journal:runs/j.log"),
])
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_mask_url_never_raises():
    assert mask_url(b"postgresql://u:\xffpw@h/db") == "postgresql://u:***@h/db"
    assert mask_url(os.fsdecode(b"sqlite:///x\xff.db")).startswith("sqlite:///x")
    assert mask_url("") == ""


# ------------------------------------------------------------------------------ URL checking

@pytest.mark.parametrize("url", ["bogus://x", "sqlite:/x.db", "", "postgresql://",
                                 "postgresql://u:SECRET@h:notaport/db"])
def test_malformed_urls_name_the_choices(url):
    msg = refused(url, "SECRET")
    assert "valid: sqlite:///PATH" in msg and "postgresql://" in msg


@pytest.mark.parametrize("url", [
    b"sqlite:///tmp/x\xff.db",
    os.fsdecode(b"sqlite:///tmp/x\xff.db"),
    b"postgresql://u:SECRET\xff@h/db",
    "sqlite:///tmp/x\x00.db",
    "journal:/tmp/a\nb",
])
def test_binary_or_non_utf8_urls_fail_cleanly(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    msg = refused(url, "SECRET")
    assert "storage URL" in msg
    with pytest.raises(UserError):
        check_url(url)
    assert tree(tmp_path) == []


def test_server_urls_are_checked_without_connecting():
    check_url("postgresql://u:pw@127.0.0.1:1/db")       # nothing listens on port 1
    check_url("postgresql://u:pw@127.0.0.1:1/db", create=False)
    assert is_single_process(DEFAULT_URL) and is_single_process("sqlite:////tmp/x.db")
    assert not is_single_process("journal:x.log")
    assert not is_single_process("postgresql://u:pw@h/db")


# ------------------------------------------------------------------------------------ SQLite

def test_sqlite_missing_folder_is_refused_and_not_created(tmp_path):
    folder = tmp_path / "nonexistent" / "dir"
    url = f"sqlite:///{folder}/x.db"
    msg = refused(url)
    assert str(folder) in msg and "does not exist" in msg
    with pytest.raises(UserError):
        check_url(url)
    assert not (tmp_path / "nonexistent").exists()
    assert "does not exist" in refused(f"journal:{folder}/x.log")
    assert not (tmp_path / "nonexistent").exists()


def test_sqlite_round_trip_and_create_false(tmp_path):
    url = f"sqlite:///{tmp_path}/bench.db"
    add_trial(open_storage(url), "s", 1.5)
    assert values(open_storage(url, create=False), "s") == [1.5]


def test_default_url_creates_its_runs_folder_only_when_opening(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_url(DEFAULT_URL)
    assert tree(tmp_path) == []
    assert RUN_FIRST in refused(DEFAULT_URL, create=False)
    assert tree(tmp_path) == []
    add_trial(open_storage(DEFAULT_URL), "s", 2.0)
    assert (tmp_path / "runs" / "bench.db").is_file()


def test_foreign_sqlite_database_is_refused_unchanged(tmp_path):
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO users (name) VALUES ('ada')")
    con.commit()
    con.close()
    before, files = sha(db), tree(tmp_path)
    url = f"sqlite:///{db}"
    for create in (True, False):
        msg = refused(url, create=create)
        assert "another application" in msg and "users" in msg and url in msg
    with pytest.raises(UserError):
        check_url(url)
    assert sha(db) == before and tree(tmp_path) == files


def test_non_sqlite_file_is_refused_unchanged(tmp_path):
    f = tmp_path / "notes.db"
    f.write_text("not a database\n" * 100)
    before = sha(f)
    assert "not a SQLite database" in refused(f"sqlite:///{f}")
    assert sha(f) == before and tree(tmp_path) == ["notes.db"]


def test_create_false_refuses_missing_and_empty_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/missing.db"
    msg = refused(url, create=False)
    assert msg == f"storage {url!r} does not exist; {RUN_FIRST}"
    assert tree(tmp_path) == []
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert RUN_FIRST in refused(f"sqlite:///{empty}", create=False)
    assert empty.read_bytes() == b"" and tree(tmp_path) == ["empty.db"]
    open_storage(f"sqlite:///{empty}")         # an empty file is a fine new storage


# ----------------------------------------------------------------------------------- journal

def test_journal_round_trip_and_create_false(tmp_path):
    url = f"journal:{tmp_path}/j.log"
    assert RUN_FIRST in refused(url, create=False)
    assert tree(tmp_path) == []
    add_trial(open_storage(url), "s", 3.0)
    assert values(open_storage(url, create=False), "s") == [3.0]
    (tmp_path / "empty.log").write_bytes(b"")
    open_storage(f"journal:{tmp_path}/empty.log", create=False)


@pytest.mark.parametrize("content", [b"hello world\n", b'{"id": 1}\n', b'[1, 2]\n',
                                     b"\x00\xff\xfe binary", b"\n"])
def test_non_optuna_journal_is_refused_unchanged(tmp_path, content):
    f = tmp_path / "j.log"
    f.write_bytes(content)
    for create in (True, False):
        assert "not an Optuna journal" in refused(f"journal:{f}", create=create)
    assert f.read_bytes() == content and tree(tmp_path) == ["j.log"]


# -------------------------------------------------------------------------------- PostgreSQL

@needs_postgres
def test_postgres_round_trip(postgres_server):
    pg = postgres_server
    db = pg.create_database()
    url = pg.url(db)              # the password holds @ : / and is URL-encoded
    storage = open_storage(url)
    assert storage.engine.dialect.driver == "psycopg"
    add_trial(storage, "s", 4.0)
    storage.engine.dispose()
    again = open_storage(pg.url(db, scheme="postgres"), create=False)
    assert values(again, "s") == [4.0]
    add_trial(again, "s", 5.0)
    assert values(open_storage(url, create=False), "s") == [4.0, 5.0]


@needs_postgres
def test_postgres_create_false_on_empty_database_creates_nothing(postgres_server):
    pg = postgres_server
    db = pg.create_database("empty")
    url = pg.url(db)
    msg = refused(url, pg.password, quote(pg.password, safe=""), create=False)
    assert mask_url(url) in msg and RUN_FIRST in msg and "does not exist" in msg
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


@needs_postgres
@pytest.mark.parametrize("bad", ["host", "password", "database", "port"])
def test_postgres_bad_values_fail_without_the_password(postgres_server, bad):
    pg = postgres_server
    wrong_pw = "WRONG-s3cret@pw/" + bad
    url = {"host": pg.url("postgres", host="nosuchhost.invalid"),
           "password": pg.url("postgres", password=wrong_pw),
           "database": pg.url("no_such_db"),
           "port": pg.url("postgres", port=free_port())}[bad]
    msg = refused(url, pg.password, quote(pg.password, safe=""), wrong_pw,
                  quote(wrong_pw, safe=""))
    assert msg.startswith(f"cannot open storage {mask_url(url)!r}: "), msg
    assert ":***@" in msg
    expected = {"host": "nosuchhost.invalid", "password": "password authentication failed",
                "database": "no_such_db", "port": "refused"}[bad]
    assert expected in msg, msg


@needs_postgres
def test_postgres_psycopg2_url(postgres_server):
    pg = postgres_server
    url = pg.url(pg.create_database("pg2"), scheme="postgresql+psycopg2")
    if importlib.util.find_spec("psycopg2") is None:
        msg = refused(url, pg.password)
        assert "psycopg2 is not installed" in msg and mask_url(url) in msg
    else:
        add_trial(open_storage(url), "s", 6.0)
        assert values(open_storage(url, create=False), "s") == [6.0]


# -------------------------------------------------------------------------------------- CLI

def test_cli_report_on_unreachable_postgres_prints_one_masked_line(tmp_path):
    url = f"postgresql://user:SECRETPW@127.0.0.1:{free_port()}/db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "bench", "report", "--task", "adding",
                           "--storage", url], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "postgresql://user:***@127.0.0.1:" in lines[0]
    assert "SECRETPW" not in proc.stderr + proc.stdout
    assert tree(tmp_path) == []
