"""The grid of the recent past as the engine is shown it, and asking the engine.

`Context` keeps the last bar (or what the engine can see) of melody and harmony on the 16th
grid; `ask_engine` fills in a window of it in the melody's register; `window_key`
names a window exactly, for the speculator's answers.
"""
from __future__ import annotations

import numpy as np

from bridge.engines import CONTINUE, FILL, REST, SOPRANO, rest_is_held
from bridge.live.config import VOICES, Snapshot
from bridge.score import COMMON_TIME, Score

# a melody note for warm-up calls (inside every soprano range)
_WARM_PITCH = 72
# speculation: next pitches tried per onset (the warm-up asks the same question). The shipped
# coconet-live's 8 likeliest next notes held the next note of the JSB test sopranos (400 onsets
# as bench/bench_live.py plays them) 88% of the time, its 16 98%, its 24 every one: a miss costs
# the three network calls a hit saves
SPECULATED_PITCHES = 24
# Asker: a stream is started afresh (from the window) after this many rows, about a minute of 16ths
STREAM_ROWS = 1024


def past_steps_for(snapshot: Snapshot) -> int:
    """Past steps worth showing the engine: the configured context, but no more than the network
    can see from the present step (its receptive radius, when the engine has one): cells beyond
    it cannot change the answer, they only cost time. Not with key 'auto', which estimates the
    key from all the melody it is shown."""
    context = snapshot.config.context_steps
    radius = snapshot.engine.receptive_radius
    if radius is None or snapshot.settings.key == "auto":
        return context
    return min(context, int(radius))


def warm_up(snapshot: Snapshot) -> None:
    """Compile and touch everything the first note will use: the engine's own warm-up, then, for
    an engine that fills, inpaint calls of the live shapes (the full window, and the short ones
    of a first phrase), and the speculator's question."""
    engine, settings = snapshot.engine, snapshot.settings
    engine.warm_up(settings)
    if FILL not in engine.capabilities:
        return
    past = past_steps_for(snapshot)
    for steps in sorted({1, 2, past // 2 + 1, past + 1}):
        roll = np.full((steps, VOICES), REST, dtype=np.int16)
        roll[:, SOPRANO] = _WARM_PITCH
        roll[:-1, 1:] = (67, 64, 48)
        known = np.ones(roll.shape, dtype=bool)
        known[-1, 1:] = False
        engine.inpaint(roll, known, settings, open_end=True)
        known[-1, SOPRANO] = False
        engine.melody_candidates(roll, known, settings, SPECULATED_PITCHES)


# ---------------------------------------------------------------- the grid of the recent past

class Context:
    """The recent past on the 16th grid and the present step, as the engine is shown it.

    `rows` is (past + 1, 4): S A T B pitches as they sounded (-1 = silent), the present step last.
    Past rows before the first onset (or before a silence that fills the whole window) are not
    history: `window()` crops them, so the engine sees what a chorale crop would show it.
    """

    def __init__(self, past: int):
        self.past = past
        self.rows = np.full((past + 1, VOICES), REST, dtype=np.int16)
        self.known = np.ones((past + 1, VOICES), dtype=bool)
        self.known[-1, 1:] = False      # the present's alto, tenor, bass: to be filled in
        self.filled = 0                 # past rows that are history (the last `filled` of them)
        self.step = None                # the present row's step; None before the first onset
        self.released_at = None         # step the present melody note ended; None while it sounds
        self._present = np.empty(VOICES, dtype=np.int16)

    def reset(self) -> None:
        self.rows.fill(REST)
        self.filled = 0
        self.step = None
        self.released_at = None

    def resized(self, past: int) -> "Context":
        """A context of another length with the same recent history."""
        other = Context(past)
        keep = min(past, self.past) + 1
        other.rows[-keep:] = self.rows[-keep:]
        other.filled = min(self.filled, past)
        other.step, other.released_at = self.step, self.released_at
        return other

    def onset(self, step: int, pitch: int) -> None:
        """A melody note starts at `step`: move the grid on, and make it the present row."""
        if self.step is not None:
            gap = step - self.step
            if gap < 0:
                gap = 1  # the song position jumped back: what was just played is still the past
            if gap > 0:
                self._advance(gap)
        self.step = step
        self.released_at = None
        row = self.rows[-1]
        row[SOPRANO] = pitch
        row[1:] = REST

    def set_harmony(self, alto: int, tenor: int, bass: int) -> None:
        row = self.rows[-1]
        row[1], row[2], row[3] = alto, tenor, bass

    def release(self, step: int) -> None:
        """The present melody note (and its harmony) ended at `step`."""
        if self.step is not None and self.released_at is None:
            self.released_at = max(step, self.step)

    def _advance(self, gap: int) -> None:
        past, rows = self.past, self.rows
        self._present[:] = rows[-1]
        released = self.released_at
        # melody rests shorter than a beat (detached playing) are held through for the engine,
        # as Engine.harmonize does offline: the chorales it learnt from have no such gaps
        if released is not None and rest_is_held(self.step + gap - released):
            released = None
        stay = past + 1 - gap  # rows still in sight, the old present the last of them
        if stay > 0:
            rows[:stay] = rows[gap:]  # numpy copies overlapping slices correctly
        # rows between the old present and the new one: the old present held, or silence
        for i in range(max(stay, 0), past):
            step = self.step + i - (past - gap)
            if released is None or step < released:
                rows[i] = self._present
            else:
                rows[i] = REST
        if released is not None and self.step + gap - released >= past:
            self.filled = 0  # nothing but silence in sight: no history worth showing
        else:
            self.filled = min(past, self.filled + gap)

    def window(self) -> tuple[np.ndarray, np.ndarray]:
        """(roll, known) views: the history in sight and the present step, oldest first."""
        start = self.past - self.filled
        return self.rows[start:], self.known[start:]


def ask_engine(snapshot: Snapshot, roll: np.ndarray, known: np.ndarray,
               meter: tuple[int, int] = COMMON_TIME) -> np.ndarray:
    """The engine's (T, 3) alto, tenor and bass for a MIDI roll (not known cells filled in), in
    the melody's register (Engine.fill moves it for the model and back), MIDI pitches, -1 = silent;
    `meter` places the roll's bars (see Score)."""
    return snapshot.engine.inpaint(roll, known, snapshot.settings, open_end=True, meter=meter)[:, 1:]


class Asker:
    """Asks the engine for the present step's harmony, note after note. An engine with CONTINUE
    is asked through its stream, kept between notes: each answer steps only the rows since the
    last one (the bi-axial time stack: one step a 16th, not the whole window), its memory
    reaching back past the window. The stream starts again when the knobs or the engine change,
    the window no longer reaches the last row it drew (a long silence, a jump back), or it holds
    STREAM_ROWS rows (its record of the piece grows with every note, and is copied as it grows).
    Any other engine gets the window (`ask_engine`)."""

    def __init__(self):
        self._stream = None
        self._snapshot: Snapshot | None = None
        self._drawn_at: int | None = None   # the step of the last row the stream drew

    def reset(self) -> None:
        self._stream = None

    def present(self, snapshot: Snapshot, roll: np.ndarray, known: np.ndarray, step: int) -> np.ndarray:
        """(3,) alto, tenor, bass for the last row of the window `roll`, whose step is `step`."""
        if CONTINUE not in snapshot.engine.capabilities:
            return ask_engine(snapshot, roll, known)[-1]
        first = step - (len(roll) - 1)
        stream, drawn_at = self._stream, self._drawn_at
        self._stream = None   # until this answer is through: an engine error starts afresh
        if (stream is None or self._snapshot is not snapshot or drawn_at is None or not first <= drawn_at < step
                or len(stream.score) > STREAM_ROWS):
            stream = snapshot.engine.stream(snapshot.settings)
            new = 0                # every row of the window
        else:
            # the row drawn last as it sounded (the speculator's answer, say); then the rows since
            stream.revise_last(Score.of(roll[drawn_at - first:drawn_at - first + 1], held_in=True))
            new = drawn_at - first + 1
        rows = stream.extend(len(roll) - new, Score.of(roll[new:], held_in=new > 0), known[new:])
        self._stream, self._snapshot, self._drawn_at = stream, snapshot, step
        return np.array(rows.pitches[-1, 1:])


def ask_engine_many(snapshot: Snapshot, rolls: list[np.ndarray], knowns: list[np.ndarray]) -> list[np.ndarray]:
    """`ask_engine` for several rolls, in one batch where the engine can."""
    return [result[:, 1:] for result in snapshot.engine.inpaint_many(rolls, knowns, snapshot.settings, open_end=True)]


def likely_next_pitches(snapshot: Snapshot, roll: np.ndarray, known: np.ndarray) -> list[int]:
    """The engine's likeliest melody pitches (MIDI, likeliest first) for the last step of `roll`,
    whose soprano is not `known`: what the melody may play next."""
    return snapshot.engine.melody_candidates(roll, known, snapshot.settings, SPECULATED_PITCHES)


def window_key(roll: np.ndarray) -> tuple:
    """A window's exact identity: an answer worked out for one window is only taken for it."""
    return roll.shape, roll.tobytes()
