"""Plot the copy-task curves written by copy_task.py: loss on each fresh batch per iteration (thin)
and its 20-iteration running mean (thick), per cell, with the memoryless baseline.

Usage: python scripts/reproduce/plot_copy.py LOG.jsonl OUT.png [--title TEXT]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def curves(log: Path) -> tuple[dict[str, list[float]], dict[str, dict]]:
    """Per cell, the loss of every iteration in order, and its summary line (if written)."""
    out: dict[str, list[float]] = {}
    summaries: dict[str, dict] = {}
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if "summary" in rec:
            summaries[rec["summary"]["cell"]] = rec["summary"]
        else:
            out.setdefault(rec["cell"], []).append(rec["loss"])
    return out, summaries


def plot(log: Path, png: Path, title: str = "") -> None:
    data, summaries = curves(log)
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
    plot(Path(args.log), Path(args.png), args.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
