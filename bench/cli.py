"""Command line: ``python -m bench {run,ablate,sensitivity,diagnose,report,list,dashboard,speed,data}``.

The CLI is the edge: every UserError becomes one line on stderr and exit code 2, and all input is
checked before the storage is touched, so bad input writes nothing. It is also where the cell and
task packages are discovered and where library logging and warnings are quietened.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from bench.errors import UserError, choices

EXIT_USAGE = 2
FAKE_TASKS = ("pmnist", "smnist")     # tasks `data fake` writes files for
FAKE_SIZES = (60000, 10000)           # MNIST's train and test sizes


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):        # one line, not argparse's usage block
        print(f"bench: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _command(sub, name: str, help: str, example: str) -> _Parser:
    """A subcommand whose ``--help`` ends with one example."""
    return sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def quiet_libraries() -> None:
    """Silence what Lightning, Optuna and PyTorch print on every run (the CLI prints instead)."""
    import optuna
    # set before Lightning is imported (only training imports it): bench.lightning keeps the level
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*LeafSpec.*",
                    ".*You defined a `validation_step` but have no `val_dataloader`.*",
                    # CUDA graphs' warm-up runs the backward on a side stream: harmless here (the
                    # tests compare every gradient with an eager run)
                    ".*AccumulateGrad node's stream does not match.*"):
        warnings.filterwarnings("ignore", pattern)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; valid: a positive integer")
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{n} is out of range; valid: a positive integer")
    return n


def _experiment_args(p: argparse.ArgumentParser, cells_required: bool) -> None:
    from bench.stats import TESTS
    from bench.storage import DEFAULT_URL
    p.add_argument("--task", required=cells_required,
                   help="task name with options, e.g. adding:T=200 or copy:L=1000 (see `list`)")
    p.add_argument("--cells", required=cells_required, default=None,
                   help="comma list of cell specs, `all`, or glob patterns, e.g. "
                        "lstm,momentum_lstm[mu=0.3],momentum_lstm/no_momentum")
    p.add_argument("--ablations", action="store_true", help="add every registered ablation of the cells")
    p.add_argument("--budget", default="default", help="budget preset in studies/ (or a .toml path)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--hidden", type=_positive, help="pin the hidden size of every cell")
    size.add_argument("--match-params", type=_positive, metavar="N",
                      help="size every cell to N parameters (cell + readout) within 2%%")
    p.add_argument("--storage", default=DEFAULT_URL,
                   help=f"Optuna storage URL (default {DEFAULT_URL}; journal:PATH for several "
                        "processes on one host; postgresql://... across hosts)")
    p.add_argument("--data-dir", help="data directory for pmnist/smnist/timit")
    p.add_argument("--reference", help="the cell every other is tested against (default: the "
                                       "preset's, usually lstm)")
    p.add_argument("--test", choices=sorted(TESTS), help="significance test (default: the preset's, mwu)")
    p.add_argument("--alpha", type=float, help="significance level after Holm (default: the preset's, 0.05)")


def _work_args(p: argparse.ArgumentParser) -> None:
    """Flags of the commands that train (run, ablate, sensitivity)."""
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=_positive, metavar="N",
                   help="worker processes claiming units from the storage (default: 1 on CPU, one "
                        "per GPU per --workers-per-gpu on CUDA); more than 1 needs journal:PATH or "
                        "a server storage; the results do not depend on N")
    p.add_argument("--workers-per-gpu", type=_positive, metavar="K", default=1,
                   help="with --device cuda: K workers share each GPU (small RNNs leave it idle)")
    p.add_argument("--threads", type=_positive, metavar="T",
                   help="torch threads per worker (default: the cores not busy at the start, "
                        "split between the workers; 1 on a busy machine)")


def _speed_args(p: argparse.ArgumentParser, epoch: bool | None) -> None:
    """Flags of ``speed kernel`` (epoch False), ``speed epoch`` (True) or the old ``speed`` (None)."""
    p.add_argument("--cells", default="all", help="cell specs, as in run (default all)")
    p.add_argument("--batch", type=_positive, help="batch size (default 64; epoch: 128)")
    p.add_argument("--hidden", type=_positive, help="hidden size (default 128; epoch: 256)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    if epoch is not True:
        p.add_argument("--seq", type=_positive, help="sequence length (default 784)")
        p.add_argument("--input-size", type=_positive, help="input size (default 1)")
        p.add_argument("--reps", type=_positive, help="timed repetitions (default 5)")
    if epoch is not False:
        p.add_argument("--task", required=epoch is True,
                       help="the task whose training epoch is timed, e.g. pmnist")
        p.add_argument("--data-dir", help="data directory for pmnist/smnist/timit")
        p.add_argument("--batches", type=_positive, metavar="N",
                       help="time only the first N train and N validation batches and project the "
                            "epoch from the mean batch")


def _data_args(p: argparse.ArgumentParser, fake: bool) -> None:
    p.add_argument("--task", required=True, help="task name (options allowed for check)")
    p.add_argument("--data-dir", required=True)
    if fake:
        p.add_argument("--n-train", type=_positive, metavar="N",
                       help=f"training images (default {FAKE_SIZES[0]})")
        p.add_argument("--n-test", type=_positive, metavar="N",
                       help=f"test images (default {FAKE_SIZES[1]})")


def _analysis_commands(sub) -> None:
    """ablate, sensitivity and diagnose: runs organised around one question about a cell."""
    abl = _command(sub, "ablate", "run a cell and its registered ablations under one budget and "
                                  "test each ablation against the full cell",
                   "python -m bench ablate --cell momentum_lstm --task adding --only s_one,torch_init")
    _experiment_args(abl, cells_required=False)
    abl.add_argument("--cell", required=True, help="the full cell, e.g. momentum_lstm")
    abl.add_argument("--only", help="comma list of its ablations (default: all registered)")
    _work_args(abl)

    sens = _command(sub, "sensitivity", "a grid of fixed hyperparameters of one cell (learning "
                                        "rate tuned per grid point unless the preset fixes it): "
                                        "table and heatmap",
                    "python -m bench sensitivity --cell momentum_lstm --task adding "
                    "--grid mu=0,0.3,0.6,0.9 --grid s=0.1,0.3,0.6,1")
    _experiment_args(sens, cells_required=False)
    sens.add_argument("--cell", required=True, help="the cell whose hyperparameters are gridded")
    sens.add_argument("--grid", action="append", required=True, metavar="NAME=V1,V2,...",
                      help="one or two hyperparameters with their values")
    sens.add_argument("--plots", metavar="DIR", help="heatmap folder (default runs/plots)")
    _work_args(sens)

    diag = _command(sub, "diagnose", "gradient flow: ||dL/dh_t|| over time at chosen epochs of "
                                     "training, beside the loss curve, per cell",
                    "python -m bench diagnose --task adding --cells lstm,momentum_lstm")
    _experiment_args(diag, cells_required=True)
    diag.add_argument("--at", metavar="E1,E2", help="epochs to probe (0 = before training; "
                                                    "default: every epoch)")
    diag.add_argument("--plots", metavar="DIR", help="heatmap folder (default runs/plots)")


def _speed_command(sub) -> None:
    """speed kernel|epoch, and the old spelling without a mode for one release."""
    speed = _command(sub, "speed", "time cells: `speed kernel` (forward+backward per batch vs "
                                   "nn.LSTM) or `speed epoch` (one training epoch of a task per cell)",
                     "python -m bench speed kernel --cells lstm,momentum_lstm --seq 200")
    _speed_args(speed, None)       # the old spelling, without a mode, for one release
    modes = speed.add_subparsers(dest="mode", parser_class=_Parser)
    _speed_args(_command(modes, "kernel", "forward+backward ms per batch of every cell vs nn.LSTM",
                         "python -m bench speed kernel --cells all --batch 64 --seq 784"), False)
    _speed_args(_command(modes, "epoch", "one training epoch of a task per cell, measured or "
                                         "projected from N batches",
                         "python -m bench speed epoch --task pmnist --data-dir /tmp/fake_mnist "
                         "--batches 20"), True)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = _command(sub, "run", "tune every cell under one budget, retrain on seeds, test, report",
                   "python -m bench run --task adding --cells lstm,momentum_lstm --budget smoke")
    _experiment_args(run, cells_required=True)
    _work_args(run)

    work = _command(sub, "worker", "claim and train units of a run from a shared storage until "
                                   "it is complete (start any number, on any host)",
                    "python -m bench worker --storage postgresql://bench@db:5432/bench "
                    "--task adding --cells all")
    _experiment_args(work, cells_required=True)
    work.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    work.add_argument("--quiet", action="store_true", help="print errors only")
    work.add_argument("--threads", type=_positive,
                      help="torch threads (default: the cores not busy at the start; 1 on a busy host)")
    work.add_argument("--parent", type=int, help=argparse.SUPPRESS)   # run's pid: stop when it dies

    _analysis_commands(sub)

    rep = _command(sub, "report", "rebuild the comparison table from the storage alone",
                   "python -m bench report --task adding --format latex --out table.tex")
    _experiment_args(rep, cells_required=False)
    rep.add_argument("--format", choices=["md", "latex", "csv", "json", "html"], default="md",
                     help="html: one self-contained page with the table and plots")
    rep.add_argument("--out", help="write the table to this file instead of stdout")
    rep.add_argument("--across", metavar="TASKS",
                     help="compare the cells across tasks (each with options, as --task), e.g. "
                          "adding:T=50,copy:L=100: average ranks, Friedman, Nemenyi, CD diagram")
    rep.add_argument("--plots", metavar="DIR", nargs="?", const="",
                     help="also write the plots as PNG and SVG files, named after --out, in DIR "
                          "(default: the folder of --out, else runs/plots); --across always "
                          "draws its CD diagram there")
    rep.add_argument("--artifacts", metavar="DIR",
                     help="folder of the dashboard's plot artifacts (default: beside a SQLite or "
                          "journal storage, e.g. runs/bench.artifacts; a postgresql:// storage "
                          "has plots in the dashboard only with this)")

    lst = _command(sub, "list", "cells (hyperparameters, search spaces), ablations, tasks, budgets",
                   "python -m bench list --family momentum")
    lst.add_argument("--family", help="only the cells of this family (their package, e.g. momentum)")

    dash = _command(sub, "dashboard", "start optuna-dashboard on 127.0.0.1 for a storage",
                    "python -m bench dashboard --storage sqlite:///runs/bench.db --port 8080")
    dash.add_argument("--storage", default=_default_storage())
    dash.add_argument("--port", type=_positive, default=8080)
    dash.add_argument("--artifacts", metavar="DIR",
                      help="folder of the plot artifacts `report` uploads (default: beside a "
                           "SQLite or journal storage, e.g. runs/bench.artifacts)")

    _speed_command(sub)

    data = _command(sub, "data", "check a data set, or write synthetic MNIST files for timing",
                    "python -m bench data check --task timit --data-dir /data/TIMIT")
    actions = data.add_subparsers(dest="action", required=True, parser_class=_Parser)
    _data_args(_command(actions, "check", "count and validate a task's data files",
                        "python -m bench data check --task timit --data-dir /data/TIMIT"), False)
    _data_args(_command(actions, "fake", "write synthetic MNIST-format IDX files (timing, tests)",
                        "python -m bench data fake --task pmnist --data-dir /tmp/fake_mnist"), True)
    return parser


def _default_storage() -> str:
    from bench.storage import DEFAULT_URL
    return DEFAULT_URL


# ---- commands -------------------------------------------------------------------------------

def _with_data_dir(task_text: str, data_dir: str | None) -> str:
    """The task spec with ``--data-dir`` added as its ``data_dir`` option."""
    if not data_dir:
        return task_text
    return task_text + ("," if ":" in task_text else ":") + f"data_dir={data_dir}"


def split_tasks(text: str) -> list[str]:
    """``adding:T=50,n_val=100,copy:L=10`` -> ``["adding:T=50,n_val=100", "copy:L=10"]``."""
    from bench.registry import list_tasks

    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        head = part.partition(":")[0]
        if "=" not in head and head in list_tasks():
            out.append(part)
        elif out and part:
            out[-1] += "," + part
        else:
            raise UserError(f"--across {text!r}: {part!r} is not a task; valid: "
                            f"{choices(list_tasks())}, each with its options")
    if len(out) < 2:
        raise UserError(f"--across {text!r}: {len(out)} task(s); valid: at least 2 tasks")
    return out


def _experiment(args, task_text: str | None = None, budget=None):
    """Check every input and build (experiment, specs) without touching the storage; ``budget``:
    a preset already loaded (the copy a storage holds) instead of ``--budget``."""
    from bench.budget import load_budget
    from bench.registry import parse_cells, parse_spec
    from bench.task import parse_task
    from bench.experiment import Experiment

    budget = budget or load_budget(args.budget)
    if (task_text or args.task) is None:
        raise UserError("--task is required (or --across TASKS for report); valid: a task spec, "
                        "e.g. adding:T=50")
    task_text = _with_data_dir(task_text or args.task, args.data_dir)
    name = task_text.partition(":")[0]
    task = parse_task(task_text, budget.tasks.get(name, {}))
    specs = parse_cells(args.cells, args.ablations) if args.cells is not None else None
    parse_spec(args.reference or budget.declared()["reference"])   # an unknown one is bad input
    if args.alpha is not None and not 0 < args.alpha < 1:
        raise UserError(f"--alpha {args.alpha} is out of range; valid: (0, 1)")
    hidden, params = args.hidden, args.match_params
    if hidden is None and params is None:
        hidden, params = budget.hidden, budget.params
    return Experiment(task, budget, hidden, params), specs


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


class Bar:
    """The run's progress bar: elapsed time ticks every second from the start, the postfix names
    the unit and epoch training now, and the ETA comes from stored run times (``bench.progress.Eta``)."""

    def __init__(self, total: int, done: int, eta, disable: bool):
        import threading

        from tqdm import tqdm
        self.eta, self.label, self.epochs, self.now, self.initial = eta, "", 0, 0, done
        self.bar = tqdm(total=total, initial=done, unit="run", disable=disable, file=sys.stderr,
                        dynamic_ncols=True, bar_format="{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                                       "[{elapsed}] {desc}")
        self.stop = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        self.ticker.start()

    def _tick(self) -> None:
        while not self.stop.wait(1.0):
            self.bar.refresh()

    def _show(self) -> None:
        left = self.eta.seconds_left()
        when = f"ETA {_minutes(left)}" if left is not None else "ETA after the first runs"
        epoch = f" epoch {self.now}/{self.epochs}" if self.epochs else ""
        self.bar.set_description_str(f"{self.label}{epoch}; {when}", refresh=True)

    def begin(self, label: str, epochs: int) -> None:
        self.label, self.epochs, self.now = label, epochs, 0
        self._show()

    def epoch(self, done: int) -> None:
        self.now = done
        self._show()

    def end(self, cell: str, kind: str, seconds: float) -> None:
        self.eta.done(cell, kind, seconds)
        self.bar.update(1)
        self._show()

    def show(self, done: int, running: list[str], seconds_left: float | None) -> None:
        """Progress read from the storage while workers train (``bench.pool``)."""
        self.bar.n = done
        when = f"ETA {_minutes(seconds_left)}" if seconds_left is not None else "ETA after the first runs"
        idle = "starting workers" if done == self.initial else "between units"
        self.bar.set_description_str(f"{'; '.join(running) or idle}; {when}",
                                     refresh=True)

    def note(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.stop.set()
        self.bar.close()


def cmd_ablate(args) -> int:
    """``ablate``: ``run`` over the cell and its ablations, with the full cell as the reference;
    the runs are stored like any other, so ``run`` and ``report`` reuse them."""
    from bench.registry import cell_entry, list_ablations

    if args.cells is not None or args.ablations or args.reference is not None:
        raise UserError("ablate takes --cell and --only; valid: --cell NAME [--only A,B] "
                        "(the cell is the reference)")
    entry = cell_entry(args.cell)
    if entry.is_ablation:
        raise UserError(f"--cell {args.cell}: an ablation; valid: a base cell, e.g. {entry.base}")
    registered = list_ablations(args.cell)
    names = [f"{args.cell}/{a.strip()}" for a in args.only.split(",") if a.strip()] \
        if args.only else registered
    unknown = [n for n in names if n not in registered]
    if unknown or not names:
        raise UserError(f"--only {args.only!r}: {', '.join(unknown) or 'nothing selected'}; valid: "
                        + (choices(a.split("/", 1)[1] for a in registered) or "(no ablations)"))
    args.cells, args.reference = ",".join([args.cell, *names]), args.cell
    return cmd_run(args)


def parse_grid(cell: str, grids: list[str]) -> list[tuple[str, list[str]]]:
    """``["mu=0,0.3", "s=0.5,1"]`` -> [("mu", ["0", "0.3"]), ("s", ["0.5", "1"])], checked."""
    from bench.registry import cell_entry, parse_spec

    entry = cell_entry(cell)
    out: list[tuple[str, list[str]]] = []
    for g in grids:
        name, _, values = g.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if name not in entry.hparams or not vals:
            raise UserError(f"--grid {g!r}: expected NAME=V1,V2 with NAME one of "
                            f"{choices(entry.hparams)}")
        if name in dict(out):
            raise UserError(f"--grid {name} given twice; give each hyperparameter once")
        for v in vals:
            parse_spec(f"{cell}[{name}={v}]")       # each value is checked like a spec's
        out.append((name, vals))
    if len(out) > 2:
        raise UserError(f"--grid: {len(out)} hyperparameters; valid: 1 or 2 (a table and a heatmap)")
    return out


def cmd_sensitivity(args) -> int:
    """``sensitivity``: each grid point is the cell with those values fixed (``cell[k=v,...]``),
    run and stored like any cell; then a table of the grid and a heatmap of the mean metric."""
    import itertools

    from tabulate import tabulate

    from bench import plots
    from bench import report as rp
    from bench.optim import DEFAULT_LR
    from bench.registry import parse_cells
    from bench.storage import open_storage

    if args.cells is not None or args.ablations:
        raise UserError("sensitivity takes --cell and --grid; valid: --cell NAME --grid K=V1,V2")
    grid = parse_grid(args.cell, args.grid)
    points = list(itertools.product(*(vals for _, vals in grid)))
    specs = [f"{args.cell}[" + ",".join(f"{k}={v}" for (k, _), v in zip(grid, p)) + "]"
             for p in points]
    if args.plots:
        _writable_dir(Path(args.plots), "--plots", create=True)
    args.cells = ",".join(specs)
    names = [str(s) for s in parse_cells(args.cells)]      # canonical spec strings, in grid order
    args.reference = names[0] if args.reference is None else args.reference
    code = cmd_run(args)
    exp, _ = _experiment(args)
    rep = rp.build(open_storage(args.storage, create=False), exp, names, args.test, args.reference,
                   args.alpha)
    values, labels, head, body = rp.grid_table(rep, grid, dict(zip(points, names)))
    plots_dir = Path(args.plots) if args.plots else Path("runs") / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    (rname, rvals), *rest = grid
    cname, cvals = rest[0] if rest else ("", [""])
    paths = plots.heatmap(values, [f"{rname}={v}" for v in rvals],
                          [f"{cname}={v}" if rest else "" for v in cvals], labels, rname, cname,
                          f"{args.cell}: mean test {rep.metric} over {exp.budget.seeds} seeds "
                          f"({exp.task.id.split(',')[0]}, budget {exp.budget.name})",
                          plots_dir / ("sensitivity-" + args.cell + "-" + "-".join(k for k, _ in grid)))
    tuned = ", ".join(exp.budget.tuned_lrs)
    how = (f"learning rate tuned per grid point ({tuned}), {exp.budget.trials} trials each" if tuned else
           f"learning rate fixed at {exp.budget.optimizer.get('lr', DEFAULT_LR)} by budget "
           f"{exp.budget.name}")
    print(f"\nSensitivity of {args.cell} (mean test {rep.metric}; solved k/n; median epochs to "
          f"solve; {how}):\n")
    print(tabulate(body, head, tablefmt="github"))
    print("\nheatmap: " + ", ".join(map(str, paths)))
    return code


def cmd_diagnose(args) -> int:
    """``diagnose``: retrain each cell from its stored configuration and first final seed (the
    registered defaults if none is stored) and probe ||dL/dh_t|| on a fixed validation batch."""
    import json

    from tabulate import tabulate

    from bench import plots
    from bench.diagnose import diagnose_cell
    from bench.storage import open_storage

    exp, specs = _experiment(args)
    epochs = exp.budget.epochs
    try:
        at = {int(e) for e in args.at.split(",")} if args.at else set(range(epochs + 1))
    except ValueError:
        raise UserError(f"--at {args.at!r}: not a comma list of epochs; valid: 0..{epochs}") from None
    if not at or not all(0 <= e <= epochs for e in at):
        raise UserError(f"--at {args.at!r}: valid: epochs from 0 to {epochs}")
    data = exp.task.build()
    data.setup("fit")
    storage = open_storage(args.storage)
    plots_dir = Path(args.plots) if args.plots else Path("runs") / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    batch = next(iter(data.batches(data.splits[1], 256, None)))[:2]
    metric, rows = data.spec.metric, []
    for spec in specs:
        flow = diagnose_cell(storage, exp, spec, data, batch, at)
        stem = plots_dir / f"gradflow-{str(spec).replace('/', '_')}"
        stem.with_suffix(".json").write_text(json.dumps(flow.__dict__ | {"ratios": flow.ratios()}))
        paths = plots.gradient_flow(flow.norms, flow.epochs, flow.val_curve, metric,
                                    f"{spec} on {exp.task.id}: gradient flow and validation curve",
                                    stem)
        rows += [[str(spec), e, f"{n[0]:.3g}", f"{n[-1]:.3g}", f"{r:.3g}",
                  f"{flow.val_curve[e - 1]:.4g}" if e else "–"]
                 for e, n, r in zip(flow.epochs, flow.norms, flow.ratios())]
        print(f"{spec}: {', '.join(map(str, paths))}", flush=True)
    print("\n" + tabulate(rows, ["cell", "epoch", "||dL/dh_1||", "||dL/dh_T||", "ratio 1/T",
                                  f"val {metric}"], tablefmt="github"))
    print("\nratio 1/T below 1: the gradient from the end fades on its way back to the start "
          "(mean over a fixed validation batch of 256 sequences; total derivative through the "
          "recurrence, by the step loop).")
    return 0


def _check_device(device: str) -> None:
    """``--device cuda`` needs a CUDA device."""
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here; valid: cpu, auto")


def _workers(args) -> tuple[int, list[str | None]]:
    """How many workers, and the CUDA device each one sees (None: leave the environment as is)."""
    import torch
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    per_gpu = getattr(args, "workers_per_gpu", 1)
    if not cuda:
        if per_gpu != 1:
            raise UserError(f"--workers-per-gpu {per_gpu} without a GPU; valid: --workers N on CPU")
        return args.workers or 1, [None] * (args.workers or 1)
    gpus = torch.cuda.device_count()
    n = args.workers or gpus * per_gpu
    return n, [str(i % gpus) for i in range(n)]


def _prepare(args, verb: str):
    """Everything a training command checks before it writes: the experiment, the device, the
    storage (opened, locked if SQLite, its preset checked) and the task's data."""
    from bench.sizing import size_and_hparams
    from bench.storage import check_url, check_workers, hold, open_storage
    from bench.studies import check_budget

    exp, specs = _experiment(args)
    _check_device(args.device)
    n, visible = _workers(args) if verb == "run" else (1, [None])
    check_url(args.storage)
    check_workers(args.storage, n)
    data = exp.task.build()
    data.setup("fit")
    if hasattr(data, "check_budget"):     # e.g. pmnist without a validation split cannot tune
        data.check_budget(exp.budget, specs)
    for spec in specs:    # a size that cannot be matched is bad input: find it before writing
        size_and_hparams(spec, {}, data.spec, exp.budget, exp.hidden, exp.params)
    storage = open_storage(args.storage)
    hold(args.storage)
    check_budget(storage, exp.budget)
    catch_signals()
    return exp, specs, data, storage, n, visible


def cmd_run(args) -> int:
    exp, specs, data, storage, n, visible = _prepare(args, "run")    # first: bad input starts fast
    from bench import report as rp
    from bench.progress import Eta
    from bench.pool import threads_per_worker
    from bench.storage import is_single_process, mask_url
    from bench.work import run_experiment, stored_work

    b = exp.budget
    total = len(specs) * (b.trials + b.seeds)
    done, remaining, times = stored_work(storage, exp, specs)
    eta = Eta(times, remaining)
    left = eta.seconds_left()
    expect = (f"expected {_minutes(left / n)} from stored run times" if left is not None and remaining
              else "no stored run times for these cells yet: the ETA follows the first runs"
              if remaining else "nothing left to run")
    threads, why = (args.threads, "--threads") if args.threads else threads_per_worker(n)
    print(f"{exp.task.id}: {len(specs)} cells x ({b.trials} trials + {b.seeds} seeds) = {total} runs "
          f"({done} already stored; {expect}); budget {b.name}, {exp.size}, {b.epochs} epochs per "
          f"run; {n} worker{'s' if n > 1 else ''} x {threads} thread{'s' if threads > 1 else ''} "
          f"({why}); storage {mask_url(args.storage)}", flush=True)
    start = time.perf_counter()
    bar = Bar(total, done, eta, args.no_progress)
    try:
        if n == 1:
            import torch
            torch.set_num_threads(threads)
            run_experiment(storage, exp, specs, data, bar, args.device,
                           is_single_process(args.storage))
        else:
            _run_workers(args, exp, specs, storage, visible, threads, bar)
    finally:
        bar.close()
    print(f"done in {time.perf_counter() - start:.0f} s\n")
    rep = rp.build(storage, exp, [str(s) for s in specs], args.test, args.reference, args.alpha)
    print(rp.render(rep, "md"), flush=True)
    from bench.dashboard import artifact_dir
    _publish(storage, exp, rep, artifact_dir(args.storage)[0], None, args.storage)
    return 0


def _run_workers(args, exp, specs, storage, visible: list[str | None], threads: int,
                 bar: "Bar") -> None:
    """Start one ``bench worker`` per entry of ``visible`` (its GPU, or None) with ``threads``
    torch threads each, and supervise them (``bench.pool``)."""
    from bench.pool import supervise, worker_argv
    from bench.work import stored_work

    argvs, envs = [], []
    for gpu in visible:
        env = dict(os.environ)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        argvs.append(worker_argv(args, specs, threads, "cuda" if gpu is not None else "cpu"))
        envs.append(env)
    try:
        supervise(storage, exp, specs, argvs, envs, bar.show, bar.note, lambda: _signal)
    except RuntimeError as e:
        raise UserError(str(e)) from None
    left = stored_work(storage, exp, specs)[1]
    if left:
        raise UserError(f"the workers stopped with {len(left)} units not stored; run the same "
                        "command again to resume")


def cmd_worker(args) -> int:
    """``worker``: claim and train this experiment's units until every one is stored; poll while
    other workers hold the last ones (a crashed holder's unit comes back after its lease)."""
    exp, specs, data, storage, _, _ = _prepare(args, "worker")    # first: bad input starts fast
    import torch
    from bench.pool import threads_per_worker
    torch.set_num_threads(args.threads or threads_per_worker(1)[0])   # as run's workers get
    from bench.progress import Silent
    from bench.storage import is_single_process, mask_url
    from bench.work import Worker, stored_work

    printer = Silent() if args.quiet else _UnitPrinter()
    if not args.quiet:
        left = len(stored_work(storage, exp, specs)[1])
        print(f"worker {os.getpid()}: {exp.task.id}, {len(specs)} cells, budget {exp.budget.name}; "
              f"{left} units not yet stored; storage {mask_url(args.storage)}", flush=True)
    parent = args.parent
    worker = Worker(storage, exp, specs, data, printer, args.device, is_single_process(args.storage))
    worker.run(keep_going=lambda: parent is None or os.getppid() == parent)
    if not args.quiet and not worker.remaining():
        dropped = (f", {worker.dropped} dropped (taken over by another worker after this one "
                   "stalled past its lease)" if worker.dropped else "")
        print(f"worker {os.getpid()}: trained {worker.stored} units{dropped}; every unit is "
              "stored: `python -m bench report` with the same --task, --cells, --budget and "
              "--storage prints the table", flush=True)
    return 0


class _UnitPrinter:
    """A worker's progress when it runs on its own: one line per stored unit."""

    def begin(self, label: str, epochs: int) -> None:
        self.label = label

    def epoch(self, done: int) -> None:
        pass

    def end(self, cell: str, kind: str, seconds: float) -> None:
        print(f"worker {os.getpid()}: {self.label} stored in {seconds:.1f} s", flush=True)


_signal: int | None = None     # the first SIGINT/SIGTERM received during `run`
_swallowed = False             # that signal's KeyboardInterrupt was raised inside a finalizer


def catch_signals() -> None:
    """From here on, SIGINT and SIGTERM stop the process with one line (``_interrupt``)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    sys.unraisablehook = _unraisable


def _interrupt(signum, frame):
    """First signal: stop the running unit (it is marked interrupted) and exit 128 + signum.
    Lightning turns the KeyboardInterrupt into sys.exit(1) after its teardown; ``main`` maps that
    back. A second signal leaves at once."""
    global _signal, _swallowed
    if _swallowed:                  # our own re-delivery (``_unraisable``), not a second signal
        _swallowed = False
        raise KeyboardInterrupt
    if _signal is not None:
        os._exit(128 + _signal)
    _signal = signum
    raise KeyboardInterrupt


def _unraisable(report) -> None:
    """A signal that lands while a finalizer (``__del__``, a weakref callback) runs raises its
    KeyboardInterrupt there, where Python cannot propagate it: it prints "Exception ignored in"
    and carries on training. Deliver that interrupt again, outside the finalizer. After a signal,
    any other finalizer cut short on the way out is expected and not reported either."""
    global _swallowed
    if _signal is None:
        sys.__unraisablehook__(report)
    elif isinstance(report.exc_value, KeyboardInterrupt):
        import threading
        _swallowed = True
        # from another thread, a little later: a signal raised now would land in this hook (or
        # the finalizer) again; a real signal also wakes a main thread blocked in a system call
        threading.Timer(0.02, signal.pthread_kill,
                        (threading.main_thread().ident, signal.SIGINT)).start()


def cmd_report(args) -> int:
    from bench import plots
    from bench import report as rp
    from bench.registry import parse_cells
    from bench.storage import check_url, open_storage
    from bench.studies import stored_budget

    if args.out:                  # refuse an unwritable --out before any work
        _writable_dir(Path(args.out).absolute().parent, "--out", create=False)
    if args.across:
        if args.task:
            raise UserError("--task and --across: give one; valid: --task TASK or --across TASKS")
        texts = split_tasks(args.across)
        exps = [_experiment(args, t)[0] for t in texts]
        specs = parse_cells(args.cells, args.ablations) if args.cells is not None else None
        plots_dir = Path(args.plots) if args.plots else (
            Path(args.out).parent if args.out else Path("runs") / "plots")
        _writable_dir(plots_dir, "--plots", create=True)
        check_url(args.storage, create=False)
        storage = open_storage(args.storage, create=False)
        exps = [_experiment(args, t, stored_budget(storage, exp.budget)[0])[0]
                for t, exp in zip(texts, exps)]
        alpha = exps[0].budget.declared()["alpha"] if args.alpha is None else args.alpha
        arep = rp.build_across(storage, exps, [str(s) for s in specs] if specs else None, alpha,
                               plots_dir)
        if args.format == "html":
            from bench.html_report import render_across_html
            text = render_across_html(arep)
        else:
            text = rp.render_across(arep, args.format)
        return _emit(text, args.out)
    from bench.dashboard import artifact_dir
    from bench.html_report import figures, render_html

    exp, specs = _experiment(args)
    plots_dir = None
    if args.plots is not None:    # PNG and SVG files beside the table, whatever its format
        plots_dir = Path(args.plots) if args.plots else (
            Path(args.out).absolute().parent if args.out else Path("runs") / "plots")
        _writable_dir(plots_dir, "--plots", create=True)
    check_url(args.storage, create=False)
    artifacts, why = artifact_dir(args.storage, args.artifacts)
    storage = open_storage(args.storage, create=False)
    budget, changed = stored_budget(storage, exp.budget)
    if changed:                   # report what the runs were made with, and say so
        exp, specs = _experiment(args, budget=budget)
    rep = rp.build(storage, exp, [str(s) for s in specs] if specs else None, args.test,
                   args.reference, args.alpha)
    if changed:
        rep.footer.append(changed)
    figs = figures(rep) if args.format == "html" or plots_dir else []
    pngs = [(f"{stem}.png", caption, plots.png_bytes(fig)) for stem, fig, caption in figs]
    text = render_html(rep, pngs) if args.format == "html" else rp.render(rep, args.format)
    written = []
    if plots_dir is not None:
        prefix = Path(args.out).stem if args.out else f"report-{exp.key}"
        for (stem, fig, _), (_, _, png) in zip(figs, pngs):
            written += plots.save(fig, plots_dir / f"{prefix}-{stem}", png)
    code = _emit(text, args.out)
    if written:
        print("plots: " + ", ".join(map(str, written)), file=sys.stdout if args.out else sys.stderr)
    done = _publish(storage, exp, rep, artifacts, pngs or None, args.storage)
    if done is not None and why:
        print(f"bench: dashboard: note saved on {done.index!r}; no plot artifacts: {why}",
              file=sys.stderr)
    return code


def _publish(storage, exp, rep, artifacts, pngs, url: str):
    """The table as notes and the plots as artifacts in optuna-dashboard (`bench dashboard`); a
    failure there is a warning: the table is already printed and the runs are stored."""
    from bench.dashboard import publish
    try:
        return publish(storage, exp, rep, artifacts, pngs)
    except Exception as e:  # noqa: BLE001 - the report stands; say what the dashboard misses
        from bench.storage import _scrub
        detail = _scrub(str(e).splitlines()[0] if str(e) else "", url)
        print(f"bench: warning: the dashboard note and artifacts were not saved "
              f"({type(e).__name__}: {detail})", file=sys.stderr)
        return None


def _emit(text: str, out: str | None) -> int:
    if out:
        write_atomic(Path(out), text)
        print(f"wrote {out}")
    else:
        print(text, end="")
    return 0


def _writable_dir(path: Path, flag: str, create: bool) -> None:
    """Check that a folder is writable (``create``: or can be made in an existing parent)."""
    import tempfile
    parent = path if path.is_dir() or not create else path.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path}: folder {parent} does not exist; valid: an existing folder"
                        + (" or one inside one" if create else ""))
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise UserError(f"{flag} {path}: {parent} is not writable ({e.strerror})") from None
    if create:
        path.mkdir(exist_ok=True)


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: a temporary file in the same folder, then a rename."""
    import os
    import tempfile
    if not path.parent.is_dir():
        raise UserError(f"--out {path}: folder {path.parent} does not exist; valid: a file in an "
                        "existing folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as e:
        raise UserError(f"--out {path}: folder {path.parent} is not writable ({e.strerror})") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp's 0600 is not what a report wants
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_list(args) -> int:
    from bench.budget import list_budgets, load_budget
    from bench.registry import cell_entry, list_ablations, list_cells, list_tasks, task_entry

    from bench.registry import list_families

    if args.family is not None and args.family not in list_families():
        raise UserError(f"unknown family {args.family!r}; valid: {choices(list_families())}")
    print("Cells (spec: name[k=v,...] or family:NAME; hyperparameters: default, search space, "
          "valid range):")
    for name in list_cells(family=args.family):
        e = cell_entry(name)
        print(f"  {name:<16} [{e.family}] {e.doc}")
        for p in e.hparams.values():
            print(f"      {p.describe()}")
    print("\nAblations (spec: cell/ablation):")
    for name in list_ablations():
        e = cell_entry(name)
        if args.family is not None and e.family != args.family:
            continue
        fixed = ", ".join(f"{k}={v}" for k, v in e.fixed.items())
        print(f"  {name:<32} {e.doc}" + (f" [{fixed}]" if fixed else ""))
    print("\nTasks (spec: name:k=v,...):")
    for name in list_tasks():
        e = task_entry(name)
        print(f"  {name:<8} {e.doc}")
        print("      options: " + ", ".join(f"{o.name}={o.default}" for o in e.options.values()))
    print("\nBudget presets (--budget NAME):")
    names = list_budgets()
    width = max(map(len, names))
    for name in names:
        b = load_budget(name)
        size = f"hidden {b.hidden}" if b.hidden else f"{b.params} params"
        print(f"  {name:<{width}}  {b.trials} trial{'s' * (b.trials != 1)}, {b.seeds} seeds, "
              f"{b.epochs} epochs, batch {b.batch_size}, {b.optimizer['name']}, {size}: "
              f"{b.description}")
    return 0


def cmd_dashboard(args) -> int:
    from bench.storage import mask_url, open_storage
    import optuna_dashboard

    from optuna.artifacts import FileSystemArtifactStore

    from bench.dashboard import artifact_dir

    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is out of range; valid: 1-65535")
    if args.artifacts and not Path(args.artifacts).is_dir():
        raise UserError(f"--artifacts {args.artifacts}: not a folder; valid: an existing folder "
                        "(the one `report --artifacts` wrote)")
    storage = open_storage(args.storage, create=False)
    folder, why = artifact_dir(args.storage, args.artifacts)
    store = FileSystemArtifactStore(str(folder)) if folder is not None and folder.is_dir() else None
    plots = f"plot artifacts from {folder}" if store else \
        f"no plot artifacts ({why or f'{folder} does not exist yet; `python -m bench report` writes it'})"
    print(f"optuna-dashboard for {mask_url(args.storage)} at http://127.0.0.1:{args.port}/; {plots} "
          "(Ctrl-C to stop)", flush=True)
    optuna_dashboard.run_server(storage, host="127.0.0.1", port=args.port, artifact_store=store)
    return 0


def cmd_speed(args) -> int:
    import torch
    from tabulate import tabulate

    from bench.registry import parse_cells
    from bench.speed import measure

    specs = [str(s) for s in parse_cells(args.cells)]
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here; valid: cpu")
    if args.mode is None:            # the old spelling: the mode follows from --task
        args.mode = "epoch" if args.task else "kernel"
        print(f"bench: `speed` without a mode is deprecated and goes in the next release; "
              f"use `speed {args.mode}`", file=sys.stderr)
    if args.mode == "epoch":
        return _speed_epoch(args, specs)
    for flag in ("data_dir", "batches"):
        if getattr(args, flag, None) is not None:
            raise UserError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: only with "
                            f"`speed epoch`")
    batch, seq, hidden = args.batch or 64, args.seq or 784, args.hidden or 128
    reps = args.reps or 5
    rows = measure(specs, batch, seq, hidden, args.device, reps, input_size=args.input_size or 1)
    print(f"forward+backward per batch: B {batch}, T {seq}, H {hidden}, "
          f"{args.device} ({torch.get_num_threads()} threads), median of {reps}")
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3g"))
    return 0


def _speed_epoch(args, specs: list[str]) -> int:
    """``speed --task``: one training epoch (plus validation) per cell, measured or projected."""
    import torch
    from tabulate import tabulate

    from bench.speed import EPOCH_GRAD_CLIP, EPOCH_OPTIMIZER, epoch_time
    from bench.task import parse_task

    for flag in ("seq", "input_size", "reps"):
        if getattr(args, flag, None) is not None:
            raise UserError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: not with --task "
                            f"(the task fixes it); valid with --task: --batch, --hidden, --batches")
    batch, hidden = args.batch or 128, args.hidden or 256
    task = parse_task(_with_data_dir(args.task, args.data_dir))
    start = time.perf_counter()
    data = task.build()
    data.setup("fit")
    spec = data.spec
    load_s = time.perf_counter() - start
    timed = (f"first {args.batches} train and validation batches timed, epoch projected from the "
             f"mean batch (first train batch left out)" if args.batches else "whole epoch timed")
    print(f"one {args.task} epoch per cell: B {batch}, T {spec.seq_len}, H {hidden}, {args.device} "
          f"({torch.get_num_threads()} threads), {' '.join(f'{k} {v}' for k, v in EPOCH_OPTIMIZER.items())}, "
          f"clip {EPOCH_GRAD_CLIP}; data loaded in "
          f"{load_s:.1f} s; {timed}", flush=True)
    rows = [epoch_time(data, s, hidden, batch, args.device, args.batches) for s in specs]
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3g"))
    return 0


def cmd_data(args) -> int:
    import importlib

    from bench.registry import task_entry
    from bench.task import parse_task

    if args.action == "fake":
        return _fake_data(args)
    entry = task_entry(args.task.partition(":")[0])
    if not Path(args.data_dir).is_dir():
        raise UserError(f"--data-dir {args.data_dir}: no such directory")
    check = getattr(importlib.import_module(entry.factory.__module__), "check", None)
    if check is not None:          # the task's own validator says the most
        found = check(args.data_dir)
    else:
        data = parse_task(_with_data_dir(args.task, args.data_dir)).build()
        data.setup("fit")
        found = data.summary()
    print(f"{args.task} in {args.data_dir}:")
    for k, v in found.items():
        print(f"  {k}: {v}")
    return 0


def _fake_data(args) -> int:
    """``data fake``: synthetic MNIST IDX files for timing and tests; never over existing files."""
    from tasks.mnist import FILES, existing_files, write_fake_mnist

    if args.task not in FAKE_TASKS:
        raise UserError(f"data fake: no synthetic data for task {args.task!r}; valid: "
                        f"{choices(FAKE_TASKS)}")
    root = Path(args.data_dir)
    if root.exists() and not root.is_dir():
        raise UserError(f"--data-dir {root}: not a directory")
    found = existing_files(root)
    if found:
        raise UserError(f"{found[0]} already exists; nothing written (data fake never overwrites: "
                        f"choose an empty --data-dir)")
    n_train, n_test = args.n_train or FAKE_SIZES[0], args.n_test or FAKE_SIZES[1]
    start = time.perf_counter()
    try:
        write_fake_mnist(root, n_train, n_test)
    except OSError as e:
        raise UserError(f"--data-dir {root}: cannot write there ({e.strerror}); valid: a writable "
                        "folder") from None
    print(f"wrote SYNTHETIC MNIST-format files to {root} in {time.perf_counter() - start:.1f} s "
          f"(read by pmnist and smnist; noise plus a class-dependent stripe, not MNIST: for timing "
          f"and tests, not for accuracy claims):")
    counts = {"train": n_train, "test": n_test}
    for key, name in FILES.items():
        split, kind = key.split("_")
        shape = " of 28x28" if kind == "images" else ""
        print(f"  {root / (name + '.gz')}: {counts[split]} {kind}{shape}")
    return 0


COMMANDS = {"run": cmd_run, "worker": cmd_worker, "ablate": cmd_ablate, "sensitivity": cmd_sensitivity,
            "diagnose": cmd_diagnose, "report": cmd_report, "list": cmd_list, "dashboard": cmd_dashboard,
            "speed": cmd_speed, "data": cmd_data}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        quiet_libraries()
        from bench.discovery import discover
        discover()
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # the reader went away (`bench list | head -1`): stop quietly, as coreutils do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except BaseException as e:
        # after a signal, whatever the cleanup raised on its way out (Lightning's sys.exit(1), a
        # storage call cut short) ends here: one line and 128 + signal
        if _signal is None and not isinstance(e, KeyboardInterrupt):
            raise
        sig = _signal or signal.SIGINT
        print(f"\ninterrupted by {signal.Signals(sig).name}: finished runs are stored, the running "
              "one is marked interrupted; run the same command again to resume", file=sys.stderr)
        if _signal is not None:
            # Everything is stored (the storage commits per write); the interpreter's teardown of
            # torch and Lightning takes seconds on a busy machine, and a signal asks for an exit now.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + sig)
        return 128 + sig
