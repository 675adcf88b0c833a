"""Train an RNN-RBM on chorales as piano-roll frames. Read it top to bottom.

    python -m models.train_rnnrbm --out runs/rnnrbm                        # JSB quarter-note pickle
    python -m models.train_rnnrbm --out runs/mine --source music21         # music21's chorales
    python -m models.train_rnnrbm --out runs/mine --source midi --midi-dir my_chorales/

Running the same command again resumes from `OUT/last.pt` (model, optimizer, schedule, epoch,
random state); `--resume FILE` starts a new OUT from a checkpoint such as
`models/checkpoints/rnnrbm.pt`. `OUT/best.pt` holds the weights with the best validation
log-likelihood; `OUT/log.csv` one row per evaluation. Each checkpoint carries its config and the
data's statistics, so export needs nothing else.

Regularization: 229 chorales overfit the paper's 44k parameters within about 70 epochs (valid
NLL 7.38 nats, then rising); dropping 30% of the notes the RNN reads (`--dropout`) and AdamW's
weight decay (`--weight-decay 0.01`) let it go on improving for hundreds of epochs.

The loss is CD-k through the free energy (models/rnnrbm.py). Its value is no likelihood, so
validation estimates the real thing: the mean log-likelihood per frame of the first
`--valid-chorales` validation chorales, each frame's partition function by annealed importance
sampling (bridge/rbm_kernels.py; `--valid-chains` chains x `--valid-betas` temperatures, fixed
seeds, so the same weights always score the same). Early stopping and the learning-rate schedule
follow it; the checkpoints' `valid_loss` is its negative (nats per frame, lower is better).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bridge import rbm_kernels
from models import data
from models.rnnrbm import RnnRbm, RnnRbmConfig, count_parameters
from models.training import EarlyStopping, RunLog, add_run_options, save_checkpoint, start_run

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--out", required=True, help="run folder: checkpoints and log")
p.add_argument("--hidden", type=int, default=150, help="RBM hidden units")
p.add_argument("--recurrent", type=int, default=100, help="RNN units")
p.add_argument("--cd-steps", type=int, default=15, help="k of CD-k")
p.add_argument("--source", choices=["jsb", "music21", "midi"], default="jsb")
p.add_argument("--data", help="JSB jsb-chorales-quarter.pkl (default: ../shared/data/jsb/ beside the checkout)")
p.add_argument("--midi-dir", help="with --source midi: a folder of four-track MIDI files")
p.add_argument("--batch", type=int, default=10, help="chorales per batch")
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--dropout", type=float, default=0.3, help="share of the RNN's input notes dropped in training")
p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
p.add_argument("--pretrain-epochs", type=int, default=5, help="epochs of the RBM alone (no RNN) before the rest")
p.add_argument("--max-epochs", type=int, default=1000)
p.add_argument("--minutes", type=float, default=math.inf, help="stop after this much wall time")
p.add_argument("--eval-every", type=int, default=10, help="epochs between validations")
p.add_argument("--patience", type=int, default=6, help="validations without improvement before stopping")
p.add_argument("--valid-chorales", type=int, default=25)
p.add_argument("--valid-chains", type=int, default=4)
p.add_argument("--valid-betas", type=int, default=100)
add_run_options(p)
args = p.parse_args()

out = start_run(args)

# ---- data: chorales as lists of frames (tuples of MIDI pitches) -------------------------------
if args.source == "jsb":
    pickle_path = data.find_jsb_quarter(args.data)
    if pickle_path is None:
        raise SystemExit("no JSB data: pass --data path/to/jsb-chorales-quarter.pkl")
    train_set, valid_set = data.load_jsb_quarter(pickle_path, "train"), data.load_jsb_quarter(pickle_path, "valid")
    source_name = f"JSB jsb-chorales-quarter.pkl train split ({len(train_set)} chorales)"
else:
    chorales, source_name = data.load_user_chorales(args.source, args.midi_dir)
    train_set, valid_set = data.split_off_validation([data.voices_to_frames(c) for c in chorales])

# the pitches the data uses, and where its top voice sits (the runtime moves melodies there)
seen = [q for chorale in train_set + valid_set for frame in chorale for q in frame]
tops = [max(frame) for chorale in train_set for frame in chorale if frame]
data_stats = {"soprano_median": float(np.median(tops)), "frames": sum(len(c) for c in train_set)}

# ---- model, optimizer, schedule; resume if a checkpoint is there --------------------------------
last_path, best_path = out / "last.pt", out / "best.pt"
resume_from = last_path if last_path.exists() else (Path(args.resume) if args.resume else None)
state = torch.load(resume_from, weights_only=False) if resume_from else None
if state is not None:
    config = RnnRbmConfig.from_dict(state["config"])
else:
    config = RnnRbmConfig(min_pitch=min(seen), num_pitches=max(seen) - min(seen) + 1, hidden=args.hidden,
                          recurrent=args.recurrent, cd_steps=args.cd_steps, dropout=args.dropout)
model = RnnRbm(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
step, epoch, stopping, rng = 0, 0, EarlyStopping(args.patience), np.random.default_rng(args.seed)
if state is not None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    plateau.load_state_dict(state["plateau"])
    step, epoch, stopping.best, stopping.stale = state["step"], state["epoch"], state["best_valid"], state["stale"]
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    data_stats = state.get("data_stats", data_stats)
    print(f"resumed from {resume_from} at epoch {epoch} (best valid NLL {stopping.best:.4f})")
print(f"RNN-RBM: {config.num_pitches} pitches (MIDI {config.min_pitch}..{config.min_pitch + config.num_pitches - 1}), "
      f"{config.hidden} hidden, {config.recurrent} recurrent, CD-{config.cd_steps}, dropout {config.dropout}, "
      f"{count_parameters(model):,} parameters; {source_name}")

rolls = {"train": [data.frames_to_roll(c, config.min_pitch, config.num_pitches) for c in train_set],
         "valid": [data.frames_to_roll(c, config.min_pitch, config.num_pitches) for c in valid_set]}


def padded(chorales: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, P) frames padded with silence to the longest, and the (B, T) mask of real frames."""
    steps = max(len(c) for c in chorales)
    v = np.zeros((len(chorales), steps, config.num_pitches), dtype=np.float32)
    mask = np.zeros((len(chorales), steps), dtype=np.float32)
    for b, c in enumerate(chorales):
        v[b, :len(c)], mask[b, :len(c)] = c, 1.0
    return torch.from_numpy(v), torch.from_numpy(mask)


def checkpoint(path: Path, valid_loss: float) -> None:
    save_checkpoint(path, {
        "engine": "rnnrbm", "config": config.to_dict(), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "plateau": plateau.state_dict(), "step": step, "epoch": epoch,
        "best_valid": stopping.best, "stale": stopping.stale, "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        "valid_loss": valid_loss, "train_data": source_name, "data_stats": data_stats,
    })


valid_v, valid_mask = padded(rolls["valid"][:args.valid_chorales])
valid_betas = np.linspace(0.0, 1.0, args.valid_betas)


@torch.no_grad()
def validation_nll() -> float:
    """Mean -log p(v_t | v_<t) per frame, nats, each log Z_t by AIS (fixed seeds)."""
    model.eval()
    visible_bias, hidden_bias = model.biases(valid_v)
    model.train()
    real = valid_mask.numpy().astype(bool)
    v = valid_v.numpy()[real].astype(np.int8)
    bv = visible_bias.numpy()[real].astype(np.float64)
    bh = hidden_bias.numpy()[real].astype(np.float64)
    weights = model.weights.numpy().astype(np.float64)
    log_z = np.empty(len(v))
    rbm_kernels.ais_log_partition(weights, bv, bh, valid_betas, args.valid_chains, np.arange(len(v)), log_z)
    energy = np.empty(len(v))
    rbm_kernels.free_energy(weights, bv, bh, v, energy)
    return float(np.mean(energy + log_z))


def train_epoch(use_rnn: bool) -> float:
    global step
    order = rng.permutation(len(rolls["train"]))
    costs = []
    for start in range(0, len(order), args.batch):
        v, mask = padded([rolls["train"][i] for i in order[start:start + args.batch]])
        cost = model.cd_cost(v, mask, use_rnn=use_rnn)
        optimizer.zero_grad(set_to_none=True)
        cost.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        step += 1
        costs.append(cost.item())
    return float(np.mean(costs))


# ---- the loop ------------------------------------------------------------------------------------
log = RunLog(out, ["epoch", "step"], train="train_cost", valid="valid_nll")
if epoch == 0 and step == 0 and args.pretrain_epochs:
    for _ in tqdm(range(args.pretrain_epochs), desc="RBM pre-training", unit="epoch", dynamic_ncols=True):
        train_epoch(use_rnn=False)
bar = tqdm(total=args.max_epochs, initial=epoch, unit="epoch", dynamic_ncols=True)
train_costs = []
while epoch < args.max_epochs and log.minutes < args.minutes:
    train_costs.append(train_epoch(use_rnn=True))
    epoch += 1
    bar.update(1)
    if epoch % args.eval_every == 0:
        valid = validation_nll()
        plateau.step(valid)
        if stopping.improved(valid):
            checkpoint(best_path, valid)
        lr = optimizer.param_groups[0]["lr"]
        train = float(np.mean(train_costs))
        train_costs = []
        log.write(epoch, step, train=train, valid=valid, lr=lr)
        bar.set_postfix(cost=f"{train:.3f}", valid_nll=f"{valid:.3f}", best=f"{stopping.best:.3f}", lr=f"{lr:.0e}")
        checkpoint(last_path, valid)
        if stopping.done:
            print(f"\nearly stop at epoch {epoch}: no better validation log-likelihood in {stopping.stale} evaluations")
            break
bar.close()
if not best_path.exists():  # a run shorter than one evaluation still leaves weights to export
    stopping.best = validation_nll()
    checkpoint(best_path, stopping.best)
checkpoint(last_path, stopping.best)
print(f"done: epoch {epoch}, best validation NLL {stopping.best:.4f} nats per frame -> {best_path}")
