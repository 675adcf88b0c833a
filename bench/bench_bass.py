"""What a Coconet knows of the bass line, apart from how it is sampled.

    python bench/bench_bass.py [--model coconet] [--limit 30]

At every bass move of the JSB test chorales (the bass strikes a new pitch), the model is asked for
that note (all its steps unknown) under three conditionings, and the bench reports, beside the
share of Bach's own moves that are stepwise (1 or 2 semitones):
  - everything else known (Bach's soprano, alto, tenor and the rest of his bass);
  - alto and tenor unknown as well (what the sampler's early steps ask);
  - everything after the note unknown as well (the chronological question).
For each: the probability mass the model puts on stepwise moves among all moves away from the
previous pitch, and how often its likeliest move is stepwise. When these are near Bach's share
while `bench_music.py`'s harmonizations fall short of it, the sampler's joint draw, not the
network's conditional, is where the leaps come from.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.engines import load_engine  # noqa: E402
from models.data import find_jsb16, load_jsb16  # noqa: E402

BASS = 3
CONDITIONINGS = ("everything else known", "alto and tenor unknown too", "the future unknown too")


def question(shape: tuple, t: int, end: int, conditioning: str) -> np.ndarray:
    """The mask (1 = unknown) asking for the bass note on steps t..end-1 under `conditioning`."""
    mask = np.zeros(shape, dtype=np.float32)
    mask[0, t:end, BASS] = 1.0
    if conditioning == "alto and tenor unknown too":
        mask[0, :, 1:3] = 1.0
    elif conditioning == "the future unknown too":
        mask[0, end:] = 1.0
    return mask


def probe(engine, chorales: list[np.ndarray]) -> dict:
    figures = {name: ([], []) for name in CONDITIONINGS}
    bach = []
    for chorale in chorales:
        pitches = np.where(chorale >= 0, chorale - engine.min_pitch, -1).astype(np.int64)[None]
        bass = chorale[:, BASS]
        for t in range(1, len(bass)):
            if bass[t] < 0 or bass[t - 1] < 0 or bass[t] == bass[t - 1]:
                continue
            end = t
            while end < len(bass) and bass[end] == bass[t]:
                end += 1
            previous = bass[t - 1] - engine.min_pitch
            candidates = np.arange(engine.num_pitches)
            moves = candidates != previous
            stepwise = moves & (np.abs(candidates - previous) <= 2)
            bach.append(abs(int(bass[t]) - int(bass[t - 1])) <= 2)
            for name in CONDITIONINGS:
                log_probs = engine.log_probs(pitches, question(pitches.shape, t, end, name))[0, t, BASS]
                probs = np.exp(log_probs)
                mass, likeliest = figures[name]
                mass.append(probs[stepwise].sum() / probs[moves].sum())
                likeliest.append(bool(stepwise[np.argmax(np.where(moves, log_probs, -np.inf))]))
    return {"moves": len(bach), "bach_stepwise": float(np.mean(bach)),
            **{name: (float(np.mean(mass)), float(np.mean(likeliest))) for name, (mass, likeliest) in figures.items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="coconet", help="a shipped Coconet model's name or an .onnx path")
    p.add_argument("--limit", type=int, default=30, help="the first N test chorales")
    p.add_argument("--data", default=None)
    args = p.parse_args()
    data = find_jsb16(args.data)
    if data is None:
        print("no JSB data: pass --data path/to/Jsb16thSeparated.npz", file=sys.stderr)
        return 2
    report = probe(load_engine(args.model), load_jsb16(data, "test")[:args.limit])
    print(f"{args.model}: {report['moves']} bass moves in {args.limit} JSB test chorales; "
          f"Bach's stepwise: {report['bach_stepwise']:.3f}")
    for name in CONDITIONINGS:
        mass, likeliest = report[name]
        print(f"  {name:28s} stepwise mass {mass:.3f}, likeliest move stepwise {likeliest:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
