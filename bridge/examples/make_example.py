"""Writes chorale_melody.mid: the first three lines of the Old Hundredth (Genevan Psalter, 1551).

G major, 4/4, 9 bars: each line opens on a half note and closes on a held note, like a chorale
line ending on a fermata. Run from the repository root: `python -m bridge.examples.make_example`.
"""
from pathlib import Path

from bridge.midifile import STEPS_PER_BEAT, write_melody

G4, A4, B4, C5, D4, E4, FS4 = 67, 69, 71, 72, 62, 64, 66
HALF, QUARTER, WHOLE = 2, 1, 4  # beats

LINES = [
    # All people that on earth do dwell
    [(G4, HALF), (G4, QUARTER), (FS4, QUARTER), (E4, QUARTER), (D4, QUARTER), (G4, QUARTER),
     (A4, QUARTER), (B4, WHOLE)],
    # Sing to the Lord with cheerful voice
    [(B4, HALF), (B4, QUARTER), (B4, QUARTER), (A4, QUARTER), (G4, QUARTER), (C5, QUARTER),
     (B4, QUARTER), (A4, WHOLE)],
    # Him serve with mirth, his praise forth tell
    [(G4, HALF), (A4, QUARTER), (B4, QUARTER), (A4, QUARTER), (G4, QUARTER), (E4, QUARTER),
     (FS4, QUARTER), (G4, WHOLE)],
]


def melody_steps() -> list[int]:
    notes = [note for line in LINES for note in line]
    steps = []
    for (pitch, beats), (next_pitch, _) in zip(notes, notes[1:] + [(None, 0)]):
        length = beats * STEPS_PER_BEAT
        # Equal pitches on consecutive steps are one note to write_melody, so a repeated pitch
        # (B4 B4 B4) is released a 16th early to stay separate notes.
        gap = 1 if pitch == next_pitch else 0
        steps += [pitch] * (length - gap) + [-1] * gap
    return steps


if __name__ == "__main__":
    write_melody(Path(__file__).with_name("chorale_melody.mid"), melody_steps(), bpm=80.0)
