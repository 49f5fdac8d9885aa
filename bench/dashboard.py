"""What optuna-dashboard shows of an experiment: the comparison table as a note on every seeds
study and on one index study per experiment, and the report's plots as artifacts of that index.

Artifacts live in a ``FileSystemArtifactStore`` beside the storage (``runs/bench.db`` ->
``runs/bench.artifacts/``; ``journal:runs/j.log`` -> ``runs/j.artifacts/``); a server storage
(PostgreSQL) has no "beside", so it takes a folder from ``--artifacts DIR`` or goes without.
Publishing again replaces each plot's content under the same artifact id and rewrites a note only
when its text changed, so repeated reports never pile up artifacts or note versions.
"""
from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from bench.experiment import Experiment
from bench import studies
from bench.report import Report, SEEDS_NOTE, experiment_studies, render

#: the study-level page of a study in optuna-dashboard (``python -m bench dashboard`` serves at /)
STUDY_URL = "/dashboard/studies/{}"
ARTIFACT_URL = "/artifacts/{}/{}"


def artifact_dir(url: str, given: str | Path | None = None) -> tuple[Path | None, str]:
    """The artifact folder of a storage URL and, when there is none, why: ``given`` wins; a
    SQLite or journal file gets ``<file without suffix>.artifacts`` beside it."""
    if given:
        return Path(given), ""
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):])
    elif url.partition("://")[0].partition("+")[0].lower() == "sqlite":
        from sqlalchemy.engine import make_url
        name = make_url(url).database or ""
        if not name or name == ":memory:" or name.startswith("file:"):
            return None, "an in-memory SQLite storage has no folder beside it for artifacts"
        path = Path(name)
    else:
        return None, ("a server storage has no folder beside it: give --artifacts DIR to keep "
                      "the plots as dashboard artifacts")
    return path.with_name(path.stem + ".artifacts"), ""


@dataclass
class Published:
    """What ``publish`` wrote: notes (study names), the index study, artifacts (file names)."""

    notes: list[str] = field(default_factory=list)
    index: str = ""
    artifacts: list[str] = field(default_factory=list)


def _save_note(study: optuna.Study, text: str) -> bool:
    import optuna_dashboard
    if optuna_dashboard.get_note(study) == text:
        return False
    optuna_dashboard.save_note(study, text)
    return True


def upload_plot(study: optuna.Study, store, filename: str, data: bytes) -> str:
    """A study-level artifact named ``filename`` holding ``data``: uploaded the first time,
    its content replaced under the same id afterwards (never a second copy); returns its id."""
    from optuna.artifacts import get_all_artifact_meta, upload_artifact
    for meta in get_all_artifact_meta(study):
        if meta.filename == filename:
            try:
                with store.open_reader(meta.artifact_id) as f:
                    same = f.read() == data
            except Exception:  # noqa: BLE001 - a missing file is rewritten
                same = False
            if not same:
                store.write(meta.artifact_id, io.BytesIO(data))
            return meta.artifact_id
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        path.write_bytes(data)
        return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)


def plots_digest(rep: Report) -> str:
    """A hash of what the plots are drawn from (the numbers and the plotting code)."""
    import hashlib
    import json

    from bench import html_report, plots
    code = b"".join(Path(m.__file__).read_bytes() for m in (plots, html_report))
    data = json.dumps([rep.seeds, rep.rows, rep.trivial, rep.threshold, rep.reference, rep.metric],
                      default=str, sort_keys=True)
    return hashlib.sha256(code + data.encode()).hexdigest()[:16]


def _stored_plots(index: optuna.Study, store) -> list[tuple[str, str]] | None:
    """(artifact id, caption) of every plot the index recorded, if each is still in the store."""
    from optuna.artifacts import get_all_artifact_meta
    ids = {m.filename: m.artifact_id for m in get_all_artifact_meta(index)}
    out = []
    for filename, caption in index.user_attrs.get("plots", []):
        if filename not in ids:
            return None
        try:
            store.open_reader(ids[filename]).close()
        except Exception:  # noqa: BLE001 - gone from the folder: draw again
            return None
        out.append((ids[filename], caption))
    return out or None


def _link(storage, name: str) -> str:
    return f"[{name}]({STUDY_URL.format(storage.get_study_id_from_name(name))})"


def index_note(storage, exp: Experiment, rep: Report, images: list[tuple[str, str]],
               names: dict | None = None) -> str:
    """The index study's note: the table, the plots (artifact URLs, with their captions), the
    studies of every cell with links, and how to reproduce the table; ``names``: the storage's
    studies (``studies.summaries``) when already read."""
    names = studies.summaries(storage) if names is None else names
    tune, seeds = experiment_studies(names, exp, "tune"), experiment_studies(names, exp, "seeds")
    lines = [f"## {exp.short_task} · budget {exp.budget.name} · {exp.short_size}: the comparison",
             "", "Every cell of this experiment, tuned under one budget and retrained on seeds "
             "(written by `python -m bench run`/`report`; each seeds study carries the same "
             "table).", "", render(rep, "md"), "### Plots", ""]
    lines += [f"![{caption}]({url})\n\n*{caption}*\n" for url, caption in images] or \
        ["No plots here yet: `python -m bench report` uploads them to a folder beside a SQLite "
         "or journal storage (a postgresql:// storage needs `--artifacts DIR`), and "
         "`python -m bench dashboard` serves them.", ""]
    lines += ["### Studies", "", "| cell | tuning trials | final runs (one trial per seed) |",
              "|---|---|---|"]
    lines += [f"| {c} | {_link(storage, tune[c]) if c in tune else '–'} | "
              f"{_link(storage, seeds[c]) if c in seeds else '–'} |" for c in rep.seeds]
    lines += ["", "### Reproduce", "", f"`{rep.provenance.get('command', '')}`", "",
              f"Task id `{exp.task.id}`; budget {exp.budget.name}, fingerprint "
              f"`{exp.budget.fingerprint}`; {exp.size}.", ""]
    return "\n".join(lines)


def publish(storage, exp: Experiment, rep: Report, artifacts: Path | None = None,
            pngs: list[tuple[str, str, bytes]] | None = None) -> Published:
    """Write the table as a note on each shown cell's seeds study and on the experiment's index
    study, and (with an artifact folder) the plots as artifacts of the index study; ``pngs`` are
    (file name, caption, PNG bytes), drawn from ``rep`` when not given."""
    out = Published()
    names = studies.summaries(storage)
    seeds = experiment_studies(names, exp, "seeds")
    index = optuna.create_study(storage=storage, study_name=exp.index_name(),
                                direction=rep.direction, load_if_exists=True)
    out.index = index.study_name
    attrs = {"task": exp.task.id, "budget": exp.budget.name, "size": exp.size, "kind": "index",
             "budget_fingerprint": exp.budget.fingerprint, "metric": rep.metric,
             "direction": rep.direction, "trivial": rep.trivial,
             "studies": {c: seeds[c] for c in rep.seeds if c in seeds}}
    for k, v in attrs.items():
        if index.user_attrs.get(k) != v:
            index.set_user_attr(k, v)
    images: list[tuple[str, str]] = []
    if artifacts is not None:
        from optuna.artifacts import FileSystemArtifactStore
        artifacts.mkdir(parents=True, exist_ok=True)
        store = FileSystemArtifactStore(str(artifacts))
        digest = plots_digest(rep)
        stored = _stored_plots(index, store) if index.user_attrs.get("plots_digest") == digest \
            else None
        if stored is not None:       # the same numbers drawn by the same code: nothing to redraw
            images = [(ARTIFACT_URL.format(index._study_id, aid), caption)
                      for aid, caption in stored]
            out.artifacts = [f for f, _ in index.user_attrs.get("plots", [])]
        else:
            if pngs is None:
                from bench.html_report import pngs as draw
                pngs = draw(rep)
            for filename, caption, data in pngs:
                aid = upload_plot(index, store, filename, data)
                images.append((ARTIFACT_URL.format(index._study_id, aid), caption))
                out.artifacts.append(filename)
            index.set_user_attr("plots", [[f, c] for f, c, _ in pngs])
            index.set_user_attr("plots_digest", digest)
    table = render(rep, "md")
    back = f"\n\nAll cells, plots and links: the index study {_link(storage, out.index)}.\n"
    for cell in rep.seeds:
        if cell in seeds:
            _save_note(optuna.load_study(study_name=seeds[cell], storage=storage),
                       SEEDS_NOTE + table + back)
            out.notes.append(seeds[cell])
    _save_note(index, index_note(storage, exp, rep, images, names))
    out.notes.append(out.index)
    return out
