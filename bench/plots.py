"""Figures written to disk headlessly.

Figures are built with ``matplotlib.figure.Figure`` directly, never through pyplot: saving one
renders with the Agg (PNG) or SVG canvas whatever the process-wide backend is, so this module
neither needs a display nor switches the backend of a process (e.g. a notebook) importing it,
and no figure is left registered in pyplot's global state.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from matplotlib.figure import Figure


def _groups(ordered: list[tuple[str, float]], cd: float) -> list[tuple[int, int]]:
    """Maximal runs (i, j) of rank-ordered cells whose spread is below the CD (not different)."""
    runs = []
    for i in range(len(ordered)):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1][1] - ordered[i][1] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in runs):
            runs.append((i, j))
    return runs


def _save_atomic(fig: Figure, path: Path, fmt: str) -> Path:
    """Save to a temporary file in the target folder, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format=fmt, bbox_inches="tight", pad_inches=0.1)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def cd_diagram(avg_ranks: dict[str, float], cd: float, path_stem: Path,
               title: str = "") -> list[Path]:
    """Demšar critical-difference diagram saved as ``path_stem``.png and .svg; returns the paths."""
    path_stem = Path(path_stem)
    ordered = sorted(avg_ranks.items(), key=lambda kv: (kv[1], kv[0]))
    k = len(ordered)
    lo, hi = 1, max(k, 2)
    half = (k + 1) // 2
    height = 1.6 + 0.3 * max(half, 1)
    fig = Figure(figsize=(7, height))
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.96))
    ax.set_xlim(lo - 0.9, hi + 0.9)
    ax.set_ylim(-(half + 1.8) * 0.3, 0.9)
    ax.axis("off")
    # rank axis with ticks (rank 1 = best, on the left)
    ax.plot([lo, hi], [0, 0], color="black", lw=1)
    for r in range(lo, hi + 1):
        ax.plot([r, r], [0, 0.06], color="black", lw=1)
        ax.text(r, 0.1, str(r), ha="center", va="bottom", fontsize=9)
    if title:
        ax.text((lo + hi) / 2, 0.85, title, ha="center", va="top", fontsize=10)
    # CD bar above the axis
    if cd == cd and 0 < cd < float("inf"):
        ax.plot([lo, lo + cd], [0.4, 0.4], color="black", lw=1.5)
        for x in (lo, lo + cd):
            ax.plot([x, x], [0.36, 0.44], color="black", lw=1)
        ax.text(lo + cd / 2, 0.46, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    # cells: the better half to the left, the rest to the right, each on its own row
    for i, (name, rank) in enumerate(ordered):
        left = i < half
        row = i if left else k - 1 - i
        y = -(row + 1) * 0.3
        x_text = lo - 0.2 if left else hi + 0.2
        ax.plot([rank, rank, x_text], [0, y, y], color="black", lw=0.8)
        ax.text(x_text + (-0.05 if left else 0.05), y, f"{name} ({rank:.2f})",
                ha="right" if left else "left", va="center", fontsize=9)
    # thick lines joining cells whose average ranks differ by less than the CD
    if cd == cd:
        for n, (i, j) in enumerate(_groups(ordered, cd)):
            y = -0.08 - 0.06 * n
            ax.plot([ordered[i][1] - 0.03, ordered[j][1] + 0.03], [y, y], color="black", lw=3.5,
                    solid_capstyle="round")
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [_save_atomic(fig, path_stem.with_name(path_stem.name + ext), ext[1:])
             for ext in (".png", ".svg")]
    fig.clear()
    return paths


def heatmap(values: list[list[float]], rows: list[str], cols: list[str], labels: list[list[str]],
            row_name: str, col_name: str, title: str, path_stem: Path) -> list[Path]:
    """A grid of numbers as colours with a text label per square, saved as PNG and SVG (NaN grey)."""
    import numpy as np
    data = np.ma.masked_invalid(np.asarray(values, dtype=float))
    fig = Figure(figsize=(1.6 + 1.5 * len(cols), 1.2 + 0.9 * len(rows)))
    ax = fig.add_subplot()
    im = ax.imshow(data, cmap="viridis_r", aspect="auto")
    im.cmap.set_bad("lightgrey")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(col_name)
    ax.set_ylabel(row_name)
    ax.set_title(title, fontsize=9)
    for i, row in enumerate(labels):
        for j, text in enumerate(row):
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color=_ink(im, data[i, j]))
    fig.colorbar(im, ax=ax)
    return [_save_atomic(fig, path_stem.with_name(path_stem.name + ext), ext[1:])
            for ext in (".png", ".svg")]


def _ink(im, value) -> str:
    """Black on a light square, white on a dark or a missing (grey) one."""
    import numpy as np
    if value is np.ma.masked:
        return "black"
    r, g, b, _ = im.cmap(im.norm(value))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def gradient_flow(norms: list[list[float]], epochs: list[int], val_curve: list[float],
                  metric: str, title: str, path_stem: Path) -> list[Path]:
    """log10 ||dL/dh_t|| as a time x epoch heatmap (rows: recorded epochs), beside the validation
    curve drawn on the same rows, so the epoch where the gradient reaches h_1 lines up with the
    epoch where the loss leaves its plateau. The size does not grow with T."""
    import math

    import numpy as np
    data = np.asarray([[math.log10(max(v, 1e-30)) for v in n] for n in norms])
    T = data.shape[1]
    fig = Figure(figsize=(11, 1.6 + 0.32 * len(epochs)))
    left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [4, 1]})
    im = left.imshow(data, cmap="viridis", aspect="auto", interpolation="nearest",
                     extent=(0.5, T + 0.5, len(epochs) - 0.5, -0.5))
    left.set_yticks(range(len(epochs)), [f"epoch {e}" for e in epochs])
    left.set_xlabel("time step t")
    fig.colorbar(im, ax=left, label="log10 ||dL/dh_t||", pad=0.01)
    rows = [i for i, e in enumerate(epochs) if 1 <= e <= len(val_curve)]
    values = [val_curve[epochs[i] - 1] for i in rows]
    right.plot(values, rows, "o-", color="black", markersize=3)
    right.set_xlabel(f"val {metric}")
    _log_if_positive(right, values, axis="x")
    right.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return save(fig, path_stem)


def save(fig: Figure, path_stem: Path, png: bytes | None = None) -> list[Path]:
    """A figure saved as ``path_stem``.png and .svg (each written whole or not at all); ``png``:
    its ``png_bytes`` when already drawn (written as they are, not drawn again)."""
    path_stem = Path(path_stem)
    png_path = path_stem.with_name(path_stem.name + ".png")
    if png is None:
        _save_atomic(fig, png_path, "png")
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{png_path.name}.", suffix=".tmp", dir=png_path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(png)
            os.replace(tmp, png_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return [png_path, _save_atomic(fig, path_stem.with_name(path_stem.name + ".svg"), "svg")]


def png_bytes(fig: Figure) -> bytes:
    """A figure as PNG bytes (for pages that embed their images)."""
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.1, dpi=110)
    return buf.getvalue()


def _log_if_positive(ax, values: list[float], axis: str = "y") -> None:
    import math
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 50:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def seed_points(seeds: dict[str, list[dict]], trivial: float, reference: str, metric: str) -> Figure:
    """Every seed's test value per cell as points over a box, with the trivial score and the
    reference cell's median as lines (diverged seeds drawn as x at the top)."""
    import math
    import statistics
    cells = list(seeds)
    fig = Figure(figsize=(1.2 + 0.9 * len(cells), 3.6))
    ax = fig.add_subplot()
    finite = [[s["test"] for s in seeds[c] if math.isfinite(s["test"])] for c in cells]
    ax.boxplot([f or [math.nan] for f in finite], positions=range(len(cells)), widths=0.5,
               showfliers=False)
    for i, vals in enumerate(finite):
        ax.scatter([i + 0.12 * ((k % 5) - 2) / 2 for k in range(len(vals))], vals, s=12, zorder=3)
    everything = [v for f in finite for v in f] + [trivial]
    top = max(everything) if everything else 1.0
    for i, c in enumerate(cells):
        n_bad = sum(not math.isfinite(s["test"]) for s in seeds[c])
        if n_bad:
            ax.scatter([i] * n_bad, [top] * n_bad, marker="x", color="red", zorder=4)
    ax.axhline(trivial, color="grey", linestyle="--", label=f"trivial {trivial:.3g}")
    if reference in seeds and finite[cells.index(reference)]:
        ax.axhline(statistics.median(finite[cells.index(reference)]), color="tab:blue",
                   linestyle=":", label=f"{reference} median")
    _log_if_positive(ax, everything)
    ax.set_xticks(range(len(cells)), cells, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"test {metric}")
    ax.legend(fontsize=7)
    return fig


def val_curves(seeds: dict[str, list[dict]], threshold: float, solve_epochs: dict[str, float],
               metric: str) -> Figure:
    """Mean validation curve per cell with a min-max band over seeds, the solve threshold, and a
    mark at each cell's median epoch to solve."""
    import math

    import matplotlib
    import numpy as np
    fig = Figure(figsize=(8.5, 3.8))
    ax = fig.add_subplot()
    # tab10 repeats after 10 cells (the main command has 15): past 10, tab20's light shades,
    # dashed, so every legend entry names one curve; fainter bands when many overlap
    palette = matplotlib.colormaps["tab20"].colors if len(seeds) > 10 else None
    band = 0.15 if len(seeds) <= 5 else 0.07
    allv = []
    for i, (c, runs) in enumerate(seeds.items()):
        curves = [r["curve"] for r in runs if r["curve"]]
        if not curves:
            continue
        T = min(map(len, curves))
        a = np.array([cv[:T] for cv in curves], dtype=float)
        x = np.arange(1, T + 1)
        mean = np.nanmean(a, 0)
        style = ({"color": palette[(2 * i) % 20 + (i // 10) % 2],
                  "linestyle": "-" if i < 10 else "--"} if palette else {})
        line, = ax.plot(x, mean, label=c, **style)
        ax.fill_between(x, np.nanmin(a, 0), np.nanmax(a, 0), alpha=band, color=line.get_color())
        e = solve_epochs.get(c, math.nan)
        if math.isfinite(e) and e <= T:
            ax.plot([e], [mean[int(e) - 1]], marker="v", color=line.get_color(), markersize=8)
        allv += [v for v in a.ravel() if math.isfinite(v)]
    ax.axhline(threshold, color="grey", linestyle="--", label=f"solve threshold {threshold:.3g}")
    _log_if_positive(ax, allv + [threshold])
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))    # outside: curves stay visible
    return fig


def test_vs_cost(rows: list[dict], metric: str) -> Figure:
    """Mean test value against parameters, median run time and FLOPs per step, one point per cell."""
    import math
    panels = [("params", "parameters"), ("run_s", "median seconds per run"),
              ("flops_per_step", "FLOPs per step")]
    fig = Figure(figsize=(10, 3.2))
    for k, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        pts = [(r[key], r["mean"], r["cell"]) for r in rows
               if r.get(key) and math.isfinite(r["mean"])]
        for x, y, c in pts:
            ax.scatter([x], [y], s=15)
            ax.annotate(c, (x, y), fontsize=6)
        _log_if_positive(ax, [p[1] for p in pts])
        ax.set_xlabel(label)
        if k == 0:
            ax.set_ylabel(f"test {metric} (mean)")
        if not pts:
            ax.text(0.5, 0.5, "not stored", ha="center", transform=ax.transAxes)
    return fig
