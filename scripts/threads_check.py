"""Milliseconds per training step with 1 and with 2 torch threads, interleaved in one run.

The `default` preset's models (adding T = 50, batch 64, hidden 69: 20K parameters, Adam), so the
numbers say what a worker's thread count does to a unit. Run it on an idle machine and again beside
busy processes (e.g. a niced `run --workers 2`); the README's "Threads" paragraph quotes both.
Usage: python scripts/threads_check.py [--steps 60] [--reps 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.discovery import discover  # noqa: E402
from bench.registry import create_cell  # noqa: E402


def ms_per_step(name: str, threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cell, head = create_cell(name, 2, 69), torch.nn.Linear(69, 1)
    opt = torch.optim.Adam([*cell.parameters(), *head.parameters()], 1e-3)
    x, y = torch.randn(64, 50, 2), torch.randn(64, 1)

    def step() -> None:
        loss = (head(cell(x)[0][:, -1]) - y).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cells", default="lstm,momentum_lstm,gru")
    args = p.parse_args()
    discover()
    print("| cell | 1 thread, ms/step | 2 threads, ms/step | ratio 2/1 |\n|---|---|---|---|")
    for name in args.cells.split(","):
        times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.reps):
            for threads in (1, 2):           # interleaved: both see the same load
                times[threads].append(ms_per_step(name, threads, args.steps))
        one, two = statistics.median(times[1]), statistics.median(times[2])
        print(f"| {name} | {one:.1f} | {two:.1f} | {two / one:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
