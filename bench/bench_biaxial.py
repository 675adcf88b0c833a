"""Where a bi-axial LSTM's time goes, on this machine: one time step in onnxruntime (one row, and a
run of 16 given rows in one call), one row drawn along the note axis (the engine's draws side by
side), a generated 16th, and the live bridge's question (its context window, the last row free).

    python bench/bench_biaxial.py [--model biaxial] [--repeat 200]

Per-harmonized-chorale figures: bench/bench_harmonize.py --model biaxial.
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
from bridge.engines.biaxial import DRAWS_AT_ONCE  # noqa: E402
from bridge.live import LIVE_SETTINGS, LiveConfig  # noqa: E402
from bridge.settings import Settings  # noqa: E402


def median_ms(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="biaxial", help="a shipped model's name or an exported .onnx")
    p.add_argument("--repeat", type=int, default=200)
    args = p.parse_args()
    engine = load_engine(args.model)
    engine.warm_up()
    pitches = engine.num_pitches
    rng = np.random.default_rng(0)
    hidden, cell = engine.zero_states(1)
    one = np.zeros((1, pitches, 2), dtype=np.float32)
    run16 = np.zeros((16, pitches, 2), dtype=np.float32)
    step = median_ms(lambda: engine.time_steps(one, 0, hidden, cell), args.repeat)
    steps16 = median_ms(lambda: engine.time_steps(run16, 0, hidden, cell), args.repeat)
    time_out, _, _ = engine.time_steps(one, 0, hidden, cell)
    free = np.full(pitches, -1, dtype=np.int8)
    clamps = np.repeat(free[None], DRAWS_AT_ONCE, 0)
    draw = median_ms(lambda: engine.note_stack.sample(np.repeat(time_out, DRAWS_AT_ONCE, 0), clamps, clamps,
                                                       rng.random((DRAWS_AT_ONCE, pitches, 2)), 1.0), args.repeat)
    prime = np.tile(np.array([[67, 62, 55, 43]], dtype=np.int16), (16, 1))
    started = time.perf_counter()
    engine.generate(prime, np.ones(prime.shape, dtype=bool), 64, Settings(seed=0, temperature=1.0)).pitches
    generated = 1e3 * (time.perf_counter() - started) / 64
    context = LiveConfig().context_steps
    window = np.tile(np.array([[67, 62, 55, 43]], dtype=np.int16), (context + 1, 1))
    known = np.ones(window.shape, dtype=bool)
    known[-1, 1:] = False
    live = median_ms(lambda: engine.inpaint(window, known, LIVE_SETTINGS.replace(seed=0), open_end=True),
                     max(20, args.repeat // 4))
    print(f"model {args.model}: {pitches} pitches")
    print(f"time stack, one row (onnxruntime):        {step:.3f} ms")
    print(f"time stack, 16 given rows in one call:    {steps16:.3f} ms ({steps16 / 16:.3f} ms a row)")
    print(f"note axis, one row, {DRAWS_AT_ONCE} draws side by side: {draw:.3f} ms")
    print(f"generate, per 16th (64 after a 16-row prime): {generated:.2f} ms")
    print(f"live question ({context} rows of context, the last row's lower voices free): {live:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
