"""A throwaway PostgreSQL server for tests: its own cluster in a temp folder, password auth.

``postgres_server`` (session-scoped) runs ``initdb`` and ``pg_ctl`` from Debian's ``postgresql``
package (``/usr/lib/postgresql/*/bin``), as the ``postgres`` system user when the tests run as
root (the server refuses root). The user ``bench`` authenticates with scram-sha-256 and a password
that needs URL-encoding (``@``, ``:``, ``/``); the server listens on a free 127.0.0.1 port with its
socket in the temp folder and is stopped and removed at the end of the session. Without the
binaries the tests that use it skip.
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

SKIP_REASON = "PostgreSQL server binaries not installed (apt-get install postgresql)"
USER = "bench"


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` with initdb and pg_ctl (else PATH's), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    for initdb in reversed(found):
        bin_dir = Path(initdb).parent
        if (bin_dir / "pg_ctl").exists():
            return bin_dir
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    root: Path
    seconds_to_start: float

    def url(self, database: str, password: str | None = None, port: int | None = None,
            host: str | None = None, scheme: str = "postgresql") -> str:
        pw = quote(self.password if password is None else password, safe="")
        return (f"{scheme}://{self.user}:{pw}@{host or self.host}:{port or self.port}/"
                f"{database}")

    def create_database(self, prefix: str = "db") -> str:
        """A new, empty database; returns its name."""
        import psycopg
        name = f"{prefix}_{secrets.token_hex(4)}"
        with psycopg.connect(host=self.host, port=self.port, user=self.user,
                             password=self.password, dbname="postgres", autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return name


def _runner() -> tuple[list[str], int | None, int | None]:
    """Command prefix and uid/gid to run the server as: ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return [], None, None
    pw = pwd.getpwnam("postgres")          # present wherever `unavailable()` is None
    runuser = shutil.which("runuser")
    prefix = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-s", "/bin/sh",
                                                                "-c"]
    return prefix, pw.pw_uid, pw.pw_gid


def _run(prefix: list[str], argv: list[str], **kw) -> subprocess.CompletedProcess:
    if prefix and prefix[0] == "su":        # su -c takes one shell string
        import shlex
        argv = [" ".join(shlex.quote(a) for a in argv)]
    return subprocess.run(prefix + argv, capture_output=True, text=True, **kw)


def unavailable() -> str | None:
    """Why no throwaway server can start here (None: it can)."""
    if find_bin_dir() is None:
        return SKIP_REASON
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` system user to run the server"
    return None


#: mark for tests that need the server: skipped, with the reason, only where it cannot start
needs_postgres = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = find_bin_dir()
    start = time.perf_counter()
    prefix, uid, gid = _runner()
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))     # /tmp: reachable by `postgres`
    data, sock, log = root / "data", root / "sock", root / "server.log"
    password = "p@ss:w/rd-" + secrets.token_hex(6)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    sock.mkdir()
    for p in (root, sock, pwfile):
        if uid is not None:
            os.chown(p, uid, gid)
    os.chmod(pwfile, 0o600)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    init = _run(prefix, [str(bin_dir / "initdb"), "-D", str(data), "-U", USER,
                         "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                         "--no-sync", "--no-instructions"], env=env)
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stdout}{init.stderr}")
    pwfile.unlink()
    pg_ctl = str(bin_dir / "pg_ctl")
    port = None
    for _ in range(3):       # a port found free can be taken before the server binds it
        port = free_port()
        opts = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off")
        started = _run(prefix, [pg_ctl, "-D", str(data), "-l", str(log), "-o", opts, "-w",
                                "-t", "60", "start"], env=env)
        if started.returncode == 0:
            break
    else:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {started.stdout}{started.stderr}{text}")
    server = PostgresServer("127.0.0.1", port, USER, password, root,
                            time.perf_counter() - start)
    try:
        yield server
    finally:
        _run(prefix, [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], env=env)
        shutil.rmtree(root, ignore_errors=True)
