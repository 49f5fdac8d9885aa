"""Synthetic tasks: shapes, trivial scores measured on generated data, data independent of training seed."""
import math

import pytest
import torch

from bench.task import parse_task
from tests.conftest import assert_one_line_error


def batches(text, seed=0, bs=16):
    data = parse_task(text).build()
    data.configure(bs, seed)
    return data, list(data.train_dataloader())


def test_adding_shapes_and_markers():
    data, train = batches("adding:T=30,n_train=64")
    x, y = train[0]
    assert x.shape == (16, 30, 2) and y.shape == (16, 1)
    marker = x[..., 1]
    assert torch.all(marker.sum(1) == 2)
    assert torch.all(marker[:, :15].sum(1) == 1) and torch.all(marker[:, 15:].sum(1) == 1)
    torch.testing.assert_close(y[:, 0], (x[..., 0] * marker).sum(1))
    assert data.spec.readout == "last" and data.spec.input_size == 2


def test_adding_trivial_score_measured():
    data = parse_task("adding:T=50,n_test=20000").build()
    _, y = data.split("test")
    measured = float(((y - 1.0) ** 2).mean())       # always predict 1
    assert abs(measured - data.spec.trivial) < 0.01
    assert abs(data.spec.trivial - 0.167) < 1e-3


def test_copy_layout_and_trivial_score():
    L = 40
    data = parse_task(f"copy:L={L},n_test=500").build()
    x_tok, y_tok = data.split("test")
    assert x_tok.shape == (500, L + 20)
    assert torch.all((x_tok[:, :10] >= 1) & (x_tok[:, :10] <= 8))
    assert torch.all(x_tok[:, 10:L + 10] == 0) and torch.all(x_tok[:, L + 10] == 9)
    assert torch.all(x_tok[:, L + 11:] == 0)
    assert torch.all(y_tok[:, :L + 10] == 0) and torch.equal(y_tok[:, -10:], x_tok[:, :10])
    x, y = data.transform(x_tok, y_tok)
    assert x.shape == (500, L + 20, 10) and y.dtype == torch.long
    # Trivial solution: blank with certainty, then uniform over the 8 symbols.
    logits = torch.full((500, L + 20, 9), -1e9)
    logits[:, :L + 10, 0] = 0
    logits[:, L + 10:, 1:] = 0
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, 9), y.reshape(-1))
    assert math.isclose(float(ce), data.spec.trivial, rel_tol=1e-5)
    assert math.isclose(data.spec.trivial, 10 * math.log(8) / (L + 20))


def samples(task, seed):
    """The training inputs a training seed sees: as a set of sequences, and in batch order."""
    order = [tuple(t.flatten().tolist()) for x, _ in batches(task, seed)[1] for t in x]
    assert len(set(order)) == len(order)       # no sequence twice: the set is the data
    return set(order), order


@pytest.mark.parametrize("task", ["adding:T=20,n_train=64", "copy:L=5,n_train=64"])
def test_training_seed_orders_but_never_changes_data(task):
    set_1, order_1 = samples(task, seed=1)
    set_2, order_2 = samples(task, seed=2)
    assert set_1 == set_2                      # another training seed: the same sequences ...
    assert order_1 != order_2                  # ... in another batch order
    set_3, _ = samples(task + ",data_seed=5", seed=1)
    assert set_3.isdisjoint(set_1)             # the data seed is what changes data
    val = [parse_task(t).build().split("val")[0] for t in (task, task + ",data_seed=5")]
    assert not torch.equal(*val)


def test_fresh_training_set_per_epoch_is_seeded_by_data_seed():
    data, _ = batches("adding:T=10,n_train=32,fresh=true")
    loader = data.train_dataloader()
    e0, e1 = [torch.cat([b[0] for b in loader]) for _ in range(2)]
    assert not torch.equal(e0.sort(0).values, e1.sort(0).values)


def test_task_id_is_canonical():
    a = parse_task("adding:T=200").id
    assert a.startswith("adding:T=200,") and a == parse_task("adding:n_val=1000,T=200").id


@pytest.mark.parametrize("text, fragment", [
    ("nope", "unknown task 'nope'"),
    ("adding:Q=3", "unknown option 'Q'"),
    ("adding:T=1", "T=1 is out of range"),
    ("adding:T=abc", "is not an int"),
    ("copy:L", "malformed option 'L'"),
    ("adding:T=20,T=30", "T given twice (T=20, T=30)"),
    ("adding:T=1e400", "T='1e400' is not an int"),
    ("adding:T=1e9", "T=1000000000 is out of range; valid: [2, 100000]"),
    ("adding:T=100000,n_train=1000000", "take 745.1 GiB; valid: at most 2 GiB per split"),
    ("adding:fresh=2", "fresh='2' is not a bool"),
])
def test_bad_task_options(text, fragment):
    # the CLI builds the task before it opens a storage
    assert_one_line_error(lambda: parse_task(text).build(), fragment)
