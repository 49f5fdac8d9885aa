"""Registry, spec strings and hyperparameter checks."""
import pytest

from bench import create_cell, list_cells
from bench.errors import UserError
from bench.registry import list_ablations, parse_cells, parse_spec
from tests.conftest import assert_one_line_error


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
    assert spec.pinned() == {"mu": 0.3, "s": 0.6}
    assert "mu" not in spec.searched() and "s" not in spec.searched()
    assert str(spec) == "momentum_lstm[mu=0.3,s=0.6]"
    cell = create_cell(spec, 2, 8)
    assert (cell.mu, cell.s) == (0.3, 0.6)


def test_ablation_fixes_mu():
    spec = parse_spec("momentum_lstm/no_momentum")
    assert spec.pinned()["mu"] == 0.0 and "mu" not in spec.searched()
    assert create_cell(spec, 1, 4, mu=0.9).mu == 0.0     # the ablation wins over a keyword


def test_parse_cells_all_and_brackets():
    specs = parse_cells("lstm,momentum_lstm[mu=0.3,s=0.5]")
    assert [str(s) for s in specs] == ["lstm", "momentum_lstm[mu=0.3,s=0.5]"]
    assert [str(s) for s in parse_cells("all")] == list_cells()
    with_abl = [str(s) for s in parse_cells("momentum_lstm", ablations=True)]
    assert with_abl[0] == "momentum_lstm" and with_abl[1:] == list_ablations("momentum_lstm")
    assert {"momentum_lstm/no_momentum", "momentum_lstm/s_one", "momentum_lstm/state_momentum"} \
        <= set(with_abl)


@pytest.mark.parametrize("text, fragment", [
    ("nope", "unknown cell 'nope'"),
    ("momentum_lstm/nope", "unknown ablation"),
    ("momentum_lstm[mu=1.0]", "mu=1.0 is out of range; valid: [0, 1)"),
    ("momentum_lstm[mu=-0.1]", "out of range"),
    ("momentum_lstm[s=0]", "s=0.0 is out of range; valid: (0, inf)"),
    ("momentum_lstm[zeta=1]", "unknown hyperparameter 'zeta'"),
    ("momentum_lstm[mu=abc]", "is not a float"),
    ("lstm[", "malformed cell spec"),
    ("momentum_lstm[mu=0.3,mu=0.5]", "mu given twice"),
    ("dtriv[K=1e400]", "K='1e400' is not an int"),
    ("", "no cells selected"),
    (",", "no cells selected"),
])
def test_bad_specs(text, fragment):
    assert_one_line_error(lambda: parse_cells(text), fragment)


def test_bad_hidden():
    with pytest.raises(UserError, match="hidden size 0"):
        create_cell("lstm", 1, 0)


def test_one_precedence_rule():
    """registered default < preset [cells.BASE] < [cells.NAME] < ablation < spec [k=v] < tuned."""
    preset = {"momentum_lstm": {"mu": 0.3, "s": 0.2, "forget_bias": 2.0},
              "momentum_lstm/no_momentum": {"s": 0.4}}
    plain = parse_spec("momentum_lstm")
    assert plain.resolve() == {"mu": 0.6, "s": 0.6, "forget_bias": 1.0}          # registered
    assert plain.resolve(preset) == {"mu": 0.3, "s": 0.2, "forget_bias": 2.0}    # preset
    assert set(plain.searched(preset)) == set()                                   # all pinned
    abl = parse_spec("momentum_lstm/no_momentum")
    # the base's preset reaches its ablation, the ablation's own table beats it, mu=0 beats both
    assert abl.resolve(preset) == {"mu": 0.0, "s": 0.4, "forget_bias": 2.0}
    user = parse_spec("momentum_lstm[s=0.9]")
    assert user.resolve(preset) == {"mu": 0.3, "s": 0.9, "forget_bias": 2.0}     # spec beats preset
    assert plain.resolve({}, {"mu": 0.1}) == {"mu": 0.1, "s": 0.6, "forget_bias": 1.0}  # tuned
    assert set(plain.searched({})) == {"mu", "s"}
    assert parse_spec("chrono_lstm").resolve(context={"seq_len": 50}) == {"t_max": 50}
    with pytest.raises(UserError, match="mu=1.5 is out of range"):
        plain.resolve({}, {"mu": 1.5})


def test_family_selects_by_package():
    momentum = [str(s) for s in parse_cells("family:momentum")]
    assert "momentum_lstm" in momentum and "adam_dtriv" in momentum and "lstm" not in momentum
    assert "lstm" in [str(s) for s in parse_cells("family:baselines")]
    with pytest.raises(UserError, match="unknown family 'nope'; valid: baselines, momentum"):
        parse_cells("family:nope")
