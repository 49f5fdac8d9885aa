"""timit on a small synthetic corpus in the LDC layout with real SPHERE headers (no real TIMIT here)."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from bench.errors import UserError
from bench.task import parse_task
from tasks import timit
from tests.fakedata import sphere_bytes, write_timit


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("timit")
    return root, write_timit(root)


def build(root, cache, **opts) -> timit.Timit:
    extra = "".join(f",{k}={v}" for k, v in opts.items())
    return parse_task(f"timit:data_dir={root},cache_dir={cache}{extra}").build()


def reference_features(path: Path) -> np.ndarray:
    """Independent: parse the SPHERE bytes by hand, then scipy.signal.stft (not the task's code)."""
    raw = path.read_bytes()
    assert raw.startswith(b"NIST_1A\n   1024\n")
    x = np.frombuffer(raw[1024:], "<i2") / 32768.0
    x = scipy.signal.resample_poly(x, 1, 2)
    x = np.concatenate([np.zeros(256), x, np.zeros(-len(x) % 128 + 256)])
    _, _, z = scipy.signal.stft(x, window="hann", nperseg=256, noverlap=128, boundary=None,
                                padded=False, detrend=False)
    z = z * 128.0                                # stft scales by 1 / sum(window) = 1/128
    return (10 * np.log10(1e-5 + np.abs(z) ** 2)).T


def masked_mse(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask[..., None].float()
    return ((pred - y) ** 2 * m).sum() / (m.sum() * y.shape[-1])


def test_split_counts(corpus, tmp_path):
    root, expected = corpus
    task = build(root, tmp_path)
    s = task.summary()
    assert {k: s[f"{k} utterances"] for k in expected} == expected == {"train": 9, "dev": 6, "test": 6}
    quirk = build(root, tmp_path, sa_filter="substring").summary()
    assert quirk["train utterances"] == 6        # speaker msat0 contains 'sa': dropped entirely
    info = timit.check(str(root))
    assert {k: info[k]["utterances"] for k in expected} == expected
    assert info["dropped as SA"] == 2 * 8 and "missing dev speakers" in info


def test_feature_shape_and_reference_stft(corpus, tmp_path):
    root, _ = corpus
    task = build(root, tmp_path)
    spec = task.spec
    assert (spec.input_size, spec.output_size, spec.readout, spec.loss) == (129, 129, "all", "mse")
    utts = timit.select(timit.scan(root))["test"]
    for u, feats in zip(utts, task._sets["test"]):
        n16 = (len(u.path.read_bytes()) - 1024) // 2
        assert feats.shape == (math.ceil(math.ceil(n16 / 2) / 128) + 3, 129)
        np.testing.assert_allclose(feats.numpy(), reference_features(u.path), atol=1e-4, rtol=0)
    assert spec.seq_len == max(len(f) for fs in task._sets.values() for f in fs) - 1


def test_batches_and_padding_do_not_change_loss(corpus, tmp_path):
    root, _ = corpus
    task = build(root, tmp_path).configure(batch_size=4, train_seed=0)
    x, y, mask = next(iter(task.train_dataloader()))
    assert x.shape == y.shape and x.shape[0] == 4 and x.shape[2] == 129 and mask.shape == x.shape[:2]
    seqs = task._sets["dev"][:3]
    x, y, mask = timit.collate(seqs)
    assert mask.sum(1).tolist() == [len(s) - 1 for s in seqs]
    n0 = len(seqs[0]) - 1
    assert torch.equal(x[0, :n0], seqs[0][:-1]) and torch.equal(y[0, :n0], seqs[0][1:])
    pred = 0.9 * x + 1.0                           # any per-step prediction
    garbage = torch.where(mask[..., None], pred, torch.full_like(pred, 1e6))
    alone = [timit.collate([s]) for s in seqs]     # each utterance unpadded
    total = sum(float(((0.9 * a + 1.0 - b) ** 2).sum()) for a, b, _ in alone)
    count = sum((len(s) - 1) * 129 for s in seqs)
    assert float(masked_mse(pred, y, mask)) == pytest.approx(total / count, rel=1e-5)
    assert float(masked_mse(garbage, y, mask)) == pytest.approx(total / count, rel=1e-5)
    # a longer companion only adds padding to the first utterance's row
    longer = torch.cat([seqs[0], seqs[0]])
    xa, ya, ma = timit.collate([seqs[0], longer])
    assert float(masked_mse(0.9 * xa[:1] + 1, ya[:1], ma[:1])) == pytest.approx(
        float(masked_mse(0.9 * alone[0][0] + 1, alone[0][1], alone[0][2])), rel=1e-6)


def test_trivial_is_persistence(corpus, tmp_path):
    root, _ = corpus
    task = build(root, tmp_path)
    task.setup()
    seqs = task._sets["test"]
    x, y, mask = timit.collate(seqs)
    assert task.spec.trivial == pytest.approx(float(masked_mse(x, y, mask)), rel=1e-5)
    assert "persistence" in task.spec.trivial_note


def test_cache_reused_and_invalidated(corpus, tmp_path, monkeypatch):
    root, _ = corpus
    calls = []
    original = timit.log_spectrogram
    monkeypatch.setattr(timit, "log_spectrogram", lambda *a, **k: calls.append(1) or original(*a, **k))
    first = build(root, tmp_path)
    first.setup()
    n = len(calls)
    assert n == 21 and not first.cache_hit and first.cache_path.is_file()
    mtime = first.cache_path.stat().st_mtime_ns
    second = build(root, tmp_path)
    second.setup()
    assert len(calls) == n and second.cache_hit and second.cache_path == first.cache_path
    assert first.cache_path.stat().st_mtime_ns == mtime
    assert all(torch.equal(a, b) for a, b in zip(first._sets["train"], second._sets["train"]))
    # a changed preprocessing setting recomputes into another file
    monkeypatch.setattr(timit, "PREPROCESSING", replace(timit.PREPROCESSING, floor=1e-4))
    third = build(root, tmp_path)
    third.setup()
    assert len(calls) == 2 * n and not third.cache_hit and third.cache_path != first.cache_path
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".npz", ".npz"]   # no temp files left


def test_riff_wav_accepted_and_equal(tmp_path):
    sph, wav = tmp_path / "sph", tmp_path / "wav"
    write_timit(sph, seed=3, upper=True)
    write_timit(wav, seed=3, riff=True, upper=False)     # same audio, RIFF files, lower-case names
    a, b = build(sph, tmp_path / "c"), build(wav, tmp_path / "c")
    a.setup(), b.setup()
    for split in timit.SPLITS:
        assert len(a._sets[split]) == len(b._sets[split]) > 0
        assert all(torch.equal(u, v) for u, v in zip(a._sets[split], b._sets[split]))


def _corpus_with(tmp_path: Path, header: bytes) -> Path:
    root = tmp_path / "corpus"
    write_timit(root, train_speakers=("fcjf0",), n_dev=1, n_core=1, n_extra=0, seconds=(0.1, 0.1))
    bad = next((root / "TRAIN").rglob("SX43.WAV"))
    bad.write_bytes(header)
    return bad


@pytest.mark.parametrize("kind, message", [
    ("magic", "bad SPHERE header .*NIST_1B"),
    ("rate", "sample rate 8000 Hz, expected 16000"),
    ("garbage", "not a NIST SPHERE or RIFF WAV file"),
    ("no end", "no end_head"),
    ("truncated", "truncated"),
])
def test_bad_files_rejected_and_no_cache(tmp_path, kind, message):
    audio = np.arange(1600, dtype=np.int16)
    content = {"magic": sphere_bytes(audio, magic=b"NIST_1B"), "rate": sphere_bytes(audio, rate=8000),
               "garbage": b"\x00" * 2048, "no end": sphere_bytes(audio).replace(b"end_head", b"end_xxxx"),
               "truncated": sphere_bytes(audio)[:-1000]}[kind]
    bad = _corpus_with(tmp_path, content)
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match=message) as err:
        build(bad.parents[3], cache).setup()
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    assert not cache.exists() or not any(cache.iterdir())
    with pytest.raises(UserError, match=message):
        timit.check(str(bad.parents[3]))


def test_missing_dir_and_empty_split(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    with pytest.raises(UserError, match="does not exist"):
        build(tmp_path / "nope", tmp_path).setup()
    with pytest.raises(UserError, match="--data-dir"):
        parse_task("timit").build().setup()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no TRAIN and TEST"):
        build(tmp_path / "empty", tmp_path).setup()
    root = tmp_path / "nocore"
    write_timit(root, train_speakers=("fcjf0",), n_dev=1, n_core=0, seconds=(0.1, 0.1))
    with pytest.raises(UserError, match="split test is empty.*core-test speakers"):
        build(root, tmp_path / "cache").setup()
    assert not (tmp_path / "cache").exists()


def test_options_and_id(corpus, tmp_path):
    root, _ = corpus
    cfg = parse_task(f"timit:data_dir={root},cache_dir={tmp_path}")
    assert cfg.id == "timit:eval=test,loss_norm=valid,sa_filter=name,target=next"
    published = parse_task(f"timit:data_dir={root},target=previous,eval=dev,loss_norm=padded")
    assert published.id == "timit:eval=dev,loss_norm=padded,sa_filter=name,target=previous"
    with pytest.raises(UserError, match="sa_filter"):
        parse_task("timit:sa_filter=regex")
    for bad, valid in (("target=last", "next, previous"), ("eval=val", "test, dev"),
                       ("loss_norm=all", "valid, padded")):
        with pytest.raises(UserError, match=f"{bad.split('=')[0]}.*choices: {valid}"):
            parse_task(f"timit:{bad}")


def test_subdir_and_env(corpus, tmp_path, monkeypatch):
    root, _ = corpus
    monkeypatch.setenv("BENCH_DATA_DIR", str(root))
    assert timit.locate(None) == root
    monkeypatch.setenv("BENCH_DATA_DIR", str(root.parent))
    (tmp_path / "timit").symlink_to(root, target_is_directory=True)
    assert timit.locate(str(tmp_path)) == tmp_path / "timit"


# ---- the published protocol as options (issue 12) ------------------------------------------

SILENCE = 10 * np.log10(1e-5)                    # -50 dB: the features of zero audio


def one_batch(task: timit.Timit, split: str):
    task.setup()
    return next(iter(task.batches(split, 1000, None)))


def utterances(root: Path) -> dict[str, list]:
    return timit.select(timit.scan(root))


def test_edge_frames_are_silence(corpus, tmp_path):
    """What the padded step and the delay-by-one first step rely on: f_0 and f_{T-1} are silent."""
    task = build(corpus[0], tmp_path)
    task.setup()
    for seqs in task._sets.values():
        for f in seqs:
            assert torch.all(f[0] == SILENCE) and torch.all(f[-1] == SILENCE)
    assert timit.silence() == SILENCE


@pytest.mark.parametrize("loss_norm", ["valid", "padded"])
def test_target_previous_swaps_input_and_target(corpus, tmp_path, loss_norm):
    root, _ = corpus
    default = build(root, tmp_path, loss_norm=loss_norm)
    previous = build(root, tmp_path, target="previous", loss_norm=loss_norm)
    for split in timit.SPLITS:
        x, y, mask = one_batch(default, split)
        xp, yp, maskp = one_batch(previous, split)
        assert torch.equal(maskp, mask) and torch.equal(xp, y) and torch.equal(yp, x)
    # and what they are, utterance by utterance, from the independently computed features
    for i, u in enumerate(utterances(root)["test"]):
        f = torch.from_numpy(reference_features(u.path)).float()
        n = len(f) - 1 + (loss_norm == "padded")
        assert int(maskp[i].sum()) == n and not maskp[i, n:].any()
        torch.testing.assert_close(yp[i, :len(f) - 1], f[:-1], atol=1e-4, rtol=0)   # target f_t
        torch.testing.assert_close(xp[i, :len(f) - 1], f[1:], atol=1e-4, rtol=0)    # input f_{t+1}
        if loss_norm == "padded":                  # step T-1: input the padding, target f_{T-1}
            assert torch.all(xp[i, n - 1] == SILENCE)
            torch.testing.assert_close(yp[i, n - 1], f[-1], atol=1e-4, rtol=0)
    assert previous.spec.seq_len == default.spec.seq_len
    assert previous.cache_hit and previous.cache_path == default.cache_path     # same features


def independent_baselines(seqs: list[np.ndarray], target: str, padded: bool) -> dict[str, float]:
    """Persistence and delay-by-one written out with numpy loops (not the task's code)."""
    err = {"persistence": 0.0, "delay-by-one": 0.0}
    count = 0
    for f in seqs:
        f = f.astype(np.float64)
        if padded:
            f = np.vstack([f, np.full((1, f.shape[1]), SILENCE)])
        for t in range(len(f) - 1):
            inp, tgt = (f[t + 1], f[t]) if target == "previous" else (f[t], f[t + 1])
            prev_inp = SILENCE if t == 0 else (f[t] if target == "previous" else f[t - 1])
            err["persistence"] += ((inp - tgt) ** 2).sum()
            err["delay-by-one"] += ((prev_inp - tgt) ** 2).sum()
            count += f.shape[1]
    return {k: v / count for k, v in err.items()}


@pytest.mark.parametrize("loss_norm", ["valid", "padded"])
def test_baselines_per_variant(corpus, tmp_path, loss_norm):
    root, _ = corpus
    padded = loss_norm == "padded"
    default = build(root, tmp_path, loss_norm=loss_norm)
    previous = build(root, tmp_path, target="previous", loss_norm=loss_norm)
    default.setup()
    feats = [f.numpy() for f in default._sets["test"]]
    mine = {t: independent_baselines(feats, t, padded) for t in ("next", "previous")}
    # the published variant is a one-step delay: delay-by-one is exact
    assert previous.baselines("test")["delay-by-one"] < 1e-6 and mine["previous"]["delay-by-one"] < 1e-6
    assert previous.spec.trivial < 1e-6 and previous.spec.trivial_note.startswith("delay-by-one")
    # persistence on previous = the default task's persistence, computed here from the features
    assert previous.baselines("test")["persistence"] == pytest.approx(mine["next"]["persistence"], rel=1e-9)
    assert default.baselines("test")["persistence"] == pytest.approx(mine["next"]["persistence"], rel=1e-9)
    assert default.baselines("test")["delay-by-one"] == pytest.approx(mine["next"]["delay-by-one"], rel=1e-9)
    assert default.spec.trivial == pytest.approx(mine["next"]["persistence"], rel=1e-9)
    assert default.spec.trivial_note.startswith("persistence") and "core test" in default.spec.trivial_note
    # the same numbers come out of the batches with the metric's mask
    for task in (default, previous):
        x, y, mask = one_batch(task, "test")
        delayed = torch.cat([torch.full_like(x[:, :1], SILENCE), x[:, :-1]], 1)
        b = task.baselines("test")
        assert float(masked_mse(x, y, mask)) == pytest.approx(b["persistence"], rel=1e-5)
        assert float(masked_mse(delayed, y, mask)) == pytest.approx(b["delay-by-one"], abs=1e-6, rel=1e-5)
    s = previous.summary()
    assert s["trivial MSE (delay-by-one, test)"] < 1e-6
    assert s["trivial MSE (persistence, test)"] == pytest.approx(mine["next"]["persistence"], abs=1e-5)
    assert "trivial MSE (persistence, validation)" in s and "trivial MSE (delay-by-one, validation)" in s


def test_eval_dev_swaps_validation_and_test(corpus, tmp_path):
    root, _ = corpus
    utts = utterances(root)
    dev_speakers, core_speakers = timit.speaker_list("dev"), timit.speaker_list("core_test")

    def speakers_of(batch) -> set[str]:
        """Which utterances a batch holds, by matching its inputs to independent features."""
        x, _, mask = batch
        found = set()
        for row, m in zip(x, mask):
            n = int(m.sum())
            hits = {u.speaker for us in (utts["dev"], utts["test"]) for u in us
                    if len(reference_features(u.path)) - 1 == n and np.allclose(
                        row[:n].numpy(), reference_features(u.path)[:-1], atol=1e-4)}
            assert len(hits) == 1
            found |= hits
        return found

    default, swapped = build(root, tmp_path), build(root, tmp_path, eval="dev")
    for task in (default, swapped):
        task.setup()
    val_default, test_default = speakers_of(next(iter(default.val_dataloader()))), \
        speakers_of(next(iter(default.test_dataloader())))
    val_swapped, test_swapped = speakers_of(next(iter(swapped.val_dataloader()))), \
        speakers_of(next(iter(swapped.test_dataloader())))
    assert val_default == test_swapped == {u.speaker for u in utts["dev"]} and val_default <= dev_speakers
    assert test_default == val_swapped == {u.speaker for u in utts["test"]} and test_default <= core_speakers
    # the trivial score follows the reported split
    assert swapped.spec.trivial == pytest.approx(default.baselines("dev")["persistence"])
    assert "on dev" in swapped.spec.trivial_note and "on core test" in default.spec.trivial_note
    s = swapped.summary()
    assert s["validation split"].startswith("test (core test") and s["test split"].startswith("dev (dev")
    assert swapped.cache_path == default.cache_path


def test_loss_norm_padded_divides_by_T(corpus, tmp_path):
    from types import SimpleNamespace

    from bench.model import SeqModel
    root, _ = corpus
    two = utterances(root)["dev"][:2]
    lengths = [math.ceil(math.ceil((len(u.path.read_bytes()) - 1024) // 2 / 2) / 128) + 3 for u in two]
    assert lengths[0] != lengths[1]                # a real padding case inside the batch
    feats = [reference_features(u.path) for u in two]
    assert [len(f) for f in feats] == lengths

    # by hand: prediction 0.9 x_t + 1 of the next frame, scored at T steps: T-1 real, one padding
    sse_valid = sum(((0.9 * f[:-1] + 1 - f[1:]) ** 2).sum() for f in feats)
    sse_pad = sum(((0.9 * f[-1] + 1 - SILENCE) ** 2).sum() for f in feats)
    by_hand_padded = (sse_valid + sse_pad) / (sum(lengths) * 129)
    by_hand_valid = sse_valid / ((sum(lengths) - 2) * 129)

    results = {}
    for norm in ("valid", "padded"):
        task = build(root, tmp_path, loss_norm=norm)
        task.setup()
        x, y, mask = timit.collate(task._sets["dev"][:2], **task.variant)
        assert mask.sum(1).tolist() == [n - (norm == "valid") for n in lengths]
        pred = 0.9 * x + 1.0
        total, count = SeqModel.loss_terms(SimpleNamespace(spec=task.spec), pred, y, mask)
        assert int(count) == (sum(lengths) - 2 * (norm == "valid")) * 129
        results[norm] = float(total / count)
        assert float(masked_mse(pred, y, mask)) == pytest.approx(results[norm], rel=1e-6)
    assert results["padded"] == pytest.approx(by_hand_padded, rel=1e-4)
    assert results["valid"] == pytest.approx(by_hand_valid, rel=1e-4)
    # persistence scores 0 at the padded step (silence -> silence), so only the count changes
    task, valid = build(root, tmp_path, loss_norm="padded"), build(root, tmp_path)
    task.setup()
    n_utt, n_steps = len(task._sets["test"]), sum(len(f) - 1 for f in task._sets["test"])
    assert task.spec.trivial == pytest.approx(valid.spec.trivial * n_steps / (n_steps + n_utt), rel=1e-9)
    assert task.spec.seq_len == valid.spec.seq_len + 1
    assert task.summary()["test scored steps"] == n_steps + n_utt
