"""In a real headless Chromium: the dashboard of a real smoke run (short cell-first study names,
the note with the table, the plot artifacts) and the HTML report (plots decoded, no errors).

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages ending in a NUL byte on file descriptors 3 and 4), so no Python package is needed beyond
the standard library. Screenshots are saved in each test's tmp dir.
"""
import base64
import io
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_e2e import CMD, bench

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium binary on PATH (looked for chromium, chromium-browser, "
                             "google-chrome); Debian: apt-get install chromium, as .ci/run does")

PNG = b"\x89PNG\r\n\x1a\n"


def _high(fd: int) -> int:
    """``fd`` moved to a number above 9, so it never collides with the browser's 3 and 4."""
    import fcntl
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """Headless Chromium and a DevTools-protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, profile: Path, log: Path):
        to_chrome_r, self._w = map(_high, os.pipe())
        self._r, from_chrome_w = map(_high, os.pipe())
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--no-first-run", "--no-default-browser-check",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,1000",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        # the pipe ends become the browser's fds 3 (it reads) and 4 (it writes)
        shell = f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-'
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(["bash", "-c", shell, *args], pass_fds=(to_chrome_r, from_chrome_w),
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next, self._replies, self.events = 0, {}, queue.Queue()
        self._lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                with self._lock:
                    self._replies[None] = {"error": {"message": "browser closed the pipe"}}
                    self._lock.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        self._replies[msg["id"]] = msg
                        self._lock.notify_all()
                else:
                    self.events.put(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        """One command; its result (an error reply raises)."""
        with self._lock:
            self._next += 1
            n = self._next
        msg = {"id": n, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        with self._lock:
            while n not in self._replies and None not in self._replies:
                if not self._lock.wait(max(0.0, end - time.monotonic())):
                    raise TimeoutError(f"{method}: no reply in {timeout} s")
            reply = self._replies.pop(n, None) or self._replies[None]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def open(self, url: str) -> "Page":
        """A new tab on ``url``, with console and network events recorded."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        page.wait_event("Page.loadEventFired")
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class Page:
    """One tab: evaluate JavaScript, wait for a condition, take a screenshot, read its events."""

    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session
        self.seen: list[dict] = []       # every event of this tab so far

    def _drain(self, block: float = 0.0) -> None:
        try:
            while True:
                msg = self.browser.events.get(timeout=block) if block else self.browser.events.get_nowait()
                block = 0.0
                if msg.get("sessionId") == self.session:
                    self.seen.append(msg)
        except queue.Empty:
            pass

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for msg in self.seen:
                if msg["method"] == method:
                    return msg
            self._drain(block=0.2)
        raise TimeoutError(f"no {method} in {timeout} s")

    def eval(self, expression: str):
        """The value of a JavaScript expression (a promise is awaited)."""
        r = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                   "awaitPromise": True}, session=self.session)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30):
        """Poll a JavaScript expression until it is truthy; its value."""
        end = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value or time.monotonic() > end:
                return value
            time.sleep(0.25)

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.browser.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
            session=self.session)["data"])
        path.write_bytes(data)
        return data

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen so far."""
        self._drain()
        out = []
        for m in self.seen:
            p = m.get("params", {})
            if m["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                  for a in p.get("args", [])))
            elif m["method"] == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:500])
            elif m["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif m["method"] == "Network.loadingFailed":
                out.append(f"network: {p.get('errorText')}")
        return out

    def requested(self) -> list[str]:
        """Every URL the tab requested so far."""
        self._drain()
        return [m["params"]["request"]["url"] for m in self.seen
                if m["method"] == "Network.requestWillBeSent"]


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "chromium-profile", tmp_path / "chromium.log")
    yield b
    b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """A real smoke run of two cells on adding, then `report --format html` (which also saves the
    dashboard notes and uploads the plots beside the storage)."""
    cwd = tmp_path_factory.mktemp("browser")
    bench(cwd, cmd=CMD)
    bench(cwd, "report", "--task", "adding", "--budget", "smoke", "--format", "html",
          "--out", "report.html")
    return cwd


@pytest.fixture
def dashboard(smoke, tmp_path):
    """`python -m bench dashboard` on the smoke storage, on a free port; its base URL."""
    port = free_port()
    log = open(tmp_path / "dashboard.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "bench", "dashboard", "--storage",
                             "sqlite:///runs/bench.db", "--port", str(port)], cwd=smoke,
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/api/studies", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < end, (tmp_path / "dashboard.log").read_text()
        time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def test_dashboard_shows_short_names_the_table_note_and_plot_artifacts(smoke, dashboard, browser,
                                                                       tmp_path):
    import optuna
    from PIL import Image

    storage = optuna.storages.RDBStorage(f"sqlite:///{smoke / 'runs' / 'bench.db'}")
    tail = " · adding T=20 · smoke · hidden 16 · "
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    index = next(n for n in names if n.startswith("all cells · index" + tail))
    expected = [f"{c} · {k}{tail}" for c in ("lstm", "momentum_lstm") for k in ("tune", "seeds")]

    # the study list: every study under its short cell-first name
    page = browser.open(dashboard + "/dashboard")
    shown = page.wait_for("document.body.innerText.includes('momentum_lstm · seeds') && "
                          "document.body.innerText", timeout=60)
    page.screenshot(tmp_path / "study-list.png")
    assert shown, "the study list never showed momentum_lstm · seeds"
    for prefix in expected + ["all cells · index" + tail]:
        assert prefix in shown, (prefix, shown[:2000])
    assert "adding:T=20,data_seed" not in shown          # no long task id in any name

    # the index study's page lists its plot artifacts (the dashboard's own artifact view)
    study = f"{dashboard}/dashboard/studies/{storage.get_study_id_from_name(index)}"
    page = browser.open(study)
    text = page.wait_for("document.body.innerText.includes('validation-curves.png') && "
                         "document.body.innerText", timeout=60)
    assert text and "Study Artifacts" in text, text[-1500:]
    assert all(f in text for f in ("test-per-seed.png", "validation-curves.png", "test-vs-cost.png"))

    # its note renders the table as a table, and the plot artifacts load in it
    page = browser.open(study + "/note")
    cells = page.wait_for("""(() => { for (const t of document.querySelectorAll('table')) {
        const rows = [...t.rows].map(r => [...r.cells].map(c => c.innerText.trim()));
        if (rows.some(r => r[0] === 'trivial solution')) return rows; } })()""", timeout=60)
    assert cells, "no rendered table with a 'trivial solution' row"
    header = next(r for r in cells if r and r[0] == "cell")
    assert "test mse" in header and "vs lstm" in header
    rows = {r[0]: r for r in cells if r}
    assert rows["momentum_lstm"][header.index("vs lstm")] == "neither beats trivial"
    assert rows["lstm"][header.index("vs lstm")] == "reference"
    images = page.wait_for("""(() => { const im = [...document.images]
        .filter(i => i.getAttribute('src').startsWith('/artifacts/'));
        return im.length === 3 && im.every(i => i.complete && i.naturalWidth > 0) &&
               im.map(i => [i.getAttribute('src'), i.naturalWidth, i.alt]); })()""", timeout=60)
    page.screenshot(tmp_path / "index-note.png")
    assert images, "the three plot artifacts did not load in the note: " + json.dumps(
        page.eval("[...document.images].map(i => [i.src, i.complete, i.naturalWidth])"))
    assert any("every seed's test mse" in alt for _, _, alt in images)
    for src, width, _ in images:       # what the browser decoded is a PNG the server serves
        with urllib.request.urlopen(dashboard + src, timeout=10) as r:
            data = r.read()
            assert r.headers["Content-Type"] == "image/png"
        assert data[:8] == PNG and Image.open(io.BytesIO(data)).size[0] == width
    # the note links every study of the experiment
    links = page.eval("[...document.querySelectorAll('a')].map(a => a.innerText)")
    for prefix in expected:
        assert any(text.startswith(prefix) for text in links), (prefix, links)

    # a seeds study: its note says what "Best Trial" is there, above the same table
    seeds = next(n for n in names if n.startswith("momentum_lstm · seeds" + tail))
    page = browser.open(f"{dashboard}/dashboard/studies/{storage.get_study_id_from_name(seeds)}/note")
    text = page.wait_for("document.body.innerText.includes('luckiest seed') && "
                         "document.body.innerText", timeout=60)
    page.screenshot(tmp_path / "seeds-note.png")
    assert text and "neither beats trivial" in text


def test_html_report_plots_decode_in_chromium_without_errors(smoke, browser, tmp_path):
    report = smoke / "report.html"
    page = browser.open(report.as_uri())
    images = page.wait_for("""(() => { const im = [...document.images];
        return im.length > 0 && im.every(i => i.complete) &&
               im.map(i => [i.naturalWidth, i.naturalHeight, i.alt]); })()""")
    page.screenshot(tmp_path / "report.png")
    assert len(images) == 3 and all(w > 100 and h > 100 for w, h, _ in images), images
    assert [alt.split(" ")[0] for _, _, alt in images] == ["every", "mean", "mean"]
    assert page.eval("document.querySelector('table td').innerText.trim()") == "lstm"
    assert page.errors() == []
    assert all(u.startswith(("file:", "data:")) for u in page.requested()), page.requested()
