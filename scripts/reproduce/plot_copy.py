"""Plot the copy-task curves written by copy_task.py: loss on each fresh batch per iteration (thin)
and its 20-iteration running mean (thick), per cell, with the memoryless baseline.

Usage: python scripts/reproduce/plot_copy.py LOG.jsonl OUT.png [--title TEXT]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from copy_task import read_log  # noqa: E402  (this script's folder is on sys.path)


def plot(data: dict[str, list[float]], summaries: dict[str, dict], png: Path, title: str = "") -> None:
    """Draw ``read_log``'s curves and summaries into ``png``."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    L = None
    for (cell, losses), color in zip(data.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        x = np.arange(len(losses))
        ax.plot(x, losses, color=color, alpha=0.25, lw=0.8)
        k = min(20, len(losses))
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        test = summaries.get(cell, {}).get("test_ce")
        label = cell + (f" (test {test:.3g})" if test is not None else "")
        ax.plot(x[k - 1:], smooth, color=color, lw=2, label=label)
        L = summaries.get(cell, {}).get("baseline", L)
    if L is not None:
        ax.axhline(L, color="black", ls="--", lw=1, label=f"memoryless baseline {L:.4f}")
    ax.set_yscale("log")
    ax.set_xlabel("iteration (fresh batch of 128)")
    ax.set_ylabel("cross-entropy per step")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("log")
    p.add_argument("png")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    log, png = Path(args.log), Path(args.png)
    try:
        data, summaries = read_log(log)
        why = "" if data else "no iteration in it"
    except ValueError as e:
        why = str(e)
    if why:
        print(f"error: {log}: {why}; valid: a log copy_task.py wrote", file=sys.stderr)
        return 2
    if not png.parent.is_dir():
        print(f"error: {png}: no folder {png.parent}; valid: a path in an existing folder",
              file=sys.stderr)
        return 2
    plot(data, summaries, png, args.title)
    print(f"wrote {png}: {', '.join(f'{c} ({len(v)} iterations)' for c, v in data.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
