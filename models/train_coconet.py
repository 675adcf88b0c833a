"""Train a Coconet on four-voice chorales. Read it top to bottom.

    python -m models.train_coconet --out runs/coconet                     # offline model
    python -m models.train_coconet --out runs/coconet-live --preset live  # fast live model
    python -m models.train_coconet --out runs/mine --source music21       # music21's chorales
    python -m models.train_coconet --out runs/mine --source midi --midi-dir my_chorales/
    python -m models.train_coconet --out runs/live-heads --resume models/checkpoints/coconet-live.pt --voice-heads 32

Running the same command again resumes from `OUT/last.pt` (model, optimizer, schedule, step,
random state); `--resume FILE` starts a new OUT from a checkpoint, such as the shipped models'
in `models/checkpoints/`; `--voice-heads N` adds voice heads to a checkpoint that has none (they
start as the trunk's own answer and train with it), `--freeze-trunk` then trains the heads alone on
the trunk as it runs in the product (batch norm on its running statistics). `OUT/best.pt` holds the weights with the lowest validation loss; `OUT/log.csv`
one row per evaluation. Each checkpoint carries its model config, so export needs nothing else.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models import data
from models.coconet import Coconet, CoconetConfig, count_parameters, masked_nll
from models.training import EarlyStopping, RunLog, save_checkpoint

PRESETS = {
    "offline": CoconetConfig(num_layers=16, channels=64, separable=False,
                             time_dilations=(1,), pitch_dilations=(1, 2, 4, 12)),
    "live": CoconetConfig(num_layers=16, channels=48, separable=True,
                          time_dilations=(1, 2, 4, 8), pitch_dilations=(1, 2, 4, 12), head_channels=32),
    "tiny": CoconetConfig(num_layers=4, channels=16, separable=False,       # smoke tests
                          time_dilations=(1,), pitch_dilations=(1, 2)),
}
# the offline mix is data.MASK_WEIGHTS; the live model is asked the live bridge's question (a
# melody onset, the past known) most of all
MASK_WEIGHTS = data.MASK_WEIGHTS
PRESET_MASK_WEIGHTS = {"live": {"orderless": 0.3, "melody": 0.1, "chronological": 0.2, "live_onset": 0.4}}
DEFAULT_LR = 2e-3   # Adam's

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--out", required=True, help="run folder: checkpoints and log")
p.add_argument("--preset", choices=sorted(PRESETS), default="offline")
p.add_argument("--layers", type=int, help="override the preset's number of conv layers")
p.add_argument("--channels", type=int, help="override the preset's channels")
p.add_argument("--mask-mix", choices=["standard", "live"],
               help="the questions it learns (data.MASK_WEIGHTS, or the live bridge's PRESET_MASK_WEIGHTS['live']); "
                    "default: the preset's")
p.add_argument("--voice-heads", type=int, help="voice heads of this width (also added to a resumed model without them)")
p.add_argument("--freeze-trunk", action="store_true", help="train the voice heads only, on the trunk in eval mode")
p.add_argument("--source", choices=["jsb", "music21", "midi"], default="jsb")
p.add_argument("--data", help="JSB Jsb16thSeparated.npz (default: ../shared/data/jsb/ beside the checkout)")
p.add_argument("--midi-dir", help="with --source midi: a folder of four-track MIDI files")
p.add_argument("--batch", type=int, default=16)
p.add_argument("--crop", type=int, default=32, help="crop length in 16th-note steps")
p.add_argument("--lr", type=float, help=f"Adam's learning rate (default {DEFAULT_LR:g}); with a resumed run, it "
                                       "replaces the checkpoint's (a lower rate to settle a trained model)")
p.add_argument("--max-steps", type=int, default=100_000)
p.add_argument("--minutes", type=float, default=math.inf, help="stop after this much wall time")
p.add_argument("--eval-every", type=int, default=250)
p.add_argument("--patience", type=int, default=12, help="evaluations without improvement before stopping")
p.add_argument("--resume", help="a checkpoint to start from when OUT has no last.pt yet "
                                "(e.g. models/checkpoints/coconet.pt, the shipped model's)")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--device", default="cpu", help="cpu, cuda or auto (cuda where there is one); checkpoints are "
                                               "written for the CPU either way")
p.add_argument("--seed", type=int, default=0)
args = p.parse_args()
if args.lr is not None and not args.lr > 0:
    raise SystemExit(f"--lr must be > 0, not {args.lr}")

torch.set_num_threads(args.threads)
device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                      "cpu" if args.device == "auto" else args.device)
if device.type == "cuda" and not torch.cuda.is_available():
    raise SystemExit(f"--device {args.device}: no CUDA device here")


def on_device(*arrays: np.ndarray) -> list[torch.Tensor]:
    return [torch.from_numpy(a).to(device) for a in arrays]


out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# ---- data: training chorales for crops, a fixed validation set for early stopping --------------
if args.source == "jsb":
    npz = data.find_jsb16(args.data)
    if npz is None:
        raise SystemExit("no JSB data: pass --data path/to/Jsb16thSeparated.npz")
    train_set, valid_set = data.load_jsb16(npz, "train"), data.load_jsb16(npz, "valid")
    source_name = f"JSB Jsb16thSeparated.npz train split ({len(train_set)} chorales)"
else:
    chorales, source_name = data.load_user_chorales(args.source, args.midi_dir)
    train_set, valid_set = data.split_off_validation(chorales)

mask_weights = PRESET_MASK_WEIGHTS.get(args.mask_mix or args.preset, MASK_WEIGHTS)
valid_rng = np.random.default_rng(10_000)
valid_crops = data.random_crops(valid_set, 512, args.crop, valid_rng, max_transpose=0)
valid_masks = data.mixed_masks(512, args.crop, valid_rng, mask_weights, valid_crops)     # (mask, target)
valid_pitches, valid_mask, valid_target = on_device(valid_crops, *valid_masks)
valid_questions = tuple(on_device(*data.step_questions(valid_masks[0])))

# ---- model, optimizer, schedule; resume if a checkpoint is there --------------------------------
config = PRESETS[args.preset]
if args.layers or args.channels:
    config = CoconetConfig.from_dict({**config.to_dict(),
                                      **({"num_layers": args.layers} if args.layers else {}),
                                      **({"channels": args.channels} if args.channels else {})})
last_path, best_path = out / "last.pt", out / "best.pt"
resume_from = last_path if last_path.exists() else (Path(args.resume) if args.resume else None)
state = torch.load(resume_from, map_location="cpu", weights_only=False) if resume_from else None
if state is not None:
    config = CoconetConfig.from_dict(state["config"])
if args.voice_heads is not None and args.voice_heads != config.head_channels:
    if state is not None and config.head_channels:
        raise SystemExit(f"{resume_from} has voice heads of width {config.head_channels}, not {args.voice_heads}")
    config = dataclasses.replace(config, head_channels=args.voice_heads)
heads_added = state is not None and config.head_channels and not state["config"].get("head_channels")
model = Coconet(config).to(device)
trunk_parameters = [p for name, p in model.named_parameters() if not name.startswith("heads.")]
optimizer = torch.optim.Adam([{"params": trunk_parameters}]
                             + ([{"params": list(model.heads.parameters())}] if model.heads else []),
                             lr=DEFAULT_LR if args.lr is None else args.lr)
plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
step, stopping, rng = 0, EarlyStopping(args.patience), np.random.default_rng(args.seed)
if state is not None:
    missing, unexpected = model.load_state_dict(state["model"], strict=not heads_added)
    assert not unexpected and all(name.startswith("heads.") for name in missing), (missing, unexpected)
    saved = state["optimizer"]
    if heads_added:  # the trunk's optimizer state goes on; the new heads' group starts fresh
        saved = {**saved, "param_groups": saved["param_groups"] + optimizer.state_dict()["param_groups"][1:]}
        saved["param_groups"][1]["lr"] = saved["param_groups"][0]["lr"]
    optimizer.load_state_dict(saved)
    if args.lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = args.lr
    plateau.load_state_dict(state["plateau"])
    step, stopping.best, stopping.stale = state["step"], state["best_valid"], state["stale"]
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    print(f"resumed from {resume_from} at step {step} (best valid {stopping.best:.4f})")
    changed = [why for why, differs in (("voice heads added", heads_added),
                                        (f"mask mix changed to {mask_weights}",
                                         state.get("mask_weights", MASK_WEIGHTS) != mask_weights),
                                        (f"crop changed to {args.crop}", state.get("crop", 32) != args.crop))
               if differs]
    if changed:
        # another question, or heads whose loss now counts too: the old validation figure is not
        # comparable, start its record afresh
        stopping = EarlyStopping(args.patience)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
        print(f"{', '.join(changed)}: validation record restarted")
if args.freeze_trunk:
    if model.heads is None:
        raise SystemExit("--freeze-trunk trains voice heads: the model has none (--voice-heads N)")
    for parameter in trunk_parameters:
        parameter.requires_grad_(False)
print(f"{args.preset}: {config.num_layers} layers x {config.channels} channels"
      f"{' separable' if config.separable else ''}"
      f"{f', voice heads of {config.head_channels}' if config.head_channels else ''}, "
      f"{count_parameters(model):,} parameters; {source_name}")


def loss_of(pitches, mask, target, questions) -> torch.Tensor:
    """The masked cells' mean NLL, plus, with voice heads, the mean NLL of the voices they draw."""
    log_probs, features = model.trunk(pitches, mask)
    loss = masked_nll(log_probs, pitches, target)
    if model.heads is not None:
        loss = loss + model.heads.step_nll(features, log_probs, pitches, *questions)
    return loss


def checkpoint(path: Path, valid_loss: float) -> None:
    save_checkpoint(path, {
        "config": config.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "plateau": plateau.state_dict(), "step": step, "best_valid": stopping.best, "stale": stopping.stale,
        "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        "valid_loss": valid_loss, "train_data": source_name, "mask_weights": mask_weights, "crop": args.crop,
    })


@torch.no_grad()
def validation_loss() -> float:
    model.eval()
    losses = [loss_of(valid_pitches[i:i + 64], valid_mask[i:i + 64], valid_target[i:i + 64],
                      [q[i:i + 64] for q in valid_questions]).item()
              for i in range(0, len(valid_pitches), 64)]
    train_mode()
    return float(np.mean(losses))


def train_mode() -> None:
    # a frozen trunk runs as in the product, batch norm on its running statistics; the heads
    # have no layers that train differently
    model.train(not args.freeze_trunk)


# ---- the loop ------------------------------------------------------------------------------------
log, train_losses = RunLog(out, ["step"]), []
bar = tqdm(total=args.max_steps, initial=step, unit="step", dynamic_ncols=True)
train_mode()
while step < args.max_steps and log.minutes < args.minutes:
    crops = data.random_crops(train_set, args.batch, args.crop, rng)
    mask, target = data.mixed_masks(args.batch, args.crop, rng, mask_weights, crops)
    loss = loss_of(*on_device(crops, mask, target), tuple(on_device(*data.step_questions(mask))))
    optimizer.zero_grad(set_to_none=True)
    if loss.requires_grad:  # a frozen trunk's batch without one-step questions teaches the heads nothing
        loss.backward()
        optimizer.step()
    step += 1
    train_losses.append(loss.item())
    bar.update(1)
    if step % args.eval_every == 0:
        valid = validation_loss()
        plateau.step(valid)
        if stopping.improved(valid):
            checkpoint(best_path, valid)
        lr = optimizer.param_groups[0]["lr"]
        train = float(np.mean(train_losses))
        train_losses = []
        log.write(step, train=train, valid=valid, lr=lr)
        bar.set_postfix(train=f"{train:.3f}", valid=f"{valid:.3f}", best=f"{stopping.best:.3f}", lr=f"{lr:.0e}")
        checkpoint(last_path, valid)
        if stopping.done:
            print(f"\nearly stop at step {step}: no better validation loss in {stopping.stale} evaluations")
            break
bar.close()
if not best_path.exists():  # a run shorter than one evaluation still leaves weights to export
    stopping.best = validation_loss()
    checkpoint(best_path, stopping.best)
checkpoint(last_path, stopping.best)
print(f"done: step {step}, best validation loss {stopping.best:.4f} -> {best_path}")
