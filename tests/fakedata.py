"""Writers of small fake corpora in the true on-disk formats: MNIST IDX files and an LDC TIMIT tree.

Used by the task tests and the end-to-end tests (``from tests.fakedata import write_mnist,
write_timit``); the MNIST writer itself is ``tasks.mnist.write_fake_mnist`` (also behind
``python -m bench data fake``). Nothing here is a real corpus: images are noise with a
class-dependent stripe, speech is sine sweeps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from tasks.mnist import FILES, idx_bytes, write_fake_mnist  # noqa: F401  (idx_bytes: for tests)
from tasks.timit import speaker_list

MNIST_NAMES = FILES


def write_mnist(directory: Path, n_train: int = 200, n_test: int = 50, gz: bool = True,
                seed: int = 0) -> dict[str, np.ndarray]:
    """``tasks.mnist.write_fake_mnist`` with test-sized defaults; return what was written."""
    return write_fake_mnist(directory, n_train, n_test, gz, seed)


def sphere_bytes(samples: np.ndarray, rate: int = 16000, utterance_id: str = "aks0_sa1",
                 magic: bytes = b"NIST_1A") -> bytes:
    """A TIMIT-style NIST SPHERE file: 1024-byte text header, then 16-bit little-endian PCM."""
    samples = np.asarray(samples, dtype="<i2")
    lines = [magic, b"   1024", b"database_id -s5 TIMIT", b"database_version -s3 1.0",
             b"utterance_id -s%d %s" % (len(utterance_id), utterance_id.encode()),
             b"channel_count -i 1", b"sample_count -i %d" % len(samples), b"sample_rate -i %d" % rate,
             b"sample_min -i %d" % samples.min(initial=0), b"sample_max -i %d" % samples.max(initial=0),
             b"sample_n_bytes -i 2", b"sample_byte_format -s2 01", b"sample_sig_bits -i 16",
             b"end_head"]
    header = b"\n".join(lines) + b"\n"
    return header + b" " * (1024 - len(header)) + samples.tobytes()


def sweep(n: int, rng: np.random.Generator, rate: int = 16000) -> np.ndarray:
    """A sine sweep with random start/end frequency and phase, as int16."""
    t = np.arange(n) / rate
    f0, f1 = rng.uniform(100, 3500, 2)
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * t[-1] if n > 1 else 1)) + rng.uniform(0, 6.28)
    return (np.sin(phase) * rng.uniform(2000, 12000)).astype(np.int16)


def write_timit(root: Path, train_speakers: tuple[str, ...] = ("fcjf0", "mdpk0", "msat0"),
                n_dev: int = 2, n_core: int = 2, n_extra: int = 1,
                sentences: tuple[str, ...] = ("SA1", "SA2", "SI943", "SX43", "SX133"),
                seconds: tuple[float, float] = (0.15, 0.4), riff: bool = False, upper: bool = True,
                seed: int = 0) -> dict[str, int]:
    """Write an LDC-layout TIMIT tree of sine sweeps; return the expected SI/SX utterances per split.

    TEST holds the first ``n_dev`` dev speakers, the first ``n_core`` core-test speakers (from the
    shipped lists) and ``n_extra`` speakers in neither. ``msat0`` contains 'sa', so the original
    substring filter drops it.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    case = str.upper if upper else str.lower
    dev = sorted(speaker_list("dev"))[:n_dev]
    core = sorted(speaker_list("core_test"))[:n_core]
    extra = [f"mzz{i}0" for i in range(n_extra)]
    layout = [("TRAIN", s) for s in train_speakers] + [("TEST", s) for s in dev + core + extra]
    for i, (part, speaker) in enumerate(layout):
        folder = root / case(part) / case(f"DR{1 + i % 8}") / case(speaker)
        folder.mkdir(parents=True, exist_ok=True)
        for sent in sentences:
            audio = sweep(int(rng.uniform(*seconds) * 16000), rng)
            path = folder / (case(sent) + case(".wav"))
            if riff:
                sf.write(str(path), audio, 16000, format="WAV", subtype="PCM_16")
            else:
                path.write_bytes(sphere_bytes(audio, utterance_id=f"{speaker[1:]}_{sent.lower()}"))
    si_sx = sum(not s.lower().startswith("sa") for s in sentences)
    return {"train": len(train_speakers) * si_sx, "dev": len(dev) * si_sx, "test": len(core) * si_sx}
