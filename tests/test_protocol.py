"""The honest protocol, checked on values: tuning sees validation only, the test value is read at
the best-validation epoch with that epoch's weights, final seeds are not the tuning seeds, seeds
with no completed tuning trial get the registered defaults, and a verdict that flips between half
and the whole budget is marked."""
import dataclasses
import json
import math

import optuna
import pytest
import torch

from bench import report as rp
from bench.budget import load_budget
from bench.registry import create_cell, parse_spec
from bench.storage import open_storage
from bench.task import TaskConfig, parse_task
from bench.train import train_run
from bench.progress import Silent as Quiet
from bench.experiment import Experiment
from bench.tune import best_config, default_config
from bench.work import run_experiment
from tasks.synthetic import Adding

TASK = "adding:T=10,n_train=64,n_val=32,n_test=32"
SMOKE = load_budget("smoke")


class SpyAdding(Adding):
    """The adding task, recording which splits anything reads."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.touched: list[str] = []

    def batches(self, split, batch_size, seed):
        self.touched.append(split)
        return super().batches(split, batch_size, seed)


def spy_task() -> SpyAdding:
    opts = dict(parse_task(TASK).options)
    return SpyAdding(**opts)


def experiment(budget=SMOKE) -> Experiment:
    return Experiment(parse_task(TASK), budget, hidden=8)


def test_tuning_never_reads_the_test_split_and_optimises_validation(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 't.db'}")
    data = spy_task()
    exp, spec = experiment(dataclasses.replace(SMOKE, seeds=1)), parse_spec("lstm")
    touched = []

    class Tuning(Quiet):          # what the task was asked for before the first final run
        def begin(self, label, epochs):
            if "seed" in label and not touched:
                touched.extend(data.touched)

    run_experiment(storage, exp, [spec], data, Tuning())
    assert touched and "test" not in touched and "val" in touched
    assert "test" in data.touched          # the final run did read it: the spy sees reads
    study = optuna.load_study(study_name=exp.study_name(spec, "tune"), storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done
    for t in done:
        assert "test" not in t.user_attrs
        assert t.value == t.user_attrs["val"] == min(t.user_attrs["curve"])


def test_test_value_is_read_at_the_best_validation_epoch():
    """lr 0.05, seed 1 on this task: validation is best at epoch 1 of 4, then worsens."""
    data = parse_task(TASK).build()
    budget = dataclasses.replace(SMOKE, epochs=4)
    r = train_run(data, parse_spec("lstm"), {"forget_bias": 1.0}, 4, budget,
                  {"name": "adam", "lr": 0.05}, seed=1)
    assert r.best_epoch == r.curve.index(min(r.curve)) == 1 < len(r.curve) - 1   # precondition
    assert r.val == min(r.curve)
    # trainer.test with the reloaded best weights equals that epoch's own test evaluation ...
    assert r.test == pytest.approx(r.test_curve[r.best_epoch], rel=1e-6)
    # ... and not the last epoch's (what a run that forgot to reload would report)
    assert abs(r.test - r.test_curve[-1]) > 0.01


def test_final_seeds_are_not_the_tuning_seeds(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 't.db'}")
    exp = experiment(dataclasses.replace(SMOKE, seeds=3))
    spec = parse_spec("lstm")
    run_experiment(storage, exp, [spec], parse_task(TASK).build(), Quiet())
    tune = optuna.load_study(study_name=exp.study_name(spec, "tune"), storage=storage)
    seeds = optuna.load_study(study_name=exp.study_name(spec, "seeds"), storage=storage)
    tune_seeds = [t.user_attrs["seed"] for t in tune.trials]
    final = sorted(t.user_attrs["seed"] for t in seeds.trials)
    assert tune_seeds == [0, 1] and final == [10_000, 10_001, 10_002]
    # every final run trained the best tuning trial's configuration
    best = tune.best_trial
    assert all(t.params == best.params for t in seeds.trials)
    # what optuna-dashboard shows: named metrics, and each seed's validation curve per epoch
    assert tune.metric_names == ["val mse (best epoch)"]
    assert seeds.metric_names == ["test mse (one seed)"]
    for t in seeds.trials:
        assert t.intermediate_values == dict(enumerate(t.user_attrs["curve"]))


def test_no_completed_trial_means_registered_defaults(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 't.db'}")
    study = optuna.create_study(storage=storage, study_name="x")
    t = study.ask()
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    spec = parse_spec("momentum_lstm")
    params, source = best_config(study, spec, SMOKE)
    assert source == "registered defaults (no tuning trial completed)"
    assert params == {"mu": 0.6, "s": 0.6, "lr": pytest.approx(math.sqrt(1e-3 * 3e-2))}
    assert default_config(spec, SMOKE) == params


def test_momentum_lstm_forget_bias_sits_in_the_forget_block():
    """Gate order i, f, g, o: the official fg_init goes to rows [n, 2n) of b_x and of b_h only."""
    n = 5
    cell = create_cell("momentum_lstm", 3, n, forget_bias=2.5)
    b_x, b_h = cell.b_x.detach(), cell.b_h.detach()
    for b in (b_x, b_h):
        assert torch.equal(b[n:2 * n], torch.full((n,), 2.5))
        assert torch.count_nonzero(torch.cat([b[:n], b[2 * n:]])) == 0


def _store_seed_runs(storage, exp: Experiment, cell: str, runs: list[tuple[list, list, float]]):
    """Seed runs written the way train_seeds writes them: curves per epoch, test at the best; a
    run given as None diverged (FAIL with its reason)."""
    study = optuna.create_study(storage=storage, study_name=exp.study_name(cell, "seeds"))
    for k, v in {"task": exp.task.id, "cell": cell, "budget": exp.budget.name, "kind": "seeds",
                 "metric": "mse", "direction": "minimize", "trivial": 0.16, "solve_threshold": 0.144,
                 "solve_margin": 0.1, "trivial_note": "always predict 1"}.items():
        study.set_user_attr(k, v)
    for i, run in enumerate(runs):
        t = study.ask()
        if run is None:
            t.set_user_attr("seed", 10_000 + i)
            t.set_user_attr("fail_reason", "diverged: training loss nan at step 3")
            study.tell(t, state=optuna.trial.TrialState.FAIL)
            continue
        curve, test_curve, test = run
        for k, v in {"seed": 10_000 + i, "curve": curve, "test_curve": test_curve, "test": test,
                     "val": min(curve), "best_epoch": curve.index(min(curve)), "hidden": 8,
                     "params": 100, "wall_s": 1.0}.items():
            t.set_user_attr(k, v)
        study.tell(t, test)


def test_a_verdict_that_flips_at_half_the_budget_is_marked(tmp_path):
    """At 2 of 4 epochs the slow starter is still on the plateau (worse than lstm); at 4 it is
    better. The table must say budget-sensitive, not just print the final verdict."""
    storage = open_storage(f"sqlite:///{tmp_path / 't.db'}")
    exp = experiment(dataclasses.replace(SMOKE, epochs=4, seeds=6))
    fast = [([0.10, 0.05, 0.04, 0.04], [0.10, 0.05, 0.04 + i / 1000, 0.04 + i / 1000], 0.04 + i / 1000)
            for i in range(6)]
    slow = [([0.16, 0.16, 0.01, 0.005], [0.16, 0.16 + i / 1000, 0.01, 0.005 + i / 1000], 0.005 + i / 1000)
            for i in range(6)]
    _store_seed_runs(storage, exp, "lstm", fast)
    _store_seed_runs(storage, exp, "momentum_lstm", slow)
    rep = rp.build(storage, exp, ["lstm", "momentum_lstm"])
    row = next(r for r in rep.rows if r["cell"] == "momentum_lstm")
    assert (row["verdict"], row["verdict_half"], row["budget_sensitive"]) == ("better", "worse", True)
    assert row["epochs_to_solve"] == 3 and row["solved"] == 6
    text = rp.render(rep, "md")
    assert "better (budget-sensitive)" in text and "BUDGET-SENSITIVE" in text
    lstm = next(r for r in rep.rows if r["cell"] == "lstm")
    assert lstm["epochs_to_solve"] == 1 and not lstm["budget_sensitive"]


def test_diverged_seeds_are_counted_and_rank_worst_in_the_table(tmp_path):
    """3 of 6 seeds diverge, the other 3 are excellent: the cell is not 'better' on its survivors."""
    storage = open_storage(f"sqlite:///{tmp_path / 't.db'}")
    exp = experiment(dataclasses.replace(SMOKE, epochs=2, seeds=6))
    ref = [([0.05, 0.04], [0.05, 0.04 + i / 1000], 0.04 + i / 1000) for i in range(6)]
    good = [([0.01, 0.001], [0.01, 0.001 + i / 1e4], 0.001 + i / 1e4) for i in range(3)]
    _store_seed_runs(storage, exp, "lstm", ref)
    _store_seed_runs(storage, exp, "gru", good + [None, None, None])
    rep = rp.build(storage, exp, ["lstm", "gru"])
    gru = next(r for r in rep.rows if r["cell"] == "gru")
    assert (gru["n"], gru["diverged"], gru["solved"]) == (6, 3, 3)
    assert gru["mean"] == pytest.approx(0.0011)            # the mean is over the finite seeds only
    assert gru["a12"] == pytest.approx(0.5) and gru["verdict"] == ""
    assert "6 (3 diverged)" in rp.render(rep, "md")


def test_solve_threshold_per_direction():
    mse = parse_task("adding").build().spec
    assert mse.solve_threshold(0.2) == pytest.approx(0.18)
    acc = dataclasses.replace(mse, metric="accuracy", direction="maximize")
    assert acc.solve_threshold(0.1) == pytest.approx(0.19)


def test_a_changed_preset_under_a_stored_name_is_refused(tmp_path):
    from bench.errors import UserError
    from bench.studies import check_budget
    storage = open_storage(f"sqlite:///{tmp_path / 't.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    study.set_user_attr("budget", "smoke")
    study.set_user_attr("budget_fingerprint", SMOKE.fingerprint)
    check_budget(storage, SMOKE)                                   # the same content: fine
    changed = dataclasses.replace(SMOKE, trials=3, source=SMOKE.source.replace(
        f"trials = {SMOKE.trials}\n", "trials = 3\n"))
    assert changed.source != SMOKE.source
    with pytest.raises(UserError) as e:
        check_budget(storage, changed)
    assert SMOKE.fingerprint in str(e.value) and changed.fingerprint in str(e.value)


def test_a_preset_whose_comments_changed_keeps_its_stored_runs(tmp_path):
    """Explaining a preset better (a comment, blank lines) is not a change of content: the runs
    stored under it stay usable, also in storages that hold the hash of the old text."""
    from bench.budget import budget_json, text_fingerprint
    from bench.errors import UserError
    from bench.studies import check_budget
    reworded = dataclasses.replace(SMOKE, source="# why these numbers: see the README\n\n"
                                   + SMOKE.source + "\n# a closing remark\n")
    assert reworded.fingerprint == SMOKE.fingerprint
    assert text_fingerprint(reworded.source) != text_fingerprint(SMOKE.source)
    storage = open_storage(f"sqlite:///{tmp_path / 't.db'}")
    new = optuna.create_study(storage=storage, study_name="new")
    new.set_user_attr("budget", "smoke")
    new.set_user_attr("budget_fingerprint", SMOKE.fingerprint)
    check_budget(storage, reworded)
    # an older storage: the fingerprint is the hash of the old text, the preset JSON beside it
    old = optuna.create_study(storage=storage, study_name="old")
    old.set_user_attr("budget", "smoke")
    old.set_user_attr("budget_fingerprint", text_fingerprint(SMOKE.source))
    old.set_user_attr("budget_json", budget_json(SMOKE))
    check_budget(storage, reworded)
    # ... and an older storage whose preset had other content is still refused
    old.set_user_attr("budget_json", budget_json(dataclasses.replace(SMOKE, trials=3)))
    with pytest.raises(UserError, match=text_fingerprint(SMOKE.source)):
        check_budget(storage, reworded)


def test_flops_per_step_match_the_equations():
    """Matrix products of one step at batch 1: LSTM 2 x 4n(I + n); dtriv's step rebuilds B, which
    its fast path builds once per sequence, so only 2n(I + n) counts."""
    n, i = 16, 2
    assert create_cell("lstm", i, n).flops_per_step() == 2 * 4 * n * (i + n)
    assert create_cell("momentum_lstm", i, n).flops_per_step() == 2 * 4 * n * (i + n)
    assert create_cell("dtriv", i, n).flops_per_step() == 2 * n * (i + n)
    assert create_cell("gru", i, n).flops_per_step() == 2 * 3 * n * (i + n)


def test_published_protocol_shows_the_best_test_epoch_beside_the_honest_value(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 't.db'}")
    exp = experiment(dataclasses.replace(SMOKE, epochs=3, seeds=6, protocol="published"))
    runs = [([0.05, 0.04, 0.045], [0.05, 0.035 + i / 1000, 0.03], 0.035 + i / 1000) for i in range(6)]
    _store_seed_runs(storage, exp, "lstm", runs)
    rep = rp.build(storage, exp, ["lstm"])
    row = rep.rows[0]
    assert row["mean"] == pytest.approx(0.0375)                  # test at the best validation epoch
    assert row["best_test_any_epoch"] == pytest.approx(0.03)     # the best test epoch: optimistic
    assert "Published selection" in rp.render(rep, "md") and "lstm 0.03 vs 0.0375" in rp.render(rep, "md")
    assert "Published selection" not in rp.render(rp.build(storage, experiment(
        dataclasses.replace(SMOKE, epochs=3, seeds=6)), ["lstm"]), "md")


def test_an_unbounded_shift_interval_reads_inf_not_never(tmp_path):
    """2 vs 2 seeds: no finite 95% Hodges-Lehmann interval exists, the table says [-inf, inf];
    "never" is for epochs to solve (here: the seeds that stay on the plateau)."""
    storage = open_storage(f"sqlite:///{tmp_path / 't.db'}")
    exp = experiment(dataclasses.replace(SMOKE, epochs=2, seeds=2))
    _store_seed_runs(storage, exp, "lstm", [([0.16, 0.16], [0.16, 0.16 + i / 1000], 0.16 + i / 1000)
                                            for i in range(2)])
    _store_seed_runs(storage, exp, "gru", [([0.05, 0.01], [0.05, 0.01 + i / 1000], 0.01 + i / 1000)
                                           for i in range(2)])
    rep = rp.build(storage, exp, ["lstm", "gru"])
    gru = next(r for r in rep.rows if r["cell"] == "gru")
    assert (gru["shift_low"], gru["shift_high"]) == (-math.inf, math.inf)
    rows = {line.split("|")[1].strip(): line for line in rp.render(rep, "md").splitlines()
            if line.startswith("|")}
    assert f"{gru['shift']:.4g} [-inf, inf]" in rows["gru"] and "never]" not in rows["gru"]
    assert "| never " in rows["lstm"]                      # lstm's epochs to solve


def test_report_uses_the_preset_stored_with_the_runs_when_its_file_changed(tmp_path, monkeypatch,
                                                                          capsys):
    """A built-in preset edited after its runs were stored (as `default` went from 12 to 24
    epochs): `report` counts the runs' own epochs and prints the stored fingerprint, with a note
    naming what changed; the table is the one `run` printed."""
    import shutil
    from bench import budget as budget_mod, cli
    studies = tmp_path / "studies"
    shutil.copytree(budget_mod.STUDIES, studies)
    monkeypatch.setattr(budget_mod, "STUDIES", studies)
    monkeypatch.chdir(tmp_path)
    common = ["--task", TASK, "--cells", "lstm,gru", "--budget", "smoke",
              "--storage", f"sqlite:///{tmp_path / 'r.db'}"]
    assert cli.main(["run", *common, "--no-progress", "--threads", "1"]) == 0
    ran = capsys.readouterr().out
    stored = load_budget("smoke")
    text = (studies / "smoke.toml").read_text()
    (studies / "smoke.toml").write_text(text.replace(f"\nepochs = {stored.epochs}\n",
                                                     f"\nepochs = {2 * stored.epochs}\n"))
    now = load_budget("smoke")
    assert now.epochs == 2 * stored.epochs and now.fingerprint != stored.fingerprint
    assert cli.main(["report", *common]) == 0
    out = capsys.readouterr().out
    rows = lambda t: [line for line in t.splitlines() if line.startswith("|")]
    assert rows(out) == rows(ran)
    assert f"budget smoke (fingerprint {stored.fingerprint})" in out
    assert (f"Preset smoke as stored with these runs (fingerprint {stored.fingerprint}); the current "
            f"preset file differs (fingerprint {now.fingerprint}): epochs {stored.epochs} (now "
            f"{now.epochs})") in out
    assert cli.main(["report", *common, "--format", "json"]) == 0
    assert f"{stored.epochs} epochs" in json.loads(capsys.readouterr().out)["provenance"]["budget"]
