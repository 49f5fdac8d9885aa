"""Commands that never train start without Lightning (about 5 s of CPU: it imports torch._dynamo),
and commands that compute no statistic or read no audio start without scipy.stats, scipy.signal
and soundfile (2 s each for the scipy ones); see bench/lightning.py. Each case runs the CLI in a fresh interpreter,
as a user does, and checks the result as well as what was imported."""
import subprocess
import sys

import pytest

PROBE = """
import sys
from bench.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = ("pytorch_lightning", "torch._dynamo", "scipy.signal", "scipy.stats", "statsmodels", "soundfile")
print("EXIT", code, "IMPORTED", ",".join(m for m in heavy if m in sys.modules), file=sys.stderr)
"""


def probe(*args: str, cwd=None) -> tuple[str, str, int, set[str]]:
    p = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                       timeout=300, cwd=cwd)
    last = p.stderr.strip().splitlines()[-1].split()
    assert last[0] == "EXIT", p.stderr
    imported = set(last[3].split(",")) if len(last) > 3 else set()
    return p.stdout, p.stderr, int(last[1] if last[1] != "None" else 0), imported


@pytest.mark.parametrize("args, fragment", [
    (("run", "--task", "adding", "--cells", "nope"), "unknown cell 'nope'"),
    (("run", "--task", "adding:T=0", "--cells", "lstm"), "T=0 is out of range"),
    (("worker", "--task", "adding", "--cells", "lstm", "--storage", "sqlite:////nonexistent/x.db"),
     "folder '/nonexistent' does not exist"),
])
def test_refused_input_starts_without_lightning_or_scipy(args, fragment):
    _, err, code, imported = probe(*args)
    assert code == 2 and fragment in err
    assert imported == set(), imported


def test_list_starts_without_lightning_or_scipy():
    out, _, code, imported = probe("list")
    assert code == 0 and "momentum_lstm" in out and "adding" in out
    assert imported == set(), imported


def test_training_still_imports_lightning_and_keeps_it_quiet(tmp_path):
    """The other side: a run trains with Lightning, its INFO lines ("GPU available", "💡 Tip")
    stay silenced although the CLI set their level before Lightning was imported."""
    url = f"sqlite:///{tmp_path / 'b.db'}"
    out, err, code, imported = probe("run", "--task", "adding", "--cells", "lstm", "--budget", "smoke",
                                     "--no-progress", "--storage", url)
    assert code == 0 and "| lstm " in out
    assert "pytorch_lightning" in imported
    assert "GPU available" not in err + out and "Tip" not in err + out
    # report computes statistics but never trains
    out, _, code, imported = probe("report", "--task", "adding", "--budget", "smoke", "--storage", url)
    assert code == 0 and "| lstm " in out and "trivial solution" in out
    assert "pytorch_lightning" not in imported and "scipy.stats" in imported
