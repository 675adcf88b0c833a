"""Print a four-voice MIDI file as text, one line per beat, to read a harmonization note by note.

    python -m bridge.showroll chorale.mid [--bars N]

Each line: bar.beat, then soprano, alto, tenor, bass at each 16th of the beat ('.' = held,
'-' = silent).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from bridge.errors import BadInput
from bridge.midifile import STEPS_PER_BEAT, read_voices

NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def note_name(pitch: int) -> str:
    return f"{NAMES[pitch % 12]}{pitch // 12 - 1}"


def render(roll: np.ndarray, beats_per_bar: int = 4, max_bars: int | None = None) -> str:
    lines = []
    steps = len(roll) if max_bars is None else min(len(roll), max_bars * beats_per_bar * STEPS_PER_BEAT)
    for beat_start in range(0, steps, STEPS_PER_BEAT):
        beat = beat_start // STEPS_PER_BEAT
        cells = []
        for v in range(roll.shape[1]):
            voice = []
            for t in range(beat_start, min(beat_start + STEPS_PER_BEAT, steps)):
                pitch = int(roll[t, v])
                held = t > 0 and pitch == roll[t - 1, v]
                voice.append("-" if pitch < 0 else "." if held else note_name(pitch))
            cells.append(" ".join(f"{x:>4}" for x in voice))
        lines.append(f"{beat // beats_per_bar + 1:>3}.{beat % beats_per_bar + 1} | " + " | ".join(cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("midi")
    p.add_argument("--bars", type=int, default=None)
    args = p.parse_args(argv)
    try:
        roll = read_voices(args.midi).pitches
    except BadInput as error:
        print(f"showroll: {error}", file=sys.stderr)
        return 2
    print("        | " + " | ".join(f"{n:^19}" for n in ("Soprano", "Alto", "Tenor", "Bass")))
    print(render(roll, max_bars=args.bars))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
