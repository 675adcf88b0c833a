"""The score every engine reads and writes: voices of MIDI pitches on the 16th grid, and where each
voice strikes.

    pitches  (T, V) int16   MIDI pitch per step and voice, -1 = silent
    onsets   (T, V) bool    the voice strikes its pitch at this step (a repeated note is struck
                            again: two onsets in a row at one pitch)
    voices   (V,) names     soprano, alto, tenor, bass for a chorale; one name for a melody
    meter    (bar, downbeat) 16ths a bar lasts, and the first step on which a bar begins (0 when
                            the score starts on a bar line; 12 after a one-beat pickup in 4/4)

Immutable: the arrays are read-only, and `replace` makes a changed copy. An onset lies only where
its voice sounds, and a voice coming to a new pitch always strikes it, so `pitches` alone is a
valid score whose repeated notes read as held (`Score.of`). The first step may sound a note
without striking it: a score cut from a longer one begins inside the notes held into it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bridge.errors import BadInput

REST = -1
SATB = ("soprano", "alto", "tenor", "bass")
# the meter of a score that says none: 4/4, a bar beginning on the first step
COMMON_TIME = (16, 0)


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


def pitch_changes(pitches: np.ndarray) -> np.ndarray:
    """(T, V) bool: where each voice sounds a pitch other than at the step before (from a rest too)."""
    pitches = np.asarray(pitches)
    before = np.vstack([np.full((1, pitches.shape[1]), REST, dtype=pitches.dtype), pitches[:-1]])
    return (pitches >= 0) & (pitches != before)


def checked_meter(bar: int, downbeat: int) -> tuple[int, int]:
    """(bar, downbeat) as ints, downbeat taken within the bar; BadInput unless a bar is 1..64 16ths."""
    if not 1 <= int(bar) <= 64:
        raise BadInput(f"a bar must last 1 to 64 16ths, not {bar}")
    return int(bar), int(downbeat) % int(bar)


@dataclass(frozen=True)
class Score:
    pitches: np.ndarray
    onsets: np.ndarray
    voices: tuple[str, ...] = field(default=SATB)
    meter: tuple[int, int] = COMMON_TIME

    def __post_init__(self):
        pitches = np.asarray(self.pitches)
        onsets = np.asarray(self.onsets, dtype=bool)
        if pitches.ndim != 2 or pitches.shape[1] != len(self.voices):
            raise BadInput(f"a score's pitches must be (T, {len(self.voices)}) for voices {', '.join(self.voices)}, "
                           f"not {pitches.shape}")
        if onsets.shape != pitches.shape:
            raise BadInput(f"a score's onsets must be {pitches.shape} like its pitches, not {onsets.shape}")
        if np.any((pitches < REST) | (pitches > 127)):
            raise BadInput("a score's pitches must be MIDI 0..127 or -1 (silent)")
        if np.any(onsets & (pitches < 0)):
            raise BadInput("a score has an onset where its voice is silent")
        if np.any(pitch_changes(pitches)[1:] & ~onsets[1:]):
            raise BadInput("a score's voice comes to a new pitch without striking it")
        object.__setattr__(self, "pitches", _read_only(pitches.astype(np.int16)))
        object.__setattr__(self, "onsets", _read_only(onsets))
        object.__setattr__(self, "voices", tuple(self.voices))
        object.__setattr__(self, "meter", checked_meter(*self.meter))

    @classmethod
    def of(cls, pitches: np.ndarray, onsets: np.ndarray | None = None, voices: tuple[str, ...] = SATB,
           held_in: bool = False, meter: tuple[int, int] = COMMON_TIME) -> "Score":
        """A score of (T, V) pitches; `onsets` adds strikes to the pitch changes (repeated notes).
        `held_in`: the first step's notes may be held from before the score (struck only where
        `onsets` says), else they are struck."""
        pitches = np.asarray(pitches)
        if pitches.ndim != 2 or pitches.shape[1] != len(voices) or (onsets is not None and np.shape(onsets) != pitches.shape):
            return cls(pitches, np.zeros(0, dtype=bool) if onsets is None else onsets, voices, meter)   # says what is wrong
        struck = pitch_changes(pitches)
        if held_in and len(struck):
            struck[0] = False
        if onsets is not None:
            struck |= np.asarray(onsets, dtype=bool) & (pitches >= 0)
        if pitches.size and (pitches.min() < REST or pitches.max() > 127):
            raise BadInput("a score's pitches must be MIDI 0..127 or -1 (silent)")
        # valid by construction: the live bridge builds several a note, so no second check
        score = object.__new__(cls)
        object.__setattr__(score, "pitches", _read_only(pitches.astype(np.int16)))
        object.__setattr__(score, "onsets", _read_only(struck))
        object.__setattr__(score, "voices", tuple(voices))
        object.__setattr__(score, "meter", checked_meter(*meter))
        return score

    @classmethod
    def melody(cls, pitches: np.ndarray, onsets: np.ndarray | None = None, meter: tuple[int, int] = COMMON_TIME) -> "Score":
        """A one-voice score of (T,) pitches (a soprano), `onsets` (T,) as for `of`."""
        pitches = np.asarray(pitches).reshape(-1, 1)
        return cls.of(pitches, None if onsets is None else np.asarray(onsets).reshape(-1, 1), SATB[:1], meter=meter)

    def __len__(self) -> int:
        return len(self.pitches)

    def replace(self, pitches: np.ndarray | None = None, onsets: np.ndarray | None = None,
                voices: tuple[str, ...] | None = None, meter: tuple[int, int] | None = None) -> "Score":
        """A changed copy; new pitches without new onsets keep the old strikes where the pitch
        is unchanged and strike every change."""
        voices = self.voices if voices is None else voices
        meter = self.meter if meter is None else meter
        if pitches is None:
            return Score(self.pitches, self.onsets if onsets is None else onsets, voices, meter)
        if onsets is None and np.shape(pitches) == self.pitches.shape:
            onsets = self.onsets & (np.asarray(pitches) == self.pitches)
        return Score.of(pitches, onsets, voices, meter=meter)

    def appended(self, other: "Score") -> "Score":
        """This score with `other`'s steps after it (the same voices): a note `other` holds into
        its first step goes on from this score's last, if that is its pitch."""
        if other.voices != self.voices:
            raise BadInput(f"cannot append voices {', '.join(other.voices)} to {', '.join(self.voices)}")
        return Score.of(np.concatenate([self.pitches, other.pitches]), np.concatenate([self.onsets, other.onsets]),
                        self.voices, held_in=True, meter=self.meter)

    def steps(self, start: int, stop: int) -> "Score":
        """Steps start..stop-1, the notes sounding into `start` held into the cut."""
        bar, downbeat = self.meter
        return Score(self.pitches[start:stop], self.onsets[start:stop], self.voices, (bar, (downbeat - start) % bar))

    def note_runs(self, voice: int) -> list[tuple[int, int, int]]:
        """(pitch, first step, stop step) of each note of one voice: a run of one pitch until the
        next onset or rest."""
        column, struck = self.pitches[:, voice], self.onsets[:, voice]
        runs = []
        start = None
        for t in range(len(column) + 1):
            ends = t == len(column) or column[t] < 0 or struck[t]   # a new pitch is always struck
            if start is not None and ends:
                runs.append((int(column[start]), start, t))
                start = None
            if t < len(column) and column[t] >= 0 and start is None:
                start = t
        return runs
