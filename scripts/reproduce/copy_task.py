"""Copy L = 1000 as expRNN's 1_copying.py ran it, with this harness's cells, model and optimizers.

Usage: python scripts/reproduce/copy_task.py [--cells dtriv,lstm] [--iterations N] [--log FILE]
                                             [--device cuda] [--deadline-minutes M]

The loop is the script's: one fresh batch of 128 per iteration, cross-entropy over all L + 20
steps, one optimizer step, the cell's ``after_optimizer_step`` (dtriv's rebase); the preset
``paper-copy`` gives the hidden size, optimizers, clipping and each cell's hyperparameters. Every
iteration's training loss is written as a JSON line (it is the loss on a batch never seen before,
the curve the published figures draw); at the end the model is scored on a fixed test set of
fresh sequences. On CUDA the model trains there (the Python-loop cells by CUDA graph replay, as in
``run``); batches are still drawn on the CPU from the same seeds, so the data are the same on any
device. The published result is the dtriv/expRNN figure: dtriv reaches near-zero
cross-entropy while an LSTM stays at the memoryless baseline 10 ln 8 / (L + 20).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.budget import load_budget  # noqa: E402
from bench.discovery import discover  # noqa: E402
from bench.model import SeqModel  # noqa: E402
from bench.optim import build_optimizer  # noqa: E402
from bench.registry import create_cell, parse_spec  # noqa: E402
from bench.task import parse_task  # noqa: E402

#: what the papers show (dtriv: Lezcano-Casado 2019, copy figure; expRNN: Lezcano-Casado &
#: Martinez-Rubio 2019, Fig. 1), in words: no table of final numbers was published
PUBLISHED = {
    "dtriv": "near-zero cross-entropy within the 4000 iterations (figure, no table)",
    "lstm": "stays at the memoryless baseline 10 ln 8 / 1020 = 0.0204",
    "momentum_dtriv": "not published (MomentumRNN has no copy task)",
    "momentum_lstm": "not published (MomentumRNN has no copy task)",
}


def fresh_batch(task, iteration: int, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``iteration`` of the training stream of ``seed``: never repeated, never a test one."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + iteration)
    return task.transform(*task.generate(batch, g))


class Run:
    """One cell's model, optimizer and training curve on the preset's copy task."""

    def __init__(self, cell_name: str, budget, task, seed: int, device: str = "cpu"):
        spec = parse_spec(cell_name)
        self.name, self.task, self.budget, self.seed = cell_name, task, budget, seed
        self.device = torch.device(device)
        self.hp = spec.resolve(budget.cells, {}, {"seq_len": task.spec.seq_len})
        torch.manual_seed(seed)
        self.cell = create_cell(spec, task.spec.input_size, budget.hidden, **self.hp)
        # initialised on the CPU from the seed, then moved: the same weights on every device
        self.model = SeqModel(self.cell, task.spec, budget.optimizer).to(self.device)
        self.opt = build_optimizer(budget.optimizer, self.model.parameters(), self.cell.param_groups())
        self.losses: list[float] = []
        self.seconds = 0.0

    def step(self, it: int) -> float:
        """One iteration on fresh batch ``it``: loss, backward, (clip), step, rebase hook."""
        start = time.perf_counter()
        x, y = (t.to(self.device) for t in fresh_batch(self.task, it, self.budget.batch_size, self.seed))
        total, count = self.model.loss_terms(self.model(x), y, None)
        loss = total / count
        self.opt.zero_grad()
        loss.backward()
        if self.budget.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.budget.grad_clip)
        self.opt.step()
        self.cell.after_optimizer_step()
        self.losses.append(loss.item())
        self.seconds += time.perf_counter() - start
        return self.losses[-1]

    def test(self, n: int) -> float:
        """Mean cross-entropy per step on ``n`` fixed test sequences (a seed no batch uses)."""
        self.model.eval()
        with torch.no_grad():
            g = torch.Generator().manual_seed(2**31 - 1)
            xt, yt = self.task.transform(*self.task.generate(n, g))
            xt, yt = xt.to(self.device), yt.to(self.device)
            tot = sum(self.model.loss_terms(self.model(xt[i:i + 128]), yt[i:i + 128], None)[0].item()
                      for i in range(0, n, 128))
        return tot / (n * self.task.spec.seq_len)


def train_all(cells: list[str], budget_name: str, L: int, iterations: int, seed: int, log,
              test_n: int, deadline_s: float | None, device: str = "cpu") -> tuple[list[dict], int]:
    """Train every cell round-robin, one iteration each per round, so that all have run the same
    number of iterations whenever the wall-clock ``deadline_s`` stops the loop (after a round)."""
    budget = load_budget(budget_name)
    task = parse_task(f"copy:L={L}", budget.tasks.get("copy", {})).build()
    runs = [Run(c, budget, task, seed, device) for c in cells]
    start = time.perf_counter()
    done = 0
    for it in range(iterations):
        for r in runs:
            loss = r.step(it)
            log.write(json.dumps({"cell": r.name, "iteration": it, "loss": loss,
                                  "seconds": round(r.seconds, 2)}) + "\n")
        log.flush()
        done = it + 1
        elapsed = time.perf_counter() - start
        if deadline_s is not None and elapsed * (done + 1) / done > deadline_s:
            break                                 # the next round would end past the deadline
        if not all(math.isfinite(r.losses[-1]) for r in runs):
            break
    out = []
    for r in runs:
        row = {"cell": r.name, "hparams": {k: str(v) for k, v in r.hp.items()},
               "hidden": budget.hidden, "iterations": len(r.losses), "seed": seed,
               "params": sum(p.numel() for p in r.model.readout.parameters()) + r.cell.num_parameters(),
               "device": _device_name(r.device), "train_s": round(r.seconds, 1), "s_per_iteration": round(r.seconds / max(1, done), 3),
               "last100_train_ce": sum(r.losses[-100:]) / len(r.losses[-100:]),
               "min_train_ce": min(r.losses), "test_ce": r.test(test_n),
               "test_sequences": test_n, "baseline": 10 * math.log(8) / task.spec.seq_len}
        log.write(json.dumps({"summary": row}) + "\n")
        log.flush()
        out.append(row)
    return out, done


def table(rows: list[dict], iterations: int) -> str:
    """The summaries as a Markdown table, with the memoryless baseline and the device."""
    lines = [f"baseline 10 ln 8 / (L + 20) = {rows[0]['baseline']:.4f}; {rows[0]['device']}",
             "| cell | published (expRNN/dtriv papers) | iterations | test CE | "
             "mean train CE, last 100 it. | s/it |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['cell']} | {PUBLISHED.get(r['cell'], 'not published')} | "
              f"{r['iterations']} of {iterations} | {r['test_ce']:.4f} | "
              f"{r['last100_train_ce']:.4f} | {r['s_per_iteration']} |" for r in rows]
    return "\n".join(lines)


def summaries(log: Path) -> list[dict]:
    """The summary rows a log holds (one per cell and run), in the order written."""
    return [rec["summary"] for rec in map(json.loads, log.read_text().splitlines()) if "summary" in rec]


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="dtriv,momentum_dtriv,lstm,momentum_lstm")
    p.add_argument("--budget", default="paper-copy")
    p.add_argument("--L", type=int, default=1000)
    p.add_argument("--iterations", type=int, default=None,
                   help="default: the preset's epochs x n_train / batch (4000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-sequences", type=int, default=1024)
    p.add_argument("--deadline-minutes", type=float, default=None,
                   help="stop after the last round that ends within this wall time")
    p.add_argument("--log", default="copy_reproduction.jsonl")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--table", metavar="LOG", type=Path,
                   help="print the table of the summaries in LOG (e.g. per-cell logs joined) and exit")
    args = p.parse_args(argv)
    b = load_budget(args.budget)
    iterations = args.iterations or b.epochs * b.tasks["copy"]["n_train"] // b.batch_size
    if args.table:
        try:
            rows, why = summaries(args.table), "no summary line in it"
        except (OSError, ValueError) as e:      # missing, unreadable, or not JSON lines
            rows, why = [], f"cannot be read as a log ({type(e).__name__})"
        if not rows:
            print(f"error: --table {args.table}: {why}; valid: the log of a finished run", file=sys.stderr)
            return 2
        print(table(rows, iterations))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device is visible here; valid: --device cpu", file=sys.stderr)
        return 2
    discover()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with open(args.log, "a") as log:
        rows, done = train_all(args.cells.split(","), args.budget, args.L, iterations, args.seed,
                               log, args.test_sequences,
                               args.deadline_minutes * 60 if args.deadline_minutes else None,
                               args.device)
    print(f"copy L={args.L}, preset {args.budget}, {done} of {iterations} iterations of batch "
          f"{b.batch_size} for every cell (round-robin), seed {args.seed}")
    print(table(rows, iterations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
