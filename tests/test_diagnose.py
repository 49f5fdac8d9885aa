"""diagnose: the recorded ||dL/dh_t|| equal autograd's derivative at each h_t computed directly."""
import math

import pytest
import torch

from bench import create_cell
from bench.diagnose import GradientFlow, hidden_grad_norms
from bench.model import SeqModel
from bench.task import parse_task


@pytest.mark.parametrize("name", ["lstm", "momentum_lstm", "gru"])
def test_norms_equal_the_derivative_at_each_hidden_state(name):
    torch.manual_seed(0)
    spec = parse_task("adding:T=12,n_train=8,n_val=8,n_test=8").build().spec
    model = SeqModel(create_cell(name, 2, 5).double(), spec, {"name": "adam", "lr": 1e-3}).double()
    x = torch.rand(6, 12, 2, dtype=torch.float64)
    y = torch.rand(6, 1, dtype=torch.float64)
    got = hidden_grad_norms(model.cell, lambda hs: model.loss_of_hidden(hs, y), x)
    for t in (0, 5, 11):
        # the fast path to step t, h_t made a leaf, the fast path from its state to the end
        _, state = model.cell(x[:, :t + 1])
        h_t = state[0].detach().requires_grad_(True)
        rest = (h_t, *(s.detach() for s in state[1:]))
        if t + 1 < x.shape[1]:
            tail, _ = model.cell(x[:, t + 1:], rest)
            hidden = torch.cat([torch.zeros(6, t, 5, dtype=torch.float64), h_t[:, None], tail], 1)
        else:
            hidden = torch.cat([torch.zeros(6, t, 5, dtype=torch.float64), h_t[:, None]], 1)
        (g,) = torch.autograd.grad(model.loss_of_hidden(hidden, y), h_t)
        assert got[t] == pytest.approx(float(g.norm(dim=-1).mean()), rel=1e-9)


def test_ratio_is_first_over_last():
    flow = GradientFlow("x", epochs=[0, 1], norms=[[0.5, 1.0, 2.0], [1.0, 1.0, 0.0]])
    assert flow.ratios()[0] == 0.25 and math.isnan(flow.ratios()[1])


def test_diagnose_command_writes_the_flow_and_stores_it(tmp_path):
    import json
    import os
    import subprocess
    import sys

    import optuna
    p = subprocess.run([sys.executable, "-m", "bench", "diagnose", "--task", "adding", "--cells",
                        "lstm", "--budget", "smoke", "--at", "0,2"], cwd=tmp_path, text=True,
                       capture_output=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert p.returncode == 0, p.stderr[-2000:]
    flow = json.loads((tmp_path / "runs" / "plots" / "gradflow-lstm.json").read_text())
    assert flow["epochs"] == [0, 2] and len(flow["norms"][0]) == 20          # T = 20 in smoke
    assert flow["ratios"][0] == pytest.approx(flow["norms"][0][0] / flow["norms"][0][-1])
    stored = optuna.load_study(study_name=next(n for n in optuna.get_all_study_names(
        f"sqlite:///{tmp_path / 'runs' / 'bench.db'}") if n.startswith("lstm · diagnose · adding T=20 · smoke")),
        storage=f"sqlite:///{tmp_path / 'runs' / 'bench.db'}")
    assert stored.user_attrs["norms"] == flow["norms"]
    assert stored.user_attrs["config_source"] == "registered defaults"
    rows = [line.split("|")[1:3] for line in p.stdout.splitlines() if line.startswith("| lstm")]
    assert [(c.strip(), e.strip()) for c, e in rows] == [("lstm", "0"), ("lstm", "2")]


def test_the_gradient_flow_picture_keeps_its_size_whatever_t(tmp_path):
    """The heatmap once grew 1.5 inches per time step (5242 px wide at T = 50, unreadable)."""
    import struct

    from bench import plots

    def size(T: int) -> tuple[int, int]:
        norms = [[10.0 ** (-t / 10) for t in range(T)] for _ in range(4)]
        png, svg = plots.gradient_flow(norms, [0, 1, 2, 3], [0.16, 0.1, 0.01], "mse", "t",
                                       tmp_path / f"g{T}")
        assert svg.read_text().lstrip().startswith("<?xml")
        return struct.unpack(">II", png.read_bytes()[16:24])      # the IHDR width and height

    w50, h50 = size(50)
    w1000, h1000 = size(1000)
    assert w50 < 1400 and abs(w1000 - w50) < 40 and h50 == h1000, (w50, w1000, h50, h1000)


def test_heatmap_labels_are_dark_on_light_squares(tmp_path):
    """The grid's labels were white on every square, unreadable on viridis' yellow (solved) end."""
    import numpy as np
    from matplotlib.figure import Figure

    from bench import plots
    im = Figure().add_subplot().imshow(np.array([[0.0, 1.0]]), cmap="viridis_r")
    assert plots._ink(im, 0.0) == "black" and plots._ink(im, 1.0) == "white"
    assert plots._ink(im, np.ma.masked) == "black"       # grey missing square
