"""What a long run reports while it works: the unit and epoch now training, and an ETA from
stored run times. Library code calls a ``Progress``; the CLI's bar draws it, tests pass ``Silent``.
"""
from __future__ import annotations

import statistics
from typing import Protocol

from bench.lightning import pl


class Progress(Protocol):
    def begin(self, label: str, epochs: int) -> None: ...        # a unit starts training
    def epoch(self, done: int) -> None: ...                       # an epoch of it finished
    def end(self, cell: str, kind: str, seconds: float) -> None: ...   # the unit is stored


class Silent:
    """A Progress that shows nothing."""

    def begin(self, label: str, epochs: int) -> None:
        pass

    def epoch(self, done: int) -> None:
        pass

    def end(self, cell: str, kind: str, seconds: float) -> None:
        pass


class EpochTicker(pl.Callback):
    """Tells a Progress when a training epoch ends."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.progress.epoch(trainer.current_epoch + 1)


class Eta:
    """Seconds left, from the median stored duration of each remaining unit's (cell, kind); a
    (cell, kind) with no timing yet takes the median of its kind over all cells."""

    def __init__(self, durations: dict[tuple[str, str], list[float]],
                 remaining: list[tuple[str, str]]):
        self.durations = {k: list(v) for k, v in durations.items()}
        self.remaining = list(remaining)

    def done(self, cell: str, kind: str, seconds: float) -> None:
        self.durations.setdefault((cell, kind), []).append(seconds)
        if (cell, kind) in self.remaining:
            self.remaining.remove((cell, kind))

    def seconds_left(self) -> float | None:
        """None until some unit has been timed. A unit's estimate is the median of its own
        (cell, kind), else of its kind, else of every timed unit."""
        every = [x for v in self.durations.values() for x in v]
        if not every:
            return None
        total = 0.0
        for cell, kind in self.remaining:
            same_kind = [x for (c, k), v in self.durations.items() if k == kind for x in v]
            total += statistics.median(self.durations.get((cell, kind)) or same_kind or every)
        return total
