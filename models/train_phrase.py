"""Train the phrase models (rhythm GRU, chords LSTM, melody LSTM). Read it top to bottom.

    python -m models.train_phrase --out runs/phrase                  # JSB sopranos and Essen folk songs
    python -m models.train_phrase --out runs/phrase --no-folk        # JSB only (no music21 needed)

Data: the sopranos of the JSB 16th split (`--data`), with the chord of each beat named from the
four voices (models.phrase_data.beat_chords), and music21's Essen folk songs (`music21`, the
`train` extra; parsed once into `--folk-cache`), split 8 : 1 : 1 by a hash of each tune. Rhythm
and melody learn from both; chords from the chorales only (folk tunes have no voices). The
melody net sees the chord where it is known and learns without it too (folk tunes, and a
chorale's chord hidden one time in five). Training sequences are transposed at random (up to
`--max-transpose` semitones); validation reads the valid splits untransposed.

The loss is the cross-entropy of each event's token given the events before it, in nats per
event. Each net keeps its own optimizer and its own best validation loss; a net whose validation
loss has not improved for `--patience` epochs stops, and the run ends when all have (or after
`--minutes`). Running the same command again resumes from `OUT/last.pt`; `OUT/best.pt` holds
each net's best weights; `OUT/log.csv` one row per net and epoch.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models import data
from models import phrase_data as pd
from models.phrase import DEFAULT_CONFIGS, NAMES, PhraseNets, StepNetConfig, count_parameters
from models.training import EarlyStopping, RunLog, add_run_options, save_checkpoint, start_run

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--out", required=True, help="run folder: checkpoints and log")
p.add_argument("--data", help="JSB Jsb16thSeparated.npz (default: ../shared/data/jsb/)")
p.add_argument("--no-folk", action="store_true", help="leave out the Essen folk songs")
p.add_argument("--folk-cache", default="runs/phrase/essen.npz", help="the parsed folk songs (written on first use)")
p.add_argument("--folk-files", type=int, help="read only this many of music21's Essen files")
p.add_argument("--hidden", type=int, help="hidden size of every net (default: rhythm 128, chords and melody 192)")
p.add_argument("--layers", type=int, default=2)
p.add_argument("--dropout", type=float, default=0.3)
p.add_argument("--batch", type=int, default=32, help="sequences per batch")
p.add_argument("--length", type=int, default=96, help="events per training crop")
p.add_argument("--max-transpose", type=int, default=6)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--max-epochs", type=int, default=200)
p.add_argument("--epoch-batches", type=int, help="batches per net per epoch (default: its training data once)")
p.add_argument("--minutes", type=float, default=math.inf, help="stop after this much wall time")
p.add_argument("--patience", type=int, default=6)
add_run_options(p)
args = p.parse_args()

rng = np.random.default_rng(args.seed)
out = start_run(args)

# ---- data: melody lines as events, chorales with their chords --------------------------------
npz = data.find_jsb16(args.data)
if npz is None or not npz.exists():
    raise SystemExit("no JSB data: pass --data path/to/Jsb16thSeparated.npz")
jsb = {split: pd.jsb_lines(data.load_jsb16(npz, split)) for split in ("train", "valid")}
folk = {"train": [], "valid": []}
if not args.no_folk:
    folk = pd.load_essen(Path(args.folk_cache) if args.folk_cache else None, files=args.folk_files)
print(f"JSB sopranos {len(jsb['train'])} / {len(jsb['valid'])}, Essen folk songs {len(folk['train'])} / "
      f"{len(folk['valid'])} (train / valid)")
source_name = (f"JSB Jsb16thSeparated.npz train sopranos ({len(jsb['train'])})"
               + (f", music21 Essen folk songs ({len(folk['train'])})" if folk["train"] else ""))
train_lines = {"rhythm": jsb["train"] + folk["train"], "chords": jsb["train"], "melody": jsb["train"] + folk["train"]}
valid_lines = {"rhythm": jsb["valid"] + folk["valid"], "chords": jsb["valid"], "melody": jsb["valid"] + folk["valid"]}


def melody_shift(line: pd.Line) -> int:
    """A random transposition that keeps the line inside the melody net's pitches."""
    sounding = line.pitch[line.pitch >= 0]
    low = max(-args.max_transpose, pd.MELODY_LOW - int(sounding.min()))
    high = min(args.max_transpose, pd.MELODY_HIGH - int(sounding.max()))
    return int(rng.integers(low, high + 1)) if high >= low else 0


def sequence(name: str, line: pd.Line, train: bool) -> tuple[np.ndarray, np.ndarray]:
    if name == "rhythm":
        return pd.rhythm_sequence(line)
    if train:
        line = line.transposed(melody_shift(line) if name == "melody" else int(rng.integers(-6, 7)))
    if name == "chords":
        return pd.chord_sequence(line)
    return pd.melody_sequence(line, with_chords=not (train and rng.random() < 0.2))


def batch_of(pairs: list[tuple[np.ndarray, np.ndarray]], length: int | None):
    """Padded (B, T, I) inputs and (B, T) targets (-100 where padded), crops of `length` events."""
    crops = []
    for inputs, targets in pairs:
        if length is not None and len(targets) > length:
            start = int(rng.integers(len(targets) - length + 1))
            inputs, targets = inputs[start:start + length], targets[start:start + length]
        crops.append((inputs, targets))
    steps = max(len(t) for _, t in crops)
    x = np.zeros((len(crops), steps, crops[0][0].shape[1]), dtype=np.float32)
    y = np.full((len(crops), steps), -100, dtype=np.int64)
    for b, (inputs, targets) in enumerate(crops):
        x[b, :len(targets)], y[b, :len(targets)] = inputs, targets
    return torch.from_numpy(x), torch.from_numpy(y)


# ---- model, optimizers, resume ---------------------------------------------------------------
configs = {name: StepNetConfig(**{**DEFAULT_CONFIGS[name].__dict__, "layers": args.layers, "dropout": args.dropout,
                                  **({"hidden": args.hidden} if args.hidden else {})}) for name in NAMES}
nets = PhraseNets(configs)
optimizers = {name: torch.optim.Adam(nets.nets[name].parameters(), lr=args.lr) for name in NAMES}
stopping = {name: EarlyStopping(args.patience) for name in NAMES}
epoch = 0
resume_from = out / "last.pt" if (out / "last.pt").exists() else (Path(args.resume) if args.resume else None)
if resume_from is not None:
    state = torch.load(resume_from, weights_only=False)
    nets = PhraseNets.from_configs(state["configs"])
    nets.load_state_dict(state["model"])
    optimizers = {name: torch.optim.Adam(nets.nets[name].parameters(), lr=args.lr) for name in NAMES}
    for name in NAMES:
        optimizers[name].load_state_dict(state["optimizers"][name])
    if resume_from == out / "last.pt":
        epoch = state["epoch"]
        stopping = {name: EarlyStopping(args.patience, *state["stopping"][name]) for name in NAMES}
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
    print(f"resumed from {resume_from} at epoch {epoch}")
print("parameters: " + ", ".join(f"{name} {count_parameters(nets.nets[name]):,} ({nets.nets[name].config.cell})"
                                  for name in NAMES))
best = torch.load(out / "best.pt", weights_only=False)["model"] if (out / "best.pt").exists() else nets.state_dict()


def mean_loss(name: str, lines: list[pd.Line]) -> float:
    """Nats per event over whole lines, untransposed, dropout off."""
    net = nets.nets[name]
    net.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(lines), 64):
            x, y = batch_of([sequence(name, line, train=False) for line in lines[start:start + 64]], None)
            logits, _ = net(x)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum",
                                     ignore_index=-100).item()
            count += int((y >= 0).sum())
    net.train()
    return total / max(count, 1)


# ---- train: one epoch = each net that is not done through its training lines once ---------------
log = RunLog(out, ["epoch", "net"])
while epoch < args.max_epochs and log.minutes < args.minutes and not all(s.done for s in stopping.values()):
    epoch += 1
    for name in NAMES:
        if stopping[name].done:
            continue
        lines = [line for line in train_lines[name] if (line.pitch >= 0).sum() >= 2]
        batches = args.epoch_batches or max(1, len(lines) // args.batch)
        order = rng.permutation(len(lines))
        running, counted = 0.0, 0
        for b in tqdm(range(batches), desc=f"epoch {epoch} {name}", unit="batch", leave=False, dynamic_ncols=True):
            picked = [lines[order[(b * args.batch + i) % len(lines)]] for i in range(args.batch)]
            x, y = batch_of([sequence(name, line, train=True) for line in picked], args.length)
            logits, _ = nets.nets[name](x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
            optimizers[name].zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(nets.nets[name].parameters(), 1.0)
            optimizers[name].step()
            running, counted = running + loss.item(), counted + 1
        valid = mean_loss(name, valid_lines[name])
        improved = stopping[name].improved(valid)
        if improved:
            best.update({k: v.clone() for k, v in nets.state_dict().items() if k.startswith(f"nets.{name}.")})
        log.write(epoch, name, train=running / counted, valid=valid, lr=optimizers[name].param_groups[0]["lr"])
        print(f"epoch {epoch} {name}: train {running / counted:.4f} valid {valid:.4f} nats/event"
              f"{' (best)' if improved else ''} [{log.minutes:.1f} min]", flush=True)
    common = {"engine": "phrase", "configs": nets.configs(), "epoch": epoch, "train_data": source_name,
              "stopping": {name: (s.best, s.stale) for name, s in stopping.items()},
              "optimizers": {name: o.state_dict() for name, o in optimizers.items()},
              "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
              "valid_loss": stopping["melody"].best,
              "valid_losses": {name: round(s.best, 5) for name, s in stopping.items()}}
    save_checkpoint(out / "best.pt", {**common, "model": best})
    save_checkpoint(out / "last.pt", {**common, "model": nets.state_dict()})
print(f"done after {epoch} epochs, {log.minutes:.1f} min; best valid nats/event: "
      + ", ".join(f"{name} {s.best:.4f}" for name, s in stopping.items()))
