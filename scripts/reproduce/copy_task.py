"""Copy L = 1000 as expRNN's 1_copying.py ran it, with this harness's cells, model and optimizers.

Usage: python scripts/reproduce/copy_task.py [--cells dtriv,lstm] [--iterations N] [--log FILE]
                                             [--device cuda] [--deadline-minutes M]

A run is hours on a CPU, so it resumes: every minute, and when it stops (deadline, Ctrl-C,
SIGTERM), the models, optimizers and curves are saved beside the log (``LOG.ckpt``); the same
command then continues from the last saved round and gives the losses an unbroken run gives.

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
import gzip
import json
import math
import os
import signal
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

    def state(self) -> dict:
        """Everything the next iteration depends on (the cell's rebase schedule included)."""
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "losses": list(self.losses), "seconds": self.seconds}

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.losses, self.seconds = list(state["losses"]), state["seconds"]

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


class Stop:
    """SIGINT/SIGTERM ask the loop to stop after the current round, where every cell has run the
    same iterations and the state can be saved; a second signal stops at once (the last save,
    at most a minute old, is then where the run resumes)."""

    def __init__(self) -> None:
        self.requested: str | None = None

    def __enter__(self) -> "Stop":
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        print(f"{self.requested}: stopping after this round and saving; a second one stops now",
              file=sys.stderr, flush=True)


def run_config(cells: list[str], budget_name: str, L: int, seed: int, device: str) -> dict:
    """What a checkpoint must match to be resumed: the same models on the same batches."""
    return {"cells": list(cells), "budget": budget_name,
            "preset": load_budget(budget_name).fingerprint, "L": L, "seed": seed, "device": device}


def load_checkpoint(path: Path, config: dict) -> dict | None:
    """The checkpoint at ``path`` (None if there is none); ValueError if another run wrote it."""
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        ckpt["config"], ckpt["iteration"], ckpt["runs"]   # a torch file, but not a checkpoint
    except Exception as e:                      # truncated, or not a checkpoint at all
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}); valid: a "
                         f"checkpoint this script wrote, or none (delete it to start again)") from e
    diff = [f"{k} {ckpt['config'].get(k)!r} (now {v!r})" for k, v in config.items()
            if ckpt["config"].get(k) != v]
    if diff:
        raise ValueError(f"checkpoint {path} is of another run: {', '.join(diff)}; valid: the "
                         f"arguments it was written with, or another --log")
    return ckpt


def trim_log(path: Path, cells: list[str], start: int) -> None:
    """Drop the records of ``cells`` past iteration ``start`` (written after the last save), so
    that a resumed run logs every iteration exactly once; atomic, like the checkpoint."""
    lines = path.read_text().splitlines(keepends=True)
    keep = [line for line, rec in zip(lines, map(json.loads, lines))
            if not (rec.get("cell") in cells and rec["iteration"] >= start)]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(keep))
    os.replace(tmp, path)


def save_checkpoint(path: Path, config: dict, iteration: int, runs: list[Run]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    # threads: not part of the run's identity (a resume on more threads is allowed), but it sets
    # the float summation order, so a resume with another count is said, not silently mixed in
    torch.save({"config": config, "iteration": iteration, "threads": torch.get_num_threads(),
                "runs": [r.state() for r in runs]}, tmp)
    os.replace(tmp, path)                       # a kill mid-save leaves the previous checkpoint


def train_all(cells: list[str], budget_name: str, L: int, iterations: int, seed: int, log,
              test_n: int, deadline_s: float | None, device: str = "cpu",
              checkpoint: Path | None = None, resumed: dict | None = None,
              stop: Stop | None = None, save_every_s: float = 60.0) -> tuple[list[dict], int]:
    """Train every cell round-robin, one iteration each per round, so that all have run the same
    number of iterations whenever the wall-clock ``deadline_s`` (or ``stop``) ends the loop after
    a round. With ``checkpoint`` the state is saved there every ``save_every_s`` and at the end;
    ``resumed`` (a loaded checkpoint) continues its run. A stop by signal returns no rows."""
    budget = load_budget(budget_name)
    task = parse_task(f"copy:L={L}", budget.tasks.get("copy", {})).build()
    runs = [Run(c, budget, task, seed, device) for c in cells]
    first = done = resumed["iteration"] if resumed else 0
    for r, state in zip(runs, resumed["runs"] if resumed else []):
        r.load(state)
    config = run_config(cells, budget_name, L, seed, device)
    start = saved = time.perf_counter()
    for it in range(done, iterations):
        for r in runs:
            loss = r.step(it)
            log.write(json.dumps({"cell": r.name, "iteration": it, "loss": loss,
                                  "seconds": round(r.seconds, 2)}) + "\n")
        log.flush()
        done = it + 1
        now = time.perf_counter()
        if checkpoint and now - saved > save_every_s:
            save_checkpoint(checkpoint, config, done, runs)
            saved = now
        rounds = done - first
        if deadline_s is not None and (now - start) * (rounds + 1) / rounds > deadline_s:
            break                                 # the next round would end past the deadline
        if not all(math.isfinite(r.losses[-1]) for r in runs) or (stop and stop.requested):
            break
    if checkpoint:
        save_checkpoint(checkpoint, config, done, runs)
    if stop and stop.requested:
        return [], done
    out = []
    for r in runs:
        row = {"cell": r.name, "hparams": {k: str(v) for k, v in r.hp.items()},
               "hidden": budget.hidden, "iterations": len(r.losses), "seed": seed,
               "params": sum(p.numel() for p in r.model.readout.parameters()) + r.cell.num_parameters(),
               "device": _device_name(r.device), "train_s": round(r.seconds, 1),
               "s_per_iteration": round(r.seconds / max(1, done), 3),
               "last100_train_ce": sum(r.losses[-100:]) / len(r.losses[-100:]),
               "min_train_ce": min(r.losses), "test_ce": r.test(test_n),
               "test_sequences": test_n, "baseline": 10 * math.log(8) / task.spec.seq_len}
        log.write(json.dumps({"summary": row}) + "\n")
        log.flush()
        out.append(row)
    return out, done


def table(rows: list[dict], iterations: int) -> str:
    """The summaries as a Markdown table, with the memoryless baseline and the device; losses in
    significant digits, since the solved cells sit at 1e-6 to 1e-4 (fixed decimals showed 0)."""
    lines = [f"baseline 10 ln 8 / (L + 20) = {rows[0]['baseline']:.4f}; {rows[0]['device']}",
             "| cell | published (expRNN/dtriv papers) | iterations | test CE | "
             "mean train CE, last 100 it. | s/it |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['cell']} | {PUBLISHED.get(r['cell'], 'not published')} | "
              f"{r['iterations']} of {iterations} | {r['test_ce']:.3g} | "
              f"{r['last100_train_ce']:.3g} | {r['s_per_iteration']} |" for r in rows]
    return "\n".join(lines)


def read_log(log: Path) -> tuple[dict[str, list[float]], dict[str, dict]]:
    """A log's two kinds of record, per cell: the loss of every iteration in order, and the last
    summary row (a resumed run's supersedes the one written when its deadline stopped it).
    A ``.gz`` log (as committed in docs/) is read as it is. ValueError("cannot be read as a log
    (why)") if ``log`` is missing, truncated, or not such a log."""
    losses: dict[str, list[float]] = {}
    rows: dict[str, dict] = {}
    try:
        raw = log.read_bytes()
        if log.suffix == ".gz":
            try:
                raw = gzip.decompress(raw)
            except EOFError as e:               # a truncated download or copy
                raise ValueError("a truncated gzip file") from e
        for rec in map(json.loads, raw.decode().splitlines()):
            if "summary" in rec:
                rows[rec["summary"]["cell"]] = rec["summary"]
            else:
                losses.setdefault(rec["cell"], []).append(rec["loss"])
    except (OSError, ValueError, KeyError, TypeError) as e:   # missing, not JSON, not our records
        raise ValueError(f"cannot be read as a log ({type(e).__name__})") from e
    return losses, rows


def summaries(log: Path) -> list[dict]:
    """The last summary row of each cell in a log, in the order the summaries first appear."""
    return list(read_log(log)[1].values())


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
    p.add_argument("--checkpoint", default=None,
                   help="where the run is saved and resumed from (default: LOG.ckpt)")
    p.add_argument("--table", metavar="LOG", type=Path,
                   help="print the table of the summaries in LOG (e.g. per-cell logs joined) and exit")
    args = p.parse_args(argv)
    b = load_budget(args.budget)
    iterations = args.iterations or b.epochs * b.tasks["copy"]["n_train"] // b.batch_size
    if args.table:
        try:
            rows, why = summaries(args.table), "no summary line in it"
        except ValueError as e:
            rows, why = [], str(e)
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
    cells, log = args.cells.split(","), Path(args.log)
    ckpt = Path(args.checkpoint or f"{log}.ckpt")
    config = run_config(cells, args.budget, args.L, args.seed, args.device)
    try:
        resumed = load_checkpoint(ckpt, config)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if resumed:
        if log.exists():
            trim_log(log, cells, resumed["iteration"])
        print(f"resuming from {ckpt}: {resumed['iteration']} of {iterations} iterations done",
              flush=True)
        saved_threads, threads = resumed.get("threads"), torch.get_num_threads()
        if saved_threads is not None and saved_threads != threads:
            print(f"note: {ckpt} was saved by a run on {saved_threads} torch thread(s), this one "
                  f"uses {threads}: the losses from here on round differently from an unbroken "
                  f"run's; OMP_NUM_THREADS={saved_threads} resumes it exactly", file=sys.stderr)
    elif log.exists() and any(json.loads(line).get("cell") in cells
                              for line in log.read_text().splitlines()):
        print(f"error: --log {log} already holds iterations of {args.cells} and no checkpoint "
              f"{ckpt} resumes them; valid: a new --log, or the --checkpoint written with it",
              file=sys.stderr)
        return 2
    try:
        with open(log, "a") as f, Stop() as stop:
            rows, done = train_all(cells, args.budget, args.L, iterations, args.seed, f,
                                   args.test_sequences,
                                   args.deadline_minutes * 60 if args.deadline_minutes else None,
                                   args.device, checkpoint=ckpt, resumed=resumed, stop=stop)
    except KeyboardInterrupt:
        last = load_checkpoint(ckpt, config)
        where = f"iteration {last['iteration']}, saved in {ckpt}" if last else "the start (no save yet)"
        print(f"stopped at once; the same command resumes from {where}", file=sys.stderr)
        return 130
    if not rows:
        print(f"stopped by {stop.requested} after {done} of {iterations} iterations; saved to "
              f"{ckpt}; the same command resumes", file=sys.stderr)
        return 130
    print(f"copy L={args.L}, preset {args.budget}, {done} of {iterations} iterations of batch "
          f"{b.batch_size} for every cell (round-robin), seed {args.seed}")
    print(table(rows, iterations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
