"""Chorale data for training and evaluation: numpy only (no torch), so `bridge` may use it too.

A chorale is an int16 array (T, 4) of MIDI pitches, columns soprano, alto, tenor, bass, on a
16th-note grid; -1 marks a silent voice.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

NUM_VOICES = 4
MIN_PITCH = 36
NUM_PITCHES = 46           # MIDI 36..81, the range of the JSB chorales
REST = -1

DEFAULT_JSB_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "jsb"
JSB_16TH_NPZ = "Jsb16thSeparated.npz"


def _to_int_roll(arr) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    out = np.full(arr.shape, REST, dtype=np.int16)
    sounding = ~np.isnan(arr)
    out[sounding] = arr[sounding].astype(np.int16)
    return out


def load_jsb16(path: str | Path, split: str) -> list[np.ndarray]:
    """The Coconet-format JSB split ('train', 'valid' or 'test'), in the file's order."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"unknown split {split!r}: use train, valid or test")
    data = np.load(Path(path), allow_pickle=True, encoding="latin1")
    return [_to_int_roll(c) for c in data[split]]


def find_jsb16(explicit: str | Path | None = None) -> Path | None:
    """The JSB npz: the given path, or the shared copy beside the checkout when it is there."""
    if explicit is not None:
        return Path(explicit)
    candidate = DEFAULT_JSB_DIR / JSB_16TH_NPZ
    return candidate if candidate.exists() else None


def load_music21_chorales(min_steps: int = 32, limit: int | None = None) -> list[np.ndarray]:
    """Bach's four-voice chorales from music21's own corpus, as 16th-note (T, 4) rolls.

    Chorales that are not four parts or hold notes outside MIDI 36..81 are left out. Needs
    the `music21` package (the `train` extra); nothing is downloaded.
    """
    from music21 import corpus  # imported here: optional and slow to import

    chorales = []
    for work in corpus.chorales.Iterator(returnType="stream"):
        if limit is not None and len(chorales) >= limit:
            break
        parts = list(work.parts)
        if len(parts) != NUM_VOICES:
            continue
        length = int(round(float(work.highestTime) * 4))
        if length < min_steps:
            continue
        roll = np.full((length, NUM_VOICES), REST, dtype=np.int16)
        for v, part in enumerate(parts):
            for note in part.flatten().notes:
                if note.isChord:
                    note = note.notes[-1] if v == 0 else note.notes[0]
                start = int(round(float(note.offset) * 4))
                stop = int(round(float(note.offset + note.quarterLength) * 4))
                roll[start:stop, v] = note.pitch.midi
        sounding = roll[roll != REST]
        if sounding.size and (sounding.min() < MIN_PITCH or sounding.max() >= MIN_PITCH + NUM_PITCHES):
            continue
        chorales.append(roll)
    return chorales


def transposition_range(chorale: np.ndarray, min_pitch: int = MIN_PITCH,
                        num_pitches: int = NUM_PITCHES) -> tuple[int, int]:
    """Semitone shifts (lowest, highest) that keep every note of the chorale in the model's range."""
    sounding = chorale[chorale != REST]
    if sounding.size == 0:
        return 0, 0
    return min_pitch - int(sounding.min()), min_pitch + num_pitches - 1 - int(sounding.max())


def random_crops(chorales: list[np.ndarray], batch: int, length: int, rng: np.random.Generator,
                 max_transpose: int = 6, min_pitch: int = MIN_PITCH, num_pitches: int = NUM_PITCHES) -> np.ndarray:
    """(batch, length, 4) pitch indices (MIDI - min_pitch; -1 = rest): random crops, randomly
    transposed within the range.

    Chorales shorter than `length` are padded with rests at the end.
    """
    out = np.full((batch, length, NUM_VOICES), REST, dtype=np.int64)
    for b in range(batch):
        chorale = chorales[rng.integers(len(chorales))]
        start = int(rng.integers(max(1, len(chorale) - length + 1)))
        crop = chorale[start:start + length]
        low, high = transposition_range(crop, min_pitch, num_pitches)
        shift = int(rng.integers(max(low, -max_transpose), min(high, max_transpose) + 1)) if max_transpose else 0
        sounding = crop != REST
        out[b, :len(crop)][sounding] = crop[sounding] + shift - min_pitch
    return out


def voices_to_notes(roll: np.ndarray, min_pitch: int, num_pitches: int, onsets: np.ndarray | None = None) -> np.ndarray:
    """(T, V) MIDI pitches per voice (-1 = rest) -> (T, P, 2) float32 play and articulate over
    the pitches min_pitch.. (pitches outside the range are dropped). A note is struck at the
    (T, V) `onsets` when given, else where its voice comes to its pitch, from a rest or another
    pitch: a voice repeating a pitch on this grid then reads as held (the JSB 16th data cannot
    say otherwise)."""
    roll = np.asarray(roll)
    steps = len(roll)
    notes = np.zeros((steps, num_pitches, 2), dtype=np.float32)
    if onsets is None:
        before = np.vstack([np.full((1, roll.shape[1]), REST, dtype=roll.dtype), roll[:-1]]) if steps else roll
        onsets = before != roll
    for t, v in zip(*np.nonzero(roll >= 0)):
        index = int(roll[t, v]) - min_pitch
        if 0 <= index < num_pitches:
            notes[t, index, 0] = 1.0
            if onsets[t, v]:
                notes[t, index, 1] = 1.0
    return notes


def to_indices(chorale: np.ndarray) -> np.ndarray:
    """MIDI pitches (-1 = rest) -> pitch indices (-1 = rest), int64."""
    out = chorale.astype(np.int64) - MIN_PITCH
    out[chorale == REST] = REST
    return out


# --- masks (1 = unknown, to be predicted) and loss targets (1 = the cell's NLL counts) -----------
# Each kind returns (mask, target). Usually every unknown cell is a target; the live kind scores
# only the present step, the one thing live use (and the note-wise NLL) ever asks of it.

def orderless_mask(batch: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Coconet's training mask: a uniformly drawn number of cells, then which cells."""
    cells = length * NUM_VOICES
    mask = np.zeros((batch, cells), dtype=np.float32)
    for b in range(batch):
        count = int(rng.integers(1, cells + 1))
        mask[b, rng.permutation(cells)[:count]] = 1.0
    mask = mask.reshape(batch, length, NUM_VOICES)
    return mask, mask


def melody_given_mask(batch: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Harmonizing: the soprano given everywhere, alto, tenor and bass unknown."""
    mask = np.ones((batch, length, NUM_VOICES), dtype=np.float32)
    mask[:, :, 0] = 0.0
    return mask, mask


def chronological_mask(batch: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Live use: the past known, the present's upper voices known, the rest of the present and
    the whole future unknown; only the present's unknown voices are targets. With the cut voice
    drawn from 0..3 this is exactly the conditioning of the note-wise (chronological) NLL."""
    mask = np.zeros((batch, length, NUM_VOICES), dtype=np.float32)
    target = np.zeros_like(mask)
    for b in range(batch):
        t = int(rng.integers(length))
        v = int(rng.integers(NUM_VOICES))
        mask[b, t, v:] = 1.0
        mask[b, t + 1:] = 1.0
        target[b, t, v:] = 1.0
    return mask, target


def live_onset_mask(pitches: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The live bridge's question, asked where it matters: the present is a melody onset (the
    soprano changes there) late in the crop, as in the live window, whose present is its last
    step; the soprano and the past known, alto..bass (from a drawn voice on) and the future
    unknown; the present's unknown voices are the targets. Uniformly drawn steps (the
    chronological kind) are mostly continuations, where every voice holds: a model trained on
    those alone holds far more often at onsets than Bach does (measured on coconet-live: alto
    0.53 against Bach's 0.36, bass 0.30 against 0.14)."""
    batch, length, _ = pitches.shape
    mask = np.zeros(pitches.shape, dtype=np.float32)
    target = np.zeros_like(mask)
    soprano = pitches[:, :, 0]
    for b in range(batch):
        late = np.arange(length // 2, length)
        onsets = late[(soprano[b, late] >= 0) & (soprano[b, late] != soprano[b, late - 1])]
        t = int(rng.choice(onsets)) if onsets.size else int(rng.integers(length // 2, length))
        v = int(rng.integers(1, NUM_VOICES))
        mask[b, t, v:] = 1.0
        mask[b, t + 1:] = 1.0
        target[b, t, v:] = 1.0
    return mask, target


MASK_KINDS = {
    "orderless": orderless_mask,
    "melody": melody_given_mask,
    "chronological": chronological_mask,
}
# kinds that choose their cells by what the crop holds: called with (pitches, rng)
CONTENT_MASK_KINDS = {
    "live_onset": live_onset_mask,
}


# what the product asks of the offline model, the mix Coconet trains on (models/train_coconet.py)
# and the int8 export calibrates with (models/quantize.py): any inpainting, a melody given, the live case
MASK_WEIGHTS = {"orderless": 0.5, "melody": 0.2, "chronological": 0.3}


def mixed_masks(batch: int, length: int, rng: np.random.Generator, weights: dict[str, float],
                pitches: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mask, target) with each example's drawn from the kinds in `weights` (relative
    probabilities); `pitches` (batch, length, 4), the crops, for the kinds that look at them."""
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    choice = rng.choice(len(names), size=batch, p=p / p.sum())
    mask = np.empty((batch, length, NUM_VOICES), dtype=np.float32)
    target = np.empty_like(mask)
    for k, name in enumerate(names):
        rows = np.flatnonzero(choice == k)
        if not rows.size:
            continue
        if name in CONTENT_MASK_KINDS:
            mask[rows], target[rows] = CONTENT_MASK_KINDS[name](pitches[rows], rng)
        else:
            mask[rows], target[rows] = MASK_KINDS[name](rows.size, length, rng)
    return mask, target


def step_questions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(steps, first_voices), each (B,), of a (B, T, V) mask: for an example that asks for one
    step's voices from a voice down, every earlier step and the voices above known and every
    later step unknown (the chronological and live-onset kinds), that step and voice, else -1.
    These are the questions the voice heads answer (models/coconet.py)."""
    batch, length, voices = mask.shape
    steps = np.full(batch, -1, dtype=np.int64)
    first_voices = np.full(batch, -1, dtype=np.int64)
    unknown = mask > 0.5
    for b in range(batch):
        rows_unknown = np.flatnonzero(unknown[b].any(axis=1))
        if not rows_unknown.size:
            continue
        t = int(rows_unknown[0])
        first = int(np.argmax(unknown[b, t]))
        if unknown[b, t + 1:].all() and unknown[b, t, first:].all():
            steps[b], first_voices[b] = t, first
    return steps, first_voices


def fixed_fraction_mask(shape: tuple[int, int, int], fraction: float, seed: int) -> np.ndarray:
    """Each cell unknown with the given probability, from a fixed seed (the fast 50% figure)."""
    rng = np.random.default_rng(seed)
    return (rng.random(shape) < fraction).astype(np.float32)


# --- piano-roll frames (the RNN-RBM's data): a chorale is a (T, P) 0/1 array of the pitches
# sounding at each frame. Boulanger-Lewandowski's JSB pickle samples one frame per quarter note
# and transposes every chorale to C major or C minor; music21 and MIDI chorales are brought to
# the same form (frames at each beat, tonic moved to C) so one engine serves them all. ---------

JSB_QUARTER_PKL = "jsb-chorales-quarter.pkl"


def find_jsb_quarter(explicit: str | Path | None = None) -> Path | None:
    """Boulanger-Lewandowski's JSB quarter-note pickle: the given path, or the shared copy."""
    if explicit is not None:
        return Path(explicit)
    candidate = DEFAULT_JSB_DIR / JSB_QUARTER_PKL
    return candidate if candidate.exists() else None


def load_jsb_quarter(path: str | Path, split: str) -> list[list[tuple[int, ...]]]:
    """One split of the pickle: chorales as lists of frames, each a tuple of MIDI pitches."""
    import pickle

    if split not in ("train", "valid", "test"):
        raise ValueError(f"unknown split {split!r}: use train, valid or test")
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
        chorales = data[split]
        return [[tuple(int(p) for p in frame) for frame in chorale] for chorale in chorales]
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"not a piano-roll pickle with a {split!r} split ({type(error).__name__})") from None


def frames_to_roll(chorale: list[tuple[int, ...]], min_pitch: int, num_pitches: int) -> np.ndarray:
    """Frames of MIDI pitches -> (T, P) float32 0/1 piano roll; pitches outside the range are dropped."""
    roll = np.zeros((len(chorale), num_pitches), dtype=np.float32)
    for t, frame in enumerate(chorale):
        for p in frame:
            if min_pitch <= p < min_pitch + num_pitches:
                roll[t, p - min_pitch] = 1.0
    return roll


def frames_to_notes(chorale: list[tuple[int, ...]], min_pitch: int, num_pitches: int) -> np.ndarray:
    """Frames of MIDI pitches -> (T, P, 2) float32 play and articulate, every sounding pitch read
    as struck (the frames cannot say what is held)."""
    play = frames_to_roll(chorale, min_pitch, num_pitches)
    return np.stack([play, play], axis=-1)


def random_frame_crops(chorales: list[list[tuple[int, ...]]], batch: int, length: int, rng: np.random.Generator,
                       max_transpose: int, min_pitch: int, num_pitches: int) -> list[list[tuple[int, ...]]]:
    """`batch` random crops of up to `length` frames, each transposed at random (up to
    `max_transpose` semitones) as far as its notes stay in the range."""
    crops = []
    for _ in range(batch):
        chorale = chorales[rng.integers(len(chorales))]
        start = int(rng.integers(max(1, len(chorale) - length + 1)))
        crop = chorale[start:start + length]
        pitches = [p for frame in crop for p in frame]
        low = max(-max_transpose, min_pitch - min(pitches, default=min_pitch))
        high = min(max_transpose, min_pitch + num_pitches - 1 - max(pitches, default=min_pitch))
        shift = int(rng.integers(low, high + 1)) if low <= high else 0
        crops.append([tuple(p + shift for p in frame) for frame in crop])
    return crops


def voices_to_frames(chorale: np.ndarray, steps_per_frame: int = 4) -> list[tuple[int, ...]]:
    """A (T, 4) 16th-note chorale -> frames of the pitches sounding at each beat, transposed so
    that its (Krumhansl-Schmuckler) tonic is C, as in Boulanger-Lewandowski's JSB data."""
    from bridge.keys import estimate_key

    notes = chorale[chorale != REST]
    tonic = estimate_key(notes)[0] if notes.size else 0
    shift = -tonic if tonic <= 6 else 12 - tonic     # the nearer C, up or down
    return [tuple(sorted({int(p) + shift for p in row if p != REST})) for row in chorale[::steps_per_frame]]


def load_user_chorales(source: str, midi_dir: str | None = None) -> tuple[list[np.ndarray], str]:
    """(T, 4) S A T B MIDI rolls (-1 = rest) of music21's Bach chorales (`source` 'music21') or
    of a folder of four-track MIDI files ('midi'), and a line saying what they are."""
    if source == "music21":
        chorales = load_music21_chorales()
        return chorales, f"music21 Bach chorales ({len(chorales)})"
    from pathlib import Path

    from bridge.midifile import read_voices  # plain numpy/mido; no torch, no Qt
    chorales = [read_voices(f) for f in sorted(Path(midi_dir).rglob("*.mid*"))]
    return chorales, f"MIDI folder {midi_dir} ({len(chorales)} files)"


def split_off_validation(items: list) -> tuple[list, list]:
    """(train, valid): a tenth for validation, chosen by a fixed seed so a resumed run sees the
    same split."""
    order = np.random.default_rng(1234).permutation(len(items))
    n_valid = max(1, len(items) // 10)
    return [items[i] for i in order[n_valid:]], [items[i] for i in order[:n_valid]]
