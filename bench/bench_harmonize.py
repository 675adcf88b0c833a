"""Seconds to harmonize an average JSB test chorale with the default settings, on this machine.

    python bench/bench_harmonize.py [--model coconet] [--limit N] [--checkpoint runs/coconet/best.pt]
    python bench/bench_harmonize.py --model coconet --model runs/coconet-float.onnx   # two, side by side

Harmonizes the soprano of each JSB test chorale (77, about 245 sixteenths on average) with the
shipped model at its own default settings (`Engine.default_settings`), the engine loaded and
warm; reports the mean and median per chorale. With the training checkpoint of the same model
at hand, it also runs, side by side in the same process, a plain PyTorch loop of the same
annealed Gibbs sampling (same network, same steps, torch.multinomial for the draws) on the same
chorales, and reports the ratio.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.engines import load_engine  # noqa: E402
from bridge.onnxmodel import default_threads  # noqa: E402
from bridge.settings import Settings  # noqa: E402
from models.data import find_jsb16, load_jsb16  # noqa: E402


def torch_parallel_penalty(pitches, settings: Settings):
    """(1, T, V, P) count of consecutive perfect fifths/octaves each pitch would make, in torch ops
    (the engine's numba kernel, vectorized; every cell judged against the state before the draw)."""
    import torch

    steps, voices = pitches.shape[1], pitches.shape[2]
    candidate = torch.arange(46).view(1, 1, 1, 46, 1)                 # (1,1,V,P,U) broadcast
    here = pitches.view(1, steps, 1, 1, voices)                          # other voices u at t
    interval = (candidate - here).abs() % 12
    perfect = ((interval == 0) | (interval == 7)) & (here >= 0)
    others = ~torch.eye(voices, dtype=torch.bool).view(1, 1, voices, 1, voices)
    count = torch.zeros(1, steps, voices, 46)
    for shift in (1, -1):                                                # from t - 1, into t + 1
        near = torch.roll(pitches, shifts=shift, dims=1)
        valid = torch.ones(steps, dtype=torch.bool)
        valid[0 if shift == 1 else -1] = False
        near_v = near.view(1, steps, voices, 1, 1)
        near_u = near.view(1, steps, 1, 1, voices)
        moves = (near_v != candidate) & (near_u != here) & (near_v >= 0) & (near_u >= 0)
        same = ((near_v - near_u).abs() % 12) == interval
        hit = perfect & others & moves & same & valid.view(1, steps, 1, 1, 1)
        count += hit.sum(-1)
    return count


def torch_sampling_loop(model, soprano_idx: np.ndarray, settings: Settings, generator) -> np.ndarray:
    """The same annealed block Gibbs as the engine, written the plain PyTorch way."""
    import torch

    steps = len(soprano_idx)
    pitches = torch.full((1, steps, 4), -1, dtype=torch.int64)
    pitches[0, :, 0] = torch.from_numpy(soprano_idx)
    free = torch.zeros(1, steps, 4, dtype=torch.bool)
    free[0, :, 1:] = torch.from_numpy(soprano_idx >= 0)[:, None]
    pitch_ids = torch.arange(46) + 36
    allowed = torch.stack([(pitch_ids >= lo) & (pitch_ids <= hi) for lo, hi in settings.voice_ranges])
    with torch.no_grad():
        for step in range(settings.steps):
            if step == 0:
                mask = free.clone()
            else:
                share = max(settings.pmin, settings.pmax - (settings.pmax - settings.pmin) * step
                            / (settings.alpha * settings.steps))
                mask = free & (torch.rand(free.shape, generator=generator) < share)
            log_probs = model(pitches, mask.float())
            penalized = log_probs - settings.parallel_penalty * torch_parallel_penalty(pitches, settings)
            logits = (penalized / settings.temperature).masked_fill(~allowed, float("-inf"))
            draws = torch.multinomial(logits.softmax(-1).reshape(-1, 46), 1, generator=generator)
            pitches = torch.where(mask, draws.reshape(pitches.shape), pitches)
    return pitches[0].numpy()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=None,
                   help="shipped name or .onnx path (default coconet); give it twice to time two models "
                        "side by side, chorale by chorale (e.g. the int8 and the float export)")
    p.add_argument("--limit", type=int, default=None, help="only the first N test chorales")
    p.add_argument("--checkpoint", default=str(ROOT / "runs" / "coconet" / "best.pt"),
                   help="training checkpoint of the same model, for the PyTorch comparison")
    p.add_argument("--data", default=None)
    args = p.parse_args()
    models = args.model or ["coconet"]

    data = find_jsb16(args.data)
    if data is None:
        print("no JSB data: pass --data path/to/Jsb16thSeparated.npz", file=sys.stderr)
        return 2
    sopranos = [c[:, 0].copy() for c in load_jsb16(data, "test")][:args.limit]
    threads = default_threads()

    engines = []
    for model in models:
        started = time.perf_counter()
        engine = load_engine(model, threads=threads)
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        engine.warm_up()
        engines.append(engine)
        print(f"{model}: load {loaded * 1e3:.0f} ms, warm-up (numba from cache + first run) "
              f"{(time.perf_counter() - started) * 1e3:.0f} ms")

    times = [[] for _ in engines]
    for seed, soprano in enumerate(sopranos):
        for engine, mine in zip(engines, times):
            started = time.perf_counter()
            engine.harmonize(soprano, engine.default_settings().replace(seed=seed))
            mine.append(time.perf_counter() - started)
    mean_len = statistics.mean(len(s) for s in sopranos)
    settings = engines[0].default_settings()   # the first model's; the PyTorch loop below samples so too
    print(f"{threads} threads, {len(sopranos)} JSB test chorales, mean length {mean_len:.0f} "
          f"sixteenths, defaults: steps {settings.steps}, temperature {settings.temperature}, "
          f"pmax {settings.pmax}, pmin {settings.pmin}, alpha {settings.alpha}")
    for model, mine in zip(models, times):
        print(f"onnxruntime + numba, {model}: mean {statistics.mean(mine):.3f} s, "
              f"median {statistics.median(mine):.3f} s, max {max(mine):.3f} s per chorale")
    if len(models) > 1:
        print(f"ratio (mean {models[1]} / mean {models[0]}): "
              f"{statistics.mean(times[1]) / statistics.mean(times[0]):.2f}x")
    onnx_times = times[0]

    checkpoint = Path(args.checkpoint)
    if not checkpoint.exists():
        print(f"(no checkpoint at {checkpoint}: PyTorch comparison skipped)")
        return 0
    import torch

    from models.coconet import Coconet, CoconetConfig

    torch.set_num_threads(threads)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = Coconet(CoconetConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    model.eval()
    generator = torch.Generator().manual_seed(0)
    torch_sampling_loop(model, np.maximum(sopranos[0][:32] - 36, -1), settings, generator)  # warm
    torch_times = []
    for soprano in sopranos:
        index = np.where(soprano >= 0, soprano - 36, -1).astype(np.int64)
        started = time.perf_counter()
        torch_sampling_loop(model, index, settings, generator)
        torch_times.append(time.perf_counter() - started)
    print(f"plain PyTorch loop  : mean {statistics.mean(torch_times):.3f} s, "
          f"median {statistics.median(torch_times):.3f} s per chorale")
    print(f"speed-up (PyTorch mean / onnxruntime+numba mean): "
          f"{statistics.mean(torch_times) / statistics.mean(onnx_times):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
