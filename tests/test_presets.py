"""Paper presets say what their comments claim: checked against the preset files and the registry."""
import math

from bench.budget import load_budget
from bench.registry import create_cell, parse_spec
from bench.task import parse_task


def test_paper_timit_dtriv_starts_every_cell_from_henaff():
    """timit_div.py defaults to --init henaff and the recipes never override it."""
    b = load_budget("paper-timit-dtriv")
    for cell in ("dtriv", "momentum_dtriv", "adam_dtriv"):
        hp = parse_spec(cell).resolve(b.cells)
        assert hp["init"] == "henaff" and hp["K"] == math.inf, cell
    assert parse_spec("momentum_dtriv").resolve(b.cells)["mu"] == 0.3
    assert parse_spec("momentum_dtriv").resolve(b.cells)["s"] == 0.1


def test_adam_dtriv_defaults_are_the_logged_run():
    """run-adtriv-pmnist-gc-mu-0.3-epsilon-0.3-mus-0.8: mu 0.3, s (epsilon) 0.3, beta (mus) 0.8."""
    hp = create_cell("adam_dtriv", 1, 4).hparams
    assert (hp["mu"], hp["s"], hp["beta"]) == (0.3, 0.3, 0.8)


def test_preset_cell_tables_reach_ablations():
    """A base cell's [cells.X] table applies to its ablations; the ablation's own change wins."""
    b = load_budget("paper-pmnist-lstm")
    base = parse_spec("momentum_lstm").resolve(b.cells)
    abl = parse_spec("momentum_lstm/no_momentum").resolve(b.cells)
    assert abl["mu"] == 0.0 and abl["s"] == base["s"] and abl["forget_bias"] == base["forget_bias"]


def test_paper_lstm_presets_compare_against_the_official_baseline():
    for name, fb in (("paper-pmnist-lstm", 1.0), ("paper-timit-lstm", -4.0)):
        b = load_budget(name)
        assert b.declared()["reference"] == "lstm/official_init"
        assert parse_spec("lstm/official_init").resolve(b.cells)["forget_bias"] == fb
        assert parse_spec("momentum_lstm").resolve(b.cells)["forget_bias"] == fb


def test_paper_timit_presets_select_the_published_data():
    """`--task timit --budget paper-timit-*` is the published protocol (target frame t from input
    t+1, dev reported, loss over T steps, the original SA filter); plain `timit` is not."""
    published = {"target": "previous", "eval": "dev", "loss_norm": "padded", "sa_filter": "substring"}
    for name in ("paper-timit-lstm", "paper-timit-dtriv"):
        task = parse_task("timit", load_budget(name).tasks.get("timit", {}))
        assert {k: v for k, v in task.options if k in published} == published, name
    plain = dict(parse_task("timit").options)
    assert (plain["target"], plain["eval"], plain["loss_norm"], plain["sa_filter"]) == \
        ("next", "test", "valid", "name")
