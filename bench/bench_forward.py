"""Milliseconds per forward pass of each shipped model, in onnxruntime on this machine's cores.

    python bench/bench_forward.py [--reps 200]

Batch 1 at 32 steps (two bars: what the live bridge runs per onset) and at 240 steps (an average
JSB chorale: one Gibbs step offline), half the cells masked. Median and p99 over `--reps` runs
after a warm-up.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.onnxmodel import OnnxModel, default_threads  # noqa: E402
from models import SHIPPED_MODELS, shipped_model  # noqa: E402


def time_forward(model: OnnxModel, steps: int, reps: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    voices, pitches = model.meta_int("num_voices"), model.meta_int("num_pitches")
    feeds = {"pitches": rng.integers(0, pitches, (1, steps, voices)).astype(np.int64),
             "mask": (rng.random((1, steps, voices)) < 0.5).astype(np.float32)}
    for _ in range(10):
        model.run(feeds)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        model.run(feeds)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3), float(np.percentile(times, 99) * 1e3)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=200)
    args = p.parse_args()
    print("onnxruntime, batch 1, half the cells masked")
    print(f"{'model':<14}{'threads':>8}{'size MB':>9}{'32 steps median':>17}{'p99':>9}"
          f"{'240 steps median':>18}{'p99':>10}")
    for name in SHIPPED_MODELS:
        path = shipped_model(name)
        if not path.exists():
            print(f"{name:<14} (not built)")
            continue
        if OnnxModel(path).engine != "coconet":
            continue  # a Coconet forward pass; the rnnrbm's recurrent step: bench/bench_rnnrbm.py
        for threads in sorted({1, default_threads()}):
            model = OnnxModel(path, threads=threads)
            short = time_forward(model, 32, args.reps)
            long = time_forward(model, 240, max(20, args.reps // 5))
            print(f"{name:<14}{threads:>8}{path.stat().st_size / 1e6:>9.2f}{short[0]:>14.2f} ms"
                  f"{short[1]:>6.2f} ms{long[0]:>15.2f} ms{long[1]:>7.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
