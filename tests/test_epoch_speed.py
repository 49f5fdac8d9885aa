"""`data fake` (synthetic MNIST IDX files) and `speed --task` (one training epoch per cell)."""
import hashlib
import math
import sys

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.task import parse_task
from tasks import mnist

FAKE = ["data", "fake", "--task", "pmnist"]


def snapshot(root):
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def table(out: str) -> list[dict]:
    """The rows of the github table in ``out``, numbers as floats."""
    lines = [ln for ln in out.splitlines() if ln.startswith("|")]
    head = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = []
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows.append({h: (c if h in ("cell", "how") else float(c)) for h, c in zip(head, cells)})
    return rows


def test_data_fake_writes_files_the_loader_reads(tmp_path, capsys):
    root = tmp_path / "fake"                  # created by the command
    assert main([*FAKE, "--data-dir", str(root), "--n-train", "100", "--n-test", "20"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "not for accuracy" in out
    assert sorted(p.name for p in root.iterdir()) == sorted(n + ".gz" for n in mnist.FILES.values())
    # the same arrays as the library writer with the same seed, through the validating reader
    expected = mnist.write_fake_mnist(tmp_path / "lib", n_train=100, n_test=20)
    loaded = mnist.load(root)
    assert np.array_equal(loaded["train_images"], expected["train_images"].reshape(100, 784))
    assert np.array_equal(loaded["test_labels"], expected["test_labels"])
    # the class cue: rows 2 + 2c and 3 + 2c are bright, the rest is noise below 60
    img, label = expected["train_images"][0], int(expected["train_labels"][0])
    assert (img[2 + 2 * label] == 255).all() and (img[3 + 2 * label] == 255).all()
    assert img[[r for r in range(28) if r not in (2 + 2 * label, 3 + 2 * label)]].max() < 60
    task = parse_task(f"pmnist:data_dir={root}").build().configure(batch_size=16, train_seed=0)
    s = task.summary()
    assert (s["train images"], s["val images"], s["test images"]) == (90, 10, 20)
    x, y = next(iter(task.train_dataloader()))
    assert x.shape == (16, 784, 1) and x.dtype == torch.float32 and y.shape == (16,)


@pytest.mark.parametrize("present", ["all", "one raw file in a subfolder"])
def test_data_fake_never_overwrites(tmp_path, capsys, present):
    if present == "all":
        mnist.write_fake_mnist(tmp_path, n_train=30, n_test=10)
        culprit = tmp_path / "train-images-idx3-ubyte.gz"
    else:
        culprit = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
        culprit.parent.mkdir(parents=True)
        culprit.write_bytes(b"not really")
    before = snapshot(tmp_path)
    assert main([*FAKE, "--data-dir", str(tmp_path), "--n-train", "50", "--n-test", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{culprit} already exists" in err, err
    assert snapshot(tmp_path) == before


def test_data_fake_only_for_mnist_tasks(tmp_path, capsys):
    assert main(["data", "fake", "--task", "adding", "--data-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "valid: pmnist, smnist" in err
    assert not (tmp_path / "x").exists()


def test_speed_task_projects_the_epoch(tmp_path, capsys):
    mnist.write_fake_mnist(tmp_path, n_train=200, n_test=20)
    assert main(["speed", "epoch", "--task", "pmnist", "--data-dir", str(tmp_path), "--cells",
                 "lstm,momentum_lstm", "--batch", "16", "--hidden", "8", "--batches", "3"]) == 0
    out = capsys.readouterr().out
    assert "first 3 train and validation batches timed" in out.splitlines()[0]
    rows = table(out)
    assert [r["cell"] for r in rows] == ["lstm", "momentum_lstm"]
    n_split = 200 - round(200 * 0.1)                   # pmnist trains on 90% of n_train
    for r in rows:
        assert r["how"] == "projected" and r["hidden"] == 8 and r["params"] > 0
        assert r["batches"] == math.ceil(n_split / 16) == 12
        assert r["val_batches"] == 1                   # 20 validation images, eval batch 1000
        assert r["s_per_batch"] > 0 and r["train_s"] > 0 and r["val_s"] > 0
        assert r["train_s"] == pytest.approx(r["s_per_batch"] * r["batches"], rel=0.02)
        assert r["epoch_s"] == pytest.approx(r["train_s"] + r["val_s"], rel=0.02)


def test_speed_task_whole_epoch_is_measured(tmp_path, capsys):
    mnist.write_fake_mnist(tmp_path, n_train=40, n_test=10)
    assert main(["speed", "epoch", "--task", "smnist", "--data-dir", str(tmp_path), "--cells", "lstm",
                 "--batch", "16", "--hidden", "4"]) == 0
    out = capsys.readouterr().out
    assert "whole epoch timed" in out.splitlines()[0]
    (r,) = table(out)
    assert r["how"] == "measured" and r["batches"] == 3 and r["epoch_s"] > r["train_s"] > 0


def test_speed_task_synthetic_without_data_dir(capsys):
    assert main(["speed", "epoch", "--task", "adding:T=20,n_train=64,n_val=32", "--cells", "gru",
                 "--batch", "16", "--hidden", "4", "--batches", "2"]) == 0
    (r,) = table(capsys.readouterr().out)
    assert r["how"] == "projected" and r["batches"] == 4 and r["epoch_s"] > 0


@pytest.mark.parametrize("args, fragment", [
    (["--task", "pmnist", "--batches", "0"], "valid: a positive integer"),
    (["--task", "pmnist"], "MNIST not found"),
    (["--task", "adding", "--seq", "10"], "unrecognized arguments: --seq 10"),
    (["--task", "adding", "--data-dir", "/nowhere"], "unknown option 'data_dir'"),
])
def test_speed_task_bad_input(args, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))       # empty: no MNIST here
    monkeypatch.setitem(sys.modules, "torchvision", None)     # and no download
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(["speed", "epoch", "--cells", "lstm", *args]))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and fragment in err, err


def test_old_speed_spelling_still_works_with_a_deprecation_line(capsys):
    assert main(["speed", "--task", "adding:T=20,n_train=64,n_val=32", "--cells", "gru",
                 "--batch", "16", "--hidden", "4", "--batches", "2"]) == 0
    out = capsys.readouterr()
    assert out.err.strip() == ("bench: `speed` without a mode is deprecated and goes in the next "
                               "release; use `speed epoch`")
    (r,) = table(out.out)
    assert r["how"] == "projected" and r["batches"] == 4


def test_kernel_flags_are_refused_by_epoch_and_the_reverse(capsys):
    with pytest.raises(SystemExit) as e:
        main(["speed", "kernel", "--batches", "3"])
    assert e.value.code == 2 and "unrecognized arguments: --batches 3" in capsys.readouterr().err
