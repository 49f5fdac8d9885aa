"""The comparison as one self-contained HTML page: the table, the plots (embedded PNG), provenance.

No external references (no scripts, fonts or stylesheets from elsewhere), so the page opens from
disk without a server or a network.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from matplotlib.figure import Figure
from tabulate import tabulate

from bench import plots
from bench.report import AcrossReport, Report, _display_rows, across_parts


def figures(rep: Report) -> list[tuple[str, Figure, str]]:
    """The report's plots as (file stem, figure, caption): seed points, validation curves, cost."""
    solve = {r["cell"]: r["epochs_to_solve"] for r in rep.rows}
    return [
        ("test-per-seed", plots.seed_points(rep.seeds, rep.trivial, rep.reference, rep.metric),
         f"every seed's test {rep.metric} per cell (x: diverged), trivial score and "
         f"{rep.reference}'s median"),
        ("validation-curves", plots.val_curves(rep.seeds, rep.threshold, solve, rep.metric),
         "mean validation curve per cell, band over seeds (min to max), triangle at the median "
         "epoch to solve"),
        ("test-vs-cost", plots.test_vs_cost(rep.rows, rep.metric),
         f"mean test {rep.metric} against parameters, run time and FLOPs per step"),
    ]


def pngs(rep: Report) -> list[tuple[str, str, bytes]]:
    """The report's plots as (file name, caption, PNG bytes), each figure drawn once."""
    return [(f"{stem}.png", caption, plots.png_bytes(fig)) for stem, fig, caption in figures(rep)]


def _img(data: bytes, alt: str) -> str:
    b64 = base64.b64encode(data).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"><figcaption>' \
           f'{html.escape(alt)}</figcaption></figure>'


def render_html(rep: Report, images: list[tuple[str, str, bytes]] | None = None) -> str:
    """The page: table with verdict columns, seed points, validation curves, cost, provenance;
    ``images`` are ``pngs(rep)`` when already drawn."""
    head, body = _display_rows(rep)
    table = tabulate(body, head, tablefmt="html")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in rep.warnings + rep.footer)
    figs = [_img(data, caption) for _, caption, data in (images if images is not None else pngs(rep))]
    prov = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>"
                   for k, v in rep.provenance.items())
    return _page(rep.task, f"{table}<ul>{notes}</ul>{''.join(figs)}<h2>Provenance</h2>"
                           f"<table>{prov}</table>")


def render_across_html(rep: AcrossReport) -> str:
    """The across-tasks page: average ranks, Friedman and Nemenyi notes, the CD diagram."""
    head, body, notes = across_parts(rep)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    png = [Path(p) for p in rep.plots if p.endswith(".png")]
    fig = (_img(png[0].read_bytes(), "critical-difference diagram: average rank per cell, 1 = "
                "best; a bar joins cells the Nemenyi test cannot tell apart") if png else
           "<p>No critical-difference diagram: the critical difference is undefined here.</p>")
    title = "across " + ", ".join(rep.tasks)
    return _page(title, tabulate(body, head, tablefmt="html") + f"<ul>{items}</ul>{fig}")


def _page(title: str, body: str) -> str:
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;font-size:14px}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
             "padding:2px 6px;text-align:right}figure{margin:1em 0}img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>momentum-bench: "
            f"{html.escape(title)}</title><style>{style}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{body}</body></html>\n")
