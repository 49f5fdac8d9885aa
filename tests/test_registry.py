"""Registry, spec strings and hyperparameter checks."""
import pytest

from bench import create_cell, list_cells
from bench.errors import UserError
from bench.registry import list_ablations, parse_cells, parse_spec


def test_issue_cells_registered():
    names = list_cells()
    for n in ("lstm", "gru", "momentum_rnn", "momentum_lstm"):
        assert n in names
    assert "momentum_lstm/no_momentum" in list_ablations("momentum_lstm")
    assert not any("/" in n for n in names)            # ablations are listed separately


def test_patterns_like_timm():
    assert list_cells("momentum_*") and all(n.startswith("momentum_") for n in list_cells("momentum_*"))
    assert list_cells("no_such_*") == []


def test_spec_fixed_hparams_leave_tuning():
    spec = parse_spec("momentum_lstm[mu=0.3,s=0.6]")
    assert spec.fixed_hparams() == {"mu": 0.3, "s": 0.6}
    assert "mu" not in spec.tunable() and "s" not in spec.tunable()
    assert str(spec) == "momentum_lstm[mu=0.3,s=0.6]"
    cell = create_cell(spec, 2, 8)
    assert (cell.mu, cell.s) == (0.3, 0.6)


def test_ablation_fixes_mu():
    spec = parse_spec("momentum_lstm/no_momentum")
    assert spec.fixed_hparams()["mu"] == 0.0 and "mu" not in spec.tunable()
    assert create_cell(spec, 1, 4, mu=0.9).mu == 0.0     # the ablation wins over a keyword


def test_parse_cells_all_and_brackets():
    specs = parse_cells("lstm,momentum_lstm[mu=0.3,s=0.5]")
    assert [str(s) for s in specs] == ["lstm", "momentum_lstm[mu=0.3,s=0.5]"]
    assert [str(s) for s in parse_cells("all")] == list_cells()
    with_abl = [str(s) for s in parse_cells("momentum_lstm", ablations=True)]
    assert with_abl == ["momentum_lstm", "momentum_lstm/no_momentum"]


@pytest.mark.parametrize("text, fragment", [
    ("nope", "unknown cell 'nope'"),
    ("momentum_lstm/nope", "unknown ablation"),
    ("momentum_lstm[mu=1.0]", "mu=1.0 is out of range; valid: [0, 1)"),
    ("momentum_lstm[mu=-0.1]", "out of range"),
    ("momentum_lstm[s=0]", "s=0.0 is out of range; valid: (0, inf)"),
    ("momentum_lstm[zeta=1]", "unknown hyperparameter 'zeta'"),
    ("momentum_lstm[mu=abc]", "is not a float"),
    ("lstm[", "malformed cell spec"),
])
def test_bad_specs(text, fragment):
    with pytest.raises(UserError, match=None) as e:
        parse_cells(text)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_hidden():
    with pytest.raises(UserError, match="hidden size 0"):
        create_cell("lstm", 1, 0)
