"""Milliseconds per forward pass of each shipped Coconet model, and per live note-mode miss.

    python bench/bench_forward.py [--reps 200]
    python bench/bench_forward.py --miss coconet-live [OTHER.onnx ...] [--reps 500] [--past 16]

Forward: batch 1 at 32 steps (two bars) and at 240 steps (an average JSB chorale: one Gibbs step
offline), half the cells masked, on one thread and on all cores. Median and p99 over `--reps`
runs after a warm-up.

Miss (`--miss`): what the live bridge's note mode pays when speculation did not foresee a note,
`engine.inpaint(window, known, settings, open_end=True)` as bridge.live.ask_engine calls it: a
(17, 4) window (a bar of past, `--past 16`, and the present step), the present's soprano known and its alto,
tenor and bass unknown, live default settings, one onnxruntime thread (`load_engine(model,
threads=1)`). The windows are 64 soprano onsets of the JSB test chorales. Each model is timed
drawing the step one network call per voice, and, when it has voice heads, with one call and
its heads; all of them in turn, repetition by repetition, so load on the machine hits each alike.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.engines import load_engine  # noqa: E402
from bridge.engines.coconet import FROM_STEP  # noqa: E402
from bridge.onnxmodel import OnnxModel, default_threads  # noqa: E402
from bridge.settings import Settings  # noqa: E402
from models import SHIPPED_MODELS, shipped_model  # noqa: E402
from models.data import find_jsb16, load_jsb16  # noqa: E402

LIVE_PAST = 16  # bridge.live's default context: a bar


def time_forward(model: OnnxModel, steps: int, reps: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    voices, pitches = model.meta_int("num_voices"), model.meta_int("num_pitches")
    feeds = {"pitches": rng.integers(0, pitches, (1, steps, voices)).astype(np.int64),
             "mask": (rng.random((1, steps, voices)) < 0.5).astype(np.float32)}
    if FROM_STEP in {i.name for i in model.session.get_inputs()}:
        feeds[FROM_STEP] = np.array(0, np.int64)   # every step, as offline
    for _ in range(10):
        model.session.run(["log_probs"], feeds)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        model.session.run(["log_probs"], feeds)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3), float(np.percentile(times, 99) * 1e3)


def forward_table(reps: int) -> None:
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
            short = time_forward(model, 32, reps)
            long = time_forward(model, 240, max(20, reps // 5))
            print(f"{name:<14}{threads:>8}{path.stat().st_size / 1e6:>9.2f}{short[0]:>14.2f} ms"
                  f"{short[1]:>6.2f} ms{long[0]:>15.2f} ms{long[1]:>7.1f} ms")


def live_windows(past: int, count: int = 64) -> list[np.ndarray]:
    """(past + 1, 4) windows ending at soprano onsets of the JSB test chorales (MIDI pitches)."""
    npz = find_jsb16()
    if npz is None:
        raise SystemExit("bench_forward --miss: no JSB data beside the checkout (../shared/data/jsb/)")
    windows = []
    for chorale in load_jsb16(npz, "test"):
        soprano = chorale[:, 0]
        onsets = [t for t in range(past, len(chorale)) if soprano[t] >= 0 and soprano[t] != soprano[t - 1]]
        windows += [chorale[t - past:t + 1] for t in onsets[::7]]
        if len(windows) >= count:
            break
    return windows[:count]


def miss_table(models: list[str], reps: int, past: int) -> None:
    known = np.ones((past + 1, 4), dtype=bool)
    known[-1, 1:] = False
    settings = Settings()
    windows = live_windows(past)
    paths = []   # (label, engine, uses heads)
    for model in models:
        with_heads = load_engine(model, threads=1)
        if with_heads.head_weights is not None:
            paths.append((f"{model}: one call + voice heads", with_heads))
        per_voice = load_engine(model, threads=1)
        per_voice.head_weights = None  # the same network, asked once per voice
        paths.append((f"{model}: one call per voice", per_voice))
    for _, engine in paths:
        engine.warm_up()
        for window in windows[:16]:
            engine.inpaint(window, known, settings, open_end=True)
    times = [[] for _ in paths]
    for rep in range(reps):
        window = windows[rep % len(windows)]
        for i, (_, engine) in enumerate(paths):
            started = time.perf_counter()
            engine.inpaint(window, known, settings, open_end=True)
            times[i].append(time.perf_counter() - started)
    print(f"live note-mode miss: inpaint of a ({past + 1}, 4) window, the present's alto, tenor, bass unknown; "
          f"1 onnxruntime thread, {reps} runs each")
    width = max(len(label) for label, _ in paths) + 2
    print(f"{'path':<{width}}{'median':>10}{'p99':>10}{'mean':>10}")
    for (label, _), t in zip(paths, times):
        t = np.array(t) * 1e3
        print(f"{label:<{width}}{np.median(t):>7.2f} ms{np.percentile(t, 99):>7.2f} ms{t.mean():>7.2f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--miss", nargs="+", metavar="MODEL", help="time the live miss of these models (names or .onnx)")
    p.add_argument("--past", type=int, default=LIVE_PAST, help="with --miss: steps of past in the window "
                                                                 f"(default {LIVE_PAST}, the live bridge's)")
    args = p.parse_args()
    if args.miss:
        miss_table(args.miss, args.reps, args.past)
    else:
        forward_table(args.reps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
