"""The comparison as one self-contained HTML page: the table, the plots (embedded PNG), provenance.

No external references (no scripts, fonts or stylesheets from elsewhere), so the page opens from
disk without a server or a network.
"""
from __future__ import annotations

import base64
import html

from tabulate import tabulate

from bench import plots
from bench.report import Report, _display_rows


def _img(fig, alt: str) -> str:
    data = base64.b64encode(plots.png_bytes(fig)).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>' \
           f'{html.escape(alt)}</figcaption></figure>'


def render_html(rep: Report) -> str:
    """The page: table with verdict columns, seed points, validation curves, cost, provenance."""
    head, body = _display_rows(rep)
    table = tabulate(body, head, tablefmt="html")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in rep.warnings + rep.footer)
    solve = {r["cell"]: r["epochs_to_solve"] for r in rep.rows}
    figures = [
        _img(plots.seed_points(rep.seeds, rep.trivial, rep.reference, rep.metric),
             f"every seed's test {rep.metric} per cell (x: diverged), trivial score and "
             f"{rep.reference}'s median"),
        _img(plots.val_curves(rep.seeds, rep.threshold, solve, rep.metric),
             "mean validation curve per cell, band over seeds (min to max), triangle at the median "
             "epoch to solve"),
        _img(plots.test_vs_cost(rep.rows, rep.metric),
             f"mean test {rep.metric} against parameters, run time and FLOPs per step"),
    ]
    prov = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>"
                   for k, v in rep.provenance.items())
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;font-size:14px}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
             "padding:2px 6px;text-align:right}figure{margin:1em 0}img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>momentum-bench: "
            f"{html.escape(rep.task)}</title><style>{style}</style></head><body>"
            f"<h1>{html.escape(rep.task)}</h1>{table}<ul>{notes}</ul>{''.join(figures)}"
            f"<h2>Provenance</h2><table>{prov}</table></body></html>\n")
