"""Train a bi-axial LSTM on chorales as 16th-note rolls of (play, articulate). Read it top to bottom.

    python -m models.train_biaxial --out runs/biaxial                       # JSB 16th split (npz)
    python -m models.train_biaxial --out runs/mine --source music21         # music21's chorales
    python -m models.train_biaxial --out runs/mine --source midi --midi-dir my_chorales/
    python -m models.train_biaxial --out runs/quarter --source jsb-quarter   # the JSB quarter-note pickle

The quarter-note pickle (Boulanger-Lewandowski's frames, the RNN-RBM's data and the published
likelihood figures') gives a model whose step is a quarter note and which scores play only: the
frames cannot say what is struck. It is for that comparison (`bachbridge eval` on the pickle);
the engine harmonizes with 16th models.

Running the same command again resumes from `OUT/last.pt` (model, optimizer, schedule, epoch,
random state); `--resume FILE` starts a new OUT from a checkpoint such as
`models/checkpoints/biaxial.pt`. `OUT/best.pt` holds the weights with the best validation loss;
`OUT/log.csv` one row per epoch. Each checkpoint carries its config, so export needs nothing else.

The loss is the exact negative log-likelihood of each step's notes given the steps before (the
note axis factorizes a step's pitches): binary cross-entropy of play at every pitch, and of
articulate where the pitch plays, summed over pitches, in nats per 16th step. Training reads
random crops of `--length` steps, each transposed at random within the model's range (up to
`--max-transpose` semitones); validation reads the whole validation chorales, untransposed.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models import data
from models.biaxial import Biaxial, BiaxialConfig, count_parameters, loss
from models.training import EarlyStopping, RunLog, add_run_options, save_checkpoint, start_run

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--out", required=True, help="run folder: checkpoints and log")
p.add_argument("--time-sizes", default="128,128", help="LSTM sizes along time")
p.add_argument("--note-sizes", default="64,32", help="LSTM sizes along the pitch axis")
p.add_argument("--upward", action="store_true", help="run the note axis from the bottom up (Johnson's order)")
p.add_argument("--absolute-pitch", action="store_true", help="give the time stack each pitch's class and place")
p.add_argument("--dropout", type=float, default=0.3)
p.add_argument("--source", choices=["jsb", "jsb-quarter", "music21", "midi"], default="jsb")
p.add_argument("--data", help="JSB Jsb16thSeparated.npz, or with jsb-quarter the pickle (default: ../shared/data/jsb/)")
p.add_argument("--midi-dir", help="with --source midi: a folder of four-track MIDI files")
p.add_argument("--batch", type=int, default=8, help="crops per batch")
p.add_argument("--length", type=int, help="steps per crop (default 128 16ths, 32 quarters)")
p.add_argument("--max-transpose", type=int, default=6)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--max-epochs", type=int, default=500)
p.add_argument("--epoch-batches", type=int, help="batches per epoch (default: about the training data's steps once)")
p.add_argument("--minutes", type=float, default=math.inf, help="stop after this much wall time")
p.add_argument("--patience", type=int, default=10, help="epochs without a better validation loss before stopping")
add_run_options(p)
args = p.parse_args()

out = start_run(args)

# ---- data: chorales as (T, 4) MIDI rolls on the 16th grid, or the pickle's frames -------------
quarter = args.source == "jsb-quarter"
length = args.length or (32 if quarter else 128)
if quarter:
    pkl = data.find_jsb_quarter(args.data)
    if pkl is None or not pkl.exists():
        raise SystemExit(f"no JSB pickle: pass --data path/to/{data.JSB_QUARTER_PKL}")
    train_set, valid_set = data.load_jsb_quarter(pkl, "train"), data.load_jsb_quarter(pkl, "valid")
    source_name = f"JSB {data.JSB_QUARTER_PKL} train split ({len(train_set)} chorales, quarter-note frames)"
elif args.source == "jsb":
    npz = data.find_jsb16(args.data)
    if npz is None or not npz.exists():
        raise SystemExit("no JSB data: pass --data path/to/Jsb16thSeparated.npz")
    train_set, valid_set = data.load_jsb16(npz, "train"), data.load_jsb16(npz, "valid")
    source_name = f"JSB Jsb16thSeparated.npz train split ({len(train_set)} chorales)"
else:
    chorales, source_name = data.load_user_chorales(args.source, args.midi_dir)
    train_set, valid_set = data.split_off_validation(chorales)

# ---- model, optimizer, schedule; resume if a checkpoint is there ----------------------------
last_path, best_path = out / "last.pt", out / "best.pt"
resume_from = last_path if last_path.exists() else (Path(args.resume) if args.resume else None)
state = torch.load(resume_from, weights_only=False) if resume_from else None
if state is not None:
    config = BiaxialConfig.from_dict(state["config"])
else:
    config = BiaxialConfig(time_sizes=[int(x) for x in args.time_sizes.split(",")],
                           note_sizes=[int(x) for x in args.note_sizes.split(",")], dropout=args.dropout,
                           downward=not args.upward, absolute_pitch=args.absolute_pitch,
                           step_16ths=4 if quarter else 1, articulation=not quarter)
    if quarter:  # the pickle's frames lie in MIDI 43..96 (moved to C): room to transpose either side
        config.min_pitch, config.num_pitches = 36, 64
if quarter != (config.step_16ths == 4):
    raise SystemExit("train_biaxial: the checkpoint was trained on another grid than --source gives")
model = Biaxial(config)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
step, epoch, stopping, rng = 0, 0, EarlyStopping(args.patience), np.random.default_rng(args.seed)
if state is not None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    plateau.load_state_dict(state["plateau"])
    step, epoch, stopping.best, stopping.stale = state["step"], state["epoch"], state["best_valid"], state["stale"]
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    print(f"resumed from {resume_from} at epoch {epoch} (best valid loss {stopping.best:.4f})")
lowest, highest = config.min_pitch, config.min_pitch + config.num_pitches - 1
print(f"bi-axial LSTM: {config.num_pitches} pitches (MIDI {lowest}..{highest}), time {config.time_sizes}, "
      f"note {config.note_sizes} ({'downward' if config.downward else 'upward'}), dropout {config.dropout}, "
      f"{count_parameters(model):,} parameters; {source_name}")
if quarter:
    outside = sum(1 for c in train_set + valid_set for f in c for p in f if not lowest <= p <= highest)
else:
    outside = sum(int(((c >= 0) & ((c < lowest) | (c > highest))).sum()) for c in train_set + valid_set)
if outside:
    print(f"note: {outside} notes of the data lie outside the model's range and are dropped")


def notes_of(chorales: list, indices: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, P, 2) notes of chorales (rolls, or frames) padded with silence to the longest, and
    the (B, T) mask of real steps. `indices`: the rolls hold pitch indices (random_crops), not
    MIDI pitches."""
    base = 0 if indices else config.min_pitch
    arrays = [data.frames_to_notes(c, base, config.num_pitches) if quarter
              else data.voices_to_notes(c, base, config.num_pitches) for c in chorales]
    notes = np.zeros((len(arrays), max(len(a) for a in arrays), config.num_pitches, 2), dtype=np.float32)
    mask = np.zeros(notes.shape[:2], dtype=np.float32)
    for b, array in enumerate(arrays):
        notes[b, :len(array)] = array
        mask[b, :len(array)] = 1.0
    return torch.from_numpy(notes), torch.from_numpy(mask)


def training_batch() -> tuple[torch.Tensor, torch.Tensor]:
    if quarter:
        return notes_of(data.random_frame_crops(train_set, args.batch, length, rng, args.max_transpose,
                                                config.min_pitch, config.num_pitches))
    crops = data.random_crops(train_set, args.batch, length, rng, args.max_transpose,
                              config.min_pitch, config.num_pitches)
    return notes_of(list(crops), indices=True)


def checkpoint(path: Path, valid_loss: float) -> None:
    save_checkpoint(path, {
        "engine": "biaxial", "config": config.to_dict(), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "plateau": plateau.state_dict(), "step": step, "epoch": epoch,
        "best_valid": stopping.best, "stale": stopping.stale, "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(), "valid_loss": valid_loss, "train_data": source_name,
    })


@torch.no_grad()
def validation_loss(chunk: int = 8) -> float:
    """Nats per step over the whole validation chorales."""
    model.eval()
    total, steps = 0.0, 0.0
    for start in range(0, len(valid_set), chunk):
        notes, mask = notes_of(valid_set[start:start + chunk])
        value, count = loss(model(notes), notes, mask, config.articulation)
        total += float(value) * float(count)
        steps += float(count)
    model.train()
    return total / steps


batches_per_epoch = args.epoch_batches or max(1, math.ceil(sum(len(c) for c in train_set) / (args.batch * length)))

# ---- the loop ----------------------------------------------------------------------------------
log = RunLog(out, ["epoch", "step"])
bar = tqdm(total=args.max_epochs, initial=epoch, unit="epoch", dynamic_ncols=True)
while epoch < args.max_epochs and log.minutes < args.minutes:
    losses = []
    for _ in range(batches_per_epoch):
        notes, mask = training_batch()
        value, _ = loss(model(notes), notes, mask, config.articulation)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        step += 1
        losses.append(value.item())
    epoch += 1
    bar.update(1)
    valid = validation_loss()
    plateau.step(valid)
    if stopping.improved(valid):
        checkpoint(best_path, valid)
    lr = optimizer.param_groups[0]["lr"]
    train = float(np.mean(losses))
    log.write(epoch, step, train=train, valid=valid, lr=lr)
    bar.set_postfix(loss=f"{train:.3f}", valid=f"{valid:.3f}", best=f"{stopping.best:.3f}", lr=f"{lr:.0e}")
    checkpoint(last_path, valid)
    if stopping.done:
        print(f"\nearly stop at epoch {epoch}: no better validation loss in {stopping.stale} epochs")
        break
bar.close()
if not best_path.exists():  # a run shorter than one epoch still leaves weights to export
    stopping.best = validation_loss()
    checkpoint(best_path, stopping.best)
checkpoint(last_path, stopping.best)
print(f"done: epoch {epoch}, best validation loss {stopping.best:.4f} nats per {'quarter' if quarter else '16th'} -> {best_path}")
