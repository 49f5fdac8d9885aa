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
