"""bench.graphs without a GPU: where graphs apply, and the eager fallback when a capture fails
(the replay itself is checked against eager training on CUDA in tests/test_cuda.py)."""
import pytest
import torch

from bench import create_cell
from bench import graphs


def test_graphs_apply_only_to_cuda_training_with_autograd():
    x = torch.zeros(2, 3, 1)
    assert not graphs.enabled(x)                      # a CPU tensor
    cell = create_cell("janet", 1, 4)
    y = graphs.run_cell(cell, x)                      # eager on the CPU: no graph recorded
    assert y.shape == (2, 3, 4) and "_cuda_graphs" not in cell.__dict__


def pretend_failing_capture(monkeypatch):
    """From here on, pretend to be on a GPU whose graph capture fails."""
    monkeypatch.setattr(graphs, "enabled", lambda *t: True)
    monkeypatch.setattr(graphs, "_FUNCTION_GRAPHS", {})

    def fail(*args, **kwargs):
        raise RuntimeError("Cannot copy between CPU and CUDA tensors during CUDA graph capture")

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fail)


@pytest.mark.parametrize("name", ["janet", "nru", "dtriv"])      # dtriv: graphs its loop only
def test_failed_capture_falls_back_to_eager_with_a_warning(monkeypatch, name):
    torch.manual_seed(0)
    cell = create_cell(name, 2, 4, **({"memory_size": 4} if name == "nru" else {}))
    x = torch.randn(3, 5, 2)
    expected = cell(x)[0]
    pretend_failing_capture(monkeypatch)
    with pytest.warns(UserWarning, match="CUDA graph capture failed, running eagerly"):
        got = graphs.run_cell(cell, x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    got.sum().backward()                              # eager autograd still works
    assert all(p.grad is not None for p in cell.parameters() if p.requires_grad)


def test_varying_shapes_stop_graphing(monkeypatch):
    """Two shapes (full and last batch) get graphs; a third (TIMIT's padded lengths) turns them
    off for good, so no capture per batch and no graph per shape piles up."""
    monkeypatch.setattr(graphs, "enabled", lambda *t: True)
    captured = []

    def fake_capture(fn, sample_args, **kwargs):      # a stand-in graph that counts captures
        captured.append(tuple(sample_args[0].shape))
        return fn

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake_capture)
    cell = create_cell("janet", 1, 4)
    for T in (7, 7, 5, 7, 9, 7, 11):
        assert graphs.run_cell(cell, torch.randn(2, T, 1)).shape == (2, T, 4)
    assert captured == [(2, 7, 1), (2, 5, 1)]
    assert cell.__dict__["_cuda_graphs"].off and not cell.__dict__["_cuda_graphs"].graphs
