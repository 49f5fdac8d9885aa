"""Every cell on a CUDA device computes what it computes on the CPU, and trains the same with
CUDA-graph replay as without (skipped without a GPU).

The CUDA fast paths differ from the CPU ones (cuDNN for the nn.LSTM/nn.RNN-based cells, adam_lstm's
filtered drive through cuDNN with an identity input weight), so the float64 CPU contract tests do
not cover them. Here the CUDA float32 forward, final state and every gradient are compared with
the CPU float64 ones, TF32 off (cuDNN and cuBLAS use TF32 by default, a ~1e-3 error by design).
"""
import contextlib
import copy

import pytest
import torch

from bench.kernels.orthogonal import modrelu_scan
from bench.graphs import _FUNCTION_GRAPHS, eager, run_cell

from tests.conftest import REGISTERED, make, random_state

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(autouse=True)
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("name", REGISTERED)
def test_cuda_float32_matches_cpu_float64(name):
    ref = make(name, inp=3, hidden=32)
    gpu = copy.deepcopy(ref).float().cuda()
    x = torch.randn(8, 100, 3, dtype=torch.float64)
    for state in (None, random_state(ref, 8)):
        outs = []
        for cell, dev, dt in ((ref, "cpu", torch.float64), (gpu, "cuda", torch.float32)):
            cell.zero_grad(set_to_none=True)
            xi = x.to(dev, dt, copy=True).requires_grad_()
            si = None if state is None else tuple(s.to(dev, dt) for s in state)
            y, final = cell(xi, si)
            (y.square().sum() + sum(f.sum() for f in final)).backward()
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in cell.parameters()]
            outs.append((y, final, xi.grad, grads))
        (y64, f64, gx64, g64), (y32, f32, gx32, g32) = outs
        errors = {"y": rel(y32, y64), "x.grad": rel(gx32, gx64)}
        errors |= {f"state{i}": rel(a, b) for i, (a, b) in enumerate(zip(f32, f64))}
        errors |= {f"grad {n}": rel(a, b) for (n, _), a, b in zip(ref.named_parameters(), g32, g64)}
        worst = max(errors, key=errors.get)
        assert errors[worst] < 1e-4, f"{name}: {worst} relative error {errors[worst]:.2e}"


@pytest.mark.parametrize("name", REGISTERED)
@pytest.mark.filterwarnings("error:.*CUDA graph capture failed")    # no silent eager fallback
def test_graph_replay_trains_like_eager(name):
    """Training steps with CUDA-graph replay (bench.graphs) equal eager ones: outputs, and the
    parameters after each optimizer step (so replays read the updated weights), including a new
    input shape (a last, smaller batch) that records a second graph."""
    cells = [make(name, inp=3, hidden=32).float().cuda() for _ in range(2)]
    cells[1].load_state_dict(cells[0].state_dict())
    opts = [torch.optim.SGD(c.parameters(), lr=0.05) for c in cells]
    g = torch.Generator(device="cuda").manual_seed(0)
    for batch in (8, 8, 5, 8):
        x = torch.randn(batch, 40, 3, device="cuda", generator=g)
        ys = []
        for cell, opt, graphs in zip(cells, opts, (True, False)):
            opt.zero_grad()
            with contextlib.nullcontext() if graphs else eager():
                y = run_cell(cell, x)
            y.square().mean().backward()
            opt.step()
            cell.after_optimizer_step()
            ys.append(y.detach().clone())
        torch.testing.assert_close(ys[0], ys[1], rtol=1e-5, atol=1e-6)
        for (n, p), q in zip(cells[0].named_parameters(), cells[1].parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=f"{name}: {n}")
    if cells[0].cuda_graph:          # one graph per input shape: batches of 8 and of 5
        assert len(cells[0].__dict__["_cuda_graphs"].graphs) == 2
    elif "dtriv" in name:            # the modrelu loop alone is graphed (bench.graphs.replay)
        assert _FUNCTION_GRAPHS[modrelu_scan].graphs


def test_copy_reproduction_trains_on_cuda_as_on_the_cpu(tmp_path):
    """scripts/reproduce/copy_task.py with --device cuda: the same weights and batches as on the
    CPU, so the first iterations' losses agree (float32 both, TF32 off) for a cuDNN cell and a
    graphed one."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "reproduce"))
    import copy_task
    losses = {}
    for device in ("cpu", "cuda"):
        with open(tmp_path / f"{device}.jsonl", "w") as f:
            rows, done = copy_task.train_all(["lstm", "dtriv"], "paper-copy", 10, 3, 0, f, 64, None,
                                             device)
        assert done == 3 and (rows[0]["device"] == "cpu") == (device == "cpu")
        losses[device] = [r["last100_train_ce"] for r in rows] + [r["test_ce"] for r in rows]
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=1e-4)
