"""pmnist / smnist on small IDX files written in the true format (no real MNIST here)."""
from __future__ import annotations

import gzip
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.errors import UserError
from bench.task import parse_task
from tasks import mnist
from tests.fakedata import MNIST_NAMES, idx_bytes, write_mnist


def build(text: str, data_dir) -> mnist.MNISTTask:
    sep = "," if ":" in text else ":"
    return parse_task(f"{text}{sep}data_dir={data_dir}").build()


def first_batch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(loader))


@pytest.mark.parametrize("gz", [True, False])
def test_idx_gzipped_and_raw_shapes_and_labels(tmp_path, gz):
    data = write_mnist(tmp_path, n_train=100, n_test=30, gz=gz)
    task = build("smnist:val_fraction=0.2", tmp_path).configure(batch_size=16, train_seed=0)
    assert task.summary()["train images"] == 80 and task.summary()["val images"] == 20
    x, y = first_batch(task.test_dataloader())
    assert x.shape == (30, 784, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(y, torch.from_numpy(data["test_labels"].astype(np.int64)))
    # raster order, one pixel per step, scaled to [0, 1]
    assert torch.allclose(x[:, :, 0], torch.from_numpy(data["test_images"].reshape(30, 784) / 255.0).float())
    assert task.spec.input_size == 1 and task.spec.seq_len == 784 and task.spec.readout == "last"
    xb, yb = first_batch(task.train_dataloader())
    assert xb.shape == (16, 784, 1) and 0 <= xb.min() and xb.max() <= 1


def test_wrong_magic_rejected(tmp_path):
    write_mnist(tmp_path, gz=False)
    labels = tmp_path / MNIST_NAMES["train_labels"]
    raw = bytearray(labels.read_bytes())
    raw[2:4] = b"\x08\x03"                       # an images magic in the labels file
    labels.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte: wrong magic number 2051 \(expected 2049"):
        mnist.load(tmp_path)


@pytest.mark.parametrize("how", ["raw", "gz-content", "gz-stream", "header"])
def test_truncation_rejected(tmp_path, how):
    write_mnist(tmp_path, gz=how != "raw")
    name = MNIST_NAMES["test_images"]
    if how == "raw":
        path = tmp_path / name
        path.write_bytes(path.read_bytes()[:-100])
    else:
        path = tmp_path / (name + ".gz")
        raw = gzip.decompress(path.read_bytes())
        if how == "gz-content":
            path.write_bytes(gzip.compress(raw[:-5]))
        elif how == "header":
            path.write_bytes(gzip.compress(raw[:10]))
        else:
            path.write_bytes(path.read_bytes()[:-40])   # the gzip stream itself is cut
    with pytest.raises(UserError, match=rf"{name}(\.gz)?: .*(truncated|end-of-stream|Compressed file ended)"):
        mnist.load(tmp_path)


def test_wrong_image_size_rejected(tmp_path):
    write_mnist(tmp_path, gz=False)
    (tmp_path / MNIST_NAMES["test_images"]).write_bytes(idx_bytes(np.zeros((50, 14, 14))))
    with pytest.raises(UserError, match="images are 14x14, expected 28x28"):
        mnist.load(tmp_path)


def test_permutation_from_data_seed_only(tmp_path):
    write_mnist(tmp_path, n_train=60, n_test=20)
    runs = [build("pmnist", tmp_path).configure(batch_size=8, train_seed=s) for s in (1, 2)]
    xs = [first_batch(t.test_dataloader())[0] for t in runs]
    assert torch.equal(xs[0], xs[1])
    expected = np.random.RandomState(92916).permutation(784)          # expRNN's permutation
    raw = build("smnist", tmp_path).configure(8, 1)
    x_raw = first_batch(raw.test_dataloader())[0]
    assert torch.equal(xs[0], x_raw[:, torch.from_numpy(expected)])
    assert not torch.equal(xs[0], x_raw)
    # the MomentumRNN-script option: one permutation per training seed
    per_seed = [build("pmnist:permute_per_seed=true", tmp_path).configure(8, s) for s in (1, 2)]
    a, b = (first_batch(t.test_dataloader())[0] for t in per_seed)
    assert not torch.equal(a, b)
    assert torch.equal(a, x_raw[:, torch.from_numpy(np.random.RandomState(1).permutation(784))])


def test_validation_split_disjoint_and_fixed(tmp_path):
    train, val = mnist.split_indices(1000, 0.1, 92916)
    assert len(val) == 100 and len(train) == 900
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(1000))
    train2, val2 = mnist.split_indices(1000, 0.1, 92916)
    assert torch.equal(val, val2) and torch.equal(train, train2)
    assert not torch.equal(val, mnist.split_indices(1000, 0.1, 1)[1])
    # through the task: the held-out images are those indices, whatever the training seed
    data = write_mnist(tmp_path, n_train=200, n_test=10)
    _, val_idx = mnist.split_indices(200, 0.1, 92916)
    for seed in (0, 5):
        x, y = first_batch(build("smnist", tmp_path).configure(64, seed).val_dataloader())
        assert torch.equal(y, torch.from_numpy(data["train_labels"][val_idx.numpy()].astype(np.int64)))


def test_missing_files_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)     # no download possible
    with pytest.raises(UserError) as err:
        _ = build("pmnist", tmp_path).spec
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path) in msg
    assert all(name in msg for name in MNIST_NAMES.values())


def test_env_var_and_subfolder(tmp_path, monkeypatch):
    write_mnist(tmp_path / "mnist", n_train=50, n_test=10)
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    task = parse_task("smnist").build()
    assert task.summary()["test images"] == 10
    assert "data_dir" not in parse_task(f"pmnist:data_dir={tmp_path}").id


def test_trivial_is_majority_class_accuracy(tmp_path):
    data = write_mnist(tmp_path, n_train=300, n_test=100)
    task = build("pmnist", tmp_path)
    train_idx, _ = mnist.split_indices(300, 0.1, 92916)
    majority = np.bincount(data["train_labels"][train_idx.numpy()], minlength=10).argmax()
    assert task.spec.trivial == pytest.approx(np.mean(data["test_labels"] == majority))
    assert "majority" in task.spec.trivial_note


def test_check_summary(tmp_path):
    write_mnist(tmp_path, n_train=40, n_test=12, gz=False)
    info = mnist.check(str(tmp_path))
    assert info["train"]["images"] == 40 and info["test"]["images"] == 12
    assert info["test"]["shape"] == [28, 28] and sum(info["test"]["per_class"]) == 12


def test_caps(tmp_path):
    write_mnist(tmp_path, n_train=100, n_test=40)
    s = build("smnist:n_train=20,n_val=5,n_test=7", tmp_path).summary()
    assert (s["train images"], s["val images"], s["test images"]) == (20, 5, 7)


def test_optional_torchvision_download(tmp_path, monkeypatch):
    """Absent files and torchvision importable: fetched through it (a stand-in module here)."""
    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append(train)
            write_mnist(Path(root) / "MNIST" / "raw", n_train=30, n_test=10)

    module = types.ModuleType("torchvision.datasets")
    module.MNIST = FakeMNIST
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.datasets", module)
    assert build("smnist", tmp_path).summary()["test images"] == 10 and calls == [True, False]

    def offline(*args, **kwargs):
        raise OSError("no network\nsecond line")

    module.MNIST = offline
    with pytest.raises(UserError, match="download failed: no network$"):
        _ = build("smnist", tmp_path / "other").spec


# ---- val_fraction=0: MomentumRNN's protocol (all 60k trained on, no validation split) ---------

def all_batches(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_val_fraction_zero_trains_on_every_image_and_chooses_on_trained_ones(tmp_path):
    """The synthetic train set stands for the 60,000: every image is trained on, nothing is held
    out, and the epoch is chosen on the images the default split would hold out (a subset of
    train here), never on test."""
    data = write_mnist(tmp_path, n_train=300, n_test=40)
    task = build("smnist:val_fraction=0", tmp_path).configure(batch_size=64, train_seed=7)
    s = task.summary()
    assert s["train images"] == 300 and s["val images"] == 30 and "none held out" in s["validation"]
    x, y = all_batches(task.train_dataloader())             # one epoch, shuffled by the seed
    pixels = torch.from_numpy(data["train_images"].reshape(300, 784) / 255.0).float()
    order = [int(np.flatnonzero((pixels == row).all(1))[0]) for row in x[:, :, 0]]
    assert sorted(order) == list(range(300))                 # each training image exactly once
    assert torch.equal(y, torch.from_numpy(data["train_labels"][order].astype(np.int64)))
    # the selection images: what val_fraction=0.1 holds out (randperm of the data seed), trained on
    held_out = torch.randperm(300, generator=torch.Generator().manual_seed(92916))[:30]
    xv, yv = all_batches(build("smnist:val_fraction=0", tmp_path).configure(64, 0).val_dataloader())
    assert torch.equal(xv[:, :, 0], pixels[held_out])
    assert torch.equal(yv, torch.from_numpy(data["train_labels"][held_out.numpy()].astype(np.int64)))
    default = build("smnist", tmp_path).configure(64, 0)
    assert torch.equal(all_batches(default.val_dataloader())[1], yv)      # same images, but...
    assert default.summary()["train images"] == 270                       # ...held out there
    # the trivial score: the majority class of all 300 training labels, scored on test
    majority = np.bincount(data["train_labels"], minlength=10).argmax()
    assert task.spec.trivial == pytest.approx(np.mean(data["test_labels"] == majority))
    # caps keep the selection images among the trained ones
    capped = build("smnist:val_fraction=0,n_train=100", tmp_path)
    xc, _ = all_batches(capped.configure(64, 0).train_dataloader())
    xs, _ = all_batches(capped.val_dataloader())
    assert xc.shape[0] == 100 and all((xc[:, :, 0] == row).all(1).any() for row in xs[:, :, 0])
    assert torch.equal(xs[:, :, 0], pixels[held_out[held_out < 100]])


def test_val_fraction_zero_with_per_seed_permutation_is_momentumrnn_protocol(tmp_path):
    data = write_mnist(tmp_path, n_train=50, n_test=10)
    task = build("pmnist:val_fraction=0,permute_per_seed=true", tmp_path).configure(8, 3)
    x, _ = first_batch(task.test_dataloader())
    raw = torch.from_numpy(data["test_images"].reshape(10, 784) / 255.0).float()
    assert torch.equal(x[:, :, 0], raw[:, torch.from_numpy(np.random.RandomState(3).permutation(784))])
    assert parse_task("pmnist:val_fraction=0,permute_per_seed=true").id == \
        "pmnist:data_seed=92916,n_test=0,n_train=0,n_val=0,permute_per_seed=True,val_fraction=0.0"
    with pytest.raises(UserError, match=r"val_fraction=1.0 is out of range; valid: \[0, 1\)"):
        parse_task("pmnist:val_fraction=1")


def test_val_fraction_zero_refuses_a_budget_that_tunes(tmp_path):
    """Tuning would choose hyperparameters on training images: refused in one line naming the
    value and the valid choices; a preset that tunes nothing (trials = 1) passes."""
    import dataclasses

    from bench.budget import load_budget
    from bench.registry import parse_spec
    write_mnist(tmp_path, n_train=40, n_test=10)
    task = build("pmnist:val_fraction=0", tmp_path)
    default = load_budget("default")                          # 6 trials, lr in a range
    with pytest.raises(UserError) as e:
        task.check_budget(default, [parse_spec("lstm"), parse_spec("momentum_lstm")])
    msg = str(e.value)
    assert "\n" not in msg
    assert msg == ("pmnist: val_fraction=0 holds out no validation split, so the 6 tuning trials "
                   "of budget default would choose lr, mu, s on training images; valid: "
                   "val_fraction in (0, 1), or val_fraction=0 with a preset that tunes nothing "
                   "(trials = 1, e.g. paper-pmnist-lstm)")
    # several trials over nothing to choose, one trial, or a held-out split: nothing refused
    fixed = dataclasses.replace(default, optimizer={"name": "adam", "lr": 1e-3})
    task.check_budget(fixed, [parse_spec("lstm")])
    task.check_budget(load_budget("paper-pmnist-lstm"), [parse_spec("momentum_lstm")])
    build("pmnist", tmp_path).check_budget(default, [parse_spec("momentum_lstm")])


def test_run_refuses_tuning_without_a_validation_split_and_writes_nothing(tmp_path):
    """What a user meets: `run` with val_fraction=0 and a tuning preset exits 2 with one line,
    before any storage exists."""
    import os
    import subprocess
    write_mnist(tmp_path / "data", n_train=40, n_test=10)
    p = subprocess.run([sys.executable, "-m", "bench", "run", "--task",
                        f"pmnist:val_fraction=0,data_dir={tmp_path / 'data'}", "--cells", "lstm",
                        "--budget", "smoke", "--no-progress"], cwd=tmp_path, capture_output=True,
                       text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "val_fraction=0 holds out no validation split" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_val_fraction_zero_run_reports_both_selections_from_its_curves(tmp_path):
    """One short run: the main value is the test accuracy at the epoch of best accuracy on the
    training images (the first such epoch), the published value the maximum test accuracy over
    epochs; both recomputed here from the per-epoch curves the run stored."""
    import dataclasses
    import math

    import pandas as pd

    from bench import report as rp
    from bench.budget import load_budget
    from bench.registry import parse_spec
    from bench.train import train_run
    write_mnist(tmp_path, n_train=64, n_test=32)
    task = build("smnist:val_fraction=0", tmp_path)
    task.setup("fit")
    budget = dataclasses.replace(load_budget("smoke"), epochs=4, batch_size=16)
    runs = []
    for seed in (1, 2):
        r = train_run(task, parse_spec("lstm"), {"forget_bias": 1.0}, 4, budget,
                      {"name": "adam", "lr": 3e-2}, seed=seed)
        assert len(r.curve) == len(r.test_curve) == 4
        best = max(range(4), key=lambda i: (r.curve[i], -i))          # first of the best
        assert r.best_epoch == best and r.test == pytest.approx(r.test_curve[best])
        runs.append(r)
    frame = pd.DataFrame([{"state": "COMPLETE", "curve": r.curve, "test_curve": r.test_curve}
                          for r in runs])
    published = sum(max(r.test_curve) for r in runs) / 2
    assert rp._best_test_any_epoch(frame, minimize=False) == pytest.approx(published)
    assert [rp.anytime_test(row, 4, False) for row in frame.itertuples()] == \
        pytest.approx([r.test for r in runs])
    assert published >= sum(r.test for r in runs) / 2 and not math.isnan(published)
    assert task.selection == ("the epoch of best accuracy on 6 training images "
                              "(val_fraction=0: no validation split)")
    assert build("smnist", tmp_path).selection == "the best validation epoch"
