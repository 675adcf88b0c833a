"""Speed of the rnnrbm engine on this machine: a generated step, a harmonized chorale, the live
bridge's one-step question and the speculator's.

    python bench/bench_rnnrbm.py [--model rnnrbm] [--limit N] [--threads 1]

- generate: 16 bars from nothing (64 quarter-note frames), seconds per 16th and per frame, and
  how a frame splits between the recurrent step (onnxruntime) and the 25-step Gibbs chain (numba);
- harmonize: the soprano of each JSB test chorale (the 16th-note npz; 77, about 245 sixteenths),
  `Settings()` defaults, mean and median per chorale;
- live: `inpaint` of a 33-row window (two bars of past, fully known, and the present row's alto,
  tenor and bass unknown), as note mode asks it, median and p99; and `melody_candidates` on it.
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

from bridge import rbm_kernels  # noqa: E402
from bridge.engines import load_engine  # noqa: E402
from bridge.settings import Settings  # noqa: E402
from models.data import find_jsb16, load_jsb16  # noqa: E402


def percentile_ms(times: list[float], q: float) -> float:
    return float(np.percentile(times, q) * 1e3)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="rnnrbm", help="shipped model name or .onnx path (default rnnrbm)")
    p.add_argument("--limit", type=int, default=None, help="only the first N test chorales")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1: the step is tiny)")
    p.add_argument("--data", help="Jsb16thSeparated.npz (default: ../shared/data/jsb/)")
    args = p.parse_args()

    started = time.perf_counter()
    engine = load_engine(args.model, threads=args.threads)
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    engine.warm_up()
    warmed = time.perf_counter() - started
    settings = Settings()
    print(f"model {args.model}: {engine.num_pitches} pitches, {engine.num_hidden} hidden, {engine.num_recurrent} "
          f"recurrent, {engine.gibbs_steps} Gibbs steps per frame; {args.threads} onnxruntime thread(s); "
          f"load {loaded * 1e3:.0f} ms, warm-up {warmed * 1e3:.0f} ms")

    # ---- generation
    bars = 16
    empty = np.zeros((0, 4), dtype=np.int16)
    times = []
    for seed in range(10):
        started = time.perf_counter()
        engine.generate(empty, empty.astype(bool), bars * 16, settings.replace(seed=seed)).pitches
        times.append(time.perf_counter() - started)
    frames = bars * 16 // engine.steps_per_frame
    per_generation = statistics.median(times)
    notes = np.zeros((1, engine.num_pitches), dtype=np.float32)
    state = np.zeros((1, engine.num_recurrent), dtype=np.float32)
    step_times, gibbs_times = [], []
    rng = np.random.default_rng(0)
    temperatures = rbm_kernels.annealing_temperatures(engine.gibbs_steps, settings.temperature)
    for _ in range(500):
        started = time.perf_counter()
        state, visible_bias, hidden_bias = engine.step(notes, state)
        step_times.append(time.perf_counter() - started)
        visible = np.zeros((1, engine.num_pitches), dtype=np.int8)
        started = time.perf_counter()
        rbm_kernels.gibbs_chains(engine.weights, visible_bias, hidden_bias, np.full((1, engine.num_pitches), -1, np.int8),
                                 visible, temperatures, rng.random((len(temperatures), 1, engine.num_hidden)),
                                 rng.random((len(temperatures), 1, engine.num_pitches)))
        gibbs_times.append(time.perf_counter() - started)
        notes = visible.astype(np.float32)
    print(f"generate {bars} bars from nothing: median {per_generation * 1e3:.1f} ms = "
          f"{per_generation / frames * 1e3:.3f} ms per frame, {per_generation / (bars * 16) * 1e3:.3f} ms per 16th; "
          f"a frame's recurrent step {statistics.median(step_times) * 1e6:.0f} us (onnxruntime), its Gibbs chain "
          f"{statistics.median(gibbs_times) * 1e6:.0f} us (numba, uniforms included)")

    # ---- harmonizing the JSB test sopranos
    data = find_jsb16(args.data)
    if data is None or not data.exists():
        print("(no JSB data beside the checkout: harmonize figures skipped)")
    else:
        sopranos = [c[:, 0].copy() for c in load_jsb16(data, "test")][:args.limit]
        times = []
        for seed, soprano in enumerate(sopranos):
            started = time.perf_counter()
            engine.harmonize(soprano, settings.replace(seed=seed)).pitches
            times.append(time.perf_counter() - started)
        print(f"harmonize {len(sopranos)} JSB test sopranos (mean {statistics.mean(map(len, sopranos)):.0f} sixteenths), "
              f"defaults: mean {statistics.mean(times) * 1e3:.1f} ms, median {statistics.median(times) * 1e3:.1f} ms, "
              f"max {max(times) * 1e3:.1f} ms per chorale")

    # ---- the live bridge's questions
    soprano = np.repeat(np.array([67, 67, 66, 64, 62, 67, 69, 71, 71], dtype=np.int16), 4)[:33]
    roll = np.array(engine.harmonize(soprano, settings.replace(seed=0)).pitches)
    known = np.ones(roll.shape, dtype=bool)
    known[-1, 1:] = False
    note_settings = settings  # the live bridge passes its settings as they are
    times = []
    for seed in range(500):
        started = time.perf_counter()
        engine.inpaint(roll, known, note_settings.replace(seed=seed), open_end=True)
        times.append(time.perf_counter() - started)
    known[-1, 0] = False
    speculation = []
    for seed in range(100):
        started = time.perf_counter()
        engine.melody_candidates(roll, known, note_settings.replace(seed=seed), 8)
        speculation.append(time.perf_counter() - started)
    print(f"live one-step inpaint (33 rows: 9 frames, the last sampled): median {percentile_ms(times, 50):.2f} ms, "
          f"p99 {percentile_ms(times, 99):.2f} ms; melody_candidates(8): median {percentile_ms(speculation, 50):.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
