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


def add_run_options(p) -> None:
    """--resume, --threads, --seed: every training script's."""
    p.add_argument("--resume", help="a checkpoint to start from when OUT has no last.pt yet")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)


def start_run(args) -> Path:
    """torch's threads and seed from the arguments; the run folder `args.out`, made."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def half_precision(state):
    """A checkpoint with every float32 tensor (weights, optimizer moments) as bfloat16, half the
    size; loading it into a model and its optimizer casts back (load_state_dict does). bfloat16,
    not float16: Adam's second moments are often below float16's smallest number, and a moment
    read back as 0 makes a step of gradient / eps."""
    if isinstance(state, torch.Tensor):
        return state.bfloat16() if state.dtype == torch.float32 else state
    if isinstance(state, dict):
        return {key: half_precision(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(half_precision(value) for value in state)
    return state


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temporary file, then rename: never a half-written checkpoint. Tensors
    are written as CPU tensors, whatever device trained them."""
    temporary = path.with_suffix(".tmp")
    torch.save(on_cpu(state), temporary)
    temporary.replace(path)


def on_cpu(value):
    """`value` with every tensor in it (through dicts, lists and tuples) on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: on_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(item) for item in value)
    return value


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


if __name__ == "__main__":
    # python -m models.training --half IN.pt OUT.pt: a checkpoint to ship, in half the bytes
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "--half":
        raise SystemExit("usage: python -m models.training --half IN.pt OUT.pt")
    save_checkpoint(Path(sys.argv[3]), half_precision(torch.load(sys.argv[2], weights_only=False)))
