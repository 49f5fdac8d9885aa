"""Study names (short and cell-first; legacy ones still read), the dashboard's index study and
plot artifacts, and `report --plots`: on storages written through Optuna directly, the way
`run` writes them, so no training is needed."""
import io
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from bench.budget import budget_json, load_budget
from bench.experiment import Experiment
from bench.task import parse_task

SMOKE = load_budget("smoke")
EXP = Experiment(parse_task("adding", SMOKE.tasks["adding"]), SMOKE, hidden=16)
PNG = b"\x89PNG\r\n\x1a\n"


def store_experiment(url: str, exp: Experiment, cells: list[str], seeds: int, legacy: bool = False,
                     seed: int = 0, epochs: int | None = None) -> None:
    """Tune and seeds studies of ``cells`` as `run` leaves them: the study user attributes of
    ``bench.tune``, and per seed run a COMPLETE trial with its per-epoch validation and test
    curves, test at the best-validation epoch, size and wall time (values drawn from ``seed``);
    under the legacy names (task id first) when ``legacy``."""
    rng = random.Random(seed)
    epochs = epochs or exp.budget.epochs
    storage = optuna.storages.RDBStorage(url)
    name = exp.legacy_name if legacy else exp.study_name
    dist = {"lr": optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True)}
    for k, cell in enumerate(cells):
        level = 0.05 + 0.1 * rng.random()
        for kind, n in (("tune", exp.budget.trials), ("seeds", seeds)):
            study = optuna.create_study(storage=storage, study_name=name(cell, kind))
            for key, v in {"task": exp.task.id, "cell": cell, "budget": exp.budget.name,
                           "size": exp.size, "kind": kind, "metric": "mse",
                           "direction": "minimize", "trivial": 0.1409, "trivial_nominal": 0.1667,
                           "trivial_note": "always predict 1", "solve_threshold": 0.1268,
                           "solve_margin": 0.1, "budget_json": budget_json(exp.budget),
                           "budget_fingerprint": exp.budget.fingerprint, "git_commit": "abc",
                           "python": "3.11", "torch": "2.13.0", "pytorch_lightning": "2.6",
                           "optuna": optuna.__version__,
                           **({"config_source": "tuning trial 1"} if kind == "seeds" else {})}.items():
                study.set_user_attr(key, v)
            for i in range(n):
                curve = [level + 0.2 * math.exp(-e / 3) + 0.02 * rng.random() for e in range(epochs)]
                test_curve = [v + 0.01 * rng.random() for v in curve]
                best = min(range(epochs), key=curve.__getitem__)
                value = test_curve[best] if kind == "seeds" else curve[best]
                attrs = {"spec": cell, "hparams": {}, "optimizer": {"name": "adam", "lr": 0.01},
                         "seed": 10_000 + i if kind == "seeds" else i, "hidden": 16,
                         "budget": exp.budget.name, "budget_fingerprint": exp.budget.fingerprint,
                         "val": curve[best], "test": value if kind == "seeds" else None,
                         "best_epoch": best, "epochs": epochs, "params": 1297 + 10 * k,
                         "flops_per_step": 2304 + 10 * k, "curve": curve,
                         "test_curve": test_curve if kind == "seeds" else [],
                         "wall_s": 5 + rng.random()}
                study.add_trial(optuna.trial.create_trial(
                    params={"lr": 0.01}, distributions=dist, value=value,
                    user_attrs={k2: v for k2, v in attrs.items() if v is not None},
                    intermediate_values=dict(enumerate(curve))))


def report(url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "bench", "report", "--task", "adding", "--budget",
                        "smoke", "--storage", url, *args], cwd=cwd, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def names(url: str) -> set[str]:
    return set(optuna.get_all_study_names(url))


def note_version(url: str) -> int:
    """How many times the index study's note was saved (optuna-dashboard's version counter)."""
    storage = optuna.storages.RDBStorage(url)
    return storage.get_study_system_attrs(storage.get_study_id_from_name(EXP.index_name()))[
        "dashboard:note_ver"]


def test_new_names_are_short_cell_first_and_unique_per_experiment():
    name = EXP.study_name("momentum_lstm", "seeds")
    assert name.startswith("momentum_lstm · seeds · adding T=20 · smoke · hidden 16 · ")
    assert len(name) < 70 and EXP.task.id not in name
    default = load_budget("default")
    big = Experiment(parse_task("adding", default.tasks["adding"]), default, params=20000)
    assert big.study_name("lstm", "tune").startswith("lstm · tune · adding T=50 · default · 20K params · ")
    # options a name does not show still make another experiment another name (the hash)
    other = Experiment(parse_task("adding:n_test=65", SMOKE.tasks["adding"]), SMOKE, hidden=16)
    assert other.short_task == EXP.short_task and other.study_name("lstm", "seeds") != \
        EXP.study_name("lstm", "seeds")
    assert Experiment(EXP.task, SMOKE, hidden=17).study_name("lstm", "seeds") != \
        EXP.study_name("lstm", "seeds")
    # stored_name: the legacy study where the storage holds one, else the new name
    legacy = EXP.legacy_name("lstm", "seeds")
    assert legacy == f"{EXP.task.id} | lstm | smoke | hidden=16 | seeds"
    assert EXP.stored_name({legacy, "x"}, "lstm", "seeds") == legacy
    assert EXP.stored_name({EXP.legacy_name("gru", "seeds")}, "lstm", "seeds") == \
        EXP.study_name("lstm", "seeds")
    assert EXP.cell_of(legacy, "seeds") == "lstm"
    assert EXP.cell_of(EXP.study_name("momentum_lstm/no_momentum", "tune"), "tune") == \
        "momentum_lstm/no_momentum"


def test_a_legacy_storage_reports_the_same_table_and_is_not_renamed(tmp_path, capsys):
    from bench.cli import main

    cells = ["lstm", "momentum_lstm", "gru"]
    old, new = f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}"
    store_experiment(old, EXP, cells, seeds=5, legacy=True)
    store_experiment(new, EXP, cells, seeds=5)
    before = names(old)
    assert all(" | " in n for n in before) and len(before) == 6
    a = report(old, cwd=tmp_path).stdout         # the command, as a user runs it
    capsys.readouterr()
    assert main(["report", "--task", "adding", "--budget", "smoke", "--storage", new]) == 0
    b = capsys.readouterr().out
    assert a == b and "| momentum_lstm" in a and "| gru" in a
    # nothing renamed or duplicated: the legacy studies plus one new index study
    index = EXP.index_name()
    assert names(old) == before | {index}
    assert names(new) == {EXP.study_name(c, k) for c in cells for k in ("tune", "seeds")} | {index}
    # the notes went on the legacy seeds studies, and the index links them
    import optuna_dashboard
    table = a.split("\n- ")[0].strip()
    for c in cells:
        note = optuna_dashboard.get_note(optuna.load_study(study_name=EXP.legacy_name(c, "seeds"),
                                                           storage=old))
        assert table in note and "luckiest seed, not the result" in note
    note = optuna_dashboard.get_note(optuna.load_study(study_name=index, storage=old))
    assert table in note
    for c in cells:
        assert f"[{EXP.legacy_name(c, 'seeds')}](/dashboard/studies/" in note
        assert f"[{EXP.legacy_name(c, 'tune')}](/dashboard/studies/" in note


def test_index_study_note_and_artifacts_are_replaced_not_piled_up(tmp_path):
    """`report` twice, then once more after a new seed run changed the plots: three artifacts,
    each the latest picture, and one note version per change."""
    from PIL import Image
    from optuna.artifacts import get_all_artifact_meta

    import optuna_dashboard
    from bench.cli import main

    url = f"sqlite:///{tmp_path / 'bench.db'}"
    store_experiment(url, EXP, ["lstm", "momentum_lstm"], seeds=4)
    first = report(url, cwd=tmp_path)
    folder = tmp_path / "bench.artifacts"
    index = optuna.load_study(study_name=EXP.index_name(), storage=url)
    metas = {m.filename: m.artifact_id for m in get_all_artifact_meta(index)}
    assert sorted(metas) == ["test-per-seed.png", "test-vs-cost.png", "validation-curves.png"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(metas.values())
    pictures = {f: (folder / a).read_bytes() for f, a in metas.items()}
    for data in pictures.values():
        assert data[:8] == PNG and Image.open(io.BytesIO(data)).size[0] > 300
    note = optuna_dashboard.get_note(index)
    table = first.stdout.split("\n- ")[0].strip()
    assert table in note and all(f"(/artifacts/{index._study_id}/{a})" in note for a in metas.values())
    version = note_version(url)

    assert main(["report", "--task", "adding", "--budget", "smoke", "--storage", url]) == 0
    index = optuna.load_study(study_name=EXP.index_name(), storage=url)
    assert {m.filename: m.artifact_id for m in get_all_artifact_meta(index)} == metas
    assert len(list(folder.iterdir())) == 3 and note_version(url) == version
    assert {f: (folder / a).read_bytes() for f, a in metas.items()} == pictures

    seeds = optuna.load_study(study_name=EXP.study_name("lstm", "seeds"), storage=url)
    extra = seeds.trials[0]
    seeds.add_trial(optuna.trial.create_trial(
        params=extra.params, distributions=extra.distributions, value=0.30,
        user_attrs={**extra.user_attrs, "seed": 10_004, "test": 0.30}))
    assert main(["report", "--task", "adding", "--budget", "smoke", "--storage", url]) == 0
    index = optuna.load_study(study_name=EXP.index_name(), storage=url)
    assert {m.filename: m.artifact_id for m in get_all_artifact_meta(index)} == metas
    assert len(list(folder.iterdir())) == 3
    assert (folder / metas["test-per-seed.png"]).read_bytes() != pictures["test-per-seed.png"]
    assert note_version(url) == version + 1
    row = next(r for r in optuna_dashboard.get_note(index).splitlines() if r.startswith("| lstm "))
    assert row.split("|")[6].strip() == "5"                    # n: the new seed is in the note


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "latex", "html"])
def test_plots_flag_writes_png_and_svg_beside_every_format(tmp_path, fmt, capsys):
    from PIL import Image

    from bench.cli import main

    url = f"sqlite:///{tmp_path / 'bench.db'}"
    store_experiment(url, EXP, ["lstm", "momentum_lstm"], seeds=3)
    out = tmp_path / "out" / f"table.{fmt}"
    out.parent.mkdir()
    assert main(["report", "--task", "adding", "--budget", "smoke", "--storage", url, "--format",
                 fmt, "--out", str(out), "--plots"]) == 0
    printed = capsys.readouterr().out
    stems = ["test-per-seed", "validation-curves", "test-vs-cost"]
    files = sorted(p.name for p in out.parent.iterdir())
    assert files == sorted([out.name] + [f"table-{s}.{e}" for s in stems for e in ("png", "svg")])
    for s in stems:
        png = out.parent / f"table-{s}.png"
        assert Image.open(png).size[0] > 300 and f"table-{s}.svg" in printed
        assert (out.parent / f"table-{s}.svg").read_text().lstrip().startswith("<?xml")
    if fmt != "md":
        return
    # a folder of its own, and stdout for the table
    assert main(["report", "--task", "adding", "--budget", "smoke", "--storage", url, "--format",
                 fmt, "--plots", str(tmp_path / "figs")]) == 0
    assert len(list((tmp_path / "figs").glob(f"report-{EXP.key}-*.png"))) == 3


def test_artifact_folder_beside_the_storage_or_stated_reason(tmp_path):
    from bench.dashboard import artifact_dir
    assert artifact_dir("sqlite:///runs/bench.db") == (Path("runs/bench.artifacts"), "")
    assert artifact_dir(f"sqlite:///{tmp_path}/x.db") == (tmp_path / "x.artifacts", "")
    assert artifact_dir("journal:runs/j.log") == (Path("runs/j.artifacts"), "")
    folder, why = artifact_dir("postgresql://u:secret@h/db")
    assert folder is None and "--artifacts DIR" in why and "secret" not in why
    assert artifact_dir("postgresql://u:p@h/db", "figs") == (Path("figs"), "")


def test_dashboard_refuses_a_missing_artifact_folder(tmp_path, capsys):
    from bench.cli import main
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    store_experiment(url, EXP, ["lstm"], seeds=1)
    assert main(["dashboard", "--storage", url, "--artifacts", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: --artifacts ") and "valid: an existing folder" in err
    assert "\n" not in err and not (tmp_path / "nope").exists()


def test_validation_curves_tell_15_cells_apart_and_keep_the_legend_off_the_curves():
    """The main command has 15 cells, more than tab10's colours: each curve gets its own
    (colour, line style), the legend names each one, and it sits outside the axes."""
    from bench import plots
    seeds = {f"cell{i}": [{"curve": [0.2 / (e + 1 + i) for e in range(12)]} for _ in range(3)]
             for i in range(15)}
    fig = plots.val_curves(seeds, 0.1, {}, "mse")
    ax = fig.axes[0]
    lines = {ln.get_label(): (ln.get_color(), ln.get_linestyle()) for ln in ax.get_lines()
             if ln.get_label() in seeds}
    assert len(lines) == 15 and len(set(lines.values())) == 15
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()][:15] == list(seeds)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    renderer = FigureCanvasAgg(fig).get_renderer()
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1


def test_run_prints_its_table_when_the_dashboard_note_cannot_be_saved(tmp_path):
    """On a GPU host without optuna-dashboard's own dependencies, `run` trained every unit and then
    died in the dashboard note, table unprinted. Now the table comes first and the note's failure is
    one warning line: exit 0."""
    import subprocess
    import sys
    probe = ("import sys; sys.modules['optuna_dashboard'] = None\n"   # any import of it now fails
             "from bench.cli import main; sys.exit(main(sys.argv[1:]))")
    p = subprocess.run([sys.executable, "-c", probe, "run", "--task", "adding:T=10,n_train=64,n_val=32,"
                        "n_test=32", "--cells", "lstm", "--budget", "smoke", "--no-progress",
                        "--storage", f"sqlite:///{tmp_path / 'r.db'}"], capture_output=True, text=True,
                       timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "| lstm " in p.stdout and "| trivial solution" in p.stdout
    warnings = [line for line in p.stderr.splitlines() if "dashboard note" in line]
    assert warnings == ["bench: warning: the dashboard note and artifacts were not saved "
                        "(ModuleNotFoundError: import of optuna_dashboard halted; None in sys.modules)"]
    assert "Traceback" not in p.stderr
