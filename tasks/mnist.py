"""Sequential and permuted MNIST: 784 pixels read one per step, the class read at the last step.

Data: the four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each raw or ``.gz``) are looked up in the
task option ``data_dir`` or, when it is not given, in the environment variable
``BENCH_DATA_DIR``; in that folder itself or its ``mnist/`` or ``MNIST/raw/`` subfolder (where
torchvision puts them). Without either, ``~/.cache/momentum-bench`` is used. When the files are
absent and torchvision is installed, they are downloaded through it; torchvision is optional.
``write_fake_mnist`` (``python -m bench data fake``) writes synthetic files in the same format, of
noise plus a class stripe, for timing and tests only.

Protocol: pixels scaled to [0, 1]; the permutation comes from ``data_seed`` only
(``numpy.random.RandomState(data_seed).permutation(784)``, so the default 92916 is expRNN's and
scoRNN's permutation), identical across training seeds and cells. ``permute_per_seed=true``
reproduces the official MomentumRNN script, which drew the permutation from the training seed.
Validation is a fixed ``val_fraction`` of the training set chosen by ``data_seed``; the test set
is t10k. ``n_train``/``n_val``/``n_test`` (0 = all) cap each split for quick looks.

``val_fraction=0`` trains on all training images, as MomentumRNN's ``mnist.py`` did (it had no
validation split and reported the maximum test accuracy over its 150 epochs). Nothing is held out,
and the test split still never chooses anything: the epoch is chosen on the training images the
default split would hold out (``SELECTION_FRACTION`` of train, by ``data_seed``; here they are
trained on too), so the table's main value stays free of test selection, and a preset with
``protocol = "published"`` prints the maximum test value over epochs beside it, labelled as the
published selection. Tuning on those training images would choose hyperparameters for fitting
the training set: ``MNISTTask.check_budget`` refuses a budget that tunes anything (more than one
trial over a non-empty search space) with ``val_fraction=0``.

Trivial score: the accuracy on the test set of always predicting the majority class of the
training split (0.1135 on real MNIST: class 1), computed from the labels when first needed.
"""
from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from bench.errors import UserError
from bench.registry import Option, register_task
from bench.task import Batches, FileTaskData, TaskSpec

if TYPE_CHECKING:
    from bench.budget import Budget
    from bench.registry import CellSpec

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MAGIC = {"images": 2051, "labels": 2049}     # 0x0803: ubyte, 3 dims; 0x0801: ubyte, 1 dim
SIDE = 28
EVAL_BATCH = 1000


def data_root(data_dir: str | None) -> Path:
    """The folder named by ``data_dir``, else ``$BENCH_DATA_DIR``, else the user cache."""
    d = data_dir or os.environ.get("BENCH_DATA_DIR") or "~/.cache/momentum-bench"
    return Path(d).expanduser()


def _candidates(root: Path, stem: str) -> list[Path]:
    dirs = (root, root / "mnist", root / "MNIST" / "raw")
    names = (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz")
    return [d / n for d in dirs for n in names]


def find_files(root: Path) -> dict[str, Path] | None:
    """Paths of the four IDX files under ``root``, or None if any is missing."""
    found = {}
    for key, stem in FILES.items():
        path = next((p for p in _candidates(root, stem) if p.is_file()), None)
        if path is None:
            return None
        found[key] = path
    return found


def missing_message(root: Path) -> str:
    names = ", ".join(f"{s}[.gz]" for s in FILES.values())
    return (f"MNIST not found: put {names} in {root} (or pass --data-dir DIR, or set BENCH_DATA_DIR; "
            f"with torchvision installed and a network they are downloaded)")


def read_idx(path: Path, kind: str) -> np.ndarray:
    """Read one IDX file (raw or gzipped) of ``kind`` 'images' or 'labels', checking it fully."""
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:          # EOFError: a truncated gzip stream
        raise UserError(f"{path}: cannot read ({e})") from None
    if len(raw) < 4:
        raise UserError(f"{path}: truncated ({len(raw)} bytes, no IDX header)")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != MAGIC[kind]:
        raise UserError(f"{path}: wrong magic number {magic} (expected {MAGIC[kind]} for IDX {kind})")
    ndim = magic & 0xFF
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise UserError(f"{path}: truncated (header needs {head} bytes, file has {len(raw)})")
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    size = int(np.prod(dims))
    if len(raw) - head != size:
        what = "truncated" if len(raw) - head < size else "too long"
        raise UserError(f"{path}: {what} ({len(raw) - head} data bytes, header {list(dims)} "
                        f"promises {size})")
    if kind == "images" and dims[1:] != (SIDE, SIDE):
        raise UserError(f"{path}: images are {dims[1]}x{dims[2]}, expected {SIDE}x{SIDE}")
    arr = np.frombuffer(raw, np.uint8, offset=head).reshape(dims)
    if kind == "labels" and arr.size and arr.max() > 9:
        raise UserError(f"{path}: label {int(arr.max())} out of range 0..9")
    return arr


def load(root: Path) -> dict[str, np.ndarray]:
    """Images (N, 784) uint8 and labels (N,) uint8 of the train and t10k sets, validated."""
    paths = find_files(root)
    if paths is None:
        raise UserError(missing_message(root))
    out = {}
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"], "images")
        labels = read_idx(paths[f"{split}_labels"], "labels")
        if len(images) != len(labels):
            raise UserError(f"{paths[f'{split}_labels']}: {len(labels)} labels for "
                            f"{len(images)} images in {paths[f'{split}_images']}")
        if not len(images):
            raise UserError(f"{paths[f'{split}_images']}: the {split} split is empty")
        out[f"{split}_images"] = images.reshape(len(images), SIDE * SIDE)
        out[f"{split}_labels"] = labels
    return out


def _download(root: Path) -> bool:
    """Fetch MNIST through torchvision if it is installed; False when it is not."""
    try:
        from torchvision.datasets import MNIST
    except ImportError:
        return False
    try:
        for train in (True, False):
            MNIST(str(root), train=train, download=True)
    except Exception as e:                     # network or disk: say so in one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{missing_message(root)}; torchvision download failed: {msg}") from None
    return True


def check(data_dir: str | None = None) -> dict:
    """Validate the IDX files (no download) and summarise what was found."""
    root = data_root(data_dir)
    data = load(root)
    paths = find_files(root) or {}
    summary: dict = {"files": {k: str(p) for k, p in paths.items()}}
    for split in ("train", "test"):
        labels = data[f"{split}_labels"]
        summary[split] = {"images": len(labels), "shape": [SIDE, SIDE],
                          "per_class": np.bincount(labels, minlength=10).tolist()}
    return summary


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file: magic 0x08 (ubyte) + ndim, big-endian dims, then the uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.tobytes()


def existing_files(root: Path) -> list[Path]:
    """Every MNIST IDX file (raw or gzipped) that the loader would look at under ``root``."""
    return [p for stem in FILES.values() for p in _candidates(Path(root), stem) if p.is_file()]


def write_fake_mnist(directory: str | Path, n_train: int = 60000, n_test: int = 10000,
                     gz: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    """Write four synthetic IDX files (noise plus a class stripe); return the arrays written.

    Not MNIST: each image is uniform noise in [0, 60) with rows ``2 + 2 * label`` and
    ``3 + 2 * label`` set to 255, a cue a model can learn. For timing and tests only. Existing
    files of the same names are overwritten (the CLI refuses before calling this).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, SIDE, SIDE)).astype(np.uint8)
        rows, index = 2 + 2 * labels.astype(np.intp), np.arange(n)
        images[index, rows] = images[index, rows + 1] = 255      # a learnable class cue
        data[f"{split}_images"], data[f"{split}_labels"] = images, labels
    for key, name in FILES.items():
        raw = idx_bytes(data[key])
        path = directory / (name + ".gz" if gz else name)
        partial = path.with_name(path.name + ".partial")    # an interrupted write leaves no IDX file
        partial.write_bytes(gzip.compress(raw) if gz else raw)
        os.replace(partial, path)
    return data


def permutation(seed: int) -> Tensor:
    """The pixel order for ``seed``: exactly expRNN's ``RandomState(seed).permutation(784)``."""
    return torch.from_numpy(np.random.RandomState(seed).permutation(SIDE * SIDE))


#: with ``val_fraction=0``: the share of the training images the epoch is chosen on (trained on too)
SELECTION_FRACTION = 0.1


def split_indices(n: int, val_fraction: float, data_seed: int) -> tuple[Tensor, Tensor]:
    """A fixed (train, val) partition of ``range(n)`` drawn from the data seed. ``val_fraction=0``
    holds nothing out: train is all of ``range(n)`` and "val" the ``SELECTION_FRACTION`` of it
    that the default split would hold out, a subset of train."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(data_seed))
    if val_fraction == 0:
        return torch.arange(n), order[:max(1, round(n * SELECTION_FRACTION))]
    n_val = max(1, round(n * val_fraction))
    return order[n_val:], order[:n_val]


class MNISTTask(FileTaskData):
    """Pixel-by-pixel MNIST, permuted (``pmnist``) or in raster order (``smnist``)."""

    def __init__(self, name: str, permute: bool, data_dir: str | None, data_seed: int,
                 val_fraction: float, permute_per_seed: bool = False, n_train: int = 0,
                 n_val: int = 0, n_test: int = 0):
        super().__init__()
        self.name, self.permute, self.permute_per_seed = name, permute, permute_per_seed
        self.root, self.data_seed, self.val_fraction = data_root(data_dir), data_seed, val_fraction
        self.caps = {"train": n_train, "val": n_val, "test": n_test}
        self._sets: dict[str, tuple[Tensor, Tensor]] | None = None
        self._spec = TaskSpec(name, input_size=1, output_size=10, seq_len=SIDE * SIDE,
                              readout="last", loss="ce", metric="accuracy", direction="maximize",
                              trivial=0.1, trivial_note="")

    def read_files(self) -> None:
        if find_files(self.root) is None:
            _download(self.root)
        data = load(self.root)
        train, val = split_indices(len(data["train_labels"]), self.val_fraction, self.data_seed)
        test = torch.arange(len(data["test_labels"]))
        images = {"train": data["train_images"], "val": data["train_images"], "test": data["test_images"]}
        labels = {"train": data["train_labels"], "val": data["train_labels"], "test": data["test_labels"]}
        if self.caps["train"]:
            train = train[:self.caps["train"]]
        if not self.held_out:       # choose on images that are trained on, whatever the caps
            val = val[torch.isin(val, train)] if self.caps["train"] else val
            val = val if len(val) else train[:1]
        self._sets = {}
        for split, idx in (("train", train), ("val", val), ("test", test)):
            cap = self.caps[split] if split != "train" else 0
            idx = idx[:cap] if cap else idx
            self._sets[split] = (torch.from_numpy(images[split][idx.numpy()]),
                                 torch.from_numpy(labels[split][idx.numpy()].astype(np.int64)))
        # the honest trivial solution: the training split's majority class, scored on test
        majority = int(torch.bincount(self._sets["train"][1], minlength=10).argmax())
        acc = float((self._sets["test"][1] == majority).float().mean())
        self._spec = replace(self._spec, trivial=acc, trivial_note=(
            f"always predict the training split's majority class ({majority}): test accuracy"))

    @property
    def held_out(self) -> bool:
        """Whether the validation images are held out of training (False for ``val_fraction=0``)."""
        return self.val_fraction > 0

    @property
    def selection(self) -> str:
        """What the epoch (and any tuning) is chosen on, in words for a table."""
        if self.held_out:
            return "the best validation epoch"
        n = len(self._sets["val"][1]) if self._sets else "a tenth of the"
        return f"the epoch of best accuracy on {n} training images (val_fraction=0: no validation split)"

    def check_budget(self, budget: Budget, specs: Sequence[CellSpec]) -> None:
        """Refuse tuning without a held-out split: with ``val_fraction=0`` a budget may run one
        trial, or several over an empty search space (nothing to choose), but never choose
        hyperparameters on training images."""
        if self.held_out or budget.trials == 1:
            return
        searched = sorted({k for spec in specs for k in spec.searched(budget.cells)} | (
            {"lr"} if _tunes_lr(budget.optimizer) else set()))
        if searched:
            raise UserError(
                f"{self.name}: val_fraction=0 holds out no validation split, so the {budget.trials} "
                f"tuning trials of budget {budget.name} would choose {', '.join(searched)} on "
                f"training images; valid: val_fraction in (0, 1), or val_fraction=0 with a preset "
                f"that tunes nothing (trials = 1, e.g. paper-pmnist-lstm)")

    def order(self) -> Tensor | None:
        """The pixel order of this run (None: raster order)."""
        if not self.permute:
            return None
        return permutation(self.train_seed if self.permute_per_seed else self.data_seed)

    eval_batch = EVAL_BATCH

    def batches(self, split: str, batch_size: int, seed: int | None) -> Batches:
        self.setup()
        perm = self.order()

        def transform(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            # stored as uint8 (47 MB for all of MNIST); scaled and permuted per batch
            if perm is not None:
                x = x[:, perm]
            return x.unsqueeze(-1).float().div_(255.0), y

        return Batches(self._sets[split], batch_size, seed, transform=transform)

    def summary(self) -> dict:
        self.setup()
        return {f"{k} images": len(v[1]) for k, v in self._sets.items()} | {
            "validation": "held out of train" if self.held_out else
                          "none held out: the epoch is chosen on training images",
            "permutation": ("none" if not self.permute else
                            "per training seed" if self.permute_per_seed else f"data_seed {self.data_seed}"),
            "trivial": round(self._spec.trivial, 4)}


OPTIONS = (
    Option("data_dir", None, kind=str, doc="folder with the IDX files (else $BENCH_DATA_DIR)"),
    Option("data_seed", 92916, kind=int, valid="[0, 4294967295]",
           doc="seed of the permutation and the validation split"),
    Option("val_fraction", 0.1, kind=float, valid="[0, 1)",
           doc="share of train held out for validation (0: none, train on all, as MomentumRNN did)"),
    Option("n_train", 0, kind=int, valid="[0, inf)", doc="cap on training images (0 = all)"),
    Option("n_val", 0, kind=int, valid="[0, inf)", doc="cap on validation images (0 = all)"),
    Option("n_test", 0, kind=int, valid="[0, inf)", doc="cap on test images (0 = all)"),
)


def _tunes_lr(opt: dict) -> bool:
    """Whether a budget's optimizer table has a learning-rate range (its own or a group's)."""
    return isinstance(opt.get("lr"), list) or any(isinstance(v, dict) and _tunes_lr(v)
                                                   for v in opt.values())


@register_task("pmnist", options=(*OPTIONS, Option(
    "permute_per_seed", False, kind=bool,
    doc="draw the permutation from the training seed (the official MomentumRNN script)")),
    local=("data_dir",))
def pmnist(**options) -> MNISTTask:
    """Permuted MNIST: 784 pixels in a fixed random order, one per step (accuracy)."""
    return MNISTTask("pmnist", True, **options)


@register_task("smnist", options=OPTIONS, local=("data_dir",))
def smnist(**options) -> MNISTTask:
    """Sequential MNIST: 784 pixels in raster order, one per step (accuracy)."""
    return MNISTTask("smnist", False, **options)
