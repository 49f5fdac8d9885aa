"""Screenshots for the README (docs/*.png) from a storage that `run` and `report` wrote.

    python scripts/screenshots.py --workdir DIR [--storage URL] --out docs

DIR holds the storage (default runs/bench.db, with the plot artifacts beside it) and report.html.
The script starts `python -m bench dashboard` on a free port, loads the study list, the index study's note and the
HTML report in headless Chromium (the DevTools client of tests/test_browser.py), and saves each
view as a palette PNG under 200 KB.
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_browser import Browser, free_port  # noqa: E402

LIMIT = 200_000


def small_png(data: bytes, path: Path, top: int = 0, height: int | None = None) -> int:
    """Crop to [top, top + height), then save as a 256-colour PNG, scaled down until under LIMIT."""
    from PIL import Image
    im = Image.open(io.BytesIO(data)).convert("RGB")
    if height:
        im = im.crop((0, top, im.width, min(im.height, top + height)))
    scale = 1.0
    while True:
        w, h = int(im.width * scale), int(im.height * scale)
        out = io.BytesIO()
        (im if scale == 1.0 else im.resize((w, h), Image.LANCZOS)).quantize(256).save(
            out, "PNG", optimize=True)
        if out.tell() < LIMIT:
            path.write_bytes(out.getvalue())
            return out.tell()
        scale *= 0.85


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--storage", default="sqlite:///runs/bench.db", help="relative to --workdir")
    p.add_argument("--out", type=Path, default=ROOT / "docs")
    args = p.parse_args()
    import optuna

    from bench.storage import open_storage
    args.workdir, args.out = args.workdir.resolve(), args.out.resolve()
    os.chdir(args.workdir)                      # the storage URL is relative to it, as for `run`
    storage = open_storage(args.storage)
    index = next(s for s in optuna.get_all_study_names(storage) if " · index · " in s)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench", "dashboard", "--port", str(port),
                               "--storage", args.storage],
                              cwd=args.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    url = f"http://127.0.0.1:{port}"
    browser = Browser(args.workdir / "chromium-profile", args.workdir / "chromium.log")
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "/api/studies", timeout=5).close()
                break
            except OSError:
                time.sleep(0.3)
        args.out.mkdir(parents=True, exist_ok=True)
        shots = {}
        page = browser.open(f"{url}/dashboard")
        page.wait_for("document.body.innerText.includes(' · index · ')", 60)
        shots["dashboard-studies.png"] = small_png(page.screenshot(args.workdir / "s.png"),
                                                   args.out / "dashboard-studies.png", 0, 1100)
        page = browser.open(f"{url}/dashboard/studies/{storage.get_study_id_from_name(index)}/note")
        page.wait_for("[...document.images].filter(i => i.getAttribute('src').startsWith("
                      "'/artifacts/')).every(i => i.complete && i.naturalWidth > 0) && "
                      "document.images.length >= 3", 60)
        page.browser.send("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 1500,
                          "deviceScaleFactor": 1, "mobile": False}, session=page.session)
        time.sleep(1.0)
        shots["dashboard-note.png"] = small_png(page.screenshot(args.workdir / "n.png"),
                                                args.out / "dashboard-note.png")
        page = browser.open((args.workdir / "report.html").as_uri())
        page.wait_for("[...document.images].every(i => i.complete && i.naturalWidth > 0)", 30)
        shots["report.png"] = small_png(page.screenshot(args.workdir / "r.png"),
                                        args.out / "report.png", 0, 1700)
        for name, size in shots.items():
            print(f"{args.out / name}: {size / 1000:.0f} KB")
    finally:
        browser.close()
        server.terminate()
        server.wait(timeout=20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
