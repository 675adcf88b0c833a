"""What the training scripts share: their run folder's checkpoints and CSV log, and early stopping
on the validation loss. The scripts stay straight scripts, read top to bottom; these are their
common chores, written once.
"""
from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temporary file, then rename: never a half-written checkpoint."""
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)


class RunLog:
    """OUT/log.csv, one row per evaluation, appended to when a run resumes: the given leading
    columns (epoch, step), then minutes since this run started, train and validation loss, lr."""

    def __init__(self, out: Path, lead: list[str], train: str = "train_loss", valid: str = "valid_loss"):
        path = out / "log.csv"
        new = not path.exists()
        self._file = open(path, "a", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow([*lead, "minutes", train, valid, "lr"])
            self._file.flush()
        self.started = time.monotonic()

    @property
    def minutes(self) -> float:
        return (time.monotonic() - self.started) / 60

    def write(self, *lead, train: float, valid: float, lr: float) -> None:
        self._csv.writerow([*lead, f"{self.minutes:.2f}", f"{train:.4f}", f"{valid:.4f}", f"{lr:.2e}"])
        self._file.flush()


@dataclass
class EarlyStopping:
    """The best validation loss so far and how many evaluations have not beaten it."""
    patience: int
    best: float = math.inf
    stale: int = 0

    def improved(self, valid: float) -> bool:
        """Count one evaluation; True when it is the best so far."""
        if valid < self.best:
            self.best, self.stale = valid, 0
            return True
        self.stale += 1
        return False

    @property
    def done(self) -> bool:
        return self.stale >= self.patience
