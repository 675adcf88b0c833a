"""The phrase engine: each net's held-out likelihood beside an order-3 Markov chain, its melodies
beside the corpus's, and its speed.

    python bench/bench_phrase.py [--model phrase] [--folk-cache runs/phrase/essen.npz] [--json OUT]

- likelihood: negative log-likelihood per event (nats) of the rhythm, chords and melody nets on
  the JSB test sopranos (the melody with each beat's chord named from Bach's four voices, and
  without it, as the engine draws) and on the Essen test tunes (no chords), beside an order-3
  Markov chain over the same tokens trained in this run on the same corpus's train split. Needs
  the folk cache that `python -m models.train_phrase` writes (or music21 to parse it again);
- melodies: each JSB test soprano's first 2 bars continued by 2 bars (harmonizer `chords`, the
  live knobs' temperature and seed k), against the true next 2 bars: pitches in the prime's key,
  steps (<= 2 semitones) among the moves, repeated notes, the last note on the tonic, notes a bar;
- speed: `generate` of 2 bars after a 2-bar prime with the chord voicing (the respond mode's
  answer without a harmonizer), median and p99.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge import keys  # noqa: E402
from bridge.engines import load_engine  # noqa: E402
from bridge.engines.phrase import sequence_figures  # noqa: E402
from bridge.live import LIVE_SETTINGS  # noqa: E402
from bridge.score import REST, Score  # noqa: E402
from models import phrase_data as pd  # noqa: E402
from models.data import find_jsb16, load_jsb16  # noqa: E402


def melody_figures(notes: list[list[int]], key_of) -> dict:
    """Per melody (pitches of its notes), figures averaged over melodies."""
    in_key, steps, repeats, tonic_end, count = [], [], [], [], []
    for pitches, key in zip(notes, key_of):
        if len(pitches) < 2:
            continue
        scale = keys.scale_pitch_classes(*key)
        moves = np.diff(pitches)
        in_key.append(np.mean([p % 12 in scale for p in pitches]))
        steps.append(np.mean(np.abs(moves[moves != 0]) <= 2) if (moves != 0).any() else 0.0)
        repeats.append(np.mean(moves == 0))
        tonic_end.append(pitches[-1] % 12 == key[0])
        count.append(len(pitches))
    return {"in_key": float(np.mean(in_key)), "stepwise": float(np.mean(steps)), "repeated": float(np.mean(repeats)),
            "ends_on_tonic": float(np.mean(tonic_end)), "notes_per_bar": float(np.mean(count)) / 2}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="phrase")
    p.add_argument("--data", help="Jsb16thSeparated.npz (default: ../shared/data/jsb/)")
    p.add_argument("--folk-cache", default=str(ROOT / "runs" / "phrase" / "essen.npz"))
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()

    engine = load_engine(args.model, threads=1)
    npz = find_jsb16(args.data)
    jsb_train, jsb_test = (pd.jsb_lines(load_jsb16(npz, split)) for split in ("train", "test"))
    folk = pd.load_essen(Path(args.folk_cache)) if Path(args.folk_cache).exists() else None
    figures: dict = {"model": args.model}

    # ---- likelihood
    print("held-out NLL per event, nats: the net | an order-3 Markov chain trained on the corpus's train split")
    for corpus, train, test, chords in (("JSB test sopranos", jsb_train, jsb_test, True),
                                        ("Essen test tunes", folk and folk["train"], folk and folk["test"], False)):
        if not test:
            print(f"  {corpus}: no folk cache at {args.folk_cache} (python -m models.train_phrase writes it)")
            continue
        runs = [(chords, "")] + ([(False, " (no chord)")] if chords else [])
        for with_chords, label in runs:
            nets = sequence_figures(engine, train, test, chords=with_chords)
            for name in ("rhythm", "chords", "melody"):
                if f"{name}_nll" not in nets or (label and name != "melody"):
                    continue
                model, baseline = nets[f"{name}_nll"], nets[f"{name}_markov3_nll"]
                figures[f"{corpus} {name}{label}"] = {"net": model, "markov3": baseline, "events": nets[f"{name}_events"]}
                print(f"  {corpus:18s} {name + label:18s} {model:.3f} | {baseline:.3f}  ({nets[f'{name}_events']} events)"
                      f"{'' if model < baseline else '  NOT BELOW THE BASELINE'}")

    # ---- melodies: 2 bars after 2 bars of each test soprano
    chorales = load_jsb16(npz, "test")
    made, truth, key_of = [], [], []
    settings = LIVE_SETTINGS.replace(harmonizer="chords")
    for k, chorale in enumerate(chorales):
        downbeat = pd.jsb_downbeat(chorale[:, 0])
        start = downbeat + 32
        if len(chorale) < start + 32:
            continue
        soprano = chorale[downbeat:start, 0]
        prime = np.full((32, 4), REST, dtype=np.int16)
        prime[:, 0] = soprano
        known = np.zeros(prime.shape, dtype=bool)
        known[:, 0] = True
        key = keys.estimate_key(chorale[:, 0][chorale[:, 0] >= 0])
        score = engine.generate(Score.of(prime), known, 32, settings.replace(seed=k))
        made.append([p for p, s, _ in score.note_runs(0) if s >= 32])
        truth.append([p for p, s, _ in Score.of(chorale[downbeat:start + 32]).note_runs(0) if s >= 32])
        key_of.append(key)
    ours, bachs = melody_figures(made, key_of), melody_figures(truth, key_of)
    figures["continuations"] = {"engine": ours, "bach": bachs, "count": len(made)}
    print(f"\n{len(made)} JSB test sopranos, 2 bars continued by 2 (temperature {settings.temperature}):")
    for name in ours:
        print(f"  {name:14s} engine {ours[name]:.3f}   Bach's next 2 bars {bachs[name]:.3f}")

    # ---- speed
    times = []
    prime = np.full((32, 4), REST, dtype=np.int16)
    prime[:, 0] = np.repeat([67, 69, 71, 72, 74, 72, 71, 69], 4)
    known = np.zeros(prime.shape, dtype=bool)
    known[:, 0] = True
    engine.warm_up(settings)
    for seed in range(50):
        started = time.perf_counter()
        engine.generate(Score.of(prime), known, 32, settings.replace(seed=seed))
        times.append(time.perf_counter() - started)
    figures["generate_2_bars_ms"] = {"median": float(np.median(times) * 1e3), "p99": float(np.percentile(times, 99) * 1e3)}
    print(f"\ngenerate 2 bars after 2 (chord voicing): median {np.median(times) * 1e3:.1f} ms, "
          f"p99 {np.percentile(times, 99) * 1e3:.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
