"""Phrases as events for the phrase models (rhythm, chords, melody): numpy only, so the engine
encodes its inputs exactly as training did.

A melody line becomes events, one per note or rest, on the 16th grid:

    pitch     MIDI pitch, or -1 for a rest
    onset     16ths from the start of the piece
    length    16ths the note or rest lasts
    position  16ths from the start of its bar (onset - bar start)
    bar       16ths a bar lasts (16 in 4/4, 12 in 3/4 and 6/8, ...)

and a four-voice piece also becomes one chord per beat (4 16ths): a root and a quality, or none.
Each model reads one step at a time (its `*_input` row) and names the next token:

    rhythm   token = note or rest, 1..16 16ths long (longer notes read as 16)
    chords   token = root * QUALITIES + quality, or NO_CHORD
    melody   token = pitch - MELODY_LOW (MELODY_LOW..MELODY_HIGH)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REST = -1
BEAT = 4                      # 16ths a beat
MAX_LENGTH = 16               # the longest note or rest a rhythm token names, in 16ths
RHYTHM_TOKENS = 2 * MAX_LENGTH
POSITIONS = 16                # onset places in a bar the models tell apart (longer bars wrap)
METERS = (8, 12, 16)          # bar lengths the models know by name (2/4, 3/4 or 6/8, 4/4); others: one more
METER_CLASSES = len(METERS) + 1
BEATS_IN_BAR = POSITIONS // BEAT

# chord qualities as pitch classes above the root; dominant sevenths before triads so that a
# full seventh chord is named as one
QUALITY_NAMES = ("", "m", "dim", "aug", "7", "m7", "m7b5", "dim7", "maj7")
QUALITY_TONES = ((0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 8), (0, 4, 7, 10), (0, 3, 7, 10), (0, 3, 6, 10),
                 (0, 3, 6, 9), (0, 4, 7, 11))
QUALITIES = len(QUALITY_NAMES)
NO_CHORD = 12 * QUALITIES
CHORD_TOKENS = NO_CHORD + 1
PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

MELODY_LOW, MELODY_HIGH = 48, 96   # the melody model's pitches, MIDI
MELODY_TOKENS = MELODY_HIGH - MELODY_LOW + 1

RHYTHM_INPUTS = RHYTHM_TOKENS + 1 + POSITIONS + METER_CLASSES               # last token (or start), where, meter
CHORD_INPUTS = CHORD_TOKENS + 1 + 12 + BEATS_IN_BAR + METER_CLASSES         # last chord, last beat's melody, beat
MELODY_INPUTS = MELODY_TOKENS + 1 + MAX_LENGTH + POSITIONS + METER_CLASSES + 12 + 1  # last pitch, length, where, chord


def chord_tones(token: int) -> tuple[int, ...]:
    """Pitch classes of a chord token (() for NO_CHORD)."""
    if token == NO_CHORD:
        return ()
    root, quality = divmod(token, QUALITIES)
    return tuple((root + tone) % 12 for tone in QUALITY_TONES[quality])


def chord_name(token: int) -> str:
    if token == NO_CHORD:
        return "N"
    root, quality = divmod(token, QUALITIES)
    return PITCH_CLASS_NAMES[root] + QUALITY_NAMES[quality]


# (CHORD_TOKENS - 1, 12): each chord's tones, and a bonus for a root in the bass
_TEMPLATES = np.zeros((NO_CHORD, 12), dtype=np.float64)
for _token in range(NO_CHORD):
    _TEMPLATES[_token, list(chord_tones(_token))] = 1.0


def name_chord(weights: np.ndarray, bass: int) -> int:
    """The chord token that best explains a beat: `weights` (12,) how long each pitch class
    sounds in it, `bass` the lowest pitch class at its start (-1: none). Tones in the chord count
    for it, tones outside against it, chord tones missing a little against it, a seventh more
    than its own weight (a passing tone does not make a seventh chord); a root in the bass breaks
    ties (a dim7 or aug chord is named by its bass)."""
    if weights.sum() <= 0:
        return NO_CHORD
    inside = _TEMPLATES @ weights
    outside = weights.sum() - inside
    missing = (_TEMPLATES * (weights <= 0)).sum(axis=1)
    score = inside - outside - 0.5 * missing - 1.2 * (_TEMPLATES.sum(axis=1) - 3) - 0.01 * _TEMPLATES.sum(axis=1)
    if bass >= 0:
        score[np.arange(NO_CHORD) // QUALITIES == bass] += 0.6
    return int(np.argmax(score))


def beat_chords(roll: np.ndarray) -> np.ndarray:
    """(T, V) MIDI roll (-1 = silent) -> (ceil(T / 4),) chord token per beat: the sonority at
    the beat, the 16ths after it (passing notes) a quarter as much."""
    beats = -(-len(roll) // BEAT)
    tokens = np.full(beats, NO_CHORD, dtype=np.int64)
    for b in range(beats):
        block = roll[b * BEAT:(b + 1) * BEAT]
        weights = np.zeros(12)
        for t, row in enumerate(block):
            for p in row[row >= 0]:
                weights[p % 12] += 1.0 if t == 0 else 0.25
        start = block[0][block[0] >= 0]
        tokens[b] = name_chord(weights, int(start.min()) % 12 if start.size else -1)
    return tokens


@dataclass(frozen=True)
class Line:
    """One melody as events (see the module's docstring), and its chord per beat when known."""
    pitch: np.ndarray      # (N,) int, -1 = rest
    onset: np.ndarray      # (N,) int, 16ths
    length: np.ndarray     # (N,) int, 16ths
    bar: int               # 16ths a bar
    downbeat: int          # 16ths from the start to the first full bar's start (a pickup's length), 0..bar-1
    chords: np.ndarray | None = None   # (beats,) chord tokens, beats counted from the start

    @property
    def position(self) -> np.ndarray:
        return (self.onset - self.downbeat) % self.bar

    def transposed(self, semitones: int) -> "Line":
        pitch = np.where(self.pitch >= 0, self.pitch + semitones, REST)
        chords = None
        if self.chords is not None:
            roots, qualities = np.divmod(self.chords, QUALITIES)
            chords = np.where(self.chords == NO_CHORD, NO_CHORD, ((roots + semitones) % 12) * QUALITIES + qualities)
        return Line(pitch, self.onset, self.length, self.bar, self.downbeat, chords)


def line_of(pitches: np.ndarray, onsets: np.ndarray | None = None, bar: int = 16, downbeat: int = 0,
            chords: np.ndarray | None = None) -> Line:
    """Events of a (T,) melody on the 16th grid (-1 = rest; `onsets` marks repeated notes struck
    again, default: a repeated pitch is held)."""
    pitches = np.asarray(pitches, dtype=np.int64)
    steps = len(pitches)
    if onsets is None:
        before = np.concatenate([[REST], pitches[:-1]])
        onsets = (pitches >= 0) & (pitches != before)
    onsets = np.asarray(onsets, dtype=bool) | ((pitches >= 0) & (np.concatenate([[REST], pitches[:-1]]) != pitches))
    starts = [t for t in range(steps) if onsets[t] or (pitches[t] < 0 and (t == 0 or pitches[t - 1] >= 0))]
    if steps and pitches[0] >= 0 and (not starts or starts[0] != 0):
        starts.insert(0, 0)         # a note held into the piece
    bounds = starts + [steps]
    pitch = np.array([pitches[s] for s in starts], dtype=np.int64)
    onset = np.array(starts, dtype=np.int64)
    length = np.diff(np.array(bounds, dtype=np.int64))
    return Line(pitch, onset, length, bar, downbeat % bar, chords)


def meter_class(bar: int) -> int:
    return METERS.index(bar) if bar in METERS else len(METERS)


def rhythm_token(pitch: int, length: int) -> int:
    return (MAX_LENGTH if pitch < 0 else 0) + min(max(int(length), 1), MAX_LENGTH) - 1


def token_rest_length(token: int) -> tuple[bool, int]:
    """(is a rest, length in 16ths) of a rhythm token."""
    return token >= MAX_LENGTH, token % MAX_LENGTH + 1


def melody_token(pitch: int) -> int:
    return min(max(int(pitch), MELODY_LOW), MELODY_HIGH) - MELODY_LOW


# ---- one input row per step: what each model reads before naming its next token --------------

def rhythm_input(row: np.ndarray, last_token: int, position: int, bar: int) -> None:
    """Fill `row` (RHYTHM_INPUTS,): the last rhythm token (-1: the start), the next onset's place in
    the bar, the meter."""
    row[:] = 0.0
    row[RHYTHM_TOKENS if last_token < 0 else last_token] = 1.0
    row[RHYTHM_TOKENS + 1 + position % POSITIONS] = 1.0
    row[RHYTHM_TOKENS + 1 + POSITIONS + meter_class(bar)] = 1.0


def chord_input(row: np.ndarray, last_chord: int, last_beat_classes: np.ndarray, beat: int, bar: int) -> None:
    """Fill `row` (CHORD_INPUTS,): the last beat's chord (-1: the start) and the pitch classes its
    melody sounded (12,), the beat's place in the bar, the meter."""
    row[:] = 0.0
    row[CHORD_TOKENS if last_chord < 0 else last_chord] = 1.0
    row[CHORD_TOKENS + 1:CHORD_TOKENS + 13] = last_beat_classes
    row[CHORD_TOKENS + 13 + beat % BEATS_IN_BAR] = 1.0
    row[CHORD_TOKENS + 13 + BEATS_IN_BAR + meter_class(bar)] = 1.0


def melody_input(row: np.ndarray, last_pitch: int, length: int, position: int, bar: int, chord: int) -> None:
    """Fill `row` (MELODY_INPUTS,): the last note's pitch (-1: none yet), this note's length and
    place in the bar, the meter, the chord it sounds over (-1: not known, as in a folk tune)."""
    row[:] = 0.0
    row[MELODY_TOKENS if last_pitch < 0 else melody_token(last_pitch)] = 1.0
    at = MELODY_TOKENS + 1
    row[at + min(max(length, 1), MAX_LENGTH) - 1] = 1.0
    at += MAX_LENGTH
    row[at + position % POSITIONS] = 1.0
    at += POSITIONS
    row[at + meter_class(bar)] = 1.0
    at += METER_CLASSES
    if chord >= 0:
        row[at + np.array(chord_tones(chord), dtype=np.int64)] = 1.0
        row[at + 12] = 1.0


def beat_melody_classes(line: Line, beats: int) -> np.ndarray:
    """(beats, 12): the pitch classes the melody sounds in each beat."""
    classes = np.zeros((beats, 12), dtype=np.float32)
    for pitch, onset, length in zip(line.pitch, line.onset, line.length):
        if pitch >= 0:
            for b in range(onset // BEAT, min(beats, -(-(onset + length) // BEAT))):
                classes[b, pitch % 12] = 1.0
    return classes


# ---- a whole line as training sequences: inputs (N, I) and targets (N,) per model --------------

def rhythm_sequence(line: Line) -> tuple[np.ndarray, np.ndarray]:
    n = len(line.pitch)
    inputs = np.zeros((n, RHYTHM_INPUTS), dtype=np.float32)
    targets = np.array([rhythm_token(p, l) for p, l in zip(line.pitch, line.length)], dtype=np.int64)
    for i, position in enumerate(line.position):
        rhythm_input(inputs[i], targets[i - 1] if i else -1, int(position), line.bar)
    return inputs, targets


def chord_sequence(line: Line) -> tuple[np.ndarray, np.ndarray]:
    chords = line.chords
    beats = len(chords)
    classes = beat_melody_classes(line, beats)
    inputs = np.zeros((beats, CHORD_INPUTS), dtype=np.float32)
    for b in range(beats):
        beat = ((b * BEAT - line.downbeat) % line.bar) // BEAT
        chord_input(inputs[b], int(chords[b - 1]) if b else -1, classes[b - 1] if b else np.zeros(12), beat, line.bar)
    return inputs, chords.astype(np.int64)


def melody_sequence(line: Line, with_chords: bool = True) -> tuple[np.ndarray, np.ndarray]:
    notes = np.flatnonzero(line.pitch >= 0)
    inputs = np.zeros((len(notes), MELODY_INPUTS), dtype=np.float32)
    positions = line.position
    last = -1
    for row, i in enumerate(notes):
        chord = -1
        if with_chords and line.chords is not None and line.onset[i] // BEAT < len(line.chords):
            chord = int(line.chords[line.onset[i] // BEAT])
        melody_input(inputs[row], last, int(line.length[i]), int(positions[i]), line.bar, chord)
        last = int(line.pitch[i])
    return inputs, np.array([melody_token(line.pitch[i]) for i in notes], dtype=np.int64)


# ---- corpora ----------------------------------------------------------------------------------

def jsb_downbeat(soprano: np.ndarray) -> int:
    """Where the JSB 16th data's first full 4/4 bar starts (the npz has no bar lines): the beat
    (0, 4, 8 or 12) on which the soprano's long notes and its last note most often begin."""
    line = line_of(soprano)
    score = np.zeros(4)
    for phase in range(4):
        on_downbeat = ((line.onset - phase * BEAT) % 16 == 0) & (line.pitch >= 0)
        score[phase] = (line.length * on_downbeat).sum()
    return int(np.argmax(score)) * BEAT


def jsb_lines(chorales: list[np.ndarray]) -> list[Line]:
    """Each (T, 4) chorale's soprano as a Line in 4/4, with the four voices' chord per beat."""
    lines = []
    for chorale in chorales:
        downbeat = jsb_downbeat(chorale[:, 0])
        lines.append(line_of(chorale[:, 0], bar=16, downbeat=downbeat, chords=beat_chords(chorale)))
    return lines


def essen_split(title: str, index: int) -> str:
    """'train', 'valid' or 'test' for a folk tune, fixed by its name and place (8 : 1 : 1)."""
    digit = hashlib.sha1(f"{index}:{title}".encode()).digest()[0] % 10
    return "test" if digit == 0 else "valid" if digit == 1 else "train"


def load_essen(cache: Path | None = None, files: int | None = None) -> dict[str, list[Line]]:
    """music21's Essen folk songs (`music21` package, the `train` extra) as Lines, split
    {'train', 'valid', 'test'} (`essen_split`). Tunes with notes off the 16th grid (triplets) are
    left out. `cache`: an .npz written after the first parse (the parse takes minutes)."""
    if cache is not None and Path(cache).exists():
        return _load_lines(Path(cache))
    from music21 import corpus  # optional and slow to import

    splits: dict[str, list[Line]] = {"train": [], "valid": [], "test": []}
    index = 0
    for path in sorted(corpus.getComposer("essenFolksong"))[:files]:
        for tune in corpus.parse(path).scores:
            line = _music21_line(tune)
            title = tune.metadata.title if tune.metadata and tune.metadata.title else ""
            if line is not None:
                splits[essen_split(title, index)].append(line)
            index += 1
    if cache is not None:
        _save_lines(Path(cache), splits)
    return splits


def _music21_line(tune) -> Line | None:
    part = tune.parts[0] if tune.parts else tune
    signatures = list(part.recurse().getElementsByClass("TimeSignature"))
    if not signatures:
        return None
    quarters = float(signatures[0].barDuration.quarterLength)
    bar = int(round(quarters * 4))
    if abs(bar - quarters * 4) > 1e-6 or bar <= 0:
        return None
    events: list[list[int]] = []   # pitch, onset, length
    measures = list(part.getElementsByClass("Measure"))
    downbeat = 0
    if measures and float(measures[0].paddingLeft) > 0:
        downbeat = int(round((quarters - float(measures[0].paddingLeft)) * 4)) % bar
    for element in part.flatten().notesAndRests:
        length_16ths = float(element.quarterLength) * 4
        onset_16ths = float(element.offset) * 4
        if length_16ths == 0:          # grace notes
            continue
        if abs(length_16ths - round(length_16ths)) > 1e-6 or abs(onset_16ths - round(onset_16ths)) > 1e-6:
            return None
        pitch = REST if element.isRest else max(p.midi for p in element.pitches)
        tie = getattr(element, "tie", None)
        if tie is not None and tie.type in ("continue", "stop") and events and events[-1][0] == pitch:
            events[-1][2] += int(round(length_16ths))
            continue
        if pitch == REST and events and events[-1][0] == REST:
            events[-1][2] += int(round(length_16ths))
            continue
        events.append([pitch, int(round(onset_16ths)), int(round(length_16ths))])
    notes = [e for e in events if e[0] >= 0]
    if len(notes) < 8:
        return None
    array = np.array(events, dtype=np.int64)
    # a tune written in long values (4/2, 6/4, 12/8 in halves and quarters) read at half its values:
    # the same music as 4/4 or 6/8, which the models know
    while bar > POSITIONS and bar % 2 == 0 and downbeat % 2 == 0 and not (array[:, 1:] % 2).any():
        array[:, 1:] //= 2
        bar, downbeat = bar // 2, downbeat // 2
    return Line(array[:, 0], array[:, 1], array[:, 2], bar, downbeat)


def _save_lines(path: Path, splits: dict[str, list[Line]]) -> None:
    arrays = {}
    for split, lines in splits.items():
        arrays[f"{split}_count"] = np.array(len(lines))
        for i, line in enumerate(lines):
            arrays[f"{split}_{i}"] = np.stack([line.pitch, line.onset, line.length])
            arrays[f"{split}_{i}_meter"] = np.array([line.bar, line.downbeat])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def _load_lines(path: Path) -> dict[str, list[Line]]:
    stored = np.load(path)
    splits = {}
    for split in ("train", "valid", "test"):
        lines = []
        for i in range(int(stored[f"{split}_count"])):
            pitch, onset, length = stored[f"{split}_{i}"]
            bar, downbeat = stored[f"{split}_{i}_meter"]
            lines.append(Line(pitch, onset, length, int(bar), int(downbeat)))
        splits[split] = lines
    return splits
