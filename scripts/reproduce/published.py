"""What each paper preset reproduces: its task, the cells of the published table, and the published
numbers with their sources (a paper table or a code file). ``None`` marks a number that no source
reachable when this was written states: the row names the table it is in, and compare.py prints
"not transcribed" rather than a number from memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Published:
    """One published value (``None``: not transcribed) and where it is stated."""

    value: float | None
    source: str


@dataclass(frozen=True)
class Reproduction:
    """A paper preset: the task it runs, its cells, their published values, and the GPU estimate."""

    task: str
    cells: tuple[str, ...]
    unit: str                     # how the published value is written: "%" or "mse" or "ce"
    published: dict[str, Published] = field(default_factory=dict)
    selection: str = ""           # how the paper selected the value it reported
    cost: str = ""                # what a run costs, in words


MOMENTUM_T1 = "MomentumRNN (Nguyen et al., NeurIPS 2020) Table 1, PMNIST, N = 256"
MOMENTUM_T2 = "MomentumRNN Table 2, TIMIT test MSE (the 400 dev utterances), N = 158"
MOMENTUM_T4 = "MomentumRNN Table 4, PMNIST, DTRIV family"
MOMENTUM_T5 = "MomentumRNN Table 5, TIMIT, DTRIV family, N = 224"
MAX_TEST = "the maximum test accuracy over the 150 epochs (mnist.py's best_test_acc)"
#: the paper TIMIT presets set the published options themselves ([tasks.timit]: target=previous,
#: eval=dev, loss_norm=padded, sa_filter=substring; see README, Data)
TIMIT_PUBLISHED = "timit"

PRESETS: dict[str, Reproduction] = {
    "paper-pmnist-lstm": Reproduction(
        "pmnist", ("lstm/official_init", "momentum_lstm", "adam_lstm", "rmsprop_lstm", "sr_lstm"),
        "%", {c: Published(None, f"{MOMENTUM_T1}, row {r}") for c, r in (
            ("lstm/official_init", "LSTM"), ("momentum_lstm", "MomentumLSTM"),
            ("adam_lstm", "AdamLSTM"), ("rmsprop_lstm", "RMSPropLSTM"), ("sr_lstm", "SRLSTM"))},
        MAX_TEST, "5 cells x 7 runs x 150 epochs; ~12-16 s per epoch on an H200: about 20 GPU hours"),
    **{f"paper-pmnist-dtriv-n{n}": Reproduction(
        "pmnist", ("dtriv", "momentum_dtriv"), "%",
        {"dtriv": Published(None, f"{MOMENTUM_T4}, DTRIV N = {n}"),
         "momentum_dtriv": Published(None, f"{MOMENTUM_T4}, MomentumDTRIV N = {n}")},
        MAX_TEST, f"2 cells x 7 runs x 150 epochs; ~21 s per epoch at n 256 on an H200 (graphed): "
                  f"about 12 GPU hours at n {n}") for n in (170, 360, 512)},
    "paper-timit-lstm": Reproduction(
        TIMIT_PUBLISHED, ("lstm/official_init", "momentum_lstm", "adam_lstm", "rmsprop_lstm",
                          "sr_lstm"), "mse",
        {c: Published(None, f"{MOMENTUM_T2}, row {r}") for c, r in (
            ("lstm/official_init", "LSTM"), ("momentum_lstm", "MomentumLSTM"),
            ("adam_lstm", "AdamLSTM"), ("rmsprop_lstm", "RMSPropLSTM"), ("sr_lstm", "SRLSTM"))},
        "timit.py prints both the 'test' (dev) MSE at the best 'val' (core test) epoch and the "
        "minimum 'test' MSE; which one the table reports, the code does not say",
        "5 cells x 7 runs x 700 epochs of 3,640 utterances: not measured, GPU days"),
    "paper-timit-dtriv": Reproduction(
        TIMIT_PUBLISHED, ("dtriv", "momentum_dtriv"), "mse",
        {"dtriv": Published(None, f"{MOMENTUM_T5}, DTRIV"),
         "momentum_dtriv": Published(None, f"{MOMENTUM_T5}, MomentumDTRIV")},
        "timit_div.py prints both the 'test' (dev) MSE at the best 'val' epoch and the minimum "
        "'test' MSE; which one the table reports, the code does not say",
        "2 cells x 7 runs x 700 epochs: not measured, GPU days"),
    "paper-pmnist-lmu": Reproduction(
        "pmnist", ("lmu",), "%",
        {"lmu": Published(97.15, "nengo/keras-lmu, branch paper, experiments/psMNIST-standard."
                                 "ipynb: model.evaluate(X_test) -> [0.0925, 0.9715]")},
        "test once, at the epoch of best validation loss (the notebook's checkpoint)",
        "1 cell x 7 runs x 10 epochs: about 1 GPU hour"),
    "paper-pmnist-nru": Reproduction(
        "pmnist", ("nru",), "%",
        {"nru": Published(None, "Chandar et al. (AAAI 2019) pMNIST table, NRU row")},
        "as the NRU code selected (not checked here)",
        "1 cell x 7 runs x 93 epochs; ~52 s per epoch on an H200: about 9 GPU hours"),
    "paper-copy": Reproduction(
        "copy:L=1000", ("dtriv", "momentum_dtriv", "lstm", "momentum_lstm"), "ce",
        {"dtriv": Published(None, "dtriv (NeurIPS 2019) and expRNN (ICML 2019) copy figures: "
                                  "near-zero cross-entropy (curves, no table)"),
         "lstm": Published(0.0204, "same figures: the LSTM stays at the memoryless baseline "
                                   "10 ln 8 / 1020 = 0.0204"),
         "momentum_dtriv": Published(None, "not published (MomentumRNN has no copy task)"),
         "momentum_lstm": Published(None, "not published (MomentumRNN has no copy task)")},
        "training loss on fresh batches (1_copying.py prints it every iteration)",
        "4 cells x 4000 iterations of batch 128, L 1000: ~3-8 s per iteration each on one CPU "
        "thread, so hours; minutes on a GPU"),
}
