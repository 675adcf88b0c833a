"""The phrase engine: each net's held-out likelihood beside an order-3 Markov chain, its melodies
beside the corpus's, and its speed.

    python bench/bench_phrase.py [--model phrase] [--folk-cache runs/phrase/essen.npz] [--json OUT]

- likelihood: negative log-likelihood per event (nats) of the rhythm, chords and melody nets on
  the JSB test sopranos (the melody with each beat's chord named from Bach's four voices, and
  without it, as the engine draws) and on the Essen test tunes (no chords), beside an order-3
  Markov chain over the same tokens trained in this run on the same corpus's train split (the
  folk songs parsed with music21 once and cached, as `python -m models.train_phrase` does);
- melodies: the first 2 bars (after any pickup) of each JSB test soprano and of 100 Essen test
  tunes continued by 2 bars (harmonizer `chords`, the live knobs' temperature, seed k), beside
  the melody's own next 2 bars: pitches in the melody's key, steps (<= 2 semitones) among the
  moves, repeated notes, the last note on the tonic, notes a bar, the distance (total
  variation) of the pitch classes (from the tonic) and of the moves (-12..12 semitones) to the
  corpus's train split, and how often the answer reuses a motif of its call (an interval pattern
  of three notes, a rhythm of three lengths);
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
from models.phrase_data import Line  # noqa: E402
from models.data import find_jsb16, load_jsb16  # noqa: E402


INTERVAL_CLIP = 12             # intervals wider than an octave counted as an octave, either way


def notes_between(line: Line, start: int, stop: int) -> list[tuple[int, int]]:
    """(pitch, length in 16ths) of the line's notes that begin in [start, stop)."""
    return [(int(p), int(n)) for p, o, n in zip(line.pitch, line.onset, line.length) if p >= 0 and start <= o < stop]


def grid_of(line: Line, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The line's first `steps` 16ths as (pitches, onsets) on the grid."""
    pitches, onsets = np.full(steps, REST, dtype=np.int16), np.zeros(steps, dtype=bool)
    for p, o, n in zip(line.pitch, line.onset, line.length):
        if p >= 0 and o < steps:
            pitches[o:min(o + n, steps)] = p
            onsets[o] = True
    return pitches, onsets


def pitch_class_histogram(melodies: list[list[tuple[int, int]]], keys_of: list[tuple[int, str]]) -> np.ndarray:
    """Share of notes on each pitch class counted up from the melody's tonic."""
    counts = np.zeros(12)
    for notes, (tonic, _) in zip(melodies, keys_of):
        for pitch, _ in notes:
            counts[(pitch - tonic) % 12] += 1
    return counts / max(counts.sum(), 1)


def interval_histogram(melodies: list[list[tuple[int, int]]]) -> np.ndarray:
    """Share of moves of each size in semitones, -12..12 (wider ones clipped)."""
    counts = np.zeros(2 * INTERVAL_CLIP + 1)
    for notes in melodies:
        moves = np.clip(np.diff([p for p, _ in notes]), -INTERVAL_CLIP, INTERVAL_CLIP)
        np.add.at(counts, moves + INTERVAL_CLIP, 1)
    return counts / max(counts.sum(), 1)


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).sum() / 2)


def motifs(notes: list[tuple[int, int]]) -> tuple[set, set]:
    """The interval patterns (two moves: three notes) and rhythm patterns (three lengths) of a melody."""
    pitches, lengths = [p for p, _ in notes], [n for _, n in notes]
    moves = np.diff(pitches).tolist()
    return ({tuple(moves[i:i + 2]) for i in range(len(moves) - 1)},
            {tuple(lengths[i:i + 3]) for i in range(len(lengths) - 2)})


def melody_figures(answers: list[list[tuple[int, int]]], calls: list[list[tuple[int, int]]],
                   keys_of: list[tuple[int, str]], corpus_pitch_classes: np.ndarray,
                   corpus_intervals: np.ndarray) -> dict:
    """Figures of continuations (each a list of (pitch, length)) averaged over melodies, and
    their pitch-class and interval distributions' distance to the corpus's."""
    in_key, steps, repeats, tonic_end, count, interval_motif, rhythm_motif = [], [], [], [], [], [], []
    for notes, call, key in zip(answers, calls, keys_of):
        if len(notes) < 2:
            continue
        pitches = [p for p, _ in notes]
        scale = keys.scale_pitch_classes(*key)
        moves = np.diff(pitches)
        in_key.append(np.mean([p % 12 in scale for p in pitches]))
        steps.append(np.mean(np.abs(moves[moves != 0]) <= 2) if (moves != 0).any() else 0.0)
        repeats.append(np.mean(moves == 0))
        tonic_end.append(pitches[-1] % 12 == key[0])
        count.append(len(pitches))
        (call_moves, call_rhythms), (own_moves, own_rhythms) = motifs(call), motifs(notes)
        interval_motif.append(bool(call_moves & own_moves))
        rhythm_motif.append(bool(call_rhythms & own_rhythms))
    return {"in_key": float(np.mean(in_key)), "stepwise": float(np.mean(steps)), "repeated": float(np.mean(repeats)),
            "ends_on_tonic": float(np.mean(tonic_end)), "notes_per_bar": float(np.mean(count)) / 2,
            "pitch_class_distance": total_variation(pitch_class_histogram(answers, keys_of), corpus_pitch_classes),
            "interval_distance": total_variation(interval_histogram(answers), corpus_intervals),
            "reuses_interval_motif": float(np.mean(interval_motif)),
            "reuses_rhythm_motif": float(np.mean(rhythm_motif))}


def line_key(line: Line) -> tuple[int, str]:
    return keys.estimate_key(line.pitch[line.pitch >= 0], line.length[line.pitch >= 0])


def continuations(engine, train: list[Line], test: list[Line], settings, limit: int) -> dict:
    """The first 2 bars (after any pickup) of up to `limit` test melodies continued by 2 bars,
    against the melodies' own next 2 bars, both measured against the train split's melodies."""
    corpus = [notes_between(line, 0, int(line.onset[-1]) + 1) for line in train]
    corpus_keys = [line_key(line) for line in train]
    corpus_pitch_classes, corpus_intervals = pitch_class_histogram(corpus, corpus_keys), interval_histogram(corpus)
    made, truth, calls, keys_of = [], [], [], []
    for line in test:
        if len(made) == limit:
            break
        prime_steps = line.downbeat + 2 * line.bar
        end = int(line.onset[-1] + line.length[-1])
        calls_notes = notes_between(line, 0, prime_steps)
        if end < prime_steps + 2 * line.bar or len(calls_notes) < 3:
            continue
        pitches, onsets = grid_of(line, prime_steps)
        prime = np.full((prime_steps, 4), REST, dtype=np.int16)
        prime[:, 0] = pitches
        prime_onsets = np.zeros(prime.shape, dtype=bool)
        prime_onsets[:, 0] = onsets
        known = np.zeros(prime.shape, dtype=bool)
        known[:, 0] = True
        score = engine.generate(Score.of(prime, prime_onsets, meter=(line.bar, line.downbeat)), known, 2 * line.bar,
                                settings.replace(seed=len(made)))
        made.append([(p, stop - s) for p, s, stop in score.note_runs(0) if s >= prime_steps])
        truth.append(notes_between(line, prime_steps, prime_steps + 2 * line.bar))
        calls.append(calls_notes)
        keys_of.append(line_key(line))
    return {"engine": melody_figures(made, calls, keys_of, corpus_pitch_classes, corpus_intervals),
            "truth": melody_figures(truth, calls, keys_of, corpus_pitch_classes, corpus_intervals),
            "count": len(made)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="phrase")
    p.add_argument("--data", help="Jsb16thSeparated.npz (default: ../shared/data/jsb/)")
    p.add_argument("--folk-cache", default=str(ROOT / "runs" / "phrase" / "essen.npz"))
    p.add_argument("--temperature", type=float, help="of the continuations (default: the live knobs')")
    p.add_argument("--repeat-limit", type=int, help="of the continuations (default: the live knobs')")
    p.add_argument("--continuations", type=int, default=100, help="melodies continued per corpus (default 100)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()

    engine = load_engine(args.model, threads=1)
    npz = find_jsb16(args.data)
    jsb_train, jsb_test = (pd.jsb_lines(load_jsb16(npz, split)) for split in ("train", "test"))
    try:
        folk = pd.load_essen(Path(args.folk_cache))     # parsed with music21 and cached on first use
    except ImportError:
        folk = None
    figures: dict = {"model": args.model}

    # ---- likelihood
    print("held-out NLL per event, nats: the net | an order-3 Markov chain trained on the corpus's train split")
    for corpus, train, test, chords in (("JSB test sopranos", jsb_train, jsb_test, True),
                                        ("Essen test tunes", folk and folk["train"], folk and folk["test"], False)):
        if not test:
            print(f"  {corpus}: no folk songs (music21 is not installed)")
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

    # ---- melodies: 2 bars after 2 bars of held-out melodies
    settings = LIVE_SETTINGS.replace(harmonizer="chords", **{knob: value for knob, value in
                                                              (("temperature", args.temperature),
                                                               ("repeat_limit", args.repeat_limit)) if value is not None})
    for corpus, train, test in (("JSB test sopranos", jsb_train, jsb_test),
                                ("Essen test tunes", folk and folk["train"], folk and folk["test"])):
        if not test:
            continue
        found = continuations(engine, train, test, settings, args.continuations)
        figures[f"{corpus} continuations"] = found
        print(f"\n{corpus}: {found['count']} melodies, 2 bars continued by 2 (temperature {settings.temperature}, "
              f"repeat limit {settings.repeat_limit}),"
              f" the engine | the melody's own next 2 bars:")
        for name in found["engine"]:
            print(f"  {name:22s} {found['engine'][name]:.3f} | {found['truth'][name]:.3f}")

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
    median, p99 = float(np.median(times) * 1e3), float(np.percentile(times, 99) * 1e3)
    figures["generate_2_bars_ms"] = {"median": median, "p99": p99}
    print(f"\ngenerate 2 bars after 2 (chord voicing): median {median:.1f} ms, p99 {p99:.1f} ms"
          f" ({median / 2:.1f} ms a bar)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
