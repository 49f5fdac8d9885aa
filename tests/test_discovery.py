"""Discovery and the import graph: a new cell is one file with one decorator, and imports flow one way."""
import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import discovery, registry

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("bench", "baselines", "tasks")

INDRNN = '''\
"""IndRNN (Li et al. 2018): a throwaway cell written as a newcomer would."""
import torch
from torch import Tensor, nn

from bench.cell import Cell, State
from bench.registry import HParam, register_cell


@register_cell("indrnn", hparams=(HParam("u_max", 1.0, search=(0.5, 1.0), valid="(0, inf)"),))
class IndRNN(Cell):
    """IndRNN: h_t = relu(W x_t + u * h_{t-1} + b), one recurrent weight per unit."""

    def __init__(self, input_size: int, hidden_size: int, u_max: float):
        super().__init__(input_size, hidden_size)
        self.W = nn.Linear(input_size, hidden_size)
        self.u = nn.Parameter(torch.empty(hidden_size).uniform_(0, u_max))

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        h = torch.relu(self.W(x_t) + self.u * state[0])
        return h, (h,)
'''

TINY = '''\
name = "tiny"
description = "the throwaway-cell test"
trials = 1
seeds = 2
epochs = 1
batch_size = 32
hidden = 8
startup_trials = 1
optimizer = { name = "adam", lr = [1e-3, 1e-2] }
[tasks.adding]
T = 10
n_train = 64
n_val = 32
n_test = 32
'''


def plugin(tmp_path: Path, files: dict[str, str]) -> dict[str, str]:
    """A package ``mycells`` on a fresh path with these modules; the environment that finds it."""
    pkg = tmp_path / "plugins" / "mycells"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Cells of my own."""\n')
    for name, text in files.items():
        (pkg / name).write_text(text)
    return {**os.environ, "PYTHONPATH": f"{pkg.parent}{os.pathsep}{ROOT}",
            discovery.PLUGINS_ENV: "mycells"}


def bench(env: dict, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_every_discovered_module_registers_something():
    found = discovery.discover()
    assert set(discovery.PACKAGES) <= {m.rsplit(".", 1)[0] for m in found}
    empty = [m for m, names in found.items() if not names]
    assert not empty, f"modules in a cell/task package that register nothing: {empty}"
    # and everything registered came from a discovered module
    known = set(found)
    strays = [e.name for e in (*registry.registered_cells().values(),
                               *registry.registered_tasks().values()) if e.module not in known]
    assert not strays


def test_families_come_from_packages():
    fams = {e.name: e.family for e in registry.registered_cells().values()}
    assert fams["momentum_lstm"] == "momentum" and fams["lstm"] == "baselines"
    assert fams["momentum_lstm/no_momentum"] == "momentum"


def test_a_throwaway_cell_is_one_file(tmp_path):
    """One file, one decorator: the cell is in `list`, in `--cells all` and in the contract tests."""
    env = plugin(tmp_path, {"indrnn.py": INDRNN})
    listed = bench(env, "list")
    assert listed.returncode == 0, listed.stderr
    assert "indrnn" in listed.stdout and "[mycells] IndRNN: h_t = relu" in listed.stdout
    (tmp_path / "tiny.toml").write_text(TINY)
    run = bench(env, "run", "--task", "adding", "--cells", "all", "--budget",
                str(tmp_path / "tiny.toml"), "--storage", f"sqlite:///{tmp_path / 'x.db'}",
                "--no-progress")
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [line.split("|")[1].strip() for line in run.stdout.splitlines()
            if line.startswith("| ") and "cell" not in line]
    assert "indrnn" in rows and "lstm" in rows
    contract = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                               str(ROOT / "tests" / "test_cells.py"), "-k", "indrnn"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert contract.returncode == 0, contract.stdout[-2000:]
    for test in ("test_forward_equals_step_loop_and_split_calls",
                 "test_forward_gradients_equal_loop_gradients", "test_gradcheck[zero_state-indrnn]",
                 "test_gradcheck[carried_state-indrnn]", "test_finite_gradients_through_1000_steps"):
        name = test if "[" in test else f"{test}[indrnn]"
        assert f"{name} PASSED" in contract.stdout, contract.stdout[-2000:]


def test_a_name_registered_twice_is_refused(tmp_path):
    env = plugin(tmp_path, {"a.py": INDRNN, "b.py": INDRNN})
    out = bench(env, "list")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "bench: error: cell 'indrnn' registered twice: by mycells.a and by mycells.b; "
        "give one of them another name"]


def _imports(path: Path, module: str) -> set[str]:
    """Project modules a file imports (any depth: function-level imports count too)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for a in node.names:      # ``from pkg import sub`` imports the submodule pkg.sub
                out.add(f"{base}.{a.name}" if (ROOT / (base + "." + a.name).replace(".", "/")).exists()
                        or (ROOT / ((base + "." + a.name).replace(".", "/") + ".py")).exists()
                        else base)
    return {m for m in out if m.split(".")[0] in PROJECT}


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for top in PROJECT:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            graph[module] = _imports(path, module)
    return graph


def test_imports_flow_one_way():
    graph = import_graph()
    assert "bench.discovery" in graph["bench"] or graph["bench"] <= {"bench.discovery", "bench.registry"}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # the registry imports nothing that imports it; the families never import each other
    assert graph["bench.registry"] == {"bench.errors"}
    for m, deps in graph.items():
        if m.startswith("bench.momentum"):
            assert not any(d.startswith("baselines") for d in deps), (m, deps)
        if m.startswith("baselines"):
            assert not any(d.startswith("bench.momentum") for d in deps), (m, deps)
        if m.startswith("bench.kernels"):
            assert not any(d.startswith(("baselines", "bench.momentum")) for d in deps), (m, deps)


def test_the_package_imports_nothing_until_used():
    code = textwrap.dedent("""
        import sys, bench
        assert not any(m.startswith(("baselines", "tasks", "bench.registry")) for m in sys.modules)
        from bench import create_cell
        assert create_cell("momentum_lstm", 1, 4).mu == 0.6
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
