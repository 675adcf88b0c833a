"""Phrase mode: everything a lookahead later, each phrase's harmony decided by the full sampler."""
from __future__ import annotations

import collections
import functools

import numpy as np

from bridge.clock import Clock, step_ns
from bridge.engines import REST, SOPRANO, rest_is_held
from bridge.live.config import BAR_STEPS, VOICES
from bridge.live.context import ask_engine, past_steps_for
from bridge.live.decider import Decider
from bridge.live.player import NOTE_OFF, NOTE_ON, Outlet, ScheduledPlayer
from bridge.live.stats import LiveStats, describe

# phrase mode decides a phrase this long before its first note is due (at most half the delay):
# the time the sampler may take
DECISION_MARGIN_NS = 80_000_000


class PhraseMode(ScheduledPlayer):
    """Everything `lookahead_beats` later: the melody waits, each phrase's harmony is decided by
    the full annealed Gibbs sampler (the harmony already decided given, as `Settings` say), and a
    schedule sends the echo and the harmony exactly one delay after the melody came in.

    The timeline has a row per 16th step, from the oldest step still shown to the engine to the
    newest the melody reached: the melody (held through short rests for the engine, as offline),
    whether the melody really sounds there (the harmony sounds only with it, as in note mode),
    when the step began (the onset's arrival, else the grid's time), the onset's velocity, the
    melody's note-off when one fell in that step, and the harmony once decided. Rows before
    `decided` are decided and their messages scheduled. The pending rows are decided together,
    as one phrase, when the first of them would otherwise be late: at its time + the delay -
    the decision margin. A held note grows new rows on the grid (not with the `free` clock, where
    a step is an onset), so that a long note is decided in time too.

    Voices in unison on one channel (or with the echo) sound once and end with the last of them:
    the output's record (bridge.sounding) sees to that. The sampler runs in the `decider`'s
    thread (the bridge gives a ThreadDecider; by default, the caller's): the rows being decided
    are settled, and their messages are scheduled when the harmony comes back.
    """

    mode = "phrase"
    CAPACITY = 1024

    def __init__(self, out: Outlet, stats: LiveStats, clock: Clock | None = None,
                 monitor: collections.deque | None = None, decider: Decider | None = None):
        super().__init__(out, stats, clock, monitor)
        self.decider = decider or Decider()
        n = self.CAPACITY
        self.melody_rows = np.full(n, REST, dtype=np.int16)
        self.harmony_rows = np.full((n, VOICES - 1), REST, dtype=np.int16)
        self.sounding = np.zeros(n, dtype=bool)
        self.start_ns = np.zeros(n, dtype=np.int64)
        self.velocity = np.zeros(n, dtype=np.int16)
        self.release_ns = np.full(n, -1, dtype=np.int64)
        self.delay_at = np.zeros(n, dtype=np.int64)   # the delay in force when the row's note began
        self.rows = 0                   # rows in use
        self.decided = 0                # rows decided and scheduled
        self.deciding = None            # (token, first row, end row) of the phrase being decided
        self.trimmed = 0                # rows dropped from the front so far (rows' numbers move)
        self._tokens = 0
        self.last_step = None           # the song step of the newest row
        self.melody = None              # (in channel, pitch, velocity) of the note sounding now
        self.released_row = None        # the row the last melody note ended in, while it rests
        self.planned = [REST] * (VOICES - 1)   # the harmony as of the end of the schedule
        # melody key -> (echo channel, pitch, the delay its note-on went out with)
        self.echoes: dict[tuple[int, int], tuple[int | None, int, int]] = {}

    # ---- the knobs and the clock

    def delay_ns(self) -> int:
        """The lookahead in ns at the tempo now. Each note keeps the delay it began with (its
        note-off and its harmony too), so a tempo that moves cannot put an end before its start."""
        return self.snapshot.config.delay_ns(self.clock.bpm)

    @staticmethod
    def margin_ns(delay: int) -> int:
        return min(DECISION_MARGIN_NS, delay // 2)

    def forget_history(self) -> None:
        self.rows = self.decided = 0
        self.deciding = None
        self.last_step = None
        self.released_row = None

    # ---- melody in

    def held_notes(self) -> list[tuple[int, int]]:
        return list(self.echoes)

    def note_on(self, channel: int, pitch: int, velocity: int, step: int, t_ns: int) -> None:
        config = self.snapshot.config
        delay = self.delay_ns()
        due = t_ns + delay
        key = (channel, pitch)
        previous = self.echoes.pop(key, None)
        if previous is not None:  # the same key again without a note-off: end the first one
            self._at(max(due, t_ns + previous[2]), NOTE_OFF, previous[0], previous[1], 0, SOPRANO)
        echo_channel = config.echo_channel if config.echo else None
        self._at(due, NOTE_ON, echo_channel, pitch, velocity, SOPRANO)
        self.echoes[key] = (echo_channel, pitch, delay)
        self._onset_row(step, pitch, velocity, t_ns, delay)
        self.melody = (channel, pitch, velocity)

    def note_off(self, channel: int, pitch: int, t_ns: int) -> None:
        key = (channel, pitch)
        echo = self.echoes.pop(key, None)
        if echo is not None:
            self._at(t_ns + echo[2], NOTE_OFF, echo[0], echo[1], 0, SOPRANO)
        if self.melody is None or key != self.melody[:2]:
            return  # a note the legato already replaced: its echo was all that sounded
        self._grow_while_held(t_ns - 1)  # the rows the note sounded in (begun before its end)
        self.melody = None
        if self.rows == 0:
            return
        last = self.rows - 1
        self.released_row = last
        if last < self.decided:  # its harmony is scheduled already
            self._plan([REST] * (VOICES - 1), 0, t_ns + int(self.delay_at[last]))
        else:
            self.release_ns[last] = t_ns

    def _onset_row(self, step: int, pitch: int, velocity: int, t_ns: int, delay: int) -> None:
        """Make the row of `step` the onset of `pitch`, growing the timeline up to it."""
        gap = 0 if self.rows == 0 else step - self.last_step
        if gap == 0 and self.rows and t_ns - int(self.start_ns[self.rows - 1]) >= step_ns(self.clock.bpm) / 2:
            # by the time it came it is the next 16th: the DAW's grid rounded it into the newest
            # row's step (a player not locked to the DAW's clock, half a 16th off it), where it
            # would take that row and leave the onset there with no harmony of its own
            gap = 1
            step = self.last_step + 1
        if self.rows and self.released_row is not None and gap > past_steps_for(self.snapshot):
            self._decide_now()  # a rest longer than the engine looks back: what came before is not context
            self.forget_history()
        if self.rows == 0:
            self.rows = 1
            self.harmony_rows[0] = REST
        elif gap != 0 or self.rows == self.settled:
            # steps on (no more than the engine looks back: the rows between are context only);
            # a jump back, or a row already decided, takes the next row. Else two onsets fell in
            # one 16th, and the later one takes the row.
            self._grow(min(max(gap, 1), past_steps_for(self.snapshot) + 1))
        row = self.rows - 1
        self.last_step = step
        self.melody_rows[row] = pitch
        self.sounding[row] = True
        self.start_ns[row] = t_ns
        self.velocity[row] = velocity
        self.release_ns[row] = -1
        self.delay_at[row] = delay
        self.released_row = None

    def _grow(self, count: int) -> None:
        """`count` more rows on the grid after the newest (there is one): the melody held while it
        sounds, held through (for the engine only) while `rest_is_held`, else a rest."""
        if count <= 0 or self.rows == 0:
            return
        if self.rows + count > self.CAPACITY:
            self._trim(count)
        step = step_ns(self.clock.bpm)
        for _ in range(count):
            row = self.rows
            before = row - 1
            released = self.released_row
            held = self.melody is not None or (released is not None and rest_is_held(row - released))
            self.melody_rows[row] = self.melody_rows[before] if held else REST
            self.sounding[row] = self.melody is not None
            self.start_ns[row] = self.start_ns[before] + int(step)
            self.velocity[row] = self.velocity[before]
            self.delay_at[row] = self.delay_at[before]
            self.release_ns[row] = -1
            self.harmony_rows[row] = REST
            self.rows += 1
            self.last_step += 1

    def _grow_while_held(self, now_ns: int) -> None:
        """The rows of the grid steps begun by now under the melody note still held (none with
        the free clock, whose steps are onsets)."""
        if self.melody is not None and self.rows and self.clock.mode != "free":
            newest = int(self.start_ns[self.rows - 1])
            self._grow(max(0, int((now_ns - newest) // step_ns(self.clock.bpm))))

    def _trim(self, room: int) -> None:
        """Drop the oldest decided rows the engine no longer sees, to make `room`."""
        keep_from = max(0, self.decided - past_steps_for(self.snapshot))
        if self.rows - keep_from + room > self.CAPACITY:
            self._decide_now()
            keep_from = max(0, self.decided - past_steps_for(self.snapshot))
            if self.rows - keep_from + room > self.CAPACITY:
                raise RuntimeError("phrase timeline full")
        kept = self.rows - keep_from
        for array in (self.melody_rows, self.harmony_rows, self.sounding, self.start_ns, self.velocity, self.release_ns,
                      self.delay_at):
            array[:kept] = array[keep_from:self.rows]
        self.rows, self.decided = kept, self.decided - keep_from
        self.trimmed += keep_from
        if self.released_row is not None:
            self.released_row -= keep_from

    # ---- deciding

    def _deadline_ns(self) -> int | None:
        """When the pending rows (or the next row of a held note) must be decided."""
        if self.snapshot is None or self.rows == 0:
            return None
        settled, rows = self.settled, self.rows
        if settled < rows:
            # the earliest due of the pending rows: each keeps the delay of its note's tempo, so
            # after the tempo rose (the DAW's first clocks, after the internal tempo) a later row
            # can be due before the first
            # (a few rows, every tick of the worker: a loop, no arrays made)
            due, row = min((int(self.start_ns[r]) + int(self.delay_at[r]), r) for r in range(settled, rows))
            return due - self.margin_ns(int(self.delay_at[row]))
        if self.melody is not None and self.clock.mode != "free":
            row = self.rows - 1
            delay = int(self.delay_at[row])
            return int(self.start_ns[row] + step_ns(self.clock.bpm)) + delay - self.margin_ns(delay)
        return None

    @property
    def settled(self) -> int:
        """Rows before this one are decided or being decided: no longer to be changed."""
        return self.deciding[2] - self.trimmed if self.deciding else self.decided

    def _start_decision(self) -> None:
        """Hand the decider the pending rows, given what came before."""
        lo, hi = self.decided, self.rows
        if lo >= hi or self.deciding:
            return
        start = max(0, lo - past_steps_for(self.snapshot))
        roll = np.empty((hi - start, VOICES), dtype=np.int16)
        roll[:, SOPRANO] = self.melody_rows[start:hi]
        roll[:, 1:] = self.harmony_rows[start:hi]
        known = np.ones(roll.shape, dtype=bool)
        known[lo - start:, 1:] = (roll[lo - start:, SOPRANO] < 0)[:, None]
        # the song's bars, counted as respond mode counts them: the rows are consecutive 16ths up
        # to the newest, at last_step (the engine draws whole 8ths from its even steps)
        first_step = self.last_step - (hi - 1 - start)
        self._tokens += 1
        self.deciding = (self._tokens, lo + self.trimmed, hi + self.trimmed)
        self.decider.submit(self._tokens, functools.partial(ask_engine, self.snapshot, roll, known,
                                                            (BAR_STEPS, -first_step)))

    def _take_decision(self, wait: bool = False) -> None:
        """Schedule the rows being decided once their harmony is back."""
        if not self.deciding:
            return
        token, first, end = self.deciding
        result = self.decider.take(token, wait)
        if result is None:
            return
        self.deciding = None
        lo, hi = first - self.trimmed, end - self.trimmed
        if isinstance(result, Exception):
            self.stats.engine_errors += 1
            self.stats.last_engine_error = describe(result)
            self.harmony_rows[lo:hi] = REST
        else:
            self.harmony_rows[lo:hi] = result[len(result) - (hi - lo):]
        silent = [REST] * (VOICES - 1)
        for row in range(lo, hi):
            delay = int(self.delay_at[row])
            due = int(self.start_ns[row]) + delay
            self._plan(self.harmony_rows[row].tolist() if self.sounding[row] else silent, int(self.velocity[row]), due)
            if self.release_ns[row] >= 0:
                self._plan(silent, 0, int(self.release_ns[row]) + delay)
        self.decided = hi

    def _decide_now(self) -> None:
        """Decide every pending row before going on (rare: a long rest, a full timeline)."""
        self._take_decision(wait=True)
        self._start_decision()
        self._take_decision(wait=True)

    def _plan(self, pitches: list[int], velocity: int, due: int) -> None:
        """Schedule the harmony to become `pitches` at `due`: voices that change end, then start."""
        channels = self.snapshot.config.channels
        for voice, (old, new) in enumerate(zip(self.planned, pitches)):
            if old != new and old >= 0:
                self._at(due, NOTE_OFF, channels[voice], old, 0, voice + 1)
        for voice, (old, new) in enumerate(zip(self.planned, pitches)):
            if old != new and new >= 0:
                self._at(due, NOTE_ON, channels[voice], new, velocity, voice + 1)
        self.planned = list(pitches)

    # ---- sending on time

    def tick(self, now_ns: int) -> None:
        self._take_decision()
        deadline = self._deadline_ns()
        if deadline is not None and now_ns >= deadline and not self.deciding:
            self._grow_while_held(now_ns)
            self._start_decision()
            self._take_decision()  # at once, when the decider is the caller's thread
        self._send_due(now_ns)

    def next_due_ns(self) -> int | None:
        deadline = self._deadline_ns()
        due = self.schedule[0][0] if self.schedule else None
        if deadline is None or (due is not None and due < deadline):
            return due
        return deadline

    def release_all(self, t_ns: int) -> None:
        """Drop what is scheduled and pending (the take stopped), and end every note sounding."""
        self._release_scheduled()
        self.planned = [REST] * (VOICES - 1)
        self.echoes.clear()
        if self.melody is not None:
            self.melody = None
            self.released_row = self.rows - 1 if self.rows else None
        self.decided = self.rows
        self.deciding = None  # its harmony, when it comes, is for a take that stopped
        self.sounding[:self.rows] = False

    def close(self) -> None:
        self.decider.close()
