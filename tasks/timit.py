"""TIMIT spectrogram prediction (Wisdom et al. 2016; reused by expRNN, dtriv and MomentumRNN).

Data: the licensed LDC corpus, ``TRAIN|TEST/DR1..DR8/<speaker>/<utterance>.WAV`` in any letter
case, located by the task option ``data_dir`` or else the environment variable
``BENCH_DATA_DIR`` (that folder, or its ``timit/`` or ``TIMIT/`` subfolder). The WAV files are
NIST SPHERE (1024-byte text header ``NIST_1A``, 16 kHz, 16-bit); RIFF WAV copies are accepted.
SPHERE is read with soundfile (libsndfile reads NIST); its header is checked here first so that
a bad header or sample rate is reported naming the file.

Preprocessing, following stwisdom/urnn (``timit_prediction.py``, ``util.stft_mc``) which
expRNN's and MomentumRNN's data came from:
- audio as int16 / 32768, resampled 16 kHz -> 8 kHz (``scipy.signal.resample_poly``; the
  original used Matlab's ``resample`` and re-quantised to 16-bit WAV files);
- zero-padded at the end to a whole number of hops, then N = 256 zeros at each end (so the first
  and last frames are silent); STFT with a 256-point periodic Hann window, hop 128, no centering:
  ceil(samples / 128) + 3 frames of 129 bins;
- log-magnitude 10 log10(1e-5 + |X|^2).
Each utterance has T frames f_0..f_{T-1}; f_0 and f_{T-1} are always silent (the N edge zeros),
i.e. exactly 10 log10(floor) = -50 dB in every bin ("silence" below). Batches are
``(x, y, mask)``; loss and metric are the MSE over the masked steps and all 129 bins, pooled over
utterances (expRNN's masked ``nn.MSELoss``). Three task options choose the protocol; none of them
changes the features (the cache key), all of them enter the task id:

``target`` -- ``next`` (default): input f_t, target f_{t+1} (Wisdom et al.'s prediction task,
  ``--num_pred_steps 1``: ``train_z`` is the input and ``train_xdata`` shifted one frame ahead,
  ``train_xdata[:n-1] = train_xdata[1:]``, is the target). ``previous``: x and y swapped, input
  f_{t+1} and target f_t -- the task the published expRNN / dtriv / MomentumRNN numbers measure.
  Evidence: expRNN's README has ``timit_prediction.py`` save ``train_x.npy`` from ``train_xdata``
  (the shifted frames) and ``train_z.npy`` from ``train_z`` (the unshifted ones), then packs
  ``training.pt = (train_x, train_y = train_z.npy, lens)``; ``timit_loader.py`` returns
  ``(points, target, lens)`` in that order and ``3_timit.py`` computes ``model(batch_x)`` against
  ``batch_y``. MomentumRNN's ``mnist-timit/make_timit_data4loader.py`` packs the same files in the
  same roles for its ``timit_loader.py`` / ``timit.py``. So the published model sees frame t+1 and
  outputs frame t: a one-step delay of its own input, which a delay line solves exactly (MSE ~0;
  see the delay-by-one baseline below), whereas our default asks for a genuine forecast.
``eval`` -- ``test`` (default): validation = dev (400 utterances, 50 speakers), test = core test
  (192, 24 speakers); this is also Wisdom et al.'s own script (``run_timitpred_*.sh``:
  ``--offset_eval 400 --n_utt_eval_spec 192``; early stopping on the first 400 = dev, the held-out
  ``eval`` set = the next 192 = core test). ``dev``: the roles reversed as in expRNN and
  MomentumRNN, whose ``test.pt`` is built from ``test_*`` (= dev 400) and ``val.pt`` from
  ``eval_*`` (= core test 192), and whose scripts keep the dev loss at the epoch of best core-test
  loss: validation = core test 192, reported test = dev 400.
``loss_norm`` -- ``valid`` (default): T-1 steps per utterance, the ones with a real target.
  ``padded``: T steps, as published (the mask is ``[0:lens]`` with ``lens`` = T frames, while
  inputs/targets pair frames across a one-frame shift), so one step per utterance pairs a real
  frame with padding. In ``timit_prediction.py`` the arrays are zero-padded in the complex STFT
  domain (``np.zeros`` then filled to ``lens``) *before* ``--data_transform logmag``
  (``10 log10(1e-5 + re^2 + im^2)``) and ``--data_normalization`` is left at ``none``, so a padded
  frame is 10 log10(1e-5) = -50 dB, not 0. Here the padded step is therefore, with
  ``target=next``: input f_{T-1}, target silence (``train_xdata[T-1]`` = the padding frame T; for
  the longest utterance the shift leaves its own last frame there, which is also silent); with
  ``target=previous``: input silence, target f_{T-1}. Since f_{T-1} is itself silent, both sides
  of that step are -50 dB; it only adds T - 1 -> T to each utterance's count (and an error
  wherever a model's output differs from silence there).

Trivial baselines, computed per variant on its own test split over the same mask as the metric:
persistence (predict y_t = x_t) and delay-by-one (predict y_t = x_{t-1}; the first step is
predicted as silence, -50 dB in every bin, i.e. a delay line whose buffer starts with zero
audio). The task's ``trivial`` is the better of the two (``trivial_note`` says which); with
``target=previous`` delay-by-one is exact (0 up to float rounding), which is the point.
``summary()`` gives both, on validation and test, and the MSE of predicting the mean training
target frame.

Splits: train = every TRAIN speaker's SI and SX sentences; dev = the 50 dev speakers (400
utterances); test = the 24 core-test speakers (192), with the speaker lists shipped in
``tasks/timit_speakers`` (which of dev and test validates and which is reported: ``eval``
above). ``sa_filter=name`` (default) drops SA1/SA2 by file name;
``sa_filter=substring`` is the original test ('sa' anywhere in the lower-cased path, here the
path inside the corpus, applied to every split as the original did), which also drops speakers
whose ID contains 'sa' (published: 3640 train utterances).

Features are cached in ``cache_dir`` (default ``$XDG_CACHE_HOME/momentum-bench`` or
``~/.cache/momentum-bench``), keyed by a hash of the preprocessing settings and of every selected
file's path, size and mtime; written to a temporary file and renamed, so never half-written.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from bench.errors import UserError
from bench.registry import Option, register_task
from bench.task import Batches, FileTaskData, TaskSpec

SPLITS = ("train", "dev", "test")
EVAL_BATCH = 100


@dataclass(frozen=True)
class Preprocessing:
    """The feature settings; all of them enter the cache key."""

    rate_in: int = 16000
    rate: int = 8000
    n_fft: int = 256
    hop: int = 128
    edge_pad: int = 256          # zeros at each end: stft_mc pads one window length N
    floor: float = 1e-5          # 10 log10(floor + |X|^2)
    version: int = 1             # bump when the code computing features changes

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1


PREPROCESSING = Preprocessing()


# ---- audio --------------------------------------------------------------------------------

def sphere_header(path: Path, head: bytes) -> dict[str, str | int | float]:
    """Parse and check a NIST SPHERE header (``NIST_1A``, size line, ``key -type value``, end_head)."""
    lines = head.split(b"\n")
    if lines[0].strip() != b"NIST_1A":
        raise UserError(f"{path}: bad SPHERE header (first line {lines[0][:16]!r}, expected NIST_1A)")
    try:
        size = int(lines[1])
    except (IndexError, ValueError):
        raise UserError(f"{path}: bad SPHERE header (header size line {lines[1][:16]!r})") from None
    if size < 1024 or size % 1024:
        raise UserError(f"{path}: bad SPHERE header (header size {size}, expected a multiple of 1024)")
    fields: dict[str, str | int | float] = {}
    for line in head[:size].split(b"\n")[2:]:
        if line.strip() == b"end_head":
            break
        parts = line.decode("latin-1").split(None, 2)
        if len(parts) == 3 and parts[1].startswith("-"):
            kind, value = parts[1], parts[2].strip()
            try:
                fields[parts[0]] = int(value) if kind == "-i" else float(value) if kind == "-r" else value
            except ValueError:
                raise UserError(f"{path}: bad SPHERE header field {line[:40]!r}") from None
    else:
        raise UserError(f"{path}: bad SPHERE header (no end_head within {size} bytes)")
    for key in ("sample_count", "sample_rate", "channel_count", "sample_n_bytes"):
        if key in fields and not isinstance(fields[key], int):
            try:                      # a header may declare them -s with a numeric string
                fields[key] = int(str(fields[key]))
            except ValueError:
                raise UserError(f"{path}: bad SPHERE header field {key} = {fields[key]!r}; valid: "
                                "a whole number") from None
    for key, want in (("sample_rate", None), ("channel_count", 1), ("sample_n_bytes", 2)):
        if key not in fields:
            raise UserError(f"{path}: bad SPHERE header (no {key})")
        if want is not None and fields[key] != want:
            raise UserError(f"{path}: SPHERE {key} is {fields[key]}, expected {want}")
    coding = str(fields.get("sample_coding", "pcm"))
    if coding != "pcm":
        raise UserError(f"{path}: SPHERE sample_coding {coding!r} (compressed); "
                        f"decompress with sph2pipe to plain PCM")
    return fields


def audio_info(path: Path, p: Preprocessing = PREPROCESSING) -> int:
    """Check a SPHERE or RIFF file's header (mono, 16-bit, ``p.rate_in``); return its sample count."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
            size = head.split(b"\n", 2)[1].strip() if head.count(b"\n") > 1 else b""
            if head.startswith(b"NIST") and size.isdigit():     # a header longer than 1024 bytes
                head += f.read(max(0, int(size) - len(head)))
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    fields = sphere_header(path, head) if head.startswith(b"NIST") else None
    if fields is None and not head.startswith(b"RIFF"):
        raise UserError(f"{path}: not a NIST SPHERE or RIFF WAV file (starts with {head[:8]!r})")
    import soundfile as sf     # here: only TIMIT reads audio (and a GPU host may lack libsndfile)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise UserError(f"{path}: unreadable audio ({e})") from None
    if info.samplerate != p.rate_in:
        raise UserError(f"{path}: sample rate {info.samplerate} Hz, expected {p.rate_in} (TIMIT)")
    if info.channels != 1:
        raise UserError(f"{path}: {info.channels} channels, expected mono")
    if fields is None and info.subtype != "PCM_16":
        raise UserError(f"{path}: WAV subtype {info.subtype}, expected 16-bit PCM")
    if fields is not None and "sample_count" in fields and info.frames < int(fields["sample_count"]):
        raise UserError(f"{path}: truncated ({info.frames} of {fields['sample_count']} samples)")
    return info.frames


def read_audio(path: Path, p: Preprocessing = PREPROCESSING) -> np.ndarray:
    """Mono samples as float64 in [-1, 1) (int16 / 32768, as the original wavread), checked first."""
    import soundfile as sf
    n = audio_info(path, p)
    try:
        x, _ = sf.read(str(path), dtype="float64", frames=n, always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise UserError(f"{path}: unreadable audio ({e})") from None
    return x[:, 0]


def log_spectrogram(audio: np.ndarray, p: Preprocessing = PREPROCESSING) -> np.ndarray:
    """16 kHz samples -> (frames, 129) float32 log-magnitude features, as stft_mc computed them."""
    from scipy.signal import get_window, resample_poly   # here: 2 s of start-up for every command
    x = resample_poly(audio, p.rate, p.rate_in)
    n_hops = math.ceil(len(x) / p.hop)
    x = np.pad(x, (p.edge_pad, n_hops * p.hop - len(x) + p.edge_pad))
    frames = sliding_window_view(x, p.n_fft)[::p.hop] * get_window("hann", p.n_fft)  # periodic
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
    return (10.0 * np.log10(p.floor + power)).astype(np.float32)


# ---- corpus layout and splits -------------------------------------------------------------

@dataclass(frozen=True)
class Utterance:
    path: Path
    rel: str                     # path inside the corpus root, as found
    part: str                    # "train" or "test" (the LDC top-level folder)
    speaker: str                 # lower case, e.g. "faks0"
    name: str                    # lower case, e.g. "si1573"


def speaker_list(which: str) -> frozenset[str]:
    """The shipped speaker list ``dev`` or ``core_test`` (lower-case IDs)."""
    text = (resources.files("tasks") / "timit_speakers" / f"{which}_speakers.txt").read_text()
    return frozenset(s.strip().lower() for s in text.split() if s.strip())


def _subdirs(d: Path) -> dict[str, Path]:
    return {c.name.lower(): c for c in sorted(d.iterdir()) if c.is_dir()}


def locate(data_dir: str | None) -> Path:
    """The corpus root (the folder holding TRAIN and TEST) from ``data_dir`` or $BENCH_DATA_DIR."""
    given = data_dir or os.environ.get("BENCH_DATA_DIR")
    if not given:
        raise UserError("timit needs the LDC TIMIT corpus: pass --data-dir DIR (the folder holding "
                        "TRAIN and TEST) or set BENCH_DATA_DIR")
    base = Path(given).expanduser()
    if not base.is_dir():
        raise UserError(f"timit: data directory {base} does not exist")
    for cand in (base, base / "timit", base / "TIMIT", base / "data"):
        if cand.is_dir() and {"train", "test"} <= set(_subdirs(cand)):
            return cand
    raise UserError(f"timit: no TRAIN and TEST folders under {base} (expected the LDC layout "
                    f"TRAIN|TEST/DR1..DR8/<speaker>/<utterance>.WAV)")


def scan(root: Path) -> list[Utterance]:
    """Every .wav file (any case) at TRAIN|TEST/DR*/<speaker>/; one file per utterance name."""
    found: dict[tuple[str, str, str], Utterance] = {}
    for part, top in _subdirs(root).items():
        if part not in ("train", "test"):
            continue
        for region, rdir in _subdirs(top).items():
            if not region.startswith("dr"):
                continue
            for speaker, sdir in _subdirs(rdir).items():
                for f in sorted(sdir.iterdir()):
                    if f.is_file() and f.suffix.lower() == ".wav":
                        # "SA1.WAV" and a converted "SA1.WAV.wav" copy are one utterance
                        name = f.name.split(".")[0].lower()
                        rel = f.relative_to(root).as_posix()
                        found.setdefault((part, speaker, name), Utterance(f, rel, part, speaker, name))
    return sorted(found.values(), key=lambda u: u.rel)


def is_sa(u: Utterance, sa_filter: str) -> bool:
    """Whether the SA filter drops ``u``: by file name, or the original's substring test."""
    return u.name.startswith("sa") if sa_filter == "name" else "sa" in u.rel.lower()


def select(utts: Sequence[Utterance], sa_filter: str = "name") -> dict[str, list[Utterance]]:
    """The train / dev / core-test utterance lists."""
    dev, core = speaker_list("dev"), speaker_list("core_test")
    keep = [u for u in utts if not is_sa(u, sa_filter)]
    return {"train": [u for u in keep if u.part == "train"],
            "dev": [u for u in keep if u.part == "test" and u.speaker in dev],
            "test": [u for u in keep if u.part == "test" and u.speaker in core]}


def _check_nonempty(splits: dict[str, list[Utterance]], root: Path) -> None:
    where = {"train": "in TRAIN",
             "dev": "of the 50 dev speakers (tasks/timit_speakers/dev_speakers.txt) in TEST",
             "test": "of the 24 core-test speakers (tasks/timit_speakers/core_test_speakers.txt) in TEST"}
    for split, us in splits.items():
        if not us:
            raise UserError(f"timit: split {split} is empty: no SI/SX utterances {where[split]} "
                            f"under {root}")


def check(data_dir: str | None = None, sa_filter: str = "name") -> dict:
    """Validate a corpus (layout, every selected file's header) and summarise what was found."""
    root = locate(data_dir)
    utts = scan(root)
    splits = select(utts, sa_filter)
    _check_nonempty(splits, root)
    out: dict = {"root": str(root), "wav files": len(utts),
                 "dropped as SA": sum(is_sa(u, sa_filter) for u in utts)}
    expected = {"train": 3696 if sa_filter == "name" else 3640, "dev": 400, "test": 192}
    for split, us in splits.items():
        samples = sum(audio_info(u.path) for u in us)
        out[split] = {"utterances": len(us), "speakers": len({u.speaker for u in us}),
                      "hours": round(samples / PREPROCESSING.rate_in / 3600, 3),
                      "full corpus has": expected[split]}
    present = {u.speaker for u in utts if u.part == "test"}
    for which in ("dev", "core_test"):
        missing = sorted(speaker_list(which) - present)
        if missing:
            out[f"missing {which} speakers"] = missing
    return out


# ---- features and their cache -------------------------------------------------------------

def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "momentum-bench"


def cache_key(splits: dict[str, list[Utterance]], p: Preprocessing) -> str:
    """Hash of the settings and of every selected file's path, size and mtime."""
    files = {}
    for split, us in splits.items():
        stats = [(u.rel, u.path.stat()) for u in us]
        files[split] = [(rel, st.st_size, st.st_mtime_ns) for rel, st in stats]
    blob = json.dumps({"preprocessing": asdict(p), "files": files}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def compute_features(us: Sequence[Utterance], p: Preprocessing = PREPROCESSING) -> list[np.ndarray]:
    return [log_spectrogram(read_audio(u.path, p), p) for u in us]


def load_features(splits: dict[str, list[Utterance]], cache_dir: Path,
                  p: Preprocessing = PREPROCESSING) -> tuple[dict[str, list[np.ndarray]], Path, bool]:
    """Per split, one (frames, 129) array per utterance; from the cache when its key matches.

    Returns the features, the cache file and whether it was a cache hit.
    """
    path = cache_dir / f"timit-{cache_key(splits, p)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                lens = {s: z[f"{s}_lens"] for s in splits}
                if all(len(lens[s]) == len(us) for s, us in splits.items()):
                    return {s: np.split(z[f"{s}_feats"], np.cumsum(lens[s])[:-1]) for s in splits}, path, True
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            pass                                  # unreadable cache: recompute and replace it
    feats = {s: compute_features(us, p) for s, us in splits.items()}   # errors raise before any write
    arrays = {}
    for s, fs in feats.items():
        arrays[f"{s}_feats"] = np.concatenate(fs)
        arrays[f"{s}_lens"] = np.array([len(f) for f in fs], dtype=np.int64)
        arrays[f"{s}_names"] = np.array([u.rel for u in splits[s]])
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".timit-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return feats, path, False


TARGETS = ("next", "previous")
EVALS = ("test", "dev")
LOSS_NORMS = ("valid", "padded")
#: the (validation, test) split of each ``eval`` choice
EVAL_SPLITS = {"test": ("dev", "test"), "dev": ("test", "dev")}
SHORT_NAMES = {"dev": "dev", "test": "core test"}
SPLIT_NAMES = {"dev": "dev, 400 utterances of 50 speakers in the full corpus",
               "test": "core test, 192 utterances of 24 speakers in the full corpus"}


def silence(p: Preprocessing = PREPROCESSING) -> float:
    """The feature value of zero audio (and of the published padding): 10 log10(floor), -50 dB."""
    return 10.0 * math.log10(p.floor)


def steps(s: Tensor, target: str = "next", loss_norm: str = "valid",
          pad: float = silence()) -> tuple[Tensor, Tensor]:
    """One utterance's (inputs, targets) at the steps the mask covers.

    ``next``: x_t = f_t, y_t = f_{t+1}; ``previous``: the two swapped. ``valid``: T - 1 steps;
    ``padded``: T steps, the utterance extended by one frame of ``pad`` first (published).
    """
    if loss_norm == "padded":
        s = torch.cat([s, s.new_full((1, s.shape[1]), pad)])
    x, y = s[:-1], s[1:]
    return (y, x) if target == "previous" else (x, y)


def collate(seqs: Sequence[Tensor], target: str = "next", loss_norm: str = "valid",
            pad: float = silence()) -> tuple[Tensor, Tensor, Tensor]:
    """Utterances (T_i, 129) -> x, y (B, max steps, 129; zero beyond each mask) and mask (B, steps)."""
    xs, ys = zip(*(steps(s, target, loss_norm, pad) for s in seqs))
    x = pad_sequence(list(xs), batch_first=True)
    y = pad_sequence(list(ys), batch_first=True)
    lengths = torch.tensor([len(v) for v in xs])
    mask = torch.arange(x.shape[1]) < lengths[:, None]
    return x, y, mask


def _mse(pairs) -> float:
    """Pooled MSE over every (prediction, target) step and bin, in float64."""
    total = count = 0
    for pred, y in pairs:
        total += float(((pred.double() - y.double()) ** 2).sum())
        count += y.numel()
    return total / count


def persistence_mse(seqs: Sequence[Tensor], target: str = "next", loss_norm: str = "valid",
                    pad: float = silence()) -> float:
    """MSE over the masked steps and bins of predicting y_t = x_t (copy the input)."""
    return _mse((x, y) for x, y in (steps(s, target, loss_norm, pad) for s in seqs))


def delay_mse(seqs: Sequence[Tensor], target: str = "next", loss_norm: str = "valid",
              pad: float = silence()) -> float:
    """MSE over the masked steps and bins of predicting y_t = x_{t-1}; y_0 is predicted as ``pad``
    (silence: a delay line whose buffer starts with zero audio)."""
    def delayed(x: Tensor) -> Tensor:
        return torch.cat([x.new_full((1, x.shape[1]), pad), x[:-1]])
    return _mse((delayed(x), y) for x, y in (steps(s, target, loss_norm, pad) for s in seqs))


def mean_frame_mse(seqs: Sequence[Tensor], mean: Tensor, target: str = "next",
                   loss_norm: str = "valid", pad: float = silence()) -> float:
    """MSE over the masked steps and bins of predicting the fixed frame ``mean``."""
    return _mse((mean.expand_as(y), y) for _, y in (steps(s, target, loss_norm, pad) for s in seqs))


class Timit(FileTaskData):
    """Predict a log-magnitude STFT frame of TIMIT speech: the next one (default) or, as published,
    the previous one; MSE over the masked steps."""

    def __init__(self, data_dir: str | None, cache_dir: str | None, sa_filter: str = "name",
                 target: str = "next", eval: str = "test", loss_norm: str = "valid"):  # noqa: A002
        super().__init__()
        self.data_dir, self.sa_filter = data_dir, sa_filter
        self.target, self.eval, self.loss_norm = target, eval, loss_norm
        self.splits = ("train", *EVAL_SPLITS[eval])   # (train, validation, test) split names
        self.preprocessing = PREPROCESSING            # read at construction: tests may swap it
        self.pad = silence(self.preprocessing)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self._sets: dict[str, list[Tensor]] | None = None
        self.cache_path: Path | None = None
        self.cache_hit = False
        self._trivials: dict[str, float] = {}
        self._spec: TaskSpec | None = None

    @property
    def variant(self) -> dict[str, str]:
        return {"target": self.target, "loss_norm": self.loss_norm, "pad": self.pad}

    def baselines(self, split: str) -> dict[str, float]:
        """Persistence and delay-by-one MSE on one split, under this variant's target and mask."""
        if self._sets is None:
            self.setup()
        seqs = self._sets[split]
        return {"persistence": persistence_mse(seqs, **self.variant),
                "delay-by-one": delay_mse(seqs, **self.variant)}

    def read_files(self) -> None:
        root = locate(self.data_dir)
        splits = select(scan(root), self.sa_filter)
        _check_nonempty(splits, root)
        feats, self.cache_path, self.cache_hit = load_features(splits, self.cache_dir, self.preprocessing)
        sets = {s: [torch.from_numpy(np.ascontiguousarray(f)) for f in fs] for s, fs in feats.items()}
        self._sets = sets
        _, val, test = self.splits
        train_mean = torch.cat([steps(s, **self.variant)[1] for s in sets["train"]]).double().mean(0)
        by_role = {"test": self.baselines(test), "validation": self.baselines(val)}
        self._trivials = {f"{k}, {role}": v for role, b in by_role.items() for k, v in b.items()}
        self._trivials["mean train target frame, test"] = mean_frame_mse(sets[test], train_mean,
                                                                         **self.variant)
        best = min(by_role["test"], key=by_role["test"].get)       # persistence on a tie
        other = next(k for k in by_role["test"] if k != best)
        rule = {"persistence": "persistence (y_t = x_t)",
                "delay-by-one": "delay-by-one (y_t = x_{t-1}, silence at the first step)"}
        bins = self.preprocessing.bins
        n_steps = "T" if self.loss_norm == "padded" else "T-1"
        self._spec = TaskSpec(
            "timit", input_size=bins, output_size=bins,
            seq_len=max(len(f) for fs in sets.values() for f in fs) - (self.loss_norm == "valid"),
            readout="all", loss="mse", metric="mse", direction="minimize",
            trivial=by_role["test"][best],
            trivial_note=f"{rule[best]}, the better of persistence and delay-by-one ({other} "
                         f"{by_role['test'][other]:.4g}); target={self.target}, MSE on "
                         f"{SHORT_NAMES[test]}, {n_steps} steps per utterance")

    eval_batch = EVAL_BATCH

    def batches(self, split: str, batch_size: int, seed: int | None) -> Batches:
        self.setup()
        seqs = self._sets[split]
        return Batches([torch.arange(len(seqs))], batch_size, seed,
                       transform=lambda idx: collate([seqs[i] for i in idx.tolist()], **self.variant))

    def summary(self) -> dict:
        self.setup()
        per_step = 0 if self.loss_norm == "padded" else 1
        out = {f"{s} utterances": len(v) for s, v in self._sets.items()}
        out |= {f"{s} scored steps": sum(len(f) - per_step for f in v) for s, v in self._sets.items()}
        out |= {"validation split": f"{self.splits[1]} ({SPLIT_NAMES[self.splits[1]]})",
                "test split": f"{self.splits[2]} ({SPLIT_NAMES[self.splits[2]]})"}
        out |= {f"trivial MSE ({k})": round(v, 6) for k, v in self._trivials.items()}
        return out | {"target": self.target, "eval": self.eval, "loss_norm": self.loss_norm,
                      "sa_filter": self.sa_filter,
                      "cache": f"{'hit' if self.cache_hit else 'written'} {self.cache_path}"}


@register_task("timit", options=(
    Option("data_dir", None, kind=str, doc="the LDC TIMIT folder (else $BENCH_DATA_DIR)"),
    Option("cache_dir", None, kind=str, doc="feature cache folder (default ~/.cache/momentum-bench)"),
    Option("sa_filter", "name", kind=str, choices=("name", "substring"),
           doc="drop SA1/SA2 by file name, or by the original's 'sa'-in-path test"),
    Option("target", "next", kind=str, choices=TARGETS,
           doc="next: input frame t, target t+1; previous: input t+1, target t (published expRNN/"
               "dtriv/MomentumRNN roles, a one-step delay)"),
    Option("eval", "test", kind=str, choices=EVALS,
           doc="test: validate on dev 400, report core test 192; dev: the published reverse"),
    Option("loss_norm", "valid", kind=str, choices=LOSS_NORMS,
           doc="valid: average over T-1 steps per utterance; padded: over T, one step paired with "
               "padding (published)"),
), local=("data_dir", "cache_dir"))
def timit(**options) -> Timit:
    """TIMIT: predict a log-magnitude spectrogram frame, 129 bins (next by default; MSE over masked steps)."""
    return Timit(**options)
